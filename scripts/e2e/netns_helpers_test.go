//go:build linux

package e2e

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// This file holds what the partition test (netns_test.go) and the fault test
// (faults_test.go) share: the network namespaces of scripts/netns.sh and the
// checks of an agent's certificate store.

// topology is one instance of the scripts/netns.sh test network.
type topology struct {
	t      testing.TB
	script string
	prefix string
}

// needNetns skips the test, loudly, where network namespaces cannot be made.
func needNetns(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPED: partition test (network namespaces) does not run with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: partition test needs root (network namespaces, nftables); run `go test` as root, as CI does")
	}
	for _, tool := range []string{"ip", "nft", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: partition test needs %q (iproute2, nftables) in PATH: %v", tool, err)
		}
	}
}

// newTopology brings the test network up under a fresh short prefix. Its
// removal is registered before anything is created, so a failing or
// interrupted test still removes every namespace, link and /etc/netns entry.
func newTopology(t testing.TB) *topology {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	// At most 6 characters: interface names are PREFIX plus two letters.
	tp := &topology{t: t, script: filepath.Join(root, "scripts", "netns.sh"), prefix: "hc" + hex.EncodeToString(b[:])}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", tp.script, "down", tp.prefix).CombinedOutput(); err != nil {
			t.Errorf("netns.sh down %s: %v\n%s", tp.prefix, err, out)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), tp.prefix+"-") {
			t.Errorf("netns.sh down %s left namespaces behind:\n%s", tp.prefix, out)
		}
		if _, err := os.Stat("/etc/netns/" + tp.prefix + "-lan"); err == nil {
			t.Errorf("netns.sh down %s left /etc/netns/%s-lan behind", tp.prefix, tp.prefix)
		}
	})
	tp.script1("up")
	return tp
}

// ns is the full name of one of the namespaces: rt, pri, lan, media, natgw, nat, dmz.
func (tp *topology) ns(name string) string { return tp.prefix + "-" + name }

// cut black-holes LINK (media-primary or primary) in the router; heal undoes it.
func (tp *topology) cut(link string)  { tp.t.Helper(); tp.script1("cut", link) }
func (tp *topology) heal(link string) { tp.t.Helper(); tp.script1("heal", link) }

// healLater is heal for deferred calls on a failing path: it reports a
// failure without stopping the goroutine it runs on (netns.sh down removes
// the rule in any case).
func (tp *topology) healLater(link string) {
	if out, err := exec.Command("bash", tp.script, "heal", tp.prefix, link).CombinedOutput(); err != nil {
		tp.t.Errorf("netns.sh heal %s %s: %v\n%s", tp.prefix, link, err, out)
	}
}

func (tp *topology) script1(cmd string, args ...string) {
	tp.t.Helper()
	c := exec.Command("bash", append([]string{tp.script, cmd, tp.prefix}, args...)...)
	if out, err := c.CombinedOutput(); err != nil {
		tp.t.Fatalf("netns.sh %s %s %s: %v\n%s", cmd, tp.prefix, strings.Join(args, " "), err, out)
	}
}

// storeState is the part of `hostcert-agent status --json` these tests read
// beyond agentStatus: the renewal bookkeeping.
type storeState struct {
	Enrolled bool   `json:"enrolled"`
	HostID   string `json:"host_id"`
	Serial   string `json:"serial"`
	State    struct {
		Route            string    `json:"route"`
		Level            string    `json:"level"`
		LastRenewal      time.Time `json:"last_renewal"`
		LastRenewalError string    `json:"last_renewal_error"`
	} `json:"state"`
}

func (a *agentHost) fullStatus() storeState {
	a.t.Helper()
	var s storeState
	out := a.must("status", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		a.t.Fatalf("%s: status --json printed %q: %v", a.name, out, err)
	}
	return s
}

// checkStore fails the test unless the agent's store is whole: host.pem is
// either absent (never enrolled, when absentOK) or a certificate and the
// private key that matches it, the certificate chains to caPEM and names the
// host; state.json, when present, is valid JSON. It returns host.pem and the
// certificate (nil when absent).
func checkStore(t testing.TB, a *agentHost, caPEM []byte, absentOK bool) ([]byte, *x509.Certificate) {
	t.Helper()
	data := filepath.Join(a.dir, "data")
	b, err := os.ReadFile(filepath.Join(data, "host.pem"))
	if os.IsNotExist(err) && absentOK {
		return nil, nil
	}
	if err != nil {
		t.Fatalf("%s: certificate store broken: %v", a.name, err)
	}
	pair, err := tls.X509KeyPair(b, b)
	if err != nil {
		t.Fatalf("%s: certificate store broken: host.pem is not a matching certificate and key: %v", a.name, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatalf("%s: host.pem certificate: %v", a.name, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA PEM does not parse")
	}
	// host.pem carries the issuing CA after the certificate.
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: a.name, CurrentTime: leaf.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("%s: host.pem certificate does not verify against the CA for its name: %v", a.name, err)
	}
	if st, err := os.ReadFile(filepath.Join(data, "state.json")); err == nil && !json.Valid(st) {
		t.Fatalf("%s: state.json is not valid JSON: %q", a.name, st)
	}
	// cert.pem is written after host.pem and may lag behind it, but it is a certificate.
	if pub, err := os.ReadFile(filepath.Join(data, "cert.pem")); err == nil {
		if certs, err := pki.ParseCerts(pub); err != nil || len(certs) == 0 {
			t.Fatalf("%s: cert.pem is not a certificate (%v): %q", a.name, err, pub)
		}
	}
	return b, leaf
}

// untilTrue polls cond every 200ms until it holds, failing the test with what
// after within.
func untilTrue(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
