package enroll

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

	"github.com/hostcert/hostcert/common/pki"
)

// TestCheckServer: at bootstrap the primary's TLS certificate must chain to
// the confirmed CA, be the primary's (a host's certificate is refused as
// such, even for the primary's name) and hold the primary's name; a name
// mismatch is reported as one, naming the names the certificate holds.
func TestCheckServer(t *testing.T) {
	caKey, _ := pki.GenerateKey(pki.ECDSAP256)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	leaf := func(signer crypto.Signer, parent *x509.Certificate, role *url.URL) *x509.Certificate {
		key, _ := pki.GenerateKey(pki.ECDSAP256)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"primary.example.com", "alias.example.com"}, URIs: []*url.URL{role},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	primary := leaf(caKey, ca, pki.PrimaryURI("p"))
	host := leaf(caKey, ca, pki.HostURI("h"))
	bundle := []*x509.Certificate{ca}

	if err := checkServer(bundle, []*x509.Certificate{primary}, "primary.example.com"); err != nil {
		t.Errorf("checkServer(primary) = %v, want nil", err)
	}
	err = checkServer(bundle, []*x509.Certificate{primary}, "primary.wrong.example")
	var nm *pki.NameMismatchError
	if !errors.As(err, &nm) || errors.Is(err, ErrServerNotUnderCA) || strings.Contains(err.Error(), "does not chain") ||
		!strings.Contains(err.Error(), "primary.example.com, alias.example.com") || !strings.Contains(err.Error(), "not primary.wrong.example") {
		t.Errorf("checkServer(name mismatch) = %v, want a name mismatch naming primary.example.com, alias.example.com", err)
	}
	err = checkServer(bundle, []*x509.Certificate{host}, "primary.example.com")
	var re *pki.RoleError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "host's certificate") {
		t.Errorf("checkServer(a host's certificate) = %v, want a role refusal naming a host's certificate", err)
	}
	if err := checkServer(nil, []*x509.Certificate{primary}, "primary.example.com"); !errors.Is(err, ErrServerNotUnderCA) {
		t.Errorf("checkServer(unconfirmed CA) = %v, want ErrServerNotUnderCA", err)
	}
}
