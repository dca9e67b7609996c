//go:build linux

package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// caShow is the part of `ca show --json` the rotation test reads.
type caShow struct {
	Fingerprint string `json:"fingerprint"`
	CAs         []struct {
		Kind        string `json:"kind"`
		State       string `json:"state"`
		Fingerprint string `json:"fingerprint"`
	} `json:"cas"`
}

func (w *world) caShow() caShow {
	w.t.Helper()
	var s caShow
	w.pr.adminJSON(&s, "ca", "show")
	return s
}

// currentIssuing is the fingerprint of the issuing CA that signs now.
func (s caShow) currentIssuing() string {
	for _, c := range s.CAs {
		if c.Kind == "issuing" && c.State == "current" {
			return c.Fingerprint
		}
	}
	return ""
}

// chainOf is the agent's certificate and the issuing CA stored after it.
func chainOf(t *testing.T, a *agentHost) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := a.hostPEM(); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return certs
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: host.pem: %v", a.name, err)
		}
		certs = append(certs, c)
	}
}

// trusts is the fingerprints in the agent's trust store.
func trusts(t *testing.T, a *agentHost) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dir, "data", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range certs {
		out = append(out, pki.Fingerprint(c))
	}
	return out
}

// waitFleet waits until every agent's certificate comes from the issuing
// CA issuing, it trusts root, and self-check is good.
func waitFleet(t *testing.T, agents []*agentHost, issuing, root string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, a := range agents {
		for {
			chain := chainOf(t, a)
			ok := len(chain) == 2 && pki.Fingerprint(chain[1]) == issuing && strings.Contains(strings.Join(trusts(t, a), " "), root)
			if ok {
				if r := a.do("self-check"); r.code == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not on issuing CA %s under root %s within %s (chain %d, trusts %v)", a.name, issuing, root, within, len(chain), trusts(t, a))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// TestFleetRotation walks a fleet of real agent processes — one direct,
// one behind the tunnel — through an issuing-CA rotation and a root
// rotation with no command on any host: their service loops renew into
// the new chain and learn the new root over the verified channel. An agent
// that was offline during both rotations catches up when it starts. Then
// the old root retires, and every agent drops it from its trust store.
func TestFleetRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	w := newWorld(t, "--cert-validity", "2m")
	w.pr.admin("level", "set", "medium")
	renewSoon := "renew_before: 110s" // renewals every minute or so
	lan := w.host("lan.fleet.test", addrLAN, addrLAN, false, renewSoon)
	dmz := w.host("dmz.fleet.test", addrDMZ, addrDMZ, true, renewSoon)
	off := w.host("off.fleet.test", addrLAN, addrLAN, false, renewSoon)
	tok := w.token("fleet", "--max-uses", "3")
	for _, a := range []*agentHost{lan, dmz, off} {
		a.must("get-cert", "--token", tok)
	}
	oldRoot := w.caShow().Fingerprint
	for _, a := range []*agentHost{lan, dmz} {
		p := start(t, "agent run "+a.name, "", bins.agent, "run", "--config", a.config)
		t.Cleanup(func() { p.stop(5 * time.Second) })
	}
	running := []*agentHost{lan, dmz}

	w.pr.admin("ca", "rotate")
	s := w.caShow()
	waitFleet(t, running, s.currentIssuing(), oldRoot, 150*time.Second)

	w.pr.admin("ca", "rotate", "--root")
	s = w.caShow()
	if s.Fingerprint == oldRoot {
		t.Fatal("ca rotate --root kept the root")
	}
	waitFleet(t, running, s.currentIssuing(), s.Fingerprint, 150*time.Second)
	if r := w.pr.tryAdmin("ca", "retire-root", oldRoot); r.code == 0 || !strings.Contains(r.stderr, "may trust only this root") {
		t.Errorf("retire-root while off.fleet.test holds a certificate from the old root: %s, want a refusal", r)
	}

	// The offline host comes back: its service loop catches up.
	p := start(t, "agent run "+off.name, "", bins.agent, "run", "--config", off.config)
	t.Cleanup(func() { p.stop(5 * time.Second) })
	waitFleet(t, []*agentHost{off}, s.currentIssuing(), s.Fingerprint, 150*time.Second)

	w.pr.admin("ca", "retire-root", oldRoot)
	for _, c := range w.caShow().CAs {
		if c.Fingerprint == oldRoot {
			t.Errorf("the retired root is still listed: %+v", c)
		}
	}
	// The verified CRL refresh no longer finds the old root listed: every
	// agent drops it from its trust store.
	for _, a := range []*agentHost{lan, dmz, off} {
		a.must("get-crl")
		if r := a.do("self-check"); r.code != 0 {
			t.Errorf("%s: self-check after retiring the old root = %s", a.name, r)
		}
		if fps := trusts(t, a); len(fps) != 1 || fps[0] != s.Fingerprint {
			t.Errorf("%s: trust store after retire-root = %v, want only the new root %s", a.name, fps, s.Fingerprint)
		}
	}
}
