package enroll

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrBadName marks a host name that is not a valid DNS name.
var ErrBadName = errors.New("invalid host name")

// NormalizeName checks that s is a DNS host name (RFC 1123 labels of letters,
// digits and hyphens, at most 253 characters, not an IP literal) and returns
// it lower-cased without a trailing dot. Every name the primary stores or
// signs went through it.
func NormalizeName(s string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	if n == "" {
		return "", fmt.Errorf("%w: empty", ErrBadName)
	}
	if len(n) > 253 {
		return "", fmt.Errorf("%w: %d characters, at most 253", ErrBadName, len(n))
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return "", fmt.Errorf("%w: %q is an IP address, want a DNS name", ErrBadName, n)
	}
	for _, label := range strings.Split(n, ".") {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrBadName, s, err)
		}
	}
	return n, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label")
	case len(l) > 63:
		return fmt.Errorf("label %q longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has character %q", l, c)
		}
	}
	return nil
}

// CSRNamesMatch checks that a CSR asks for exactly name and nothing else: its
// DNS SANs (if any) are all name, its Subject CN is empty or name, at least
// one of them names it, and it has no IP, URI or e-mail SANs. The names are
// compared case-insensitively.
func CSRNamesMatch(csr *x509.CertificateRequest, name string) error {
	if len(csr.IPAddresses) > 0 || len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return fmt.Errorf("the CSR asks for IP, URI or e-mail names; only %q is allowed", name)
	}
	named := false
	for _, d := range csr.DNSNames {
		if !strings.EqualFold(strings.TrimSuffix(d, "."), name) {
			return fmt.Errorf("the CSR asks for %q; only %q is allowed", d, name)
		}
		named = true
	}
	if cn := csr.Subject.CommonName; cn != "" {
		if !strings.EqualFold(strings.TrimSuffix(cn, "."), name) {
			return fmt.Errorf("the CSR's subject names %q; only %q is allowed", cn, name)
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
