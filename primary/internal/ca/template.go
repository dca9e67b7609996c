package ca

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// Host certificate defaults (SPEC §2).
const (
	DefaultHostValidity = 365 * 24 * time.Hour
	DefaultBackdate     = 5 * time.Minute
	MaxBackdate         = time.Hour
)

// HostCertRequest is what Template needs to build a host certificate.
type HostCertRequest struct {
	HostID    string
	Names     []string         // DNS SANs, already validated by the caller
	PublicKey crypto.PublicKey // from the CSR
	Serial    *big.Int
	Validity  time.Duration // default 365 days when zero
	Backdate  time.Duration // default 5 minutes when zero; capped at 1 hour
}

// Template builds the certificate to sign for a host. It is pure: Subject
// CN = HostID; DNS SANs = Names (lower-cased; an IP literal becomes an IP
// SAN); URI SAN pki.HostURI(HostID); extended key usages TLS client and
// server auth; key usage digitalSignature, plus keyEncipherment for RSA keys;
// NotBefore = now-Backdate (never before the CA's NotBefore); NotAfter =
// min(now+Validity, caCert.NotAfter).
func Template(req HostCertRequest, caCert *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	if req.HostID == "" {
		return nil, errors.New("certificate template: empty host ID")
	}
	if req.PublicKey == nil {
		return nil, fmt.Errorf("certificate template for %s: no public key", req.HostID)
	}
	if req.Serial == nil || req.Serial.Sign() <= 0 {
		return nil, fmt.Errorf("certificate template for %s: serial must be positive", req.HostID)
	}
	if caCert == nil {
		return nil, fmt.Errorf("certificate template for %s: no CA certificate", req.HostID)
	}
	if req.Validity < 0 || req.Backdate < 0 {
		return nil, fmt.Errorf("certificate template for %s: negative validity or backdate", req.HostID)
	}
	if !now.Before(caCert.NotAfter) {
		return nil, fmt.Errorf("certificate template for %s: the CA expired at %s", req.HostID, caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	names, err := normalizeNames(req.Names)
	if err != nil {
		return nil, fmt.Errorf("certificate template for %s: %w", req.HostID, err)
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultHostValidity
	}
	backdate := req.Backdate
	if backdate == 0 {
		backdate = DefaultBackdate
	}
	backdate = min(backdate, MaxBackdate)

	notBefore := now.Add(-backdate)
	if notBefore.Before(caCert.NotBefore) {
		notBefore = caCert.NotBefore
	}
	notAfter := now.Add(validity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}

	usage := x509.KeyUsageDigitalSignature
	if _, ok := req.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).Set(req.Serial),
		Subject:               pkix.Name{CommonName: req.HostID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{pki.HostURI(req.HostID)},
	}
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	return tmpl, nil
}

// normalizeNames lower-cases, trims and de-duplicates names, keeping order.
// IP literals are kept in their canonical text form.
func normalizeNames(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, n := range in {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n == "" {
			return nil, errors.New("empty name")
		}
		if ip, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
			n = ip.Unmap().WithZone("").String()
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}
