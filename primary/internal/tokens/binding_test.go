package tokens_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/hostcert/hostcert/primary/internal/enroll"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// The tests use the primary's own host-name normaliser, as the admin command
// and the issuance path do.
var normalize = enroll.NormalizeName

func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"web1.example.com", "web1.example.com", true},
		{"web1.example.com", "WEB1.Example.COM", true},
		{"web1.example.com", "web1.example.com.", true},
		{"web1.example.com", "web2.example.com", false},
		{"web1.example.com", "a.web1.example.com", false},
		{"web1.example.com", "example.com", false},

		{"*.example.com", "a.example.com", true},
		{"*.example.com", "A.EXAMPLE.com.", true},
		{"*.example.com", "example.com", false},        // not the suffix itself
		{"*.example.com", "a.b.example.com", false},    // one label only
		{"*.example.com", ".example.com", false},       // empty label
		{"*.example.com", "aexample.com", false},       // not a label boundary
		{"*.example.com", "a.example.com.evil", false}, // suffix must end the name
		{"*.example.com", "a.example.org", false},
		{"*.example.com", "*.example.com", false}, // a pattern is not a name
		{"*.dmz.example.com", "host7.dmz.example.com", true},
		{"*.dmz.example.com", "host7.lan.example.com", false},
		{"*.dmz.example.com", "x.host7.dmz.example.com", false},

		{"", "a.example.com", false},
		{"a.example.com", "", false},
	} {
		if got := tokens.MatchName(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchName(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestParseNamePattern(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"web1.example.com", "web1.example.com", true},
		{"  WEB1.Example.com.  ", "web1.example.com", true},
		{"*.dmz.example.com", "*.dmz.example.com", true},
		{"*.DMZ.Example.COM.", "*.dmz.example.com", true},
		{"*.example.com", "*.example.com", true},
		{"single", "single", true}, // a one-label host name is a host name

		{"*.com", "", false}, // a wildcard over a top-level domain
		{"*", "", false},
		{"*.", "", false},
		{"*.*.example.com", "", false},
		{"a*.example.com", "", false},
		{"web.*.example.com", "", false},
		{"*example.com", "", false},
		{"**.example.com", "", false},
		{"", "", false},
		{"bad_name.example.com", "", false},
		{"192.0.2.1", "", false}, // an IP literal is no host name
		{"*.192.0.2.1", "", false},
		{"a..example.com", "", false},
	} {
		got, err := tokens.ParseNamePattern(tc.in, normalize)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseNamePattern(%q) = %q, %v, want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, tokens.ErrBadBinding) {
			t.Errorf("ParseNamePattern(%q) error %v does not wrap ErrBadBinding", tc.in, err)
		}
	}
}

func TestParseNet(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"192.0.2.0/24", "192.0.2.0/24", true},
		{" 192.0.2.0/24 ", "192.0.2.0/24", true},
		{"192.0.2.7", "192.0.2.7/32", true},
		{"2001:db8:1::/48", "2001:db8:1::/48", true},
		{"2001:DB8::1", "2001:db8::1/128", true},
		{"0.0.0.0/0", "0.0.0.0/0", true},

		{"192.0.2.7/24", "", false}, // host bits set
		{"::ffff:192.0.2.0/120", "", false},
		{"::ffff:192.0.2.1", "", false},
		{"fe80::1%eth0", "", false},
		{"192.0.2.0/33", "", false},
		{"dmz", "", false},
		{"", "", false},
	} {
		got, err := tokens.ParseNet(tc.in)
		s := ""
		if err == nil {
			s = got.String()
		}
		if s != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseNet(%q) = %q, %v, want %q, ok=%v", tc.in, s, err, tc.want, tc.ok)
		}
	}
}

func TestParseBinding(t *testing.T) {
	b, err := tokens.ParseBinding(
		[]string{"*.DMZ.example.com", "*.dmz.example.com.", "gw.example.com"},
		[]string{"192.0.2.0/24", "192.0.2.0/24", "2001:db8::/32"}, normalize)
	if err != nil {
		t.Fatalf("ParseBinding = %v", err)
	}
	names, nets := b.Strings()
	if !slices.Equal(names, []string{"*.dmz.example.com", "gw.example.com"}) ||
		!slices.Equal(nets, []string{"192.0.2.0/24", "2001:db8::/32"}) {
		t.Errorf("ParseBinding = %v %v, want duplicates dropped, order kept", names, nets)
	}
	if b, err := tokens.ParseBinding(nil, nil, normalize); err != nil || b.Bound() {
		t.Errorf("ParseBinding(nil, nil) = %+v, %v, want an unbound binding", b, err)
	}
	many := make([]string, tokens.MaxBindNames+1)
	for i := range many {
		many[i] = "a.example.com"
	}
	for _, tc := range []struct {
		names, nets []string
	}{
		{[]string{"*.com"}, nil},
		{nil, []string{"10.0.0.1/8"}},
		{many, nil},
		{nil, many},
	} {
		if _, err := tokens.ParseBinding(tc.names, tc.nets, normalize); !errors.Is(err, tokens.ErrBadBinding) {
			t.Errorf("ParseBinding(%d names, %d nets) = %v, want ErrBadBinding", len(tc.names), len(tc.nets), err)
		}
	}
}

func TestBindingAllows(t *testing.T) {
	dmz := tokens.Binding{
		Names: []string{"*.dmz.example.com", "gw.example.com"},
		Nets:  []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")},
	}
	onlyNames := tokens.Binding{Names: []string{"*.dmz.example.com"}}
	onlyNets := tokens.Binding{Nets: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		desc string
		b    tokens.Binding
		name string
		src  netip.Addr
		want bool
	}{
		{"unbound: anything", tokens.Binding{}, "x.example.org", a("198.51.100.1"), true},
		{"unbound: no source", tokens.Binding{}, "x.example.org", netip.Addr{}, true},

		{"in both", dmz, "h1.dmz.example.com", a("192.0.2.10"), true},
		{"exact name in net", dmz, "gw.example.com", a("192.0.2.1"), true},
		{"IPv6 in net", dmz, "h1.dmz.example.com", a("2001:db8:1:2::7"), true},
		{"IPv4-mapped source in net", dmz, "h1.dmz.example.com", a("::ffff:192.0.2.10"), true},
		{"case and trailing dot", dmz, "H1.DMZ.Example.COM.", a("192.0.2.10"), true},
		{"name outside", dmz, "h1.lan.example.com", a("192.0.2.10"), false},
		{"the suffix itself", dmz, "dmz.example.com", a("192.0.2.10"), false},
		{"two labels deep", dmz, "a.b.dmz.example.com", a("192.0.2.10"), false},
		{"source outside", dmz, "h1.dmz.example.com", a("198.51.100.10"), false},
		{"IPv6 outside", dmz, "h1.dmz.example.com", a("2001:db8:2::7"), false},
		{"no source", dmz, "h1.dmz.example.com", netip.Addr{}, false},
		{"both outside", dmz, "x.example.org", a("198.51.100.10"), false},

		{"names only: any source", onlyNames, "h1.dmz.example.com", a("198.51.100.10"), true},
		{"names only: other name", onlyNames, "h1.example.com", a("192.0.2.10"), false},
		{"nets only: any name", onlyNets, "anything.example.org", a("192.0.2.200"), true},
		{"nets only: other source", onlyNets, "anything.example.org", a("192.0.3.1"), false},
	} {
		if got := tc.b.Allows(tc.name, tc.src); got != tc.want {
			t.Errorf("%s: Allows(%q, %v) = %v, want %v", tc.desc, tc.name, tc.src, got, tc.want)
		}
	}
}

func TestCheckMaxUses(t *testing.T) {
	for _, tc := range []struct {
		in int
		ok bool
	}{
		{1, true}, {5, true}, {tokens.MaxMaxUses, true},
		{0, false}, {-1, false}, {tokens.MaxMaxUses + 1, false},
	} {
		if err := tokens.CheckMaxUses(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckMaxUses(%d) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
