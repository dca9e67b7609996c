package console

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Login by certificate (SPEC §2, §11). The console's TLS listener asks
// for a client certificate (the server's TLS configuration: ClientCAs from
// ClientCAs). A request that presents one is logged in as the
// administrator it names only when, checked at every request: it chains
// to one of the fleet's roots for client authentication and is valid now;
// it carries the admin role (a host's or the primary's certificate is
// refused whatever its names); and it is an administrator's certificate
// the store knows (hostcert-primary admin add) that is not revoked. The
// session it opens (an ordinary session cookie, for the CSRF token) is
// bound to that certificate: it works only on a connection presenting it.

// AdminCerts finds administrators' certificates (the store).
type AdminCerts interface {
	AdminCertBySerial(ctx context.Context, serial string) (store.AdminCert, error)
}

// Trust is the fleet's CAs: the roots a certificate must chain to and the
// issuing CAs that may sit between (the CA).
type Trust interface {
	Bundle() []*x509.Certificate
	Issuing() []*x509.Certificate
}

// Audit action of a login by certificate and code of a refused one.
const (
	CodeCertRefused = "admin_cert_refused"
	viaCert         = "certificate"
	viaLink         = "link"
)

// Errors of a certificate login, beside pki's (errors.Is(err, pki.ErrPeer)).
var (
	ErrCertRevoked = errors.New("this administrator certificate is revoked")
	ErrCertUnknown = errors.New("this certificate was not issued by hostcert-primary admin add on this fleet")
	errCertsOff    = errors.New("login by certificate is off on this console")
)

// ClientCAs is the pool the console's TLS listener asks client
// certificates from: the roots and the issuing CAs (so that a browser
// offers the right certificate, and one that sends no chain is still
// verified). The certificate is verified again, to the roots, at each
// request.
func (c *Console) ClientCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	if c.cfg.Trust == nil {
		return pool
	}
	for _, ca := range c.cfg.Trust.Bundle() {
		pool.AddCert(ca)
	}
	for _, ca := range c.cfg.Trust.Issuing() {
		pool.AddCert(ca)
	}
	return pool
}

// verifyAdmin checks a client's chain (leaf first) as of now and returns
// the administrator's name and the certificate's serial.
func (c *Console) verifyAdmin(ctx context.Context, chain []*x509.Certificate, now time.Time) (name, serial string, err error) {
	if c.cfg.Trust == nil || c.cfg.Admins == nil {
		return "", "", errCertsOff
	}
	roots := x509.NewCertPool()
	for _, r := range c.cfg.Trust.Bundle() {
		roots.AddCert(r)
	}
	// The issuing CAs may sit between the leaf and a root, whatever the
	// client sent.
	withIssuers := append(append([]*x509.Certificate(nil), chain...), c.cfg.Trust.Issuing()...)
	if err := pki.VerifyPeer(withIssuers, pki.PeerCheck{Roots: roots, Role: pki.RoleAdmin,
		Usage: x509.ExtKeyUsageClientAuth, At: now}); err != nil {
		return "", "", err
	}
	leaf := chain[0]
	_, name = pki.RoleOf(leaf)
	serial = fmt.Sprintf("%X", leaf.SerialNumber)
	rec, err := c.cfg.Admins.AdminCertBySerial(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return name, serial, ErrCertUnknown
	}
	if err != nil {
		return name, serial, fmt.Errorf("look up administrator certificate %s: %w", serial, err)
	}
	if rec.Name != name || !bytes.Equal(rec.DER, leaf.Raw) {
		return name, serial, ErrCertUnknown
	}
	if rec.RevokedAt != nil {
		return name, serial, ErrCertRevoked
	}
	return name, serial, nil
}

// certSession logs in the request's client certificate: the session of its
// cookie when that session belongs to this very certificate, else a new
// one (fresh reports it: the caller sets its cookie). A certificate that
// fails a check is refused with the reason, audited (at most once a
// second) and logged.
func (c *Console) certSession(r *http.Request) (s *session, id string, err error) {
	now := c.cfg.Now()
	name, serial, err := c.verifyAdmin(r.Context(), r.TLS.PeerCertificates, now)
	src := sourceOf(r)
	if err != nil {
		leaf := r.TLS.PeerCertificates[0]
		c.cfg.Log.Warn().Err(err).Str("source", src).Str("subject", leaf.Subject.CommonName).Msg("console login by certificate refused")
		if c.auditRefusal(now) {
			c.auditLogin(r.Context(), store.Audit{At: now, Actor: "console", Source: src, Action: ActionSession,
				Outcome: "refused", Code: CodeCertRefused,
				Detail: map[string]any{"via": viaCert, "error": errorText(err), "subject": leaf.Subject.CommonName, "serial": fmt.Sprintf("%X", leaf.SerialNumber)}})
		}
		return nil, "", err
	}
	if ck, cerr := r.Cookie(CookieName); cerr == nil {
		if s := c.auth.session(ck.Value, now); s != nil && s.via == viaCert && s.serial == serial {
			return s, "", nil
		}
	}
	id, s, err = c.auth.newSession(name, viaCert, serial, now)
	if err != nil {
		return nil, "", err
	}
	c.auditLogin(r.Context(), store.Audit{At: now, Actor: "console:" + name, Source: src, Action: ActionSession,
		Outcome: "ok", Detail: map[string]any{"via": viaCert, "serial": serial, "expires_at": s.expires.UTC().Format(time.RFC3339)}})
	c.cfg.Log.Info().Str("operator", name).Str("serial", serial).Str("source", src).Msg("console login by certificate")
	return s, id, nil
}

// presentsCert reports whether the request's connection presented a
// client certificate.
func presentsCert(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.PeerCertificates) > 0
}
