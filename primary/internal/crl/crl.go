// Package crl keeps the primary's certificate revocation lists fresh — one
// per issuing CA, listing the host certificates it issued, and the roots'
// (signed when a root's key is at hand) — : it regenerates them at start-up, at least hourly, on demand
// (Refresh: an admin revocation returns only once the CRL served lists it)
// and within a second after a reissue's revocations (Trigger), and serves
// the current one from memory.
package crl

import (
	"context"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Defaults (SPEC §6).
const (
	DefaultValidity = 7 * 24 * time.Hour
	DefaultInterval = time.Hour
	// settle coalesces a burst of revocations into one regeneration.
	settle = 500 * time.Millisecond
	// retry is the wait after a failed regeneration.
	retry = 30 * time.Second
)

// Source lists what the CRL must contain and numbers it.
type Source interface {
	// EachRevoked calls fn with every certificate revoked and not
	// expired at now, one at a time.
	EachRevoked(ctx context.Context, now time.Time, fn func(store.Revocation) error) error
	NextCRLNumber(ctx context.Context) (*big.Int, error)
}

// Shared is the store several primary nodes share (PostgreSQL). Each CRL
// number is allocated in the transaction that reads the revocations it
// lists, each node publishes the CRLs it signs, and before serving one a
// node checks that no node published a newer one: so a client that moves
// between nodes never sees a CRL number go down.
type Shared interface {
	CRLSnapshot(ctx context.Context, now time.Time, start func(), fn func(store.Revocation) error) (*big.Int, error)
	PublishCRLs(ctx context.Context, crls []store.StoredCRL) error
	NewerCRL(ctx context.Context, issuer string, number int64) (store.StoredCRL, bool, error)
}

// sharedRead bounds the check for a newer CRL; after a failed check the
// node serves its own CRLs without checking for sharedPause (the store is
// unreachable: a client should not wait on it for a CRL).
const (
	sharedRead  = time.Second
	sharedPause = 5 * time.Second
)

// Signer signs one CRL per issuing CA (the current one first) and keeps
// the roots' CRLs.
type Signer interface {
	CRLs(entries []ca.RevokedEntry, number *big.Int, now time.Time, validity time.Duration) ([]ca.SignedCRL, error)
	RefreshRootCRL(now time.Time) (bool, error)
	RootCRLs() ([]ca.SignedCRL, error)
}

// Set is every CRL of one regeneration: the current issuing CA's first,
// then the older issuing CAs', then the roots'.
type Set struct {
	Lists []*List
}

// ByIssuer is the CRL signed by the CA with ca.ID id, or nil.
func (s *Set) ByIssuer(id string) *List {
	for _, l := range s.Lists {
		if l.Issuer == id {
			return l
		}
	}
	return nil
}

// List is one generated CRL.
type List struct {
	Issuer     string // ca.ID of the CA that signed it
	DER        []byte
	PEM        []byte
	Number     *big.Int
	Entries    int
	ThisUpdate time.Time
	NextUpdate time.Time
	// ETag and PEMETag are the entity tags of DER and PEM
	// (protocol.CRLETag), computed once: a conditional GET costs no hash.
	ETag, PEMETag string
	// Root: a root's CRL (it lists revoked issuing CAs; signed with the
	// root's key, which may be offline).
	Root bool
	// fleet: an issuing CA's CRL, numbered and published through the
	// shared store (not a root's).
	fleet bool
}

// RootWarnBefore is how long before a root's CRL passes its next update the
// primary warns at each regeneration (and the packaged alert fires): a root
// kept offline needs `ca sign-root-crl --root-key FILE` by then.
const RootWarnBefore = 30 * 24 * time.Hour

// Roots is the roots' latest CRLs.
func (p *Publisher) Roots() []*List {
	var out []*List
	if s := p.current.Load(); s != nil {
		for _, l := range s.Lists {
			if l.Root {
				out = append(out, l)
			}
		}
	}
	return out
}

// warnRootCRLs logs every root CRL that is past its next update (agents
// under that root's issuing CAs can then tell nothing) or will be within
// RootWarnBefore.
func (p *Publisher) warnRootCRLs(set *Set, now time.Time) {
	for _, l := range set.Lists {
		if !l.Root || l.NextUpdate.IsZero() || l.NextUpdate.Sub(now) > RootWarnBefore {
			continue
		}
		ev := p.log.Warn()
		msg := "root crl expires soon: sign it again with the root's key (hostcert-primary ca sign-root-crl --root-key FILE)"
		if !now.Before(l.NextUpdate) {
			ev = p.log.Error()
			msg = "root crl past its next update: agents cannot tell whether their issuing ca is revoked; sign it again with the root's key (hostcert-primary ca sign-root-crl --root-key FILE)"
		}
		ev.Str("root", l.Issuer).Time("next_update", l.NextUpdate).Msg(msg)
	}
}

// Publisher regenerates and holds the current CRL. Safe for concurrent use.
type Publisher struct {
	src      Source
	signer   Signer
	log      zerolog.Logger
	validity time.Duration
	interval time.Duration
	now      func() time.Time

	current atomic.Pointer[Set]
	trigger chan struct{}

	shared     Shared       // nil: one node (UseShared)
	sharedDown atomic.Int64 // Unix nanoseconds until which the shared store is not asked

	// regen is held by the one regeneration running; started counts the
	// regenerations started and lastOK is the number of the latest one
	// that succeeded (guarded by regen).
	regen   chan struct{}
	started atomic.Uint64
	lastOK  uint64
}

// New returns a Publisher. validity and interval 0 take the defaults.
func New(src Source, signer Signer, log zerolog.Logger, validity, interval time.Duration) *Publisher {
	if validity <= 0 {
		validity = DefaultValidity
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Publisher{
		src: src, signer: signer, log: log, validity: validity, interval: interval, now: time.Now,
		trigger: make(chan struct{}, 1), regen: make(chan struct{}, 1),
	}
}

// UseShared makes the Publisher number, publish and serve its CRLs through
// the store other nodes share. Call before the first Refresh.
func (p *Publisher) UseShared(sh Shared) { p.shared = sh }

// Current is the current issuing CA's latest CRL, nil before the first
// Refresh succeeded.
func (p *Publisher) Current() *List {
	if s := p.current.Load(); s != nil && len(s.Lists) > 0 {
		return p.latest(s.Lists[0].Issuer, s.Lists[0])
	}
	return nil
}

// ByIssuer is the latest CRL of the CA with ca.ID id (an issuing CA or a
// root), nil when there is none.
func (p *Publisher) ByIssuer(id string) *List {
	if s := p.current.Load(); s != nil {
		return p.latest(id, s.ByIssuer(id))
	}
	return nil
}

// latest is l, this node's CRL of the CA id (nil: none), or the newer
// CRL of that CA another node published (then kept as this node's: it may
// be of an issuing CA this node has not adopted yet). When the shared
// store cannot be asked, l.
func (p *Publisher) latest(id string, l *List) *List {
	if p.shared == nil || (l != nil && !l.fleet) || time.Now().UnixNano() < p.sharedDown.Load() {
		return l
	}
	var above int64
	if l != nil {
		above = l.Number.Int64()
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedRead)
	defer cancel()
	sc, ok, err := p.shared.NewerCRL(ctx, id, above)
	if err != nil {
		p.sharedDown.Store(time.Now().Add(sharedPause).UnixNano())
		p.log.Warn().Err(err).Str("issuer", id).Msg("checking for a newer crl of another node; serving this node's")
		return l
	}
	if !ok {
		return l
	}
	nl, err := newList(sc.Issuer, sc.DER, true)
	if err != nil {
		p.log.Error().Err(err).Str("issuer", sc.Issuer).Msg("reading another node's crl; serving this node's")
		return l
	}
	for {
		cur := p.current.Load()
		next := &Set{Lists: make([]*List, len(cur.Lists))}
		replaced, found := false, false
		for i, x := range cur.Lists {
			next.Lists[i] = x
			if x.Issuer == nl.Issuer {
				found = true
				if x.Number.Cmp(nl.Number) < 0 {
					next.Lists[i], replaced = nl, true
				}
			}
		}
		if !found {
			next.Lists, replaced = append(next.Lists, nl), true
		}
		if !replaced || p.current.CompareAndSwap(cur, next) {
			return nl
		}
	}
}

// newList parses one signed CRL.
func newList(issuer string, der []byte, fleet bool) (*List, error) {
	h, err := readHeader(der)
	if err != nil {
		return nil, fmt.Errorf("crl: read the CRL of %s: %w", issuer, err)
	}
	return &List{
		Issuer: issuer, DER: der, PEM: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}),
		Number: h.number, Entries: h.entries, ThisUpdate: h.thisUpdate, NextUpdate: h.next,
		ETag: protocol.CRLETag(der), PEMETag: protocol.CRLETagPEM(der),
		Root: !fleet, fleet: fleet,
	}, nil
}

// Trigger asks Run to regenerate the CRL soon. It never blocks.
func (p *Publisher) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Refresh regenerates the CRL, so that when it returns nil the CRL served
// lists every revocation committed before the call. Concurrent callers share
// the work: a regeneration that started after a caller's call began answers
// for that caller too.
func (p *Publisher) Refresh(ctx context.Context) error {
	seen := p.started.Load()
	select {
	case p.regen <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("crl: wait for the running regeneration: %w", ctx.Err())
	}
	defer func() { <-p.regen }()
	if p.lastOK > seen {
		return nil
	}
	n := p.started.Add(1)
	if err := p.regenerate(ctx); err != nil {
		return err
	}
	p.lastOK = n
	return nil
}

// regenerate builds, signs and publishes a CRL; the caller holds p.regen.
func (p *Publisher) regenerate(ctx context.Context) error {
	entries, number, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	now := p.now()
	signed, err := p.signer.CRLs(entries, number, now, p.validity)
	if err != nil {
		return fmt.Errorf("crl: sign: %w", err)
	}
	if renewed, err := p.signer.RefreshRootCRL(now); err != nil {
		p.log.Error().Err(err).Msg("re-signing the root's crl")
	} else if renewed {
		p.log.Info().Msg("root crl re-signed")
	}
	roots, err := p.signer.RootCRLs()
	if err != nil {
		return fmt.Errorf("crl: root CRLs: %w", err)
	}
	set := &Set{}
	var publish []store.StoredCRL
	for i, s := range append(signed, roots...) {
		l, err := newList(s.ID, s.DER, i < len(signed))
		if err != nil {
			return err
		}
		set.Lists = append(set.Lists, l)
		if l.fleet {
			publish = append(publish, store.StoredCRL{Issuer: l.Issuer, Number: l.Number.Int64(), DER: l.DER})
		}
	}
	// Published before served: a node serves no CRL that another node
	// could not find newer.
	if p.shared != nil {
		if err := p.shared.PublishCRLs(ctx, publish); err != nil {
			return fmt.Errorf("crl: %w", err)
		}
	}
	p.warnRootCRLs(set, now)
	p.current.Store(set)
	p.log.Info().Str("number", number.String()).Int("entries", len(entries)).Int("crls", len(set.Lists)).Msg("crl regenerated")
	return nil
}

// entries reads the revoked certificates as CRL entries, streaming them
// from the store: the list in memory is the entries, not the certificates.
func (p *Publisher) entries(ctx context.Context) ([]ca.RevokedEntry, error) {
	var entries []ca.RevokedEntry
	err := p.src.EachRevoked(ctx, p.now(), func(r store.Revocation) error {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return fmt.Errorf("crl: revoked certificate with bad serial %q", r.Serial)
		}
		// Each certificate is listed on its issuing CA's CRL only.
		entries = append(entries, ca.RevokedEntry{Serial: serial, RevokedAt: r.RevokedAt, Reason: r.Reason, Issuer: authorityKeyID(r.DER)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("crl: list revoked certificates: %w", err)
	}
	return entries, nil
}

// snapshot lists the CRL's entries and numbers it: on a shared store in
// one transaction, so that a higher number never lists less.
func (p *Publisher) snapshot(ctx context.Context) ([]ca.RevokedEntry, *big.Int, error) {
	if p.shared == nil {
		entries, err := p.entries(ctx)
		if err != nil {
			return nil, nil, err
		}
		number, err := p.src.NextCRLNumber(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("crl: next number: %w", err)
		}
		return entries, number, nil
	}
	var entries []ca.RevokedEntry
	number, err := p.shared.CRLSnapshot(ctx, p.now(), func() { entries = entries[:0] }, func(r store.Revocation) error {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return fmt.Errorf("crl: revoked certificate with bad serial %q", r.Serial)
		}
		entries = append(entries, ca.RevokedEntry{Serial: serial, RevokedAt: r.RevokedAt, Reason: r.Reason, Issuer: authorityKeyID(r.DER)})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("crl: %w", err)
	}
	return entries, number, nil
}

// Run regenerates the CRL every interval and soon after every Trigger until
// ctx ends. A failed regeneration is logged and retried; the last good CRL
// stays served.
func (p *Publisher) Run(ctx context.Context) error {
	timer := time.NewTimer(p.interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.trigger:
			// Let a burst of revocations land, then regenerate once.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(settle):
			}
			select {
			case <-p.trigger:
			default:
			}
		case <-timer.C:
		}
		next := p.interval
		if err := p.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Error().Err(err).Msg("regenerating crl")
			next = retry
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}
