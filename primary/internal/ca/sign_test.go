package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// TestSignMatchesStandardEncoding checks the ECDSA path (sign.go, tbs.go)
// against x509.CreateCertificate for every CA key type: the same
// TBSCertificate content, a signature that verifies with the CA's key, and
// the CA's signature algorithm.
func TestSignMatchesStandardEncoding(t *testing.T) {
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.ECDSAP384, pki.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			c, _ := newCA(t, InitOptions{IssuingKeyAlg: alg})
			key, _ := pki.GenerateKey(pki.ECDSAP256)
			serial, _ := NewSerial()
			tmpl, err := Template(HostCertRequest{HostID: "h-1", Names: []string{"a.example.com"}, PublicKey: key.Public(), Serial: serial}, c.Certificate(), t0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Sign(tmpl, key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if err := got.CheckSignatureFrom(c.Certificate()); err != nil {
				t.Fatalf("Sign(%s CA) signature does not verify: %v", alg, err)
			}
			if pki.AlgorithmOf(c.signerKey()) != alg {
				t.Errorf("issuing CA key = %s, want %s", pki.AlgorithmOf(c.signerKey()), alg)
			}
			wantDER, err := x509.CreateCertificate(rand.Reader, tmpl, c.Certificate(), key.Public(), c.signerKey())
			if err != nil {
				t.Fatal(err)
			}
			want, _ := x509.ParseCertificate(wantDER)
			if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
				t.Errorf("Sign(%s CA) TBSCertificate differs from x509.CreateCertificate's", alg)
			}
			if !bytes.Equal(got.RawIssuer, c.Certificate().RawSubject) {
				t.Error("issuer is not the CA's subject")
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	c, _ := newCA(b, InitOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	serial, _ := NewSerial()
	tmpl, _ := Template(HostCertRequest{HostID: "h-1", Names: []string{"a.example.com"}, PublicKey: key.Public(), Serial: serial}, c.Certificate(), t0)
	b.Run("ca.Sign", func(b *testing.B) {
		for range b.N {
			if _, err := c.Sign(tmpl, key.Public()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x509.CreateCertificate", func(b *testing.B) {
		for range b.N {
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, c.Certificate(), key.Public(), c.signerKey()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClientVerifiesServerChain is what a client pays, on every full
// TLS handshake with the primary, to verify the chain the primary sends
// (its certificate and the issuing CA) when it trusts the whole bundle of
// GET /v1/ca, as a load generator does. Go's chain builder follows both
// paths (the issuing CA as a trust anchor, and as the intermediate sent up
// to the root), so the root's signature is checked every time: with the
// default P-384 root that check dominates the client's cost.
func BenchmarkClientVerifiesServerChain(b *testing.B) {
	for _, rootAlg := range []pki.KeyAlgorithm{pki.ECDSAP384, pki.ECDSAP256} {
		b.Run("root="+string(rootAlg), func(b *testing.B) {
			c, _ := newCA(b, InitOptions{KeyAlg: rootAlg})
			now := t0.Add(time.Hour)
			if _, err := c.EnsureServerCert([]string{"primary.example.com"}, now); err != nil {
				b.Fatal(err)
			}
			leaf := c.ServerTLS().Leaf
			anchors, sent := x509.NewCertPool(), x509.NewCertPool()
			bundle, err := pki.ParseCerts(c.BundlePEM())
			if err != nil {
				b.Fatal(err)
			}
			for _, cert := range bundle {
				anchors.AddCert(cert)
			}
			sent.AddCert(c.Certificate())
			opts := x509.VerifyOptions{Roots: anchors, Intermediates: sent, DNSName: "primary.example.com", CurrentTime: now}
			b.ReportAllocs()
			for range b.N {
				if _, err := leaf.Verify(opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
