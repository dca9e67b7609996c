package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pkitest"
)

func issue(t *testing.T, ca *x509.Certificate, caKey any, pub any, uris []*url.URL) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "id"}, DNSNames: []string{"h.example.com"}, URIs: uris,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return string(pki.EncodeCert(c))
}

func TestAccept(t *testing.T) {
	root, stranger := pkitest.NewCA(t, "ca"), pkitest.NewCA(t, "other")
	ca, caKey := root.Cert, root.Key
	other, otherKey := stranger.Cert, stranger.Key
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrongKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hostURI := []*url.URL{pki.HostURI("id")}
	for _, tc := range []struct {
		name   string
		pem    string
		errHas string
	}{
		{"good", issue(t, ca, caKey, key.Public(), hostURI), ""},
		{"other CA", issue(t, other, otherKey, key.Public(), hostURI), "does not chain"},
		{"not our key", issue(t, ca, caKey, wrongKey.Public(), hostURI), "do not match"},
		{"no host ID", issue(t, ca, caKey, key.Public(), nil), "no host ID"},
		{"garbage", "not pem", "certificate from the primary"},
	} {
		_, err := Accept(protocol.CertResponse{Certificate: tc.pem}, key, []*x509.Certificate{ca})
		if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("Accept(%s) = %v, want error containing %q", tc.name, err, tc.errHas)
		}
	}
}
