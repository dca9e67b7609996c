// Package crl keeps the primary's certificate revocation list fresh: it
// regenerates the CA-signed CRL at start-up, at least hourly, on demand
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
	RevokedCerts(ctx context.Context) ([]store.Cert, error)
	NextCRLNumber(ctx context.Context) (*big.Int, error)
}

// Signer signs a CRL.
type Signer interface {
	CRL(entries []ca.RevokedEntry, number *big.Int, now time.Time, validity time.Duration) ([]byte, error)
}

// List is one generated CRL.
type List struct {
	DER        []byte
	PEM        []byte
	Number     *big.Int
	Entries    int
	ThisUpdate time.Time
	NextUpdate time.Time
}

// Publisher regenerates and holds the current CRL. Safe for concurrent use.
type Publisher struct {
	src      Source
	signer   Signer
	log      zerolog.Logger
	validity time.Duration
	interval time.Duration
	now      func() time.Time

	current atomic.Pointer[List]
	trigger chan struct{}

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

// Current is the latest CRL, nil before the first Refresh succeeded.
func (p *Publisher) Current() *List { return p.current.Load() }

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
	certs, err := p.src.RevokedCerts(ctx)
	if err != nil {
		return fmt.Errorf("crl: list revoked certificates: %w", err)
	}
	entries := make([]ca.RevokedEntry, 0, len(certs))
	for _, c := range certs {
		serial, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok || c.RevokedAt == nil {
			return fmt.Errorf("crl: revoked certificate with serial %q: bad serial or no revocation time", c.Serial)
		}
		entries = append(entries, ca.RevokedEntry{Serial: serial, RevokedAt: *c.RevokedAt, Reason: c.RevokeReason})
	}
	number, err := p.src.NextCRLNumber(ctx)
	if err != nil {
		return fmt.Errorf("crl: next number: %w", err)
	}
	now := p.now()
	der, err := p.signer.CRL(entries, number, now, p.validity)
	if err != nil {
		return fmt.Errorf("crl: sign: %w", err)
	}
	p.current.Store(&List{
		DER: der, PEM: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}),
		Number: number, Entries: len(entries), ThisUpdate: now, NextUpdate: now.Add(p.validity),
	})
	p.log.Info().Str("number", number.String()).Int("entries", len(entries)).Msg("crl regenerated")
	return nil
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
