package enroll

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"github.com/hostcert/hostcert/common/hostname"
)

// ErrBadName marks a host name that is not a valid DNS name.
var ErrBadName = hostname.ErrInvalid

// NormalizeName is hostname.ForHost, the one normaliser: the canonical form
// of a name a host certificate may carry, or why it may not (errors match
// hostname.ErrInvalid or hostname.ErrReserved). The primary's own names are
// checked by the Service, which knows them.
func NormalizeName(s string) (string, error) { return hostname.ForHost(s) }

// CSRNamesMatch checks that a CSR asks for exactly name and nothing else: its
// DNS SANs (if any) are all name, its Subject CN is empty or name, at least
// one of them names it, and it has no IP, URI or e-mail SANs (so a CSR can
// never bring a role marker). The names are compared in canonical form.
func CSRNamesMatch(csr *x509.CertificateRequest, name string) error {
	if len(csr.IPAddresses) > 0 || len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return fmt.Errorf("the CSR asks for IP, URI or e-mail names; only %q is allowed", name)
	}
	named := false
	for _, d := range csr.DNSNames {
		if hostname.Key(d) != name {
			return fmt.Errorf("the CSR asks for %s; only %q is allowed", hostname.Quote(d), name)
		}
		named = true
	}
	if cn := csr.Subject.CommonName; cn != "" {
		if hostname.Key(cn) != name {
			return fmt.Errorf("the CSR's subject names %s; only %q is allowed", hostname.Quote(cn), name)
		}
		named = true
	}
	if !named {
		return fmt.Errorf("the CSR names no host; want %q", name)
	}
	return nil
}

// CheckKey accepts the key types a host certificate may carry: ECDSA on
// P-256, P-384 or P-521, RSA of 2048 to 8192 bits, and Ed25519.
func CheckKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("the CSR's ECDSA curve %s is not accepted (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("the CSR's RSA key has %d bits (want 2048 to 8192)", n)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("the CSR's key type %T is not accepted", pub)
}
