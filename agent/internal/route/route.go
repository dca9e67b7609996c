// Package route decides how the agent reaches the primary — directly, or
// through one of the configured tunnels with HTTP CONNECT — and dials it.
// TLS always runs end to end between agent and primary; a tunnel sees bytes
// only. Only reachability errors (refused, timeout, unreachable, no such host,
// reset) move on to the next route; a TLS or certificate error never does.
package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Route is one way to the primary: direct when Tunnel is empty.
type Route struct {
	Tunnel string // tunnel HOST:PORT, "" for direct
}

// Direct is the direct route.
var Direct = Route{}

// IsDirect reports whether r is the direct route.
func (r Route) IsDirect() bool { return r.Tunnel == "" }

// String is "direct" or "tunnel HOST:PORT" (the form kept in state.json).
func (r Route) String() string {
	if r.IsDirect() {
		return "direct"
	}
	return "tunnel " + r.Tunnel
}

// Parse is the inverse of String; "" and anything unrecognised are Direct.
func Parse(s string) Route {
	if t, ok := strings.CutPrefix(s, "tunnel "); ok && t != "" {
		return Route{Tunnel: t}
	}
	return Direct
}

// Config is what the route choice and the dialer need from the agent's config.
type Config struct {
	Primary       string // HOST:PORT; HOST is the TLS server name and the CONNECT target
	PrimaryDial   string // dial this instead of Primary on the direct route
	Tunnels       []string
	SourceAddress string        // local IP for outgoing connections; "" = the system's choice
	DialTimeout   time.Duration // TCP connect (+ CONNECT) + TLS handshake, per route
	ProbeInterval time.Duration // re-probe direct this often while on a tunnel
}

// Outcomes is what the agent remembers about earlier attempts.
type Outcomes struct {
	Current           Route     // the last route that worked
	Known             bool      // Current was learnt (not just the default)
	LastDirectFailure time.Time // when the direct route last failed for reachability
}

// Plan is the order in which to try the routes: pure function of the config,
// the remembered outcomes and now.
//
//   - No tunnels, or the last working route is direct: direct, then each tunnel in order.
//   - On a tunnel and the direct re-probe is due (ProbeInterval since the last
//     direct failure): direct first again.
//   - On a tunnel otherwise: that tunnel, the other tunnels in order, direct last.
func Plan(c Config, o Outcomes, now time.Time) []Route {
	plan := []Route{Direct}
	for _, t := range c.Tunnels {
		plan = append(plan, Route{Tunnel: t})
	}
	if o.Current.IsDirect() || !contains(c.Tunnels, o.Current.Tunnel) || !now.Before(o.LastDirectFailure.Add(c.ProbeInterval)) {
		return plan
	}
	out := []Route{o.Current}
	for _, t := range c.Tunnels {
		if t != o.Current.Tunnel {
			out = append(out, Route{Tunnel: t})
		}
	}
	return append(out, Direct)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ErrNoRoute is returned (wrapped, with every route's error) when no route worked.
var ErrNoRoute = errors.New("primary unreachable on every route")

// Attempt performs one request over route r.
type Attempt func(ctx context.Context, r Route) error

// Selector runs attempts along the Plan and remembers what worked.
type Selector struct {
	log      zerolog.Logger
	onChange func(Outcomes)
	now      func() time.Time

	mu  sync.Mutex
	cfg Config
	out Outcomes
}

// NewSelector starts from the remembered outcomes; onChange (may be nil) is
// called after every change of the outcomes, to persist them.
func NewSelector(cfg Config, start Outcomes, log zerolog.Logger, onChange func(Outcomes)) *Selector {
	return &Selector{cfg: cfg, out: start, log: log, onChange: onChange, now: time.Now}
}

// SetConfig replaces the configuration (config reload).
func (s *Selector) SetConfig(c Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = c
}

// Config returns the current configuration.
func (s *Selector) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Outcomes returns what the selector currently remembers.
func (s *Selector) Outcomes() Outcomes {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

// Do tries the routes in Plan order until one works. A non-reachability
// error ends the search at once and is returned as it is.
func (s *Selector) Do(ctx context.Context, attempt Attempt) (Route, error) {
	s.mu.Lock()
	plan := Plan(s.cfg, s.out, s.now())
	s.mu.Unlock()
	var errs []error
	for _, r := range plan {
		err := attempt(ctx, r)
		if err == nil {
			s.succeeded(r)
			return r, nil
		}
		if ctx.Err() != nil || !IsUnreachable(err) {
			return r, err
		}
		s.failed(r, err)
		errs = append(errs, fmt.Errorf("%s: %w", r, err))
	}
	return Route{}, fmt.Errorf("%w: %w", ErrNoRoute, errors.Join(errs...))
}

// ProbeDue reports whether a direct re-probe is due: the agent is on a
// tunnel and ProbeInterval has passed since direct last failed.
func (s *Selector) ProbeDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.out.Current.IsDirect() && !s.now().Before(s.out.LastDirectFailure.Add(s.cfg.ProbeInterval))
}

// ProbeDirect tries the direct route once (attempt should be cheap) and
// switches to it when it works.
func (s *Selector) ProbeDirect(ctx context.Context, attempt Attempt) error {
	err := attempt(ctx, Direct)
	if err == nil {
		s.succeeded(Direct)
		return nil
	}
	if ctx.Err() == nil && IsUnreachable(err) {
		s.failed(Direct, err)
	}
	return err
}

func (s *Selector) succeeded(r Route) {
	s.mu.Lock()
	prev := s.out.Current
	changed := prev != r || !s.out.Known
	s.out.Current, s.out.Known = r, true
	out := s.out
	s.mu.Unlock()
	if changed {
		if prev != r {
			s.log.Warn().Str("from", prev.String()).Str("to", r.String()).Msg("route to the primary changed")
		} else {
			s.log.Debug().Str("route", r.String()).Msg("route to the primary established")
		}
		if s.onChange != nil {
			s.onChange(out)
		}
	}
}

func (s *Selector) failed(r Route, err error) {
	s.log.Debug().Err(err).Str("route", r.String()).Msg("route unreachable")
	if !r.IsDirect() {
		return
	}
	s.mu.Lock()
	s.out.LastDirectFailure = s.now()
	out := s.out
	s.mu.Unlock()
	if s.onChange != nil {
		s.onChange(out)
	}
}

// PrimaryHost is the host part of the primary's address: the TLS server name.
func (c Config) PrimaryHost() string {
	h, _, err := net.SplitHostPort(c.Primary)
	if err != nil {
		return c.Primary
	}
	return h
}
