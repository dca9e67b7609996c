package ca

import (
	"math/big"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/hostcert/hostcert/common/pki"
)

// TestZlint lints, with the RFC 5280, RFC 5480, RFC 5891 and community
// lints of zlint, every kind of certificate and CRL the CA makes — the
// root, issuing and cross-signed CA certificates (ECDSA and RSA), the
// root's CRL, a host certificate (ECDSA, RSA and an
// internationalised name), the primary's TLS certificate and a CRL with
// entries — and wants no error and no warning.
func TestZlint(t *testing.T) {
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{
		IncludeSources: lint.SourceList{lint.RFC5280, lint.RFC5480, lint.RFC5891, lint.Community},
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	type item struct {
		name string
		der  []byte
		crl  bool
	}
	var items []item
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP384, pki.RSA3072} {
		c, _ := newCA(t, InitOptions{KeyAlg: alg, IssuingKeyAlg: alg, Names: []string{"primary.example.com", "alt.example.com"}})
		rootCRLs, err := c.RootCRLs()
		if err != nil || len(rootCRLs) != 1 {
			t.Fatalf("RootCRLs = %d, %v", len(rootCRLs), err)
		}
		items = append(items,
			item{"root CA " + string(alg), c.Root().Raw, false},
			item{"issuing CA " + string(alg), c.Certificate().Raw, false},
			item{"root CRL " + string(alg), rootCRLs[0].DER, true},
			item{"primary TLS certificate under " + string(alg), c.ServerTLS().Leaf.Raw, false})
		for _, hk := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA3072} {
			key, err := pki.GenerateKey(hk)
			if err != nil {
				t.Fatal(err)
			}
			serial, _ := NewSerial()
			tmpl, err := Template(HostCertRequest{
				HostID: "0d6f3c3e-7c1a-4c55-9a3e-8e1f3f0b6a11", Names: []string{"web1.example.com", "xn--bcher-kva.example"},
				PublicKey: key.Public(), Serial: serial,
			}, c.Certificate(), now)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := c.Sign(tmpl, key.Public())
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, item{"host certificate " + string(hk) + " under " + string(alg), cert.Raw, false})
			adminKey, _ := pki.GenerateKey(pki.ECDSAP256)
			atmpl, err := Template(HostCertRequest{Role: pki.RoleAdmin, HostID: "alice", PublicKey: adminKey.Public(), Serial: big.NewInt(7)}, c.Certificate(), now)
			if err != nil {
				t.Fatal(err)
			}
			admin, err := c.Sign(atmpl, adminKey.Public())
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, item{"admin certificate under " + string(alg), admin.Raw, false})
		}
		crl, err := c.CRL([]RevokedEntry{
			{Serial: big.NewInt(0x1234), RevokedAt: now.Add(-time.Hour), Reason: ReasonKeyCompromise},
			{Serial: big.NewInt(0x5678), RevokedAt: now.Add(-time.Minute), Reason: ReasonSuperseded},
			{Serial: big.NewInt(0x9abc), RevokedAt: now.Add(-time.Minute), Reason: ReasonUnspecified},
		}, big.NewInt(3), now, 0)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, item{"CRL with entries under " + string(alg), crl, true})
		// A root rotation: the new root, its cross certificate and issuing CA.
		if _, err := c.RotateRoot(RotateOptions{KeyAlg: alg, IssuingKeyAlg: alg}, now); err != nil {
			t.Fatal(err)
		}
		items = append(items,
			item{"rotated root CA " + string(alg), c.Root().Raw, false},
			item{"cross-signed root CA " + string(alg), c.Cross()[0].Raw, false},
			item{"rotated issuing CA " + string(alg), c.Certificate().Raw, false})
	}

	for _, it := range items {
		var rs *zlint.ResultSet
		if it.crl {
			l, err := zx509.ParseRevocationList(it.der)
			if err != nil {
				t.Fatalf("%s: zcrypto cannot parse it: %v", it.name, err)
			}
			rs = zlint.LintRevocationListEx(l, reg)
		} else {
			c, err := zx509.ParseCertificate(it.der)
			if err != nil {
				t.Fatalf("%s: zcrypto cannot parse it: %v", it.name, err)
			}
			rs = zlint.LintCertificateEx(c, reg)
		}
		ran := 0
		for name, r := range rs.Results {
			switch r.Status {
			case lint.Pass:
				ran++
			case lint.Error, lint.Fatal, lint.Warn:
				t.Errorf("%s: %s: %s %s", it.name, name, r.Status, r.Details)
			}
		}
		if ran == 0 {
			t.Errorf("%s: no lint passed (none applied?)", it.name)
		}
	}
}
