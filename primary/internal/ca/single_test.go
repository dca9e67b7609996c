package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/pki"
)

// selfSign is the single CA that older versions of init made: self-signed,
// path length 0, signing host certificates itself.
func selfSign(key crypto.Signer, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	name := pkix.Name{CommonName: caCommonName("hostcert CA", now, ski), Organization: []string{"hostcert"}}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: name, Issuer: name,
		NotBefore: now.Add(-caBackdate), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId: ski, AuthorityKeyId: ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// newSingleCA writes the data directory an older version's init made
// (ca/ca.pem, ca/ca-key.pem, ca/host-id, tls/server*.pem) and loads it.
func newSingleCA(t testing.TB, names ...string) (*CA, string) {
	t.Helper()
	if len(names) == 0 {
		names = []string{"primary.example.com"}
	}
	dir := filepath.Join(t.TempDir(), "data")
	for _, d := range []string{dir, filepath.Join(dir, caDir), filepath.Join(dir, tlsDir)} {
		if err := atomicfile.MkdirPrivate(d); err != nil {
			t.Fatal(err)
		}
	}
	key, err := pki.GenerateKey(pki.ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := selfSign(key, DefaultCAValidity, t0)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(atomicfile.WritePrivate(KeyPath(dir), keyPEM))
	must(atomicfile.WritePrivate(HostIDPath(dir), []byte(uuid.NewString()+"\n")))
	must(atomicfile.WritePrivate(CertPath(dir), pki.EncodeCert(cert)))
	c, err := Load(dir)
	if err != nil {
		t.Fatalf("Load of a single-CA data directory: %v", err)
	}
	if _, err := c.EnsureServerCert(names, t0); err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// signerKey is the current issuing CA's key.
func (c *CA) signerKey() crypto.Signer { return c.h.Load().issuers[0].key }

// caWith is a CA whose only certificate (root and issuer) is cert.
func caWith(cert *x509.Certificate, key crypto.Signer) *CA {
	c := &CA{}
	c.h.Store(newHierarchy([]*x509.Certificate{cert}, nil, []Issuer{{Cert: cert, key: key}}, true))
	return c
}
