package connect

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestSourceKey(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5000}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 5000}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 5000}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 6000}, "2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		if got := sourceKey(tt.addr).String(); got != tt.want {
			t.Errorf("sourceKey(%v) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

func TestAdmission(t *testing.T) {
	l := limits{maxConns: 3, perSource: 2, burst: 3, rate: 1}
	a := &admission{}
	now := time.Unix(1000, 0)
	src := netip.MustParsePrefix("192.0.2.1/32")
	other := netip.MustParsePrefix("192.0.2.2/32")
	code := func(r *refusal) string {
		if r == nil {
			return "admitted"
		}
		return r.code
	}
	steps := []struct {
		name string
		src  netip.Prefix
		at   time.Duration
		want string
	}{
		{"first", src, 0, "admitted"},
		{"second", src, 0, "admitted"},
		{"per-source cap", src, 0, "too_many_connections_from_source"},
		{"burst used up", src, 0, "rate_limited"},
		{"other source", other, 0, "admitted"},
		{"global cap", other, 0, "too_many_connections"},
	}
	var releases []func()
	for _, s := range steps {
		rel, r := a.admit(s.src, now.Add(s.at), l)
		if got := code(r); got != s.want {
			t.Fatalf("%s: admit = %s, want %s", s.name, got, s.want)
		}
		if rel != nil {
			releases = append(releases, rel)
		}
	}
	releases[0]()
	// One second later one token is back and one slot is free.
	if _, r := a.admit(src, now.Add(time.Second), l); r != nil {
		t.Fatalf("admit after release and refill = %s, want admitted", r.code)
	}
	for _, rel := range releases[1:] {
		rel()
	}
	if a.open != 1 {
		t.Errorf("open = %d after releases, want 1", a.open)
	}
}

func TestAdmissionForgetsIdleSources(t *testing.T) {
	l := limits{maxConns: 10, perSource: 10, burst: 2, rate: 1}
	a := &admission{}
	now := time.Unix(1000, 0)
	rel, _ := a.admit(netip.MustParsePrefix("192.0.2.1/32"), now, l)
	rel()
	a.admit(netip.MustParsePrefix("192.0.2.2/32"), now.Add(time.Minute), l) // triggers a sweep
	if _, ok := a.sources[netip.MustParsePrefix("192.0.2.1/32")]; ok || len(a.sources) != 1 {
		t.Errorf("sources after sweep = %v, want only 192.0.2.2", a.sources)
	}
}

func TestProxyNeverUsesEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:9")
	tt := startTunnel(t, []string{"primary.test:1556=127.0.0.1:1"}, nil)
	p := tt.srv.proxy
	if p.Tr.Proxy != nil || p.ConnectDial != nil {
		t.Errorf("goproxy Tr.Proxy or ConnectDial set: the tunnel must not follow proxy environment variables")
	}
	if c, err := p.ConnectDialWithReq(nil, "tcp", "127.0.0.1:1"); err == nil || c != nil {
		t.Errorf("goproxy's own CONNECT dialer = %v, %v; want a refusal", c, err)
	}
	up := echoServer(t)
	tt2 := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, nil)
	echoRoundTrip(t, connectThrough(t, tt2.addr, "", "primary.test:1556"), "direct to the upstream, not via HTTPS_PROXY")
}
