//go:build linux

package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/dnstest"
)

// Addresses of scripts/netns.sh.
const (
	nsHostSide   = "198.18.9.1"      // the test's own end of the network: the DNS server
	nsPrimary    = "198.18.1.2:1556" // the primary
	nsMediaAddr  = "198.18.3.2"      // the media server as the primary sees it (a tunnel)
	nsTunnel     = "198.18.6.1:1556" // the tunnel on the media server's DMZ interface
	nsLANAddr    = "198.18.2.2"
	nsDMZAddr    = "198.18.6.2"
	nsNATHost    = "198.18.5.2" // the NAT host's own address, what its name resolves to
	nsPrimaryDNS = "primary.hc.test"
)

// TestPartitions runs the three programs in network namespaces (root only):
// a DMZ host enrolls through the tunnel on the media server, a LAN host
// directly, a host behind NAT only with a token; a renewal across a cut
// media<->primary link backs off and succeeds after the link returns, with the
// old certificate intact meanwhile; a primary that disappears (black-holed,
// then killed) is found again.
func TestPartitions(t *testing.T) {
	needNetns(t)
	began := time.Now()
	tp := newTopology(t) // registers `netns.sh down` before creating anything
	t.Logf("topology %s up in %v", tp.prefix, time.Since(began).Round(time.Millisecond))

	dns := dnstest.ListenAddr(t, nsHostSide, map[string][]netip.Addr{
		"lan.hc.test": {netip.MustParseAddr(nsLANAddr)},
		"dmz.hc.test": {netip.MustParseAddr(nsDMZAddr)},
		"nat.hc.test": {netip.MustParseAddr(nsNATHost)},
	})
	// Two-minute certificates (NotBefore is back-dated 5 min): with
	// renew_before 110s an agent's `run` renews about every 10 s.
	pr := newPrimary(t, primaryOpts{
		listen: nsPrimary, netns: tp.ns("pri"), names: []string{nsPrimaryDNS},
		dnsServer: dns.Addr(), tunnelAddr: []string{nsMediaAddr},
		extra: []string{"--cert-validity", "2m"},
	})
	pr.admin("level", "set", "medium")
	tun := start(t, "tunnel", tp.ns("media"), bins.tunnel, "run", "--listen", nsTunnel,
		"--allow", nsPrimaryDNS+":1556="+nsPrimary, "--log-format", "json")
	tun.waitFor(t, "listening", 20*time.Second)

	host := func(name, netns string, extra ...string) *agentHost {
		t.Helper()
		a := newAgentHost(t, name, nsPrimaryDNS+":1556", extra...)
		a.netns = netns
		a.must("get-ca-cert", "--fingerprint", pr.fingerprint)
		return a
	}
	var dmz, lan *agentHost

	t.Run("dmz host enrolls through the tunnel, verified by the relayed address", func(t *testing.T) {
		// The DMZ host cannot resolve or reach the primary: direct fails at
		// once and the agent falls back to the tunnel. The primary sees the
		// address the tunnel relays (198.18.6.2), which DNS confirms, so at
		// medium no token is needed.
		dmz = host("dmz.hc.test", tp.ns("dmz"), "tunnels: ["+nsTunnel+"]")
		dmz.must("get-cert")
		st := dmz.fullStatus()
		if !st.Enrolled || st.State.Route != "tunnel "+nsTunnel {
			t.Fatalf("dmz status = %+v, want enrolled over route %q", st, "tunnel "+nsTunnel)
		}
		checkStore(t, dmz, pr.caPEM, false)
	})

	t.Run("lan host enrolls directly", func(t *testing.T) {
		lan = host("lan.hc.test", tp.ns("lan"))
		lan.must("get-cert")
		if st := lan.fullStatus(); !st.Enrolled || st.State.Route != "direct" {
			t.Fatalf("lan status = %+v, want enrolled over route direct", st)
		}
		checkStore(t, lan, pr.caPEM, false)
	})

	t.Run("nat host needs a token even at medium", func(t *testing.T) {
		// nat.hc.test resolves to 198.18.5.2, but natgw masquerades it: the
		// primary sees 198.18.4.2, so the name is not verified.
		nat := host("nat.hc.test", tp.ns("nat"))
		r := nat.do("get-cert")
		if r.code == 0 || !strings.Contains(r.stderr, "(token_required)") || !strings.Contains(r.stderr, "unverified host") {
			t.Fatalf("nat get-cert without a token: want a refusal (token_required) for an unverified host, got %s", r)
		}
		if audit := pr.admin("audit", "--since", "10m"); !hasLine(audit, "nat.hc.test", "token_required", "not verified") {
			t.Fatalf("the audit log has no refusal of nat.hc.test saying not verified:\n%s", audit)
		}
		if _, cert := checkStore(t, nat, pr.caPEM, true); cert != nil {
			t.Fatalf("a refused enrollment wrote a certificate")
		}
		tok := strings.TrimSpace(pr.admin("token", "create", "--name", "nat-host", "--reason", "host behind NAT"))
		nat.must("get-cert", "--token", tok)
		if st := nat.fullStatus(); !st.Enrolled || st.State.Route != "direct" {
			t.Fatalf("nat status = %+v, want enrolled over route direct", st)
		}
		checkStore(t, nat, pr.caPEM, false)
	})
	if dmz == nil || lan == nil {
		t.Fatal("enrollment failed; the partition scenarios need the dmz and lan hosts")
	}

	t.Run("renewal across a cut media-primary link", func(t *testing.T) {
		tp.cut("media-primary")
		cutAt := time.Now()
		healed := false
		defer func() {
			if !healed {
				tp.healLater("media-primary")
			}
		}()
		before, old := checkStore(t, dmz, pr.caPEM, false)
		ag := start(t, "dmz agent run", tp.ns("dmz"), bins.agent, "run", "--config", dmz.config, "--renew-before", "110s")
		defer ag.stop(5 * time.Second)
		// Two failed attempts: the agent is retrying with backoff.
		untilTrue(t, 30*time.Second, "two failed renewals through the cut link", func() bool {
			return strings.Count(ag.output(), "renewal failed; keeping the current certificate") >= 2
		})
		b, cert := checkStore(t, dmz, pr.caPEM, false)
		if string(b) != string(before) || cert.SerialNumber.Cmp(old.SerialNumber) != 0 {
			t.Fatalf("host.pem changed while the link was cut (serial %s -> %s)", old.SerialNumber, cert.SerialNumber)
		}
		if st := dmz.fullStatus(); st.State.LastRenewalError == "" || st.Serial == "" {
			t.Fatalf("status while cut = %+v, want the old certificate and the last renewal error", st)
		}
		t.Logf("cut for %v: agent retried with backoff, host.pem unchanged", time.Since(cutAt).Round(time.Millisecond))

		tp.heal("media-primary")
		healed = true
		healAt := time.Now()
		untilTrue(t, 45*time.Second, "a renewal after the link returned", func() bool {
			_, cert := checkStore(t, dmz, pr.caPEM, false)
			return cert.SerialNumber.Cmp(old.SerialNumber) != 0
		})
		_, cert = checkStore(t, dmz, pr.caPEM, false)
		st := dmz.fullStatus()
		if st.HostID != cert.Subject.CommonName || st.State.Route != "tunnel "+nsTunnel {
			t.Fatalf("status after heal = %+v, want host ID %s over the tunnel", st, cert.Subject.CommonName)
		}
		if cert.Subject.CommonName != old.Subject.CommonName {
			t.Fatalf("renewal changed the host ID: %s -> %s", old.Subject.CommonName, cert.Subject.CommonName)
		}
		t.Logf("renewed %v after the link returned", time.Since(healAt).Round(time.Millisecond))
	})

	t.Run("the primary disappears and returns", func(t *testing.T) {
		// runUntilRenewed starts the lan agent's service loop while the
		// primary is gone, waits for a failed renewal (host.pem untouched),
		// brings the primary back and waits for the renewal.
		runUntilRenewed := func(what string, gone, back func()) {
			t.Helper()
			gone()
			goneAt := time.Now()
			before, old := checkStore(t, lan, pr.caPEM, false)
			ag := start(t, "lan agent run ("+what+")", tp.ns("lan"), bins.agent, "run", "--config", lan.config, "--renew-before", "110s")
			defer ag.stop(5 * time.Second)
			untilTrue(t, 30*time.Second, "a failed renewal while the primary is "+what, func() bool {
				return strings.Contains(ag.output(), "renewal failed; keeping the current certificate")
			})
			if b, _ := checkStore(t, lan, pr.caPEM, false); string(b) != string(before) {
				t.Fatalf("host.pem changed while the primary was %s", what)
			}
			back()
			t.Logf("primary %s for %v", what, time.Since(goneAt).Round(time.Millisecond))
			backAt := time.Now()
			untilTrue(t, 45*time.Second, "a renewal after the primary returned", func() bool {
				_, cert := checkStore(t, lan, pr.caPEM, false)
				return cert.SerialNumber.Cmp(old.SerialNumber) != 0
			})
			if st := lan.fullStatus(); st.State.Route != "direct" || st.State.LastRenewalError != "" {
				t.Fatalf("lan status after the primary returned = %+v, want direct with no renewal error", st)
			}
			t.Logf("found again %v after the primary returned", time.Since(backAt).Round(time.Millisecond))
		}

		// Black hole: every packet to or from the primary is dropped.
		healed := true
		defer func() {
			if !healed {
				tp.healLater("primary")
			}
		}()
		runUntilRenewed("black-holed",
			func() { tp.cut("primary"); healed = false },
			func() { tp.heal("primary"); healed = true })
		// Killed: connections are refused until it is started again.
		runUntilRenewed("killed", pr.p.kill, pr.start)
		// The DMZ host finds the restarted primary too, through the tunnel.
		dmz.must("get-crl")
	})
	t.Logf("TestPartitions took %v", time.Since(began).Round(time.Millisecond))
}

// hasLine says whether one line of text contains all of words.
func hasLine(text string, words ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}
