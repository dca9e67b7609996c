package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Role is what a certificate the hostcert CA issued may be used as (SPEC §2).
//
// The role is carried by exactly one URI SAN of the form
// urn:hostcert:<role>:<id>:
//
//	urn:hostcert:host:<host-id>        a host (agent) certificate
//	urn:hostcert:primary:<host-id>     the primary's TLS server certificate
//	urn:hostcert:admin:<admin-name>    an administrator's client certificate (console)
//
// Only the CA writes these URIs: the primary refuses any CSR that asks for a
// URI SAN and builds the certificate's SANs itself, so no role can obtain
// another role's marker. The marker does not depend on which CA signed the
// certificate: a certificate keeps its role across an issuing-CA or root
// rotation, and verifiers check the chain (to any CA they trust) and the role
// separately. A certificate with no marker, with two or more markers, or
// with a marker of an unknown role has no role and passes no role check.
type Role string

// The roles.
const (
	RoleNone    Role = ""
	RoleHost    Role = "host"
	RolePrimary Role = "primary"
	RoleAdmin   Role = "admin"
)

// roleURNPrefix starts every role marker (compared case-insensitively: the
// scheme and the namespace of a URN are case-insensitive, RFC 8141).
const roleURNPrefix = "hostcert:"

// RoleURI is the marker of role for id (a host ID or an admin's name).
func RoleURI(role Role, id string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: roleURNPrefix + string(role) + ":" + id}
}

// HostURI is the URI SAN every host certificate carries: urn:hostcert:host:<host-id>.
func HostURI(hostID string) *url.URL { return RoleURI(RoleHost, hostID) }

// PrimaryURI is the marker of the primary's TLS certificate: urn:hostcert:primary:<host-id>.
func PrimaryURI(hostID string) *url.URL { return RoleURI(RolePrimary, hostID) }

// AdminURI is the marker of an administrator's certificate: urn:hostcert:admin:<name>.
func AdminURI(name string) *url.URL { return RoleURI(RoleAdmin, name) }

// RoleOf returns the role of c and the id its marker names, or RoleNone and
// "" when c does not carry exactly one marker of a known role with a
// non-empty id.
func RoleOf(c *x509.Certificate) (Role, string) {
	if c == nil {
		return RoleNone, ""
	}
	var (
		role  Role
		id    string
		found int
	)
	for _, u := range c.URIs {
		r, i, ok := parseRoleURI(u)
		if !ok {
			continue
		}
		found++
		role, id = r, i
	}
	if found != 1 || id == "" {
		return RoleNone, ""
	}
	switch role {
	case RoleHost, RolePrimary, RoleAdmin:
		return role, id
	}
	return RoleNone, ""
}

// parseRoleURI reports whether u is a hostcert role marker (of any role,
// known or not) and splits it.
func parseRoleURI(u *url.URL) (Role, string, bool) {
	if u == nil || !strings.EqualFold(u.Scheme, "urn") {
		return "", "", false
	}
	rest := u.Opaque
	if len(rest) < len(roleURNPrefix) || !strings.EqualFold(rest[:len(roleURNPrefix)], roleURNPrefix) {
		return "", "", false
	}
	rest = rest[len(roleURNPrefix):]
	role, id, _ := strings.Cut(rest, ":")
	return Role(strings.ToLower(role)), id, true
}

// HostIDFromCert returns the host ID a host certificate was issued for, from
// its role marker, or "" when c is not a host-role certificate.
func HostIDFromCert(c *x509.Certificate) string {
	if r, id := RoleOf(c); r == RoleHost {
		return id
	}
	return ""
}

// ErrPeer marks every error VerifyPeer returns, so that a caller can tell a
// certificate refusal from a network failure.
var ErrPeer = errors.New("peer certificate refused")

// RoleError is a certificate that chains to a trusted CA but does not carry
// the role the verifier expects.
type RoleError struct {
	Want  Role
	Got   Role   // RoleNone when the certificate has no (single) marker
	ID    string // the id of its marker
	Names []string
}

func (e *RoleError) Error() string {
	what := "a certificate with no hostcert role"
	switch e.Got {
	case RoleHost:
		what = "a host's certificate (host ID " + e.ID + ")"
	case RolePrimary:
		what = "the primary's certificate"
	case RoleAdmin:
		what = "an administrator's certificate (" + e.ID + ")"
	}
	if len(e.Names) > 0 {
		what += " for " + strings.Join(e.Names, ", ")
	}
	return fmt.Sprintf("the peer presented %s, not a %s certificate: refused", what, e.Want)
}

func (e *RoleError) Is(target error) bool { return target == ErrPeer }

// NameMismatchError is a certificate that chains to a trusted CA and has the
// expected role but does not hold the name the peer was reached by.
type NameMismatchError struct {
	Name  string   // the name the peer was reached by
	Names []string // the names the certificate holds
}

func (e *NameMismatchError) Error() string {
	held := "no names"
	if len(e.Names) > 0 {
		held = strings.Join(e.Names, ", ")
	}
	return fmt.Sprintf("the certificate is for %s, not %s (TLS name mismatch: check the primary's name in the agent's config, or add the name with `hostcert-primary serve --name`)", held, e.Name)
}

func (e *NameMismatchError) Is(target error) bool { return target == ErrPeer }

// ChainError is a certificate that does not chain to a trusted CA (or is
// expired, or lacks the key usage).
type ChainError struct{ Err error }

func (e *ChainError) Error() string {
	return "the certificate does not chain to the trusted CA: " + e.Err.Error()
}
func (e *ChainError) Unwrap() error        { return e.Err }
func (e *ChainError) Is(target error) bool { return target == ErrPeer }

// PeerCheck says what VerifyPeer expects of a peer.
type PeerCheck struct {
	Roots *x509.CertPool
	Role  Role
	// Name, when set, must be held by the certificate (DNS or IP SAN).
	Name string
	// Usage is the extended key usage the chain must allow.
	Usage x509.ExtKeyUsage
	// At is the verification time; zero means now.
	At time.Time
}

// VerifyPeer checks a TLS peer's chain (leaf first) in the order that makes
// the error the most useful: it chains to Roots for Usage (*ChainError), it
// has Role (*RoleError), and it holds Name (*NameMismatchError). Every error
// matches errors.Is(err, ErrPeer).
func VerifyPeer(chain []*x509.Certificate, want PeerCheck) error {
	if len(chain) == 0 {
		return &ChainError{Err: errors.New("no certificate presented")}
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: want.Roots, Intermediates: inter, CurrentTime: want.At,
		KeyUsages: []x509.ExtKeyUsage{want.Usage},
	}); err != nil {
		return &ChainError{Err: err}
	}
	if err := RequireRole(leaf, want.Role); err != nil {
		return err
	}
	if want.Name != "" {
		if err := leaf.VerifyHostname(want.Name); err != nil {
			return &NameMismatchError{Name: want.Name, Names: CertNames(leaf)}
		}
	}
	return nil
}

// RequireRole returns a *RoleError unless c carries exactly the role want.
// It does not check the chain: call it on a verified certificate.
func RequireRole(c *x509.Certificate, want Role) error {
	got, id := RoleOf(c)
	if want != RoleNone && got == want {
		return nil
	}
	return &RoleError{Want: want, Got: got, ID: id, Names: CertNames(c)}
}

// CertNames are the DNS and IP SANs of c, in that order.
func CertNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
