package dnstest

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, net_, addr, name string, qtype uint16, edns uint16) (*dns.Msg, error) {
	t.Helper()
	return queryTimeout(t, net_, addr, name, qtype, edns, 2*time.Second)
}

func queryTimeout(t *testing.T, net_, addr, name string, qtype uint16, edns uint16, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: net_, Timeout: timeout}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func answers(r *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A.To4())
			out = append(out, a)
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			out = append(out, a)
		}
	}
	return out
}

func TestServer(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	s := New(t, map[string][]netip.Addr{"Host.Example.Test": {v4, v6}})
	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	for _, tc := range []struct {
		net   string
		name  string
		qtype uint16
		rcode int
		want  []netip.Addr
	}{
		{"udp", "host.example.test", dns.TypeA, dns.RcodeSuccess, []netip.Addr{v4}},
		{"udp", "HOST.example.test.", dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{v6}},
		{"tcp", "host.example.test", dns.TypeA, dns.RcodeSuccess, []netip.Addr{v4}},
		{"tcp", "host.example.test", dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{v6}},
		{"udp", "host.example.test", dns.TypeMX, dns.RcodeSuccess, nil},
		{"udp", "missing.example.test", dns.TypeA, dns.RcodeNameError, nil},
		{"tcp", "missing.example.test", dns.TypeAAAA, dns.RcodeNameError, nil},
	} {
		r, err := query(t, tc.net, s.Addr(), tc.name, tc.qtype, 0)
		if err != nil {
			t.Errorf("query %s %s %s: %v", tc.net, tc.name, dns.TypeToString[tc.qtype], err)
			continue
		}
		if r.Rcode != tc.rcode || !slices.Equal(answers(r), tc.want) {
			t.Errorf("query %s %s %s = %s %v, want %s %v", tc.net, tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[r.Rcode], answers(r), dns.RcodeToString[tc.rcode], tc.want)
		}
	}
	if n := s.Queries(); n != 7 {
		t.Errorf("Queries() = %d, want 7", n)
	}
}

func TestServerChangesAtRunTime(t *testing.T) {
	s := New(t, nil)
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	check := func(step string, rcode int, want []netip.Addr) {
		t.Helper()
		r, err := query(t, "udp", s.Addr(), "h.example.test", dns.TypeA, 0)
		if err != nil {
			t.Fatalf("%s: query: %v", step, err)
		}
		if r.Rcode != rcode || !slices.Equal(answers(r), want) {
			t.Errorf("%s: query = %s %v, want %s %v", step, dns.RcodeToString[r.Rcode], answers(r), dns.RcodeToString[rcode], want)
		}
	}
	check("empty", dns.RcodeNameError, nil)
	s.Set("h.example.test", a1)
	check("set", dns.RcodeSuccess, []netip.Addr{a1})
	s.Set("H.EXAMPLE.TEST.", a2, a1)
	check("replace", dns.RcodeSuccess, []netip.Addr{a2, a1})
	s.Set("h.example.test")
	check("no records", dns.RcodeSuccess, nil)
	s.ServFail("h.example.test")
	check("servfail", dns.RcodeServerFailure, nil)
	s.Set("h.example.test", a1)
	check("set clears servfail", dns.RcodeSuccess, []netip.Addr{a1})
	s.Delete("h.example.test")
	check("delete", dns.RcodeNameError, nil)

	s.Set("quiet.example.test", a1)
	s.Silence("quiet.example.test")
	if r, err := queryTimeout(t, "udp", s.Addr(), "quiet.example.test", dns.TypeA, 0, 200*time.Millisecond); err == nil {
		t.Errorf("query(silenced) = %v, want a timeout", r)
	}
}

func TestServerTruncatesUDP(t *testing.T) {
	var many []netip.Addr
	for i := 0; i < 100; i++ {
		many = append(many, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	s := New(t, map[string][]netip.Addr{"big.example.test": many})
	r, err := query(t, "udp", s.Addr(), "big.example.test", dns.TypeA, 0)
	if err != nil {
		t.Fatalf("udp query: %v", err)
	}
	r.Compress = true // as sent
	if !r.Truncated || len(r.Answer) >= 100 || r.Len() > dns.MinMsgSize {
		t.Errorf("udp answer: truncated %v, %d answers, %d bytes; want TC set, fewer than 100, at most %d bytes",
			r.Truncated, len(r.Answer), r.Len(), dns.MinMsgSize)
	}
	r, err = query(t, "tcp", s.Addr(), "big.example.test", dns.TypeA, 0)
	if err != nil {
		t.Fatalf("tcp query: %v", err)
	}
	if r.Truncated || !slices.Equal(answers(r), many) {
		t.Errorf("tcp answer: truncated %v, %d answers, want all 100", r.Truncated, len(r.Answer))
	}
	// With EDNS0 and a large buffer, UDP carries everything.
	r, err = query(t, "udp", s.Addr(), "big.example.test", dns.TypeA, 4096)
	if err != nil {
		t.Fatalf("udp edns query: %v", err)
	}
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("udp edns answer: truncated %v, %d answers, want all 100", r.Truncated, len(r.Answer))
	}
}

func TestStart(t *testing.T) {
	addr := Start(t, map[string][]netip.Addr{"s.example.test": {netip.MustParseAddr("::1")}})
	r, err := query(t, "udp", addr, "s.example.test", dns.TypeAAAA, 0)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("query(Start server) = %v, %v, want one AAAA", r, err)
	}
}

func TestListenAddr(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	s := ListenAddr(t, "127.0.0.2", map[string][]netip.Addr{"other.example.test": {v4}})
	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.2" {
		t.Fatalf("Addr() = %q, want 127.0.0.2:PORT", s.Addr())
	}
	for _, n := range []string{"udp", "tcp"} {
		r, err := query(t, n, s.Addr(), "other.example.test", dns.TypeA, 0)
		if err != nil {
			t.Fatalf("query %s: %v", n, err)
		}
		if got := answers(r); !slices.Equal(got, []netip.Addr{v4}) {
			t.Errorf("query %s other.example.test A = %v, want [%v]", n, got, v4)
		}
	}
}
