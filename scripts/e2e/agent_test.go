//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// agentHost is one host running the hostcert-agent binary with its own
// config file and data directory.
type agentHost struct {
	t      testing.TB
	name   string
	dir    string
	config string
	netns  string
}

// newAgentHost writes a config for name with the given extra YAML lines.
func newAgentHost(t testing.TB, name, primary string, extra ...string) *agentHost {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strings.SplitN(name, ".", 2)[0])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := &agentHost{t: t, name: name, dir: dir, config: filepath.Join(dir, "agent.yaml")}
	cfg := fmt.Sprintf("primary: %s\nname: %s\ndata_dir: %s\nlog_format: json\n", primary, name, filepath.Join(dir, "data"))
	cfg += strings.Join(extra, "\n") + "\n"
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// do runs an agent command and returns its result (never fails the test).
func (a *agentHost) do(args ...string) result {
	a.t.Helper()
	return run(a.t, a.netns, bins.agent, append(args, "--config", a.config)...)
}

// must runs an agent command that has to succeed.
func (a *agentHost) must(args ...string) string {
	a.t.Helper()
	r := a.do(args...)
	if r.code != 0 {
		a.t.Fatalf("%s: hostcert-agent %s: %s", a.name, strings.Join(args, " "), r)
	}
	return r.stdout
}

// refused runs an agent command that the primary must refuse with code.
func (a *agentHost) refused(code string, args ...string) {
	a.t.Helper()
	r := a.do(args...)
	if r.code == 0 || !strings.Contains(r.stderr, "("+code+")") {
		a.t.Fatalf("%s: hostcert-agent %s: want a refusal (%s), got %s", a.name, strings.Join(args, " "), code, r)
	}
}

// agentStatus is the part of `status --json` the tests read.
type agentStatus struct {
	Enrolled bool     `json:"enrolled"`
	HostID   string   `json:"host_id"`
	Names    []string `json:"names"`
	Serial   string   `json:"serial"`
	State    struct {
		Route string `json:"route"`
		Level string `json:"level"`
	}
}

func (a *agentHost) status() agentStatus {
	a.t.Helper()
	var s agentStatus
	out := a.must("status", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		a.t.Fatalf("%s: status --json printed %q: %v", a.name, out, err)
	}
	return s
}

// hostPEM is the key+certificate file the agent replaces atomically.
func (a *agentHost) hostPEM() []byte {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dir, "data", "host.pem"))
	if err != nil {
		a.t.Fatalf("%s: %v", a.name, err)
	}
	return b
}
