package connect

import (
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// FailureMemory is how long an upstream that did not answer a dial is
// dialled after the target's other upstreams.
const FailureMemory = 30 * time.Second

// upstreamOrder is the order in which to dial a target's upstreams: pure
// function of the configured order, when each last failed and now. The
// upstreams that failed within FailureMemory go last, the most recent
// failure last of all; the others keep the configured order. Only
// configured upstreams are ever returned.
func upstreamOrder(upstreams []string, failedAt map[string]time.Time, now time.Time) []string {
	recent := func(u string) (time.Time, bool) {
		at, ok := failedAt[u]
		return at, ok && now.Sub(at) < FailureMemory
	}
	var good, bad []string
	for _, u := range upstreams {
		if _, ok := recent(u); ok {
			bad = append(bad, u)
		} else {
			good = append(good, u)
		}
	}
	slices.SortStableFunc(bad, func(a, b string) int {
		ta, _ := recent(a)
		tb, _ := recent(b)
		return ta.Compare(tb)
	})
	return append(good, bad...)
}

// failures is the short memory of upstreams that failed a dial.
type failures struct {
	mu sync.Mutex
	at map[string]time.Time
}

// of returns the remembered failure times of upstreams.
func (f *failures) of(upstreams []string) map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]time.Time, len(upstreams))
	for _, u := range upstreams {
		if at, ok := f.at[u]; ok {
			out[u] = at
		}
	}
	return out
}

func (f *failures) set(u string, failed bool, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !failed {
		delete(f.at, u)
		return
	}
	if f.at == nil {
		f.at = make(map[string]time.Time)
	}
	f.at[u] = now
}

// dialFirst dials a target's upstreams in upstreamOrder, each within the
// dial timeout (dialUpstream), and returns the first connection, its PROXY
// header sent. It dials nothing but upstreams.
func (s *Server) dialFirst(upstreams []string, client net.Conn, st *settings) (net.Conn, error) {
	var errs []error
	for _, u := range upstreamOrder(upstreams, s.failed.of(upstreams), time.Now()) {
		up, err := s.dialUpstream(u, client, st)
		s.failed.set(u, err != nil, time.Now())
		if err == nil {
			return up, nil
		}
		if len(upstreams) > 1 {
			s.log.Warn().Err(err).Str("upstream", u).Msg("upstream unreachable")
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
