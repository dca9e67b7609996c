package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"testing"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
)

// FuzzCSRChecks builds a real, correctly signed CSR from fuzzed subject and
// SAN fields and runs the checks the issuance path applies to it. A CSR the
// checks accept for a name asks for that name and nothing else: every DNS
// SAN and the CN are the name (in any spelling the one host-name normaliser
// maps to it: case, trailing dot, surrounding space), and there is no IP,
// URI or e-mail SAN.
func FuzzCSRChecks(f *testing.F) {
	f.Add("web01.example.com", "web01.example.com", "web01.example.com", "", "", "")
	f.Add("web01.example.com", "", "WEB01.example.com.", "", "", "")
	f.Add("web01.example.com", "web01.example.com", "other.example.com", "", "", "")
	f.Add("web01.example.com", "", "", "127.0.0.1", "", "")
	f.Add("web01.example.com", "", "web01.example.com", "", "urn:hostcert:host:x", "")
	f.Add("web01.example.com", "", "web01.example.com", "", "", "a@b")
	f.Add("web01.example.com", "primary.example.com", "web01.example.com", "", "", "")
	f.Add("web01.example.com", "", "", "", "", "")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, cn, san, ip, uri, email string) {
		n, err := NormalizeName(name)
		if err != nil {
			return
		}
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
		if san != "" {
			tmpl.DNSNames = []string{san}
		}
		if a := net.ParseIP(ip); a != nil {
			tmpl.IPAddresses = []net.IP{a}
		}
		if u, err := url.Parse(uri); err == nil && uri != "" {
			tmpl.URIs = []*url.URL{u}
		}
		if email != "" {
			tmpl.EmailAddresses = []string{email}
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			return // the standard library refuses to encode it: nothing to check
		}
		csr, err := pki.ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		if err != nil {
			return
		}
		if err := CheckKey(csr.PublicKey); err != nil {
			t.Fatalf("CheckKey(P-256) = %v, want nil", err)
		}
		if CSRNamesMatch(csr, n) != nil {
			return
		}
		same := func(s string) bool { return hostname.Key(s) == n }
		if len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) > 0 {
			t.Fatalf("CSRNamesMatch(%q) accepted IP %v, URI %v, e-mail %v", n, csr.IPAddresses, csr.URIs, csr.EmailAddresses)
		}
		for _, d := range csr.DNSNames {
			if !same(d) {
				t.Fatalf("CSRNamesMatch(%q) accepted the DNS SAN %q", n, d)
			}
		}
		if csr.Subject.CommonName != "" && !same(csr.Subject.CommonName) {
			t.Fatalf("CSRNamesMatch(%q) accepted the CN %q", n, csr.Subject.CommonName)
		}
		if len(csr.DNSNames) == 0 && csr.Subject.CommonName == "" {
			t.Fatalf("CSRNamesMatch(%q) accepted a CSR that names nothing", n)
		}
	})
}
