package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// TestEncodeTBSMatchesX509: for many templates — every shape Template
// builds and hand-made variations of each field encodeTBS covers —
// encodeTBS's TBSCertificate is byte-identical to the one
// x509.CreateCertificate signs, for P-256, P-384 and P-521 CA keys.
func TestEncodeTBSMatchesX509(t *testing.T) {
	p256, _ := pki.GenerateKey(pki.ECDSAP256)
	p384, _ := pki.GenerateKey(pki.ECDSAP384)
	rsaKey, _ := pki.GenerateKey(pki.RSA2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)

	cas := map[string]*CA{}
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.ECDSAP384} {
		// The parent is an issuing CA under a root.
		cas[string(alg)], _ = newCA(t, InitOptions{IssuingKeyAlg: alg})
	}
	// The single CA of older versions: a self-signed parent.
	cas["single p384"], _ = newSingleCA(t)
	// A P-521 CA: same certificate fields, another key.
	{
		c384 := cas[string(pki.ECDSAP384)]
		tmpl := *c384.Certificate()
		tmpl.PublicKey = p521.Public()
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, p521.Public(), p521)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		cas["ecdsa-p521"] = caWith(cert, p521)
	}

	serial, _ := NewSerial()
	req := func(names []string, pub crypto.PublicKey) HostCertRequest {
		return HostCertRequest{HostID: "0d6f3c3e-7c1a-4c55-9a3e-8e1f3f0b6a11", Names: names, PublicKey: pub, Serial: serial}
	}
	type tc struct {
		name string
		tmpl func(ca *x509.Certificate) *x509.Certificate
		pub  crypto.PublicKey
	}
	fromTemplate := func(r HostCertRequest, now time.Time) func(*x509.Certificate) *x509.Certificate {
		return func(ca *x509.Certificate) *x509.Certificate {
			tmpl, err := Template(r, ca, now)
			if err != nil {
				t.Fatal(err)
			}
			return tmpl
		}
	}
	edit := func(base func(*x509.Certificate) *x509.Certificate, f func(*x509.Certificate)) func(*x509.Certificate) *x509.Certificate {
		return func(ca *x509.Certificate) *x509.Certificate {
			tmpl := base(ca)
			f(tmpl)
			return tmpl
		}
	}
	one := fromTemplate(req([]string{"web1.example.com"}, p256.Public()), t0)
	cases := []tc{
		{"one name", one, p256.Public()},
		{"many names", fromTemplate(req([]string{"A.example.com", "b.example.com.", "a.example.com", "x-1.y.z"}, p256.Public()), t0), p256.Public()},
		{"ipv4", edit(one, func(c *x509.Certificate) { c.DNSNames, c.IPAddresses = nil, []net.IP{net.ParseIP("192.0.2.7")} }), p256.Public()},
		{"ipv6 and names", edit(one, func(c *x509.Certificate) {
			c.IPAddresses = []net.IP{net.ParseIP("2001:db8::1"), net.ParseIP("::ffff:192.0.2.9"), net.ParseIP("10.1.2.3")}
		}), p256.Public()},
		{"primary role", fromTemplate(HostCertRequest{Role: pki.RolePrimary, HostID: "p", Names: []string{"localhost", "primary.example"}, PublicKey: p256.Public(), Serial: big.NewInt(9)}, t0), p256.Public()},
		{"admin role", fromTemplate(HostCertRequest{Role: pki.RoleAdmin, HostID: "alice", PublicKey: p256.Public(), Serial: big.NewInt(9)}, t0), p256.Public()},
		{"no subject key id", edit(one, func(c *x509.Certificate) { c.SubjectKeyId = nil }), p256.Public()},
		{"other subject key id", edit(one, func(c *x509.Certificate) { c.SubjectKeyId = []byte{1, 2, 3} }), p256.Public()},
		{"p384 key", fromTemplate(req([]string{"h.example"}, p384.Public()), t0), p384.Public()},
		{"rsa key", fromTemplate(req([]string{"h.example"}, rsaKey.Public()), t0), rsaKey.Public()},
		{"ed25519 key", fromTemplate(req([]string{"h.example"}, edKey.Public()), t0), edKey.Public()},
		{"nanoseconds", fromTemplate(req([]string{"h.example"}, p256.Public()), t0.Add(123456789*time.Nanosecond)), p256.Public()},
		{"local zone", fromTemplate(req([]string{"h.example"}, p256.Public()), t0.In(time.FixedZone("x", 5*3600+1800))), p256.Public()},
		{"short validity", fromTemplate(HostCertRequest{HostID: "h", Names: []string{"h.example"}, PublicKey: p256.Public(), Serial: big.NewInt(1), Validity: time.Hour, Backdate: time.Minute}, t0), p256.Public()},
		{"serial high bit", edit(one, func(c *x509.Certificate) { c.SerialNumber = new(big.Int).Lsh(big.NewInt(0xff), 120) }), p256.Public()},
		{"serial zero", edit(one, func(c *x509.Certificate) { c.SerialNumber = big.NewInt(0) }), p256.Public()},
		{"generalized time", edit(one, func(c *x509.Certificate) {
			c.NotBefore = time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC)
			c.NotAfter = time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
		}), p256.Public()},
		{"utc time bounds", edit(one, func(c *x509.Certificate) {
			c.NotBefore = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
			c.NotAfter = time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)
		}), p256.Public()},
		{"no key usage", edit(one, func(c *x509.Certificate) { c.KeyUsage = 0 }), p256.Public()},
		{"every key usage", edit(one, func(c *x509.Certificate) { c.KeyUsage = 0x1ff }), p256.Public()},
		{"decipher only", edit(one, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDecipherOnly }), p256.Public()},
		{"key agreement", edit(one, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyAgreement }), p256.Public()},
		{"no ext key usage", edit(one, func(c *x509.Certificate) { c.ExtKeyUsage = nil }), p256.Public()},
		{"other ext key usages", edit(one, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny, x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageOCSPSigning}
		}), p256.Public()},
		{"no basic constraints", edit(one, func(c *x509.Certificate) { c.BasicConstraintsValid = false }), p256.Public()},
		{"no sans", edit(one, func(c *x509.Certificate) { c.DNSNames, c.URIs = nil, nil }), p256.Public()},
		{"no extensions", edit(one, func(c *x509.Certificate) {
			c.DNSNames, c.URIs, c.KeyUsage, c.ExtKeyUsage, c.BasicConstraintsValid = nil, nil, 0, nil, false
		}), p256.Public()},
		{"empty subject", edit(one, func(c *x509.Certificate) { c.Subject = pkix.Name{} }), p256.Public()},
		{"non-printable CN", edit(one, func(c *x509.Certificate) { c.Subject.CommonName = "host_1*&ü" }), p256.Public()},
		{"uris", edit(one, func(c *x509.Certificate) {
			c.URIs = append(c.URIs, &url.URL{Scheme: "spiffe", Host: "example.org", Path: "/a b"})
		}), p256.Public()},
		{"ip forms", edit(one, func(c *x509.Certificate) {
			c.IPAddresses = []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("192.0.2.2").To4(), net.ParseIP("::1")}
		}), p256.Public()},
		{"explicit signature algorithm", edit(one, func(c *x509.Certificate) { c.SignatureAlgorithm = x509.UnknownSignatureAlgorithm }), p256.Public()},
	}
	parents := map[string]func(*x509.Certificate) *x509.Certificate{
		"ca":                 func(c *x509.Certificate) *x509.Certificate { return c },
		"ca without SKI":     func(c *x509.Certificate) *x509.Certificate { p := *c; p.SubjectKeyId = nil; return &p },
		"ca without raw DER": func(c *x509.Certificate) *x509.Certificate { p := *c; p.RawSubject = nil; return &p },
	}
	for caName, c := range cas {
		key := c.signerKey().(*ecdsa.PrivateKey)
		alg, _, _, err := ecdsaAlgorithm(key)
		if err != nil {
			t.Fatal(err)
		}
		for pName, parentOf := range parents {
			parent := parentOf(c.Certificate())
			for _, tc := range cases {
				tmpl := tc.tmpl(c.Certificate())
				der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, tc.pub, key)
				if err != nil {
					t.Fatalf("%s/%s/%s: x509.CreateCertificate: %v", caName, pName, tc.name, err)
				}
				want, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				got, err := encodeTBS(tmpl, parent, tc.pub, alg)
				if err != nil {
					t.Errorf("encodeTBS(%s, %s, %s) error: %v", caName, pName, tc.name, err)
					continue
				}
				if !bytes.Equal(got, want.RawTBSCertificate) {
					t.Errorf("encodeTBS(%s, %s, %s) =\n%x\nwant x509's\n%x", caName, pName, tc.name, got, want.RawTBSCertificate)
				}
			}
		}
	}
}

// TestEncodeTBSLeavesOtherTemplatesToX509: a template with a field encodeTBS
// does not cover is refused with errUnsupportedTemplate, and CA.Sign still
// issues it (through x509.CreateCertificate) with a signature that verifies.
func TestEncodeTBSLeavesOtherTemplatesToX509(t *testing.T) {
	c, _ := newCA(t, InitOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	serial, _ := NewSerial()
	base := func() *x509.Certificate {
		tmpl, err := Template(HostCertRequest{HostID: "h-1", Names: []string{"a.example.com"}, PublicKey: key.Public(), Serial: serial}, c.Certificate(), t0)
		if err != nil {
			t.Fatal(err)
		}
		return tmpl
	}
	alg, _, _, _ := ecdsaAlgorithm(c.signerKey().(*ecdsa.PrivateKey))
	for name, f := range map[string]func(*x509.Certificate){
		"organization": func(t *x509.Certificate) { t.Subject.Organization = []string{"o"} },
		"extra extension": func(t *x509.Certificate) {
			t.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}, Value: []byte{5, 0}}}
		},
		"crl distribution":   func(t *x509.Certificate) { t.CRLDistributionPoints = []string{"http://crl.example/ca.crl"} },
		"unknown eku":        func(t *x509.Certificate) { t.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, 3, 4}} },
		"email":              func(t *x509.Certificate) { t.EmailAddresses = []string{"a@example.com"} },
		"non-ascii dns name": func(t *x509.Certificate) { t.DNSNames = []string{"bücher.example"} },
		"sha256 with p384":   func(t *x509.Certificate) { t.SignatureAlgorithm = x509.ECDSAWithSHA256 },
	} {
		tmpl := base()
		f(tmpl)
		if name != "sha256 with p384" {
			if _, err := encodeTBS(tmpl, c.Certificate(), key.Public(), alg); !errors.Is(err, errUnsupportedTemplate) {
				t.Errorf("encodeTBS(%s) error = %v, want errUnsupportedTemplate", name, err)
			}
		}
		cert, err := c.Sign(tmpl, key.Public())
		if name == "non-ascii dns name" {
			if err == nil {
				t.Errorf("Sign(%s) succeeded, want x509's refusal", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("Sign(%s): %v", name, err)
			continue
		}
		if err := cert.CheckSignatureFrom(c.Certificate()); err != nil {
			t.Errorf("Sign(%s) signature does not verify: %v", name, err)
		}
		if name == "sha256 with p384" && cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("Sign(%s) SignatureAlgorithm = %v, want ECDSAWithSHA256", name, cert.SignatureAlgorithm)
		}
	}
}

func BenchmarkEncodeTBS(b *testing.B) {
	c, _ := newCA(b, InitOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	serial, _ := NewSerial()
	tmpl, err := Template(HostCertRequest{HostID: "0d6f3c3e-7c1a-4c55-9a3e-8e1f3f0b6a11", Names: []string{"a.example.com"}, PublicKey: key.Public(), Serial: serial}, c.Certificate(), t0)
	if err != nil {
		b.Fatal(err)
	}
	alg, _, _, _ := ecdsaAlgorithm(c.signerKey().(*ecdsa.PrivateKey))
	b.ReportAllocs()
	for range b.N {
		if _, err := encodeTBS(tmpl, c.Certificate(), key.Public(), alg); err != nil {
			b.Fatal(err)
		}
	}
}
