// Package renew keeps the host's certificate fresh: when a renewal is due (a
// pure function of the certificate, the renew_before setting and a jitter
// drawn once), how to renew once over mutual TLS, and the long-running loop
// that renews with exponential backoff and otherwise sleeps, waking at least
// hourly to compare the wall clock.
package renew

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/enroll"
	"github.com/hostcert/hostcert/agent/internal/pause"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// JitterFraction is the largest share of renew_before added as jitter.
const JitterFraction = 0.1

// Due is when renewal of cert should start: renewBefore before NotAfter
// (capped at half the certificate's lifetime, so short-lived certificates
// renew at mid-life), moved earlier by jitter×10% of that; jitter is in [0,1)
// and drawn once per certificate (see DueFor).
func Due(cert *x509.Certificate, renewBefore time.Duration, jitter float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	eff := renewBefore
	if eff > life/2 {
		eff = life / 2
	}
	if jitter < 0 || jitter >= 1 {
		jitter = 0
	}
	eff += time.Duration(float64(eff) * JitterFraction * jitter)
	return cert.NotAfter.Add(-eff)
}

// Report is the self-check of the current certificate.
type Report struct {
	HostID      string    `json:"host_id"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	Expired     bool      `json:"expired"`
	Revoked     bool      `json:"revoked"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	RenewalDue  bool      `json:"renewal_due"`
	DueAt       time.Time `json:"renewal_due_at"`
	CRLKnown    bool      `json:"crl_known"`
	CRLStale    bool      `json:"crl_stale"` // past the CRL's NextUpdate
	CRLThisTime time.Time `json:"crl_this_update,omitzero"`
}

// OK is false when the certificate is revoked or expired.
func (r Report) OK() bool { return !r.Revoked && !r.Expired }

// Check is the self-check: pure function of the certificate, the stored CRL
// (nil when none), now and the renewal due time.
func Check(cert *x509.Certificate, crl *x509.RevocationList, now, due time.Time) Report {
	r := Report{
		HostID: pki.HostIDFromCert(cert), Serial: Serial(cert.SerialNumber), NotAfter: cert.NotAfter,
		Expired: !now.Before(cert.NotAfter), DueAt: due, RenewalDue: !now.Before(due),
	}
	if crl != nil {
		r.CRLKnown = true
		r.CRLThisTime = crl.ThisUpdate
		r.CRLStale = !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate)
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				r.Revoked, r.RevokedAt = true, e.RevocationTime
			}
		}
	}
	return r
}

// Serial formats a serial as upper-case hex, like the primary does.
func Serial(n *big.Int) string { return fmt.Sprintf("%X", n) }

// Errors after which renewal cannot succeed: the host needs a reissue.
var (
	ErrExpired = errors.New("certificate expired: renewal impossible, run get-cert with a reissue token")
	ErrRevoked = errors.New("certificate revoked: renewal impossible, run get-cert with a reissue token")
	// ErrSuperseded: the primary issued a newer certificate to this host
	// (to another copy of it, or to a reissue) and only the newest renews.
	ErrSuperseded = errors.New("certificate superseded by a newer one: renewal impossible, run get-cert with a reissue token")
)

// Settings are the renewal settings from the configuration.
type Settings struct {
	RenewBefore time.Duration
	KeepKey     bool
	KeyAlg      pki.KeyAlgorithm
	OtherNames  []string // further names to ask for (config other_names)
}

// Primary is the one call renewal makes to the primary (*client.Client).
type Primary interface {
	Renew(ctx context.Context, req protocol.RenewRequest) (protocol.CertResponse, error)
}

// Store checks and keeps a renewed certificate: the trusted CAs it must
// chain to, the identity files and the state, and the renewal's new key while
// its answer is awaited (*certstore.Store).
type Store interface {
	CA() ([]*x509.Certificate, error)
	// Learn adds the roots a trusted root vouches for (certstore.Store.Learn).
	Learn(offered []*x509.Certificate, now time.Time) ([]*x509.Certificate, error)
	enroll.Saver
	enroll.KeyStore // the new key, pending until its certificate is stored
}

// Disk is what the loop reads between renewals — a certificate another
// process wrote, the stored CRL — and the state it records (*certstore.Store).
type Disk interface {
	Identity() (*certstore.Identity, error)
	CRL() (*x509.RevocationList, error)
	UpdateState(func(*certstore.State)) (certstore.State, error)
}

// Renewer renews the current identity once.
type Renewer struct {
	Store    Store
	Client   Primary
	Identity *atomic.Pointer[certstore.Identity]
	Settings func() Settings
	Now      func() time.Time
	// Trusted, when set, is told the whole trust store after a new root
	// was learnt (the daemon gives it to the client).
	Trusted func([]*x509.Certificate)
	// RefreshCRL, when set, is called (best effort) after a renewal that
	// moved the certificate to another issuing CA: the stored CRL is the
	// previous one's, and this host's health needs its new issuer's.
	RefreshCRL func(ctx context.Context) error
}

// Renew sends a CSR over mutual TLS with the current certificate, stores the
// new certificate and makes it the live identity.
func (r *Renewer) Renew(ctx context.Context) (*certstore.Identity, error) {
	id := r.Identity.Load()
	if id == nil {
		return nil, certstore.ErrNoIdentity
	}
	if !r.Now().Before(id.Cert.NotAfter) {
		return nil, ErrExpired
	}
	set := r.Settings()
	var key crypto.Signer = id.Key
	if !set.KeepKey {
		// The new key is kept as pending until its certificate is stored:
		// a retry after a lost answer asks with the same key, and the
		// primary sends the certificate it already issued for it.
		k, err := enroll.PendingKey(r.Store, set.KeyAlg)
		if err != nil {
			return nil, err
		}
		key = k
	}
	names := AskNames(id.Cert, set.OtherNames)
	csr, err := pki.CreateCSR(key, names[0], names[1:]...)
	if err != nil {
		return nil, err
	}
	resp, err := r.Client.Renew(ctx, protocol.RenewRequest{CSR: string(csr)})
	if err != nil {
		switch {
		case errors.Is(err, &protocol.Error{Code: protocol.CodeHostRevoked}):
			return nil, fmt.Errorf("%w: %w", ErrRevoked, err)
		case errors.Is(err, &protocol.Error{Code: protocol.CodeCertExpired}):
			return nil, fmt.Errorf("%w: %w", ErrExpired, err)
		case errors.Is(err, &protocol.Error{Code: protocol.CodeCertSuperseded}):
			return nil, fmt.Errorf("%w: %w", ErrSuperseded, err)
		}
		return nil, fmt.Errorf("renew %s: %w", pki.HostIDFromCert(id.Cert), err)
	}
	// The answer came over mutual TLS from the verified primary: after a
	// root rotation it carries the new root and its cross certificate,
	// which a trusted root must vouch for before the certificate (from the
	// new root's issuing CA) can be accepted.
	if bundle, err := pki.ParseCerts([]byte(resp.CABundle)); err == nil {
		all, err := r.Store.Learn(bundle, r.Now())
		if err != nil {
			return nil, err
		}
		if all != nil && r.Trusted != nil {
			r.Trusted(all)
		}
	}
	cas, err := r.Store.CA()
	if err != nil {
		return nil, err
	}
	nid, err := enroll.Accept(resp, key, cas)
	if err != nil {
		return nil, err
	}
	if err := enroll.Save(r.Store, nid, resp, r.Now()); err != nil {
		return nil, err
	}
	if err := r.Store.RemovePendingKey(); err != nil {
		return nil, err
	}
	r.Identity.Store(nid)
	if r.RefreshCRL != nil && !bytes.Equal(nid.Cert.AuthorityKeyId, id.Cert.AuthorityKeyId) {
		_ = r.RefreshCRL(ctx) // the CRL loop retries on its own schedule
	}
	return nid, nil
}

// AskNames are the names a renewal asks for: the certificate's names (its
// main name first) and the configured other names it does not carry yet.
func AskNames(cert *x509.Certificate, other []string) []string {
	names := slices.Clone(cert.DNSNames)
	if len(names) == 0 {
		names = []string{cert.Subject.CommonName}
	}
	for _, n := range other {
		if !slices.ContainsFunc(names, func(h string) bool { return strings.EqualFold(h, n) }) {
			names = append(names, n)
		}
	}
	return names
}

// Loop is the long-running renewal part of `run`.
type Loop struct {
	Renewer *Renewer
	Disk    Disk
	Log     zerolog.Logger
	// MaxSleep bounds every sleep so the wall clock is compared at least this
	// often (timers stop while a machine sleeps). Default 1h.
	MaxSleep time.Duration
	// BlockedPoll is how often a revoked/expired agent looks for a reissued
	// certificate on disk (written by get-cert). Default 30s.
	BlockedPoll time.Duration
	// BlockedLogEvery is how often the revoked/expired error is logged. Default 1h.
	BlockedLogEvery time.Duration
	// NewBackOff makes the retry policy; default exponential with jitter, no max elapsed time.
	NewBackOff func() backoff.BackOff
	// OnState, when set, is called after every attempt with its error (the
	// agent's metrics; tests).
	OnState func(err error)

	lastBlockedLog time.Time
	lastDue        time.Time
	notBefore      time.Time         // no renewal before this (set after each renewal)
	refused        *x509.Certificate // the certificate the primary refused to renew for good
	refusedErr     error
}

// DefaultBackOff is exponential (1s doubling up to 10 minutes), ±50% jitter, never giving up.
func DefaultBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = time.Second
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxInterval = 10 * time.Minute
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

func (l *Loop) defaults() {
	if l.MaxSleep <= 0 {
		l.MaxSleep = time.Hour
	}
	if l.BlockedPoll <= 0 {
		l.BlockedPoll = 30 * time.Second
	}
	if l.BlockedLogEvery <= 0 {
		l.BlockedLogEvery = time.Hour
	}
	if l.NewBackOff == nil {
		l.NewBackOff = DefaultBackOff
	}
}

// Run renews whenever due, until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	l.defaults()
	r := l.Renewer
	for {
		l.reloadIdentity()
		now := r.Now()
		id := r.Identity.Load()
		var wait time.Duration
		switch {
		case id == nil:
			l.blocked(now, certstore.ErrNoIdentity)
			wait = l.BlockedPoll
		case l.isBlocked(id, now) != nil:
			l.blocked(now, l.isBlocked(id, now))
			wait = l.BlockedPoll
		default:
			due := DueFor(id.Cert, r.Settings().RenewBefore)
			if due.Before(l.notBefore) {
				due = l.notBefore
			}
			if !due.Equal(l.lastDue) {
				l.lastDue = due
				l.record(func(st *certstore.State) { st.NextRenewal = due })
			}
			if !now.Before(due) {
				err := l.renewWithRetry(ctx)
				if ctx.Err() != nil {
					return nil
				}
				if err == nil {
					l.notBefore = l.earliestNext(r.Now())
				}
				continue
			}
			wait = due.Sub(now)
		}
		if wait > l.MaxSleep {
			wait = l.MaxSleep
		}
		if !pause.For(ctx, wait) {
			return nil
		}
	}
}

// earliestNext keeps a certificate whose renewal is due at once (validity
// shorter than the primary's back-dating, say) from being renewed in a
// tight loop: the next renewal waits min(1 minute, half the remaining life).
func (l *Loop) earliestNext(now time.Time) time.Time {
	id := l.Renewer.Identity.Load()
	if id == nil {
		return now
	}
	gap := id.Cert.NotAfter.Sub(now) / 2
	if gap > time.Minute {
		gap = time.Minute
	}
	return now.Add(gap)
}

// isBlocked says why the identity cannot be renewed, from the clock and the stored CRL.
func (l *Loop) isBlocked(id *certstore.Identity, now time.Time) error {
	if !now.Before(id.Cert.NotAfter) {
		return ErrExpired
	}
	if l.refused != nil && l.refused.Equal(id.Cert) {
		return l.refusedErr
	}
	crl, err := l.Disk.CRL()
	if err == nil && Check(id.Cert, crl, now, now).Revoked {
		return ErrRevoked
	}
	return nil
}

func (l *Loop) blocked(now time.Time, why error) {
	if !l.lastBlockedLog.IsZero() && now.Sub(l.lastBlockedLog) < l.BlockedLogEvery {
		return
	}
	l.lastBlockedLog = now
	msg := "cannot renew; waiting for a reissued certificate"
	if errors.Is(why, certstore.ErrNoIdentity) {
		msg = "no certificate yet: run get-cert; waiting for it"
	}
	l.Log.Error().Err(why).Msg(msg)
	l.record(func(st *certstore.State) { st.LastRenewalError = why.Error() })
}

// reloadIdentity picks up a certificate written by another process (get-cert).
func (l *Loop) reloadIdentity() {
	r := l.Renewer
	id, err := l.Disk.Identity()
	if err != nil {
		return
	}
	cur := r.Identity.Load()
	if cur == nil || !cur.Cert.Equal(id.Cert) {
		if cur != nil {
			l.Log.Info().Str("serial", Serial(id.Cert.SerialNumber)).Msg("new certificate found on disk")
		}
		r.Identity.Store(id)
		l.lastBlockedLog = time.Time{}
	}
}

func (l *Loop) renewWithRetry(ctx context.Context) error {
	r := l.Renewer
	b := backoff.WithContext(l.NewBackOff(), ctx)
	op := func() error {
		l.reloadIdentity()
		if id := r.Identity.Load(); id != nil && r.Now().Before(DueFor(id.Cert, r.Settings().RenewBefore)) {
			return nil // renewed meanwhile (another process)
		}
		l.Log.Info().Msg("renewing certificate")
		id, err := r.Renew(ctx)
		if l.OnState != nil {
			l.OnState(err)
		}
		if err != nil {
			l.record(func(st *certstore.State) { st.LastRenewalError = err.Error() })
			if errors.Is(err, ErrExpired) || errors.Is(err, ErrRevoked) || errors.Is(err, ErrSuperseded) || errors.Is(err, certstore.ErrNoIdentity) {
				if cur := r.Identity.Load(); cur != nil {
					l.refused, l.refusedErr = cur.Cert, err
				}
				return backoff.Permanent(err)
			}
			return err
		}
		l.Log.Info().Str("serial", Serial(id.Cert.SerialNumber)).Time("not_after", id.Cert.NotAfter).Msg("certificate renewed")
		return nil
	}
	notify := func(err error, next time.Duration) {
		l.Log.Warn().Err(err).Dur("retry_in_ms", next).Msg("renewal failed; keeping the current certificate")
	}
	return backoff.RetryNotify(op, b, notify)
}

func (l *Loop) record(f func(*certstore.State)) {
	if _, err := l.Disk.UpdateState(f); err != nil {
		l.Log.Warn().Err(err).Msg("cannot write state")
	}
}
