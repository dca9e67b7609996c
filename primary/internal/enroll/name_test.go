package enroll

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"host1.example.com", "host1.example.com"},
		{"Host1.Example.COM.", "host1.example.com"},
		{"  db-01.corp ", "db-01.corp"},
		{"3com.net", "3com.net"},
		{strings.Repeat("a", 63) + ".test", strings.Repeat("a", 63) + ".test"},
	} {
		got, err := NormalizeName(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeName(%q) = %q, %v, want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{
		"", ".", "a..b", "-a.test", "a-.test", "a_b.test", "a b.test", "héllo.test", "*.test",
		"10.0.0.1", "::1", strings.Repeat("a", 64) + ".test", strings.Repeat("abcdefghi.", 26) + "test",
		"localhost", "LOCALHOST.", "db.localhost", "127.1", "hct_abc.test",
	} {
		if got, err := NormalizeName(bad); err == nil {
			t.Errorf("NormalizeName(%q) = %q, nil, want an error", bad, got)
		}
	}
}

func TestCSRNamesMatch(t *testing.T) {
	u, _ := url.Parse("urn:hostcert:host:x")
	for _, c := range []struct {
		desc string
		csr  x509.CertificateRequest
		ok   bool
	}{
		{"CN and SAN", x509.CertificateRequest{Subject: pkix.Name{CommonName: "h.test"}, DNSNames: []string{"h.test"}}, true},
		{"SAN only, other case", x509.CertificateRequest{DNSNames: []string{"H.Test."}}, true},
		{"CN only", x509.CertificateRequest{Subject: pkix.Name{CommonName: "h.test"}}, true},
		{"nothing", x509.CertificateRequest{}, false},
		{"another name", x509.CertificateRequest{DNSNames: []string{"victim.test"}}, false},
		{"extra SAN", x509.CertificateRequest{DNSNames: []string{"h.test", "victim.test"}}, false},
		{"other CN", x509.CertificateRequest{Subject: pkix.Name{CommonName: "victim.test"}, DNSNames: []string{"h.test"}}, false},
		{"IP SAN", x509.CertificateRequest{DNSNames: []string{"h.test"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, false},
		{"URI SAN", x509.CertificateRequest{DNSNames: []string{"h.test"}, URIs: []*url.URL{u}}, false},
		{"e-mail SAN", x509.CertificateRequest{DNSNames: []string{"h.test"}, EmailAddresses: []string{"a@b"}}, false},
	} {
		err := CSRNamesMatch(&c.csr, "h.test")
		if (err == nil) != c.ok {
			t.Errorf("CSRNamesMatch(%s) = %v, want ok=%v", c.desc, err, c.ok)
		}
	}
}

func TestCheckKey(t *testing.T) {
	key := func(f func() (crypto.Signer, error)) crypto.PublicKey {
		k, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	ec := func(c elliptic.Curve) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) { return ecdsa.GenerateKey(c, rand.Reader) }
	}
	rsaKey := func(bits int) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, bits) }
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		desc string
		pub  crypto.PublicKey
		ok   bool
	}{
		{"P-256", key(ec(elliptic.P256())), true},
		{"P-384", key(ec(elliptic.P384())), true},
		{"P-224", key(ec(elliptic.P224())), false},
		{"RSA 2048", key(rsaKey(2048)), true},
		{"RSA 1024", key(rsaKey(1024)), false},
		{"Ed25519", edPub, true},
		{"nil", nil, false},
	} {
		if err := CheckKey(c.pub); (err == nil) != c.ok {
			t.Errorf("CheckKey(%s) = %v, want ok=%v", c.desc, err, c.ok)
		}
	}
}
