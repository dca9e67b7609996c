package connect

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxSources bounds the per-source table; past it, new sources are refused
// as "busy" until idle entries can be swept.
const maxSources = 1 << 16

// sweepEvery is how often idle per-source entries are dropped.
const sweepEvery = 10 * time.Second

// admission counts open client connections, in total and per source, and
// rate-limits new connections per source (token bucket).
type admission struct {
	mu        sync.Mutex
	open      int
	sources   map[netip.Prefix]*sourceState
	lastSweep time.Time
}

type sourceState struct {
	open   int
	tokens float64
	at     time.Time // when tokens was last refilled
}

// sourceKey groups addresses the way one client is counted: an IPv4 address,
// or an IPv6 /64 (one host typically owns a whole /64).
func sourceKey(addr net.Addr) netip.Prefix {
	var a netip.Addr
	if ta, ok := addr.(*net.TCPAddr); ok {
		a = ta.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		a = ap.Addr()
	}
	a = a.Unmap()
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// admit decides on one new connection from src. On success it returns the
// function that gives the slot back (call it exactly once).
func (a *admission) admit(src netip.Prefix, now time.Time, l limits) (release func(), r *refusal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sources == nil {
		a.sources = make(map[netip.Prefix]*sourceState)
	}
	if now.Sub(a.lastSweep) >= sweepEvery || len(a.sources) >= maxSources {
		a.sweep(now, l)
	}
	st, ok := a.sources[src]
	if !ok {
		if len(a.sources) >= maxSources {
			return nil, &refuseBusy
		}
		st = &sourceState{tokens: float64(l.burst), at: now}
		a.sources[src] = st
	}
	st.refill(now, l)
	if st.tokens < 1 {
		return nil, &refuseRate
	}
	st.tokens--
	if st.open >= l.perSource {
		return nil, &refuseSourceConns
	}
	if a.open >= l.maxConns {
		return nil, &refuseBusy
	}
	st.open++
	a.open++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		st.open--
		a.open--
	}, nil
}

func (s *sourceState) refill(now time.Time, l limits) {
	if el := now.Sub(s.at); el > 0 {
		s.tokens = min(float64(l.burst), s.tokens+el.Seconds()*l.rate)
		s.at = now
	}
}

// sweep drops sources with no open connection and a full bucket: forgetting
// them changes nothing.
func (a *admission) sweep(now time.Time, l limits) {
	a.lastSweep = now
	for k, st := range a.sources {
		if st.open > 0 {
			continue
		}
		st.refill(now, l)
		if st.tokens >= float64(l.burst) {
			delete(a.sources, k)
		}
	}
}
