//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/dnstest"
)

// The loopback addresses the hosts of these tests connect from: the primary
// sees each host at its own address, which DNS may or may not confirm.
const (
	addrLAN       = "127.0.0.2" // a LAN host, its name resolves here
	addrDMZ       = "127.0.0.3" // a DMZ host behind a tunnel that relays no address
	addrElsewhere = "127.0.0.9" // where mismatching names resolve
)

// world is a primary and a plain tunnel (one that relays no client address),
// with a DNS server the primary verifies names against.
type world struct {
	t       testing.TB
	dns     *dnstest.Server
	pr      *primaryProc
	primary string // primaryName:port as agents address it
	tunnel  string // the plain tunnel's address
}

func newWorld(t testing.TB, serveArgs ...string) *world {
	t.Helper()
	w := &world{t: t, dns: dnstest.New(t, nil)}
	// No tunnel of this world sends PROXY headers; 127.0.0.250 is declared as
	// a tunnel only so the gate is on.
	w.pr = newPrimary(t, primaryOpts{dnsServer: w.dns.Addr(), tunnelAddr: []string{"127.0.0.250"}, extra: serveArgs})
	_, port, _ := net.SplitHostPort(w.pr.listen)
	w.primary = primaryName + ":" + port
	w.tunnel = freePort(t, "127.0.0.1")
	tp := start(t, "tunnel", "", bins.tunnel, "run", "--listen", w.tunnel, "--allow", w.primary+"="+w.pr.listen, "--log-format", "json")
	tp.waitFor(t, "listening", 20*time.Second)
	return w
}

// host makes an agent for name whose DNS record points at dnsAddr and which
// connects from src, directly (tunnel "") or only through the tunnel.
func (w *world) host(name, dnsAddr, src string, viaTunnel bool, extra ...string) *agentHost {
	w.t.Helper()
	if dnsAddr != "" {
		w.dns.Set(name, netip.MustParseAddr(dnsAddr))
	}
	lines := append([]string{"source_address: " + src}, extra...)
	if viaTunnel {
		lines = append(lines, "primary_dial: 127.0.0.1:1", "tunnels: ["+w.tunnel+"]")
	} else {
		lines = append(lines, "primary_dial: "+w.pr.listen)
	}
	a := newAgentHost(w.t, name, w.primary, lines...)
	a.must("get-ca-cert", "--fingerprint", w.pr.fingerprint)
	return a
}

func (w *world) token(name string, args ...string) string {
	w.t.Helper()
	out := w.pr.admin(append([]string{"token", "create", "--name", name}, args...)...)
	return strings.TrimSpace(out)
}

// TestSpecTable walks every row of the SPEC §4 table at every level with the
// three built programs as separate processes.
func TestSpecTable(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	w := newWorld(t)
	type want struct{ veryHigh, high, medium string } // "" = granted without a token, else the refusal code
	issueRows := []struct {
		row       string
		known     bool
		dns       string // where the name resolves
		src       string
		nat       bool
		viaTunnel bool
		want      want
	}{
		{"issue, known and verified", true, addrLAN, addrLAN, false, false, want{"token_required", "", ""}},
		{"issue, verified, not known", false, addrLAN, addrLAN, false, false, want{"token_required", "token_required", ""}},
		{"issue, not verified: NAT declared", true, addrLAN, addrLAN, true, false, want{"token_required", "token_required", "token_required"}},
		{"issue, not verified: DNS mismatch", true, addrElsewhere, addrLAN, false, false, want{"token_required", "token_required", "token_required"}},
		{"issue, not verified: DMZ without relayed address", true, addrDMZ, addrDMZ, false, true, want{"token_required", "token_required", "token_required"}},
	}
	for _, level := range []string{"very-high", "high", "medium"} {
		w.pr.admin("level", "set", level)
		for i, row := range issueRows {
			t.Run(level+"/"+row.row, func(t *testing.T) {
				name := fmt.Sprintf("r%d-%s.spec.test", i, level)
				if row.known {
					w.pr.admin("host", "add", name)
				}
				var extra []string
				if row.nat {
					extra = append(extra, "nat: true")
				}
				a := w.host(name, row.dns, row.src, row.viaTunnel, extra...)
				code := map[string]string{"very-high": row.want.veryHigh, "high": row.want.high, "medium": row.want.medium}[level]
				if code == "" {
					a.must("get-cert")
				} else {
					a.refused(code, "get-cert")
					a.must("get-cert", "--token", w.token("tok-"+name))
				}
				st := a.status()
				if !st.Enrolled || st.HostID == "" || st.State.Level != level {
					t.Fatalf("status after get-cert = %+v, want enrolled at level %s", st, level)
				}
				if row.viaTunnel != strings.HasPrefix(st.State.Route, "tunnel") {
					t.Errorf("route = %q, want tunnel=%v", st.State.Route, row.viaTunnel)
				}
			})
		}

		t.Run(level+"/reissue and renew", func(t *testing.T) {
			name := "re-" + level + ".spec.test"
			w.pr.admin("host", "add", name)
			a := w.host(name, addrLAN, addrLAN, false)
			a.must("get-cert", "--token", w.token("first-"+name))
			first := a.status()

			// Reissue: this host already has a host ID (the agent sends it).
			a.refused("reissue_token_required", "get-cert")
			a.refused("reissue_token_required", "get-cert", "--token", w.token("std-"+name))
			other := w.host("other-"+name, addrLAN, addrLAN, false)
			other.must("get-cert", "--token", w.token("other-"+name))
			a.refused("token_invalid", "get-cert", "--token", w.token("wrong-host-"+name, "--reissue-host", "other-"+name))
			a.must("get-cert", "--token", w.token("reissue-"+name, "--reissue-host", name))
			second := a.status()
			if second.HostID != first.HostID || second.Serial == first.Serial {
				t.Fatalf("reissue: host ID %s -> %s, serial %s -> %s; want the same host ID and a new serial", first.HostID, second.HostID, first.Serial, second.Serial)
			}
			waitCRLHas(t, a, first.Serial)
			// A reissue token is single-use.
			if r := w.pr.tryAdmin("token", "list"); !strings.Contains(r.stdout, "reissue-"+name) {
				t.Errorf("token list lost the used reissue token:\n%s", r.stdout)
			}

			// Reissue inside an auto-reissue window: no token.
			w.pr.admin("host", "allow-reissue", name, "--for", "1h")
			a.must("get-cert")
			third := a.status()
			if third.HostID != first.HostID || third.Serial == second.Serial {
				t.Fatalf("window reissue: host ID %s, serial %s; want %s and a new serial", third.HostID, third.Serial, first.HostID)
			}

			// Renew over mutual TLS: no token at any level.
			a.must("renew")
			fourth := a.status()
			if fourth.HostID != first.HostID || fourth.Serial == third.Serial {
				t.Fatalf("renew: host ID %s, serial %s; want %s and a new serial", fourth.HostID, fourth.Serial, first.HostID)
			}
		})
	}

	t.Run("token max uses", func(t *testing.T) {
		w.pr.admin("level", "set", "very-high")
		tok := w.token("two-uses", "--max-uses", "2")
		for i := 0; i < 3; i++ {
			a := w.host(fmt.Sprintf("mu%d.spec.test", i), addrLAN, addrLAN, false)
			if i < 2 {
				a.must("get-cert", "--token", tok)
			} else {
				a.refused("token_invalid", "get-cert", "--token", tok)
			}
		}
		var certs []struct {
			Serial string `json:"serial"`
		}
		w.pr.adminJSON(&certs, "cert", "list", "--token", "two-uses")
		if len(certs) != 2 {
			t.Errorf("cert list --token two-uses = %d certificates, want 2", len(certs))
		}
	})

	t.Run("revocation seen by the agent", func(t *testing.T) {
		w.pr.admin("level", "set", "medium")
		a := w.host("rv.spec.test", addrLAN, addrLAN, false)
		a.must("get-cert")
		a.must("self-check")
		serial := a.status().Serial
		w.pr.admin("cert", "revoke", "rv.spec.test", "--reason", "keyCompromise")
		waitCRLHas(t, a, serial)
		if r := a.do("self-check"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "REVOKED") {
			t.Errorf("self-check of a revoked host: %s; want non-zero and REVOKED", r)
		}
		a.refused("host_revoked", "renew")
	})

	t.Run("primary SIGKILLed mid-way loses nothing", func(t *testing.T) {
		var before []struct {
			Serial    string     `json:"serial"`
			RevokedAt *time.Time `json:"revoked_at"`
		}
		w.pr.adminJSON(&before, "cert", "list")
		tokensBefore := w.pr.admin("token", "list")
		w.pr.crashAndRestart()
		var after []struct {
			Serial    string     `json:"serial"`
			RevokedAt *time.Time `json:"revoked_at"`
		}
		w.pr.adminJSON(&after, "cert", "list")
		if len(after) != len(before) {
			t.Fatalf("after SIGKILL: %d certificates, want %d", len(after), len(before))
		}
		for i := range before {
			if before[i].Serial != after[i].Serial || (before[i].RevokedAt == nil) != (after[i].RevokedAt == nil) {
				t.Errorf("certificate %d: %+v before, %+v after", i, before[i], after[i])
			}
		}
		if got := w.pr.admin("token", "list"); got != tokensBefore {
			t.Errorf("token list changed across SIGKILL:\nbefore:\n%s\nafter:\n%s", tokensBefore, got)
		}
		// The restarted primary still serves: an agent renews.
		a := w.host("after-crash.spec.test", addrLAN, addrLAN, false)
		a.must("get-cert")
		a.must("renew")
	})
}

// TestShortLivedRenewal runs the agent's service loop against a primary that
// issues two-minute certificates: it renews by itself, keeping its host ID.
func TestShortLivedRenewal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	w := newWorld(t, "--cert-validity", "2m")
	w.pr.admin("level", "set", "medium")
	a := w.host("short.spec.test", addrLAN, addrLAN, false, "renew_before: 110s")
	a.must("get-cert")
	first := a.status()
	pem := a.hostPEM()
	ag := start(t, "agent run", "", bins.agent, "run", "--config", a.config)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if st := a.status(); st.Serial != first.Serial {
			if st.HostID != first.HostID {
				t.Fatalf("renewal changed the host ID: %s -> %s", first.HostID, st.HostID)
			}
			if string(a.hostPEM()) == string(pem) {
				t.Fatal("status shows a new serial but host.pem is unchanged")
			}
			ag.stop(5 * time.Second)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("the agent did not renew its 2-minute certificate within 90s:\n%s", ag.output())
}

// waitCRLHas refreshes the agent's CRL until it lists serial (the primary
// regenerates it within seconds of a revocation).
func waitCRLHas(t testing.TB, a *agentHost, serial string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a.must("get-crl")
		crl, err := os.ReadFile(filepath.Join(a.dir, "data", "crl.pem"))
		if err == nil && crlHas(t, crl, serial) {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("serial %s never appeared in the CRL", serial)
}
