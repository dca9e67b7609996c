package cli

import (
	"strings"
	"testing"

	"github.com/hostcert/hostcert/internal/nettest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// Direct black-holed (toxiproxy accepts and drops): the agent enrolls through
// the tunnel, remembers it, and shows it in status.
func TestFallbackToTunnel(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	toxi, err := nettest.NewToxi(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(toxi.Close)
	relay, err := nettest.NewRelay("primary.test:"+srv.Port(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	// A first tunnel that refuses, then the working one: tried in order.
	refusing, err := nettest.NewRelay("somewhere-else:1", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { refusing.Close() })

	h := newHarness(t, srv)
	h.dial = toxi.Addr()
	h.extra = []string{"--tunnel", refusing.Addr(), "--tunnel", relay.Addr()}
	h.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	srv.AddHost("dmz1.example.com")
	if relay.Connections() != 0 {
		t.Fatalf("the tunnel was used while direct worked")
	}
	if err := toxi.BlackHole(); err != nil {
		t.Fatal(err)
	}
	h.must("get-cert", "--name", "dmz1.example.com")
	if refusing.Connections() == 0 || relay.Connections() == 0 {
		t.Errorf("tunnel connections: refusing %d, working %d; want both tried", refusing.Connections(), relay.Connections())
	}
	st := h.status()
	if want := "tunnel " + relay.Addr(); st.State.Route != want {
		t.Errorf("status route = %q, want %q", st.State.Route, want)
	}
	// The remembered tunnel is used first next time (no 500ms direct timeout).
	before := relay.Connections()
	h.must("get-crl")
	if relay.Connections() == before {
		t.Errorf("get-crl did not use the remembered tunnel")
	}
	// Direct comes back and the re-probe is due (interval 0 = every time): back to direct.
	toxi.Heal()
	h.extra = append(h.extra, "--probe-interval", "1ns")
	h.must("get-crl")
	if st := h.status(); st.State.Route != "direct" {
		t.Errorf("after direct healed, route = %q, want direct", st.State.Route)
	}
}

// A certificate error on the direct route never falls back to a tunnel.
func TestNoFallbackOnCertificateError(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	relay, err := nettest.NewRelay("primary.test:"+srv.Port(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	h := newHarness(t, srv)
	h.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	evil, _ := mitm(t, nil)
	h.dial = addrOf(evil)
	h.extra = []string{"--tunnel", relay.Addr()}
	r := h.run("get-cert", "--name", "x.example.com")
	if r.code == 0 || !strings.Contains(r.err, "certificate") {
		t.Fatalf("get-cert against a MITM: exit %d, %q; want a certificate error", r.code, r.err)
	}
	if relay.Connections() != 0 {
		t.Errorf("tunnel used %d times after a certificate error, want 0", relay.Connections())
	}
}

// Unreachable everywhere: one line naming the routes, non-zero exit.
func TestAllRoutesDown(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	h := newHarness(t, srv)
	h.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	srv.Stop()
	h.extra = []string{"--tunnel", "127.0.0.1:1"}
	r := h.run("get-cert", "--name", "x.example.com")
	if r.code == 0 || !strings.Contains(r.err, "unreachable on every route") || !strings.Contains(r.err, "tunnel 127.0.0.1:1") {
		t.Errorf("get-cert with everything down: exit %d, %q", r.code, r.err)
	}
}
