package enroll

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/primary/internal/store"
)

func TestCSRNames(t *testing.T) {
	for _, tc := range []struct {
		cn   string
		dns  []string
		ip   bool
		want string // fmt of the names, or "error: substring"
	}{
		{cn: "a.example", dns: []string{"a.example"}, want: "[a.example]"},
		{cn: "A.example.", dns: []string{"a.example", "A", "b.example"}, want: "[a.example a b.example]"},
		{dns: []string{"x.example", "y.example"}, want: "[x.example y.example]"},
		{cn: "only-cn.example", want: "[only-cn.example]"},
		{cn: "cn.example", dns: []string{"san.example"}, want: "[san.example cn.example]"},
		{want: "error: names no host"},
		{dns: []string{"ok.example", "bad_name"}, want: "error: not allowed"},
		{dns: []string{"192.0.2.1"}, want: "error: not allowed"},
		{dns: []string{"ok.example"}, ip: true, want: "error: IP, URI or e-mail"},
		{dns: manyNames(MaxNames), want: fmt.Sprint(manyNames(MaxNames))},
		{dns: manyNames(MaxNames + 1), want: "error: at most 16"},
	} {
		csr := &x509.CertificateRequest{Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dns}
		if tc.ip {
			csr.IPAddresses = []net.IP{net.IPv4(192, 0, 2, 1)}
		}
		got, err := CSRNames(csr, NormalizeName)
		switch {
		case strings.HasPrefix(tc.want, "error: "):
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(tc.want, "error: ")) {
				t.Errorf("CSRNames(cn %q, dns %v) = %v, %v, want %s", tc.cn, tc.dns, got, err, tc.want)
			}
		case err != nil || fmt.Sprint(got) != tc.want:
			t.Errorf("CSRNames(cn %q, dns %v) = %v, %v, want %s", tc.cn, tc.dns, got, err, tc.want)
		}
	}
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d.example", i)
	}
	return out
}

func TestPlanNames(t *testing.T) {
	const h, other = "host-1", "host-2"
	approved := func(name, id string) store.Mapping {
		return store.Mapping{Name: name, HostID: id, State: store.MappingApproved}
	}
	pending := func(name, id string) store.Mapping {
		return store.Mapping{Name: name, HostID: id, State: store.MappingPending}
	}
	for _, tc := range []struct {
		desc   string
		hostID string
		main   string
		asked  []string
		held   []store.Mapping
		auto   bool
		want   string
	}{
		{"renewal asking for its name", h, "a", []string{"a"}, []store.Mapping{approved("a", h)}, false,
			"cert [a] claims [] pending [] conflict \"\""},
		{"a new name asked: pending, not in the certificate", h, "a", []string{"a", "b"}, []store.Mapping{approved("a", h)}, false,
			"cert [a] claims [b] pending [] conflict \"\""},
		{"the same name asked again stays pending", h, "a", []string{"a", "b"}, []store.Mapping{approved("a", h), pending("b", h)}, false,
			"cert [a] claims [] pending [b] conflict \"\""},
		{"approved: the next certificate carries it", h, "a", []string{"a", "b"}, []store.Mapping{approved("a", h), approved("b", h)}, false,
			"cert [a b] claims [] pending [] conflict \"\""},
		{"every approved name, main first, even when not asked", h, "m", []string{"m"}, []store.Mapping{approved("z", h), approved("m", h), approved("c", h)}, false,
			"cert [m c z] claims [] pending [] conflict \"\""},
		{"asking only for a new name keeps the approved ones", h, "a", []string{"new"}, []store.Mapping{approved("a", h)}, false,
			"cert [a] claims [new] pending [] conflict \"\""},
		{"another host's approved name: conflict", h, "a", []string{"a", "b"}, []store.Mapping{approved("a", h), approved("b", other)}, false,
			"cert [] claims [] pending [] conflict \"b\""},
		{"another host's pending claim owns nothing: a claim of this host too", h, "a", []string{"b"}, []store.Mapping{approved("a", h), pending("b", other)}, false,
			"cert [a] claims [b] pending [] conflict \"\""},
		{"another host's pending claim, auto-approve: this host gets it", h, "a", []string{"b"}, []store.Mapping{approved("a", h), pending("b", other)}, true,
			"cert [a b] claims [b] pending [] conflict \"\""},
		{"claimed by several, approved for one: conflict for the others", h, "a", []string{"b"}, []store.Mapping{approved("a", h), pending("b", h), approved("b", other)}, false,
			"cert [] claims [] pending [] conflict \"b\""},
		{"auto-approve: the claim is in the certificate", h, "a", []string{"a", "b"}, []store.Mapping{approved("a", h)}, true,
			"cert [a b] claims [b] pending [] conflict \"\""},
		{"auto-approve leaves an older pending name pending", h, "a", []string{"b"}, []store.Mapping{approved("a", h), pending("b", h)}, true,
			"cert [a] claims [] pending [b] conflict \"\""},
		{"first issuance", "", "n", []string{"n"}, nil, false,
			"cert [n] claims [] pending [] conflict \"\""},
		{"first issuance with another name", "", "n", []string{"n", "o"}, nil, false,
			"cert [n] claims [o] pending [] conflict \"\""},
		{"first issuance of a name pending for another host: no conflict", "", "n", []string{"n"}, []store.Mapping{pending("n", other)}, false,
			"cert [n] claims [] pending [] conflict \"\""},
		{"first issuance with another name pending for another host", "", "n", []string{"n", "o"}, []store.Mapping{pending("o", other), pending("n", other)}, false,
			"cert [n] claims [o] pending [] conflict \"\""},
		{"first issuance asking for a host's name", "", "n", []string{"n", "o"}, []store.Mapping{approved("o", other)}, false,
			"cert [] claims [] pending [] conflict \"o\""},
		{"another host's other names are not this one's", h, "a", []string{"a"}, []store.Mapping{approved("a", h), approved("x", other)}, false,
			"cert [a] claims [] pending [] conflict \"\""},
		{"another host's pending claims do not count against this one", h, "a", []string{"a", "new"}, append(pendings(other, MaxPending), approved("a", h)), false,
			"cert [a] claims [new] pending [] conflict \"\""},
		{"a host at the cap asking again for its pending names", h, "a", []string{"a", "p0.example"}, append(pendings(h, MaxPending), approved("a", h)), false,
			"cert [a] claims [] pending [p0.example] conflict \"\""},
		{"a host one below the cap may claim one more", h, "a", []string{"a", "new"}, append(pendings(h, MaxPending-1), approved("a", h)), false,
			"cert [a] claims [new] pending [] conflict \"\""},
		{"a host at the cap claiming one more: too many", h, "a", []string{"a", "new"}, append(pendings(h, MaxPending), approved("a", h)), false,
			fmt.Sprintf("cert [a] claims [new] pending [] conflict \"\" too many %d", MaxPending+1)},
		{"a claim of a name other hosts also claim counts once, for this host", h, "a", []string{"a", "b", "c"}, append(pendings(h, MaxPending-2), approved("a", h), pending("b", other), pending("c", other)), false,
			"cert [a] claims [b c] pending [] conflict \"\""},
		{"auto-approve: no claim stays pending, no cap", h, "a", []string{"a", "new"}, append(pendings(h, MaxPending), approved("a", h)), true,
			"cert [a new] claims [new] pending [] conflict \"\""},
	} {
		p := planNames(tc.hostID, tc.main, tc.asked, tc.held, tc.auto)
		got := fmt.Sprintf("cert %v claims %v pending %v conflict %q", p.Cert, p.Claims, p.Pending, p.Conflict)
		if p.TooMany > 0 {
			got += fmt.Sprintf(" too many %d", p.TooMany)
		}
		if got != tc.want {
			t.Errorf("%s: planNames(%q, %q, %v, auto %v) = %s, want %s", tc.desc, tc.hostID, tc.main, tc.asked, tc.auto, got, tc.want)
		}
	}
}

// pendings is n pending claims of hostID, on p0.example, p1.example, ...
func pendings(hostID string, n int) []store.Mapping {
	out := make([]store.Mapping, n)
	for i := range out {
		out[i] = store.Mapping{Name: fmt.Sprintf("p%d.example", i), HostID: hostID, State: store.MappingPending}
	}
	return out
}
