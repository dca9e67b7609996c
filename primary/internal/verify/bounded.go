package verify

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults of Bounded (docs/primary.md, "DNS verification").
const (
	DefaultMaxLookups = 16
	DefaultCacheTTL   = 30 * time.Second
	DefaultMaxEntries = 10000
)

// ErrBusy is what Bounded answers, at once, when its lookups in flight are
// at their bound: the request is not verified ("dns busy"), and nothing
// waits behind a slow or silent DNS server.
var ErrBusy = errors.New("dns busy: too many lookups in flight")

// Limits configure Bounded. Zero fields take the defaults; a negative TTL
// turns the cache off.
type Limits struct {
	// MaxLookups is how many lookups may be in flight at once.
	MaxLookups int
	// TTL is how long an answer (addresses, or "no such host") is reused.
	TTL time.Duration
	// MaxEntries bounds the cache.
	MaxEntries int
	// Timeout bounds one lookup; DefaultTimeout when zero.
	Timeout time.Duration
}

// Bounded is a Resolver in front of another one that makes unauthenticated
// requests cheap: at most MaxLookups lookups run at once (more fail at once
// with ErrBusy), concurrent lookups of one name share one, and answers —
// addresses and "no such host" alike — are reused for TTL. Failures (time
// outs, SERVFAIL) are not cached. Safe for concurrent use.
type Bounded struct {
	next    Resolver
	lim     Limits
	now     func() time.Time
	sem     chan struct{}
	flights singleflight.Group
	lookups atomic.Int64

	mu      sync.Mutex
	answers map[string]answer
}

type answer struct {
	addrs []netip.Addr
	err   error
	until time.Time
}

// NewBounded wraps next with the limits l (defaults filled in).
func NewBounded(next Resolver, l Limits) *Bounded {
	if l.MaxLookups <= 0 {
		l.MaxLookups = DefaultMaxLookups
	}
	if l.TTL == 0 {
		l.TTL = DefaultCacheTTL
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return &Bounded{
		next: next, lim: l, now: time.Now,
		sem:     make(chan struct{}, l.MaxLookups),
		answers: make(map[string]answer),
	}
}

// Lookups is the number of lookups passed to the wrapped resolver so far.
func (b *Bounded) Lookups() int64 { return b.lookups.Load() }

// LookupNetIP implements Resolver.
func (b *Bounded) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	key := network + " " + strings.TrimSuffix(strings.ToLower(host), ".")
	if a, ok := b.cached(key); ok {
		return a.addrs, a.err
	}
	ch := b.flights.DoChan(key, func() (any, error) {
		select {
		case b.sem <- struct{}{}:
		default:
			return nil, ErrBusy
		}
		defer func() { <-b.sem }()
		// The lookup belongs to every caller waiting for it: one caller
		// going away does not cancel it for the others.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.lim.Timeout)
		defer cancel()
		b.lookups.Add(1)
		addrs, err := b.next.LookupNetIP(lctx, network, host)
		b.store(key, addrs, err)
		return addrs, err
	})
	select {
	case r := <-ch:
		addrs, _ := r.Val.([]netip.Addr)
		return append([]netip.Addr(nil), addrs...), r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Bounded) cached(key string) (answer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.answers[key]
	if !ok {
		return answer{}, false
	}
	if !b.now().Before(a.until) {
		delete(b.answers, key)
		return answer{}, false
	}
	return answer{addrs: append([]netip.Addr(nil), a.addrs...), err: a.err}, true
}

// store keeps an answer that says something about the name: its addresses,
// or that it does not exist.
func (b *Bounded) store(key string, addrs []netip.Addr, err error) {
	if b.lim.TTL < 0 || !cacheable(err) {
		return
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.answers) >= b.lim.MaxEntries {
		for k, a := range b.answers {
			if !now.Before(a.until) {
				delete(b.answers, k)
			}
		}
	}
	for k := range b.answers {
		if len(b.answers) < b.lim.MaxEntries {
			break
		}
		delete(b.answers, k) // full of live answers: drop any one
	}
	b.answers[key] = answer{addrs: append([]netip.Addr(nil), addrs...), err: err, until: now.Add(b.lim.TTL)}
}

func cacheable(err error) bool {
	var dnsErr *net.DNSError
	return err == nil || errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// notVerifiableKey carries, in a request's context, why its source address
// cannot verify any name.
type notVerifiableKey struct{}

// NotVerifiable marks the request of ctx as one whose source address must
// verify no name, for the reason why (for instance "relayed by undeclared
// peer 192.0.2.9"): Verify answers false, why, and asks no DNS.
func NotVerifiable(ctx context.Context, why string) context.Context {
	return context.WithValue(ctx, notVerifiableKey{}, why)
}

func notVerifiable(ctx context.Context) (string, bool) {
	why, ok := ctx.Value(notVerifiableKey{}).(string)
	return why, ok
}
