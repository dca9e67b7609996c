package tokens

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Rate-limit defaults (SPEC §5: wrong tokens are rate-limited per source).
const (
	DefaultBurst      = 5                // wrong tokens a source may present at once
	DefaultPer        = 12 * time.Second // then one more per this interval (5 a minute)
	DefaultMaxSources = 65536            // sources remembered at most
)

// Limiter limits token guesses per source address with a token bucket:
// each source starts with Burst credits, each guess costs one, and one
// credit comes back every Per. A guess is a value that matches no stored
// token (policy.Guess): the caller charges nothing for a real token refused
// for another reason (used up, expired, wrong kind or host, outside its
// bindings), so that hosts behind one address that lost a race for a
// token's last uses are not locked out. A source with no credit left is refused before
// its token is even looked up. IPv4 sources are limited per address, IPv6
// sources per /64 (one host usually owns a whole /64).
//
// Concurrent wrong tokens from one source all count: credits may go below
// zero (down to one hour of refill), so a burst of parallel guesses that all
// passed Allow together is paid back before the next attempt is allowed.
//
// Memory is bounded: at most MaxSources entries, least recently failed first
// out. An evicted source starts again with a full bucket, which is what it
// would have had soon anyway: the least recently failed entry has refilled the
// most. Safe for concurrent use.
type Limiter struct {
	burst      float64
	per        time.Duration
	maxSources int

	mu    sync.Mutex
	byKey map[netip.Prefix]*list.Element // of *bucket
	lru   list.List                      // front = least recently failed
}

type bucket struct {
	key     netip.Prefix
	credits float64
	at      time.Time // when credits was last computed
}

// NewLimiter returns a limiter allowing burst wrong tokens per source, then one
// per per. Zero or negative values take the defaults (5, 12s).
func NewLimiter(burst int, per time.Duration) *Limiter {
	return NewLimiterSize(burst, per, DefaultMaxSources)
}

// NewLimiterSize is NewLimiter remembering at most maxSources sources
// (default 65536 when <= 0).
func NewLimiterSize(burst int, per time.Duration, maxSources int) *Limiter {
	if burst <= 0 {
		burst = DefaultBurst
	}
	if per <= 0 {
		per = DefaultPer
	}
	if maxSources <= 0 {
		maxSources = DefaultMaxSources
	}
	return &Limiter{
		burst:      float64(burst),
		per:        per,
		maxSources: maxSources,
		byKey:      make(map[netip.Prefix]*list.Element),
	}
}

// SourceKey is the unit a source is limited by: the IPv4 address, or the /64
// of an IPv6 address. IPv4-mapped IPv6 counts as IPv4; zones are dropped.
// An invalid address maps to the zero Prefix (all such sources share one bucket).
func SourceKey(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// Allow reports whether src may present a token now. False means refuse with
// rate_limited without looking the token up. Allow itself costs nothing.
func (l *Limiter) Allow(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byKey[SourceKey(src)]
	if !ok {
		return true
	}
	return l.refill(e.Value.(*bucket), now) >= 1
}

// Fail records that src presented a wrong token: it costs one credit.
func (l *Limiter) Fail(src netip.Addr, now time.Time) {
	key := SourceKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.byKey[key]; ok {
		b := e.Value.(*bucket)
		l.refill(b, now)
		b.credits--
		if floor := l.floor(); b.credits < floor {
			b.credits = floor
		}
		l.lru.MoveToBack(e)
		return
	}
	for l.lru.Len() >= l.maxSources {
		oldest := l.lru.Front()
		delete(l.byKey, oldest.Value.(*bucket).key)
		l.lru.Remove(oldest)
	}
	l.byKey[key] = l.lru.PushBack(&bucket{key: key, credits: l.burst - 1, at: now})
	l.prune(now)
}

// Len is the number of sources currently remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// floor is the lowest credit balance: minus one hour of refill.
func (l *Limiter) floor() float64 {
	return -float64(time.Hour) / float64(l.per)
}

// refill brings b's credits up to now and returns them. A clock that went
// backwards refills nothing.
func (l *Limiter) refill(b *bucket, now time.Time) float64 {
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.credits += float64(elapsed) / float64(l.per)
		if b.credits > l.burst {
			b.credits = l.burst
		}
		b.at = now
	}
	return b.credits
}

// prune drops a few entries from the least recently failed end whose bucket
// has refilled completely: they are the same as no entry. Bounded work per call.
func (l *Limiter) prune(now time.Time) {
	for i := 0; i < 4; i++ {
		e := l.lru.Front()
		if e == nil {
			return
		}
		b := e.Value.(*bucket)
		if l.refill(b, now) < l.burst {
			return
		}
		delete(l.byKey, b.key)
		l.lru.Remove(e)
	}
}
