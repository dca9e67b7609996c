package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

func uris(ss ...string) []*url.URL {
	var out []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		out = append(out, u)
	}
	return out
}

func TestRoleOf(t *testing.T) {
	for _, c := range []struct {
		uris     []string
		wantRole Role
		wantID   string
	}{
		{[]string{"urn:hostcert:host:h-1"}, RoleHost, "h-1"},
		{[]string{"urn:hostcert:primary:p-1"}, RolePrimary, "p-1"},
		{[]string{"urn:hostcert:admin:alice"}, RoleAdmin, "alice"},
		{[]string{"URN:HostCert:HOST:h-1"}, RoleHost, "h-1"},
		{[]string{"urn:hostcert:host:h-1", "spiffe://example.org/x"}, RoleHost, "h-1"},
		{nil, RoleNone, ""},
		{[]string{"spiffe://example.org/x"}, RoleNone, ""},
		{[]string{"urn:hostcert:host:"}, RoleNone, ""},
		{[]string{"urn:hostcert:root:r"}, RoleNone, ""},
		{[]string{"urn:hostcert:host:h-1", "urn:hostcert:primary:h-1"}, RoleNone, ""},
		{[]string{"urn:hostcert:host:h-1", "urn:hostcert:host:h-2"}, RoleNone, ""},
		{[]string{"urn:hostcert:host:h-1", "urn:hostcert:future:x"}, RoleNone, ""},
		{[]string{"urn:other:primary:p"}, RoleNone, ""},
	} {
		role, id := RoleOf(&x509.Certificate{URIs: uris(c.uris...)})
		if role != c.wantRole || id != c.wantID {
			t.Errorf("RoleOf(%v) = %q, %q, want %q, %q", c.uris, role, id, c.wantRole, c.wantID)
		}
		hostID := HostIDFromCert(&x509.Certificate{URIs: uris(c.uris...)})
		if want := map[bool]string{true: c.wantID, false: ""}[c.wantRole == RoleHost]; hostID != want {
			t.Errorf("HostIDFromCert(%v) = %q, want %q", c.uris, hostID, want)
		}
	}
	if r, _ := RoleOf(nil); r != RoleNone {
		t.Errorf("RoleOf(nil) = %q", r)
	}
	for _, r := range []Role{RoleHost, RolePrimary, RoleAdmin} {
		if got, id := RoleOf(&x509.Certificate{URIs: []*url.URL{RoleURI(r, "x")}}); got != r || id != "x" {
			t.Errorf("RoleOf(RoleURI(%s)) = %q, %q", r, got, id)
		}
	}
}

func TestRequireRole(t *testing.T) {
	host := &x509.Certificate{URIs: []*url.URL{HostURI("h-1")}, DNSNames: []string{"web1.test"}}
	if err := RequireRole(host, RoleHost); err != nil {
		t.Errorf("RequireRole(host, host) = %v", err)
	}
	err := RequireRole(host, RolePrimary)
	var re *RoleError
	if !errors.As(err, &re) || re.Got != RoleHost || !errors.Is(err, ErrPeer) ||
		!strings.Contains(err.Error(), "a host's certificate (host ID h-1) for web1.test, not a primary certificate") {
		t.Errorf("RequireRole(host, primary) = %v", err)
	}
	if err := RequireRole(&x509.Certificate{}, RoleNone); err == nil {
		t.Error("RequireRole(no role, RoleNone) = nil: no role is never a role")
	}
}

// pkiFixture is a CA with certificates of every role.
type pkiFixture struct {
	roots            *x509.CertPool
	ca               *x509.Certificate
	caKey            crypto.Signer
	primary, host    *x509.Certificate
	foreignPrimary   *x509.Certificate
	primaryNoMarker  *x509.Certificate
	primaryTwoMarker *x509.Certificate
}

func newFixture(t *testing.T) pkiFixture {
	t.Helper()
	mkCA := func(cn string) (*x509.Certificate, crypto.Signer) {
		key, _ := GenerateKey(ECDSAP256)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	leaf := func(ca *x509.Certificate, caKey crypto.Signer, names []string, marks ...*url.URL) *x509.Certificate {
		key, _ := GenerateKey(ECDSAP256)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: names, URIs: marks, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	ca, caKey := mkCA("ca")
	other, otherKey := mkCA("other")
	f := pkiFixture{roots: x509.NewCertPool(), ca: ca, caKey: caKey}
	f.roots.AddCert(ca)
	f.primary = leaf(ca, caKey, []string{"primary.test", "alias.test"}, PrimaryURI("p"))
	f.host = leaf(ca, caKey, []string{"primary.test"}, HostURI("h"))
	f.foreignPrimary = leaf(other, otherKey, []string{"primary.test"}, PrimaryURI("p"))
	f.primaryNoMarker = leaf(ca, caKey, []string{"primary.test"})
	f.primaryTwoMarker = leaf(ca, caKey, []string{"primary.test"}, PrimaryURI("p"), HostURI("h"))
	return f
}

// TestVerifyPeer: chain first, then role, then name — so that a host's
// certificate holding the primary's very name is refused as a host's, and
// a name mismatch says which names the certificate holds.
func TestVerifyPeer(t *testing.T) {
	f := newFixture(t)
	check := func(name string) PeerCheck {
		return PeerCheck{Roots: f.roots, Role: RolePrimary, Name: name, Usage: x509.ExtKeyUsageServerAuth}
	}
	var (
		chainErr *ChainError
		roleErr  *RoleError
		nameErr  *NameMismatchError
	)
	for _, c := range []struct {
		desc  string
		chain []*x509.Certificate
		name  string
		as    any
		words []string
	}{
		{"the primary", []*x509.Certificate{f.primary}, "primary.test", nil, nil},
		{"the primary by its other name, any case", []*x509.Certificate{f.primary}, "ALIAS.test", nil, nil},
		{"the primary, no name asked", []*x509.Certificate{f.primary}, "", nil, nil},
		{"a host's certificate with the primary's name", []*x509.Certificate{f.host}, "primary.test", &roleErr, []string{"host's certificate", "not a primary certificate"}},
		{"a host's certificate reached by address", []*x509.Certificate{f.host}, "127.0.0.1", &roleErr, []string{"host's certificate"}},
		{"no marker", []*x509.Certificate{f.primaryNoMarker}, "primary.test", &roleErr, []string{"no hostcert role"}},
		{"two markers", []*x509.Certificate{f.primaryTwoMarker}, "primary.test", &roleErr, []string{"no hostcert role"}},
		{"another CA", []*x509.Certificate{f.foreignPrimary}, "primary.test", &chainErr, []string{"does not chain"}},
		{"nothing", nil, "primary.test", &chainErr, []string{"no certificate"}},
		{"name mismatch", []*x509.Certificate{f.primary}, "other.test", &nameErr, []string{"primary.test, alias.test", "not other.test", "name mismatch"}},
	} {
		err := VerifyPeer(c.chain, check(c.name))
		if c.as == nil {
			if err != nil {
				t.Errorf("VerifyPeer(%s) = %v, want nil", c.desc, err)
			}
			continue
		}
		if err == nil || !errors.As(err, c.as) || !errors.Is(err, ErrPeer) {
			t.Errorf("VerifyPeer(%s) = %v, want a %T", c.desc, err, c.as)
			continue
		}
		for _, w := range c.words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("VerifyPeer(%s) = %q, want it to say %q", c.desc, err, w)
			}
		}
	}
}
