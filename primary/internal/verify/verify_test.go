package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/dnstest"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestVerifyDNS(t *testing.T) {
	many := make([]netip.Addr, 0, 120)
	for i := 0; i < 120; i++ {
		many = append(many, netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)}))
	}
	srv := dnstest.New(t, map[string][]netip.Addr{
		"v4.example.test":     {ip("192.0.2.10")},
		"v6.example.test":     {ip("2001:db8::10")},
		"dual.example.test":   {ip("192.0.2.20"), ip("2001:db8::20")},
		"multi.example.test":  {ip("192.0.2.31"), ip("192.0.2.32"), ip("192.0.2.33")},
		"many.example.test":   many,
		"empty.example.test":  {},
		"Mixed.Example.TEST.": {ip("192.0.2.40")},
	})
	srv.Silence("slow.example.test")
	srv.Set("broken.example.test", ip("192.0.2.50"))
	srv.ServFail("broken.example.test")
	v := Verifier{Resolver: NewResolver(srv.Addr())} // default 2s bound: loaded CI machines stay well inside it

	for _, tc := range []struct {
		name string
		from string
		nat  bool
		ok   bool
		why  string
	}{
		{"v4.example.test", "192.0.2.10", false, true, "dns matches 192.0.2.10"},
		{"v4.example.test", "::ffff:192.0.2.10", false, true, "dns matches 192.0.2.10"},
		{"v4.example.test", "192.0.2.11", false, false, "dns gives 192.0.2.10, not 192.0.2.11"},
		{"v6.example.test", "2001:db8::10", false, true, "dns matches 2001:db8::10"},
		{"v6.example.test", "2001:db8::11", false, false, "dns gives 2001:db8::10, not 2001:db8::11"},
		{"v6.example.test", "192.0.2.10", false, false, "dns gives 2001:db8::10"},
		{"dual.example.test", "192.0.2.20", false, true, "dns matches"},
		{"dual.example.test", "2001:db8::20", false, true, "dns matches"},
		{"multi.example.test", "192.0.2.33", false, true, "dns matches 192.0.2.33"},
		{"multi.example.test", "192.0.2.34", false, false, "dns gives 192.0.2.31, 192.0.2.32, 192.0.2.33, not"},
		{"many.example.test", "10.20.0.119", false, true, "dns matches 10.20.0.119"}, // truncated over UDP, full over TCP
		{"many.example.test", "10.21.0.1", false, false, "and 116 more"},
		{"MIXED.example.test.", "192.0.2.40", false, true, "dns matches"},
		{"v4.example.test", "192.0.2.10", true, false, "nat declared"},
		{"nx.example.test", "192.0.2.10", false, false, "name does not resolve (no such host)"},
		{"empty.example.test", "192.0.2.10", false, false, "name does not resolve"}, // NOERROR without records: Go reports no such host
		{"slow.example.test", "192.0.2.10", false, false, "dns lookup timed out"},
		{"broken.example.test", "192.0.2.50", false, false, "dns lookup failed"},
		{"", "192.0.2.10", false, false, "no name"},
		{"192.0.2.10", "192.0.2.10", false, false, "name is an ip address"},
		{"v4.example.test", "", false, false, "no source address"},
	} {
		from := netip.Addr{}
		if tc.from != "" {
			from = ip(tc.from)
		}
		ok, why := v.Verify(context.Background(), tc.name, from, tc.nat)
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("Verify(%q, %s, nat=%v) = %v, %q, want %v, %q", tc.name, tc.from, tc.nat, ok, why, tc.ok, tc.why)
		}
	}
}

func TestVerifyRecordsChangeAtRunTime(t *testing.T) {
	srv := dnstest.New(t, nil)
	r := NewResolver(srv.Addr())
	from := ip("2001:db8:5::7")
	if ok, why := Verify(context.Background(), r, "moved.example.test", from, false); ok {
		t.Fatalf("Verify(before Set) = true, %q, want false", why)
	}
	srv.Set("moved.example.test", ip("192.0.2.1"), from)
	if ok, why := Verify(context.Background(), r, "moved.example.test", from, false); !ok {
		t.Errorf("Verify(after Set) = false, %q, want true", why)
	}
	srv.Delete("moved.example.test")
	if ok, why := Verify(context.Background(), r, "moved.example.test", from, false); ok || why != "name does not resolve (no such host)" {
		t.Errorf("Verify(after Delete) = %v, %q, want false, NXDOMAIN", ok, why)
	}
}

func TestVerifyNATAsksNoDNS(t *testing.T) {
	srv := dnstest.New(t, map[string][]netip.Addr{"nat.example.test": {ip("192.0.2.1")}})
	ok, why := Verify(context.Background(), NewResolver(srv.Addr()), "nat.example.test", ip("192.0.2.1"), true)
	if ok || why != "nat declared" {
		t.Errorf("Verify(nat) = %v, %q, want false, \"nat declared\"", ok, why)
	}
	if n := srv.Queries(); n != 0 {
		t.Errorf("queries after a NAT verification = %d, want 0", n)
	}
}

// fakeResolver answers from a function, to test what Verify does with
// answers and errors a real server cannot easily produce.
type fakeResolver func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

func TestVerifyFakeResolver(t *testing.T) {
	mapped := fakeResolver(func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if network != "ip" || host != "h.example.test" {
			return nil, fmt.Errorf("unexpected lookup %s %s", network, host)
		}
		// net.Resolver.LookupNetIP may hand back IPv4 in IPv4-mapped form.
		return []netip.Addr{ip("::ffff:198.51.100.4"), ip("fe80::1%eth0")}, nil
	})
	for _, tc := range []struct {
		name, from string
		ok         bool
	}{
		{"h.example.test", "198.51.100.4", true},
		{"H.Example.Test.", "::ffff:198.51.100.4", true},
		{"h.example.test", "fe80::1", true},
		{"h.example.test", "fe80::1%eth1", true},
		{"h.example.test", "198.51.100.5", false},
		{"other.example.test", "198.51.100.4", false},
	} {
		if ok, why := Verify(context.Background(), mapped, tc.name, ip(tc.from), false); ok != tc.ok {
			t.Errorf("Verify(%q, %s) = %v, %q, want %v", tc.name, tc.from, ok, why, tc.ok)
		}
	}

	plain := fakeResolver(func(context.Context, string, string) ([]netip.Addr, error) { return nil, errors.New("boom") })
	if ok, why := Verify(context.Background(), plain, "x.example.test", ip("192.0.2.1"), false); ok || why != "dns lookup failed: boom" {
		t.Errorf("Verify(failing resolver) = %v, %q, want false, \"dns lookup failed: boom\"", ok, why)
	}
	none := fakeResolver(func(context.Context, string, string) ([]netip.Addr, error) { return nil, nil })
	if ok, why := Verify(context.Background(), none, "x.example.test", ip("192.0.2.1"), false); ok || why != "name has no a or aaaa records" {
		t.Errorf("Verify(empty answer) = %v, %q, want false, no records", ok, why)
	}
	if ok, why := Verify(context.Background(), nil, "x.example.test", ip("192.0.2.1"), false); ok || why != "no resolver configured" {
		t.Errorf("Verify(nil resolver) = %v, %q, want false, no resolver", ok, why)
	}
}

func TestVerifyBoundsTheLookup(t *testing.T) {
	var deadline time.Time
	var hasDeadline bool
	blocking := fakeResolver(func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		deadline, hasDeadline = ctx.Deadline()
		<-ctx.Done()
		return nil, &net.DNSError{Err: "i/o timeout", IsTimeout: true}
	})
	start := time.Now()
	ok, why := Verifier{Resolver: blocking, Timeout: 50 * time.Millisecond}.Verify(context.Background(), "x.example.test", ip("192.0.2.1"), false)
	if ok || why != "dns lookup timed out" {
		t.Errorf("Verify(blocking resolver) = %v, %q, want false, timed out", ok, why)
	}
	if !hasDeadline || deadline.After(start.Add(50*time.Millisecond+time.Second)) {
		t.Errorf("lookup context deadline = %v (set %v), want about 50ms after %v", deadline, hasDeadline, start)
	}

	// Default bound: 2s.
	Verify(context.Background(), fakeResolver(func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		deadline, hasDeadline = ctx.Deadline()
		return nil, nil
	}), "x.example.test", ip("192.0.2.1"), false)
	if !hasDeadline || deadline.After(time.Now().Add(DefaultTimeout)) || deadline.Before(start.Add(DefaultTimeout)) {
		t.Errorf("default lookup deadline = %v (set %v), want %v after the call", deadline, hasDeadline, DefaultTimeout)
	}

	// A caller's cancellation is reported as such.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, why := Verify(ctx, blocking, "x.example.test", ip("192.0.2.1"), false); ok || why != "dns lookup cancelled" {
		t.Errorf("Verify(cancelled ctx) = %v, %q, want false, cancelled", ok, why)
	}
}

func TestServerAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.53", "10.0.0.53:53"},
		{"10.0.0.53:5353", "10.0.0.53:5353"},
		{"2001:db8::53", "[2001:db8::53]:53"},
		{"[2001:db8::53]", "[2001:db8::53]:53"},
		{"[2001:db8::53]:5300", "[2001:db8::53]:5300"},
		{"dns.example.test", "dns.example.test:53"},
	} {
		if got := ServerAddr(tc.in); got != tc.want {
			t.Errorf("ServerAddr(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewResolverSystem(t *testing.T) {
	if r := NewResolver(""); r != net.DefaultResolver {
		t.Errorf("NewResolver(\"\") = %p, want net.DefaultResolver", r)
	}
	if r := NewResolver("127.0.0.1:1"); !r.PreferGo || r.Dial == nil {
		t.Errorf("NewResolver(server) = %+v, want PreferGo with a Dial", r)
	}
}

func BenchmarkVerify(b *testing.B) {
	srv := dnstest.New(b, map[string][]netip.Addr{"bench.example.test": {ip("192.0.2.1"), ip("2001:db8::1")}})
	r := NewResolver(srv.Addr())
	for b.Loop() {
		if ok, why := Verify(context.Background(), r, "bench.example.test", ip("2001:db8::1"), false); !ok {
			b.Fatal(why)
		}
	}
}
