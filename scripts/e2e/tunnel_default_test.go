//go:build linux

package e2e

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/dnstest"
)

// TestTunnelAtDefaults is SPEC §4's "a tunnel's own address never verifies a
// request it carries", with the three programs at their defaults: a primary
// and a tunnel started with no PROXY-related flag, and a registered name
// that resolves to the media server (the address the primary sees the
// tunnel's connections come from). At level high the DMZ host must need a
// token; the primary warns about the undeclared PROXY header and audits it.
// After the one documented step — `serve --tunnel-addr` with the media
// server's address — requests are judged by the relayed DMZ address: a name
// resolving to the DMZ host is verified, one resolving to the media server
// still is not.
func TestTunnelAtDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	const media = "127.0.0.1" // where the tunnel's connections to the primary come from
	dns := dnstest.New(t, nil)
	dns.Set("media-alias.dmz.test", netip.MustParseAddr(media))
	dns.Set("relayed.dmz.test", netip.MustParseAddr(addrDMZ))

	world := func(t *testing.T, serveArgs ...string) (pr *primaryProc, tunnel, primary string) {
		t.Helper()
		pr = newPrimary(t, primaryOpts{dnsServer: dns.Addr(), extra: serveArgs})
		_, port, _ := net.SplitHostPort(pr.listen)
		primary = primaryName + ":" + port
		tunnel = freePort(t, media)
		tun := start(t, "tunnel", "", bins.tunnel, "run", "--listen", tunnel, "--allow", primary+"="+pr.listen, "--log-format", "json")
		tun.waitFor(t, "listening", 20*time.Second)
		pr.admin("host", "add", "media-alias.dmz.test", "relayed.dmz.test")
		return pr, tunnel, primary
	}
	dmzHost := func(t *testing.T, pr *primaryProc, primary, tunnel, name string) *agentHost {
		t.Helper()
		a := newAgentHost(t, name, primary, "source_address: "+addrDMZ, "primary_dial: 127.0.0.1:1", "tunnels: ["+tunnel+"]")
		a.must("get-ca-cert", "--fingerprint", pr.fingerprint)
		return a
	}

	t.Run("defaults: not verified", func(t *testing.T) {
		pr, tun, primary := world(t)
		if lvl := strings.TrimSpace(pr.admin("level", "get")); !strings.Contains(lvl, "high") || strings.Contains(lvl, "very-high") {
			t.Fatalf("level get = %q, want the default high", lvl)
		}
		a := dmzHost(t, pr, primary, tun, "media-alias.dmz.test")
		a.refused("token_required", "get-cert")
		pr.p.waitFor(t, "proxy header from undeclared peer", 10*time.Second)
		if audit := pr.admin("audit", "--json"); !strings.Contains(audit, "proxy.undeclared") {
			t.Errorf("audit has no proxy.undeclared row:\n%s", audit)
		}
		// The relayed address does not verify either: the header came from
		// a peer the primary was not told about.
		b := dmzHost(t, pr, primary, tun, "relayed.dmz.test")
		b.refused("token_required", "get-cert")
	})

	t.Run("declared tunnel: judged by the relayed address", func(t *testing.T) {
		pr, tun, primary := world(t, "--tunnel-addr", media)
		a := dmzHost(t, pr, primary, tun, "relayed.dmz.test")
		a.must("get-cert")
		if st := a.status(); !st.Enrolled || !strings.HasPrefix(st.State.Route, "tunnel") {
			t.Errorf("status = %+v, want enrolled through the tunnel", st)
		}
		b := dmzHost(t, pr, primary, tun, "media-alias.dmz.test")
		b.refused("token_required", "get-cert")
		if strings.Contains(pr.p.output(), "proxy header from undeclared peer") {
			t.Errorf("declared tunnel reported as undeclared:\n%s", pr.p.output())
		}
	})
}
