package ca

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
)

// Host certificate defaults (SPEC §2).
const (
	DefaultHostValidity = 365 * 24 * time.Hour
	DefaultBackdate     = 5 * time.Minute
	MaxBackdate         = time.Hour
)

// HostCertRequest is what Template needs to build a certificate.
type HostCertRequest struct {
	// Role is the certificate's role (pki.RoleHost when empty): the CA
	// alone sets its marker, never from a CSR.
	Role pki.Role
	// HostID is the id of the role marker: a host's or the primary's host
	// ID, or an administrator's name.
	HostID    string
	Names     []string         // SANs (hostname.ForHost for a host; hostname.ForServer, IPs included, for the primary; none for an admin)
	PublicKey crypto.PublicKey // from the CSR
	Serial    *big.Int
	Validity  time.Duration // default 365 days when zero
	Backdate  time.Duration // default 5 minutes when zero; capped at 1 hour
}

// Template builds the certificate to sign for a host, the primary or an
// administrator. It is pure: Subject CN = HostID; DNS SANs = Names in
// canonical form (package hostname: no IP literals; reserved names refused
// for a host); exactly one role marker, pki.RoleURI(Role, HostID); extended
// key usages TLS client and server auth for a host, server auth only for
// the primary, client auth only for an administrator; key usage
// digitalSignature, plus keyEncipherment for RSA keys; the subject key
// identifier (RFC 5280 §4.2.1.2 method 1); NotBefore = now-Backdate (never
// before the CA's NotBefore); NotAfter = min(now+Validity, caCert.NotAfter).
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
	role := req.Role
	if role == pki.RoleNone {
		role = pki.RoleHost
	}
	var eku []x509.ExtKeyUsage
	check := hostname.ForHost
	switch role {
	case pki.RoleHost:
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case pki.RolePrimary:
		eku, check = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, hostname.ForServer
	case pki.RoleAdmin:
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if len(req.Names) > 0 {
			return nil, fmt.Errorf("certificate template for %s: an administrator's certificate carries no host names", req.HostID)
		}
	default:
		return nil, fmt.Errorf("certificate template for %s: unknown role %q", req.HostID, role)
	}
	names, err := normalizeNames(req.Names, check)
	if err != nil {
		return nil, fmt.Errorf("certificate template for %s: %w", req.HostID, err)
	}
	ski, err := subjectKeyID(req.PublicKey)
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
	dnsNames, ips := splitIPs(names)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).Set(req.Serial),
		Subject:               pkix.Name{CommonName: req.HostID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		URIs:                  []*url.URL{pki.RoleURI(role, req.HostID)},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	return tmpl, nil
}

// splitIPs separates the IP addresses (only a primary's names hold any:
// hostname.ForServer) from the DNS names.
func splitIPs(names []string) (dns []string, ips []net.IP) {
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, net.IP(a.AsSlice()))
			continue
		}
		dns = append(dns, n)
	}
	return dns, ips
}

// normalizeNames puts names in canonical form with check (hostname.ForHost
// or hostname.ForServer) and de-duplicates them, keeping order.
func normalizeNames(in []string, check func(string) (string, error)) ([]string, error) {
	var out []string
	seen := make(map[string]bool, len(in))
	for _, raw := range in {
		n, err := check(raw)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}
