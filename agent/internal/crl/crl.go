// Package crl keeps the agent's copy of the primary's revocation list fresh:
// it fetches /v1/info (the level, hence the refresh interval) and /v1/crl,
// accepts only a CRL signed by the trusted CA and not older than the stored
// one, and stores it for self-check. The loop refreshes at the interval the
// primary's level implies (SPEC §6) and says loudly when this host's own
// certificate appears on the list.
package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/health"
	"github.com/hostcert/hostcert/agent/internal/pause"
	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// ErrOlder is returned when the primary serves a CRL older than the stored one.
var ErrOlder = errors.New("CRL from the primary is older than the stored one")

// ErrStale is returned when the CRL the primary serves (fetched, or the
// stored one it confirmed as current) is past its next update: the refresh
// did not make this host's revocation status fresh, and is retried.
var ErrStale = errors.New("the primary serves a CRL past its next update")

// Primary is what the CRL code asks of the primary (*client.Client).
type Primary interface {
	Info(ctx context.Context) (protocol.Info, error)
	// CRL is the CRL of the CA with pki.KeyID issuer ("" the current
	// issuing CA's). With held (a CRL this host holds) the request is
	// conditional: notModified says held is the one served (HTTP 304), and
	// no bytes come back.
	CRL(ctx context.Context, issuer string, held *x509.RevocationList) (der []byte, notModified bool, err error)
	// CABundle is GET /v1/ca over the verified connection.
	CABundle(ctx context.Context) ([]*x509.Certificate, error)
}

// Store holds the trusted CAs, this host's certificate and the stored CRLs
// (*certstore.Store).
type Store interface {
	CA() ([]*x509.Certificate, error)
	Identity() (*certstore.Identity, error)
	CRL() (*x509.RevocationList, error)
	RootCRL() (*x509.RevocationList, error)
	WriteCRL(*x509.RevocationList) error
	WriteRootCRL(*x509.RevocationList) error
	// Learn adds the roots a trusted root vouches for (certstore.Store.Learn).
	Learn(offered []*x509.Certificate, now time.Time) ([]*x509.Certificate, error)
}

// States is the agent's state file (*certstore.Store).
type States interface {
	State() (certstore.State, error)
	UpdateState(func(*certstore.State)) (certstore.State, error)
}

// Refresher fetches and stores the CRL once.
type Refresher struct {
	Store  Store
	State  States
	Client Primary
	Now    func() time.Time
	// Trusted, when set, is told the whole trust store after a new root
	// was learnt (the daemon gives it to the client).
	Trusted func([]*x509.Certificate)
}

// Refresh updates the level from /v1/info and the CRL from /v1/crl.
func (r *Refresher) Refresh(ctx context.Context) (*x509.RevocationList, error) {
	info, infoErr := r.Client.Info(ctx)
	cas, err := r.Store.CA()
	if err != nil {
		return nil, err
	}
	// The issuing CAs: this host's own chain, and those the primary serves
	// (over the verified connection) that a trusted root signed.
	var issuers []*x509.Certificate
	issuer := ""
	if id, err := r.Store.Identity(); err == nil {
		issuers = append(issuers, underRoots(id.Chain, cas)...)
		issuer = pki.KeyID(id.Cert.AuthorityKeyId)
	}
	if bundle, err := r.Client.CABundle(ctx); err == nil {
		// Fetched over the verified connection: a new root that a trusted
		// root vouches for joins the trust store.
		all, err := r.Store.Learn(bundle, r.Now())
		if err != nil {
			return nil, err
		}
		if all != nil {
			cas = all
			if r.Trusted != nil {
				r.Trusted(all)
			}
		}
		issuers = append(issuers, underRoots(bundle, cas)...)
	}
	held, _ := r.Store.CRL()
	der, same, err := r.Client.CRL(ctx, issuer, held)
	if err != nil {
		r.recordErr(err)
		return nil, fmt.Errorf("refresh crl: %w", err)
	}
	if same {
		// 304: the stored CRL is the one served; it is checked again
		// below like a fetched one (the trust store may have changed).
		der = held.Raw
	}
	list, err := certstore.VerifyCRL(der, append(slices.Clone(cas), issuers...))
	if err != nil {
		r.recordErr(err)
		return nil, fmt.Errorf("refresh crl: %w", err)
	}
	// A CRL signed by an issuing CA: the root's CRL says whether that
	// issuing CA itself is revoked.
	if signer := signerOf(list, issuers); signer != nil {
		rootID := pki.KeyID(signer.AuthorityKeyId)
		rheld, _ := r.Store.RootCRL()
		rder, rsame, err := r.Client.CRL(ctx, rootID, rheld)
		if err != nil {
			r.recordErr(err)
			return nil, fmt.Errorf("refresh root crl: %w", err)
		}
		if rsame {
			rder = rheld.Raw
		}
		rlist, err := certstore.VerifyCRL(rder, cas)
		if err != nil {
			r.recordErr(err)
			return nil, fmt.Errorf("refresh root crl: %w", err)
		}
		if !rsame {
			if err := r.Store.WriteRootCRL(rlist); err != nil {
				return nil, err
			}
		}
	}
	if old, err := r.Store.CRL(); err == nil && old.Number != nil && list.Number != nil && list.Number.Cmp(old.Number) < 0 {
		r.recordErr(ErrOlder)
		return nil, fmt.Errorf("refresh crl: %w (number %v < %v)", ErrOlder, list.Number, old.Number)
	}
	if !same {
		if err := r.Store.WriteCRL(list); err != nil {
			return nil, err
		}
	}
	now := r.Now()
	if !list.NextUpdate.IsZero() && now.After(list.NextUpdate) {
		// Stored (when newer) but not fresh: self-check keeps saying it
		// cannot tell, and the last refresh is not moved forward.
		err := fmt.Errorf("refresh crl: %w (next update %s)", ErrStale, list.NextUpdate.UTC().Format(time.RFC3339))
		r.recordErr(err)
		return nil, err
	}
	_, err = r.State.UpdateState(func(st *certstore.State) {
		if infoErr == nil {
			if info.Level != "" {
				st.Level = info.Level
			}
			if info.CRLRefreshSeconds > 0 {
				st.CRLRefreshSeconds = info.CRLRefreshSeconds
			}
		}
		st.LastCRLRefresh = now
		st.LastCRLError = ""
		st.NextCRLRefresh = now.Add(st.CRLInterval())
	})
	return list, err
}

// underRoots keeps the CA certificates of certs that one of roots signed
// (and that are not roots themselves).
func underRoots(certs, roots []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if !c.IsCA || slices.ContainsFunc(roots, c.Equal) {
			continue
		}
		for _, r := range roots {
			if bytes.Equal(c.RawIssuer, r.RawSubject) && c.CheckSignatureFrom(r) == nil {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// signerOf is the one of issuers that signed list, or nil.
func signerOf(list *x509.RevocationList, issuers []*x509.Certificate) *x509.Certificate {
	for _, c := range issuers {
		if list.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

func (r *Refresher) recordErr(err error) {
	_, _ = r.State.UpdateState(func(st *certstore.State) { st.LastCRLError = err.Error() })
}

// Loop is the long-running CRL part of `run`.
type Loop struct {
	Refresher *Refresher
	Identity  *atomic.Pointer[certstore.Identity]
	Log       zerolog.Logger
	MaxSleep  time.Duration // default 1h: the wall clock is compared at least this often
	// NewBackOff makes the retry policy after a failed refresh.
	NewBackOff func() backoff.BackOff
}

// Run refreshes whenever the interval has passed, until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	if l.MaxSleep <= 0 {
		l.MaxSleep = time.Hour
	}
	if l.NewBackOff == nil {
		l.NewBackOff = renew.DefaultBackOff
	}
	r := l.Refresher
	var b backoff.BackOff
	for {
		st, err := r.State.State()
		if err != nil {
			l.Log.Warn().Err(err).Msg("cannot read state")
		}
		now := r.Now()
		next := st.LastCRLRefresh.Add(st.CRLInterval())
		if _, err := r.Store.CRL(); err != nil {
			next = now // nothing stored yet
		}
		wait := next.Sub(now)
		if !now.Before(next) {
			list, err := r.Refresh(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				if b == nil {
					b = l.NewBackOff()
				}
				wait = b.NextBackOff()
				l.Log.Warn().Err(err).Dur("retry_in_ms", wait).Msg("crl refresh failed; keeping the stored crl")
			default:
				b = nil
				l.Log.Debug().Time("this_update", list.ThisUpdate).Msg("crl refreshed")
				l.checkSelf(list, now)
				continue
			}
		}
		if wait > l.MaxSleep {
			wait = l.MaxSleep
		}
		if !pause.For(ctx, wait) {
			return nil
		}
	}
}

func (l *Loop) checkSelf(list *x509.RevocationList, now time.Time) {
	id := l.Identity.Load()
	if id == nil {
		return
	}
	if rep := renew.Check(id.Cert, list, now, now); rep.Revoked {
		l.Log.Error().Str("serial", rep.Serial).Str("host_id", rep.HostID).Time("revoked_at", rep.RevokedAt).
			Msg("this host's certificate is revoked; run get-cert with a reissue token")
		return
	}
	// Its issuing CA revoked by the root (ca revoke-issuing): the
	// certificate is revoked with it and renews no more.
	cas, err := l.Refresher.Store.CA()
	if err != nil {
		return
	}
	root, err := l.Refresher.Store.RootCRL()
	if err != nil {
		return
	}
	if rep := health.Check(health.Input{Cert: id.Cert, Chain: id.Chain, CAs: cas, CRL: list, RootCRL: root, Now: now}); rep.IssuingCARevoked {
		l.Log.Error().Str("serial", rep.Serial).Str("host_id", rep.HostID).
			Msg("this host's issuing ca is revoked, and its certificate with it; run get-cert with a reissue token")
	}
}
