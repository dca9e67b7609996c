//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// primaryName is the DNS name the test primaries' TLS certificates carry.
const primaryName = "primary.hostcert.test"

// primaryProc is one hostcert-primary data directory and, while running, its
// serve process.
type primaryProc struct {
	t           testing.TB
	data        string
	listen      string // host:port of the API
	netns       string
	fingerprint string
	caPEM       []byte
	serveArgs   []string
	p           *proc
}

type primaryOpts struct {
	listen     string   // default 127.0.0.1:<free>
	netns      string   // run inside this network namespace
	names      []string // TLS names besides primaryName
	dnsServer  string
	tunnelAddr []string
	extra      []string // more serve flags
	initExtra  []string // more init flags
}

// newPrimary runs init in a fresh data directory and starts serve.
func newPrimary(t testing.TB, o primaryOpts) *primaryProc {
	t.Helper()
	if o.listen == "" {
		o.listen = freePort(t, "127.0.0.1")
	}
	pr := &primaryProc{t: t, data: filepath.Join(t.TempDir(), "primary"), listen: o.listen, netns: o.netns}
	args := []string{"init", "--data", pr.data, "--name", primaryName, "--json"}
	for _, n := range o.names {
		args = append(args, "--name", n)
	}
	args = append(args, o.initExtra...)
	var res struct {
		Fingerprint string `json:"fingerprint"`
	}
	out := mustRun(t, "", bins.primary, args...)
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Fingerprint == "" {
		t.Fatalf("init --json printed %q: %v", out, err)
	}
	pr.fingerprint = res.Fingerprint
	ca, err := os.ReadFile(filepath.Join(pr.data, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pr.caPEM = ca
	pr.serveArgs = []string{"serve", "--data", pr.data, "--listen", o.listen, "--console", "", "--log-format", "json"}
	if o.dnsServer != "" {
		pr.serveArgs = append(pr.serveArgs, "--dns-server", o.dnsServer)
	}
	for _, a := range o.tunnelAddr {
		pr.serveArgs = append(pr.serveArgs, "--tunnel-addr", a)
	}
	pr.serveArgs = append(pr.serveArgs, o.extra...)
	pr.start()
	return pr
}

// start runs serve and waits until it says it is serving.
func (pr *primaryProc) start() {
	pr.t.Helper()
	pr.p = start(pr.t, "primary", pr.netns, bins.primary, pr.serveArgs...)
	pr.p.waitFor(pr.t, `"serving"`, 30*time.Second)
}

// crash kills serve with SIGKILL and starts it again.
func (pr *primaryProc) crashAndRestart() {
	pr.t.Helper()
	pr.p.kill()
	pr.start()
}

// admin runs an admin command against this primary and returns stdout.
func (pr *primaryProc) admin(args ...string) string {
	pr.t.Helper()
	return mustRun(pr.t, pr.netns, bins.primary, append(args, "--data", pr.data)...)
}

// adminJSON runs an admin command with --json and decodes its output into v.
func (pr *primaryProc) adminJSON(v any, args ...string) {
	pr.t.Helper()
	out := pr.admin(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		pr.t.Fatalf("%s --json printed %q: %v", strings.Join(args, " "), out, err)
	}
}

// tryAdmin runs an admin command that may fail.
func (pr *primaryProc) tryAdmin(args ...string) result {
	pr.t.Helper()
	return run(pr.t, pr.netns, bins.primary, append(args, "--data", pr.data)...)
}
