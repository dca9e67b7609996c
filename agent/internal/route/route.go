// Package route decides how the agent reaches the primary — directly, or
// through one of the configured tunnels with HTTP CONNECT — and dials it.
// TLS always runs end to end between agent and primary; a tunnel sees bytes
// only. Only reachability errors (refused, timeout, unreachable, no such host,
// reset) move on to the next route; a TLS or certificate error never does.
package route

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Route is one way to one primary node: directly to Primary when Tunnel is
// empty, else through Tunnel with CONNECT to Primary.
type Route struct {
	Primary string // the primary node's HOST:PORT; "" = the first configured (state of older agents)
	Tunnel  string // tunnel HOST:PORT, "" for direct
}

// Direct is the direct route to the first configured primary.
var Direct = Route{}

// IsDirect reports whether r is a direct route.
func (r Route) IsDirect() bool { return r.Tunnel == "" }

// String is "direct[ PRIMARY]" or "tunnel HOST:PORT[ to PRIMARY]" (the form
// kept in state.json and shown by status).
func (r Route) String() string {
	s := "direct"
	if !r.IsDirect() {
		s = "tunnel " + r.Tunnel
		if r.Primary != "" {
			s += " to"
		}
	}
	if r.Primary != "" {
		s += " " + r.Primary
	}
	return s
}

// Parse is the inverse of String; "" and anything unrecognised are Direct.
func Parse(s string) Route {
	if p, ok := strings.CutPrefix(s, "direct "); ok && p != "" {
		return Route{Primary: p}
	}
	if t, ok := strings.CutPrefix(s, "tunnel "); ok && t != "" {
		t, p, _ := strings.Cut(t, " to ")
		return Route{Tunnel: t, Primary: p}
	}
	return Direct
}

// Config is what the route choice and the dialer need from the agent's config.
type Config struct {
	// Primaries are the primary nodes' HOST:PORT, in order of preference;
	// each HOST is the TLS server name and the CONNECT target of its routes.
	Primaries     []string
	PrimaryDial   string // with one primary only: dial this instead of resolving its host
	Tunnels       []string
	SourceAddress string        // local IP for outgoing connections; "" = the system's choice
	DialTimeout   time.Duration // per address: TCP connect (+ CONNECT) + TLS handshake
	ProbeInterval time.Duration // re-probe direct this often while on a tunnel
	// Resolver finds the addresses of a primary's name; nil = the system's.
	Resolver Resolver
}

// Resolver looks up the addresses of a host name (net.Resolver is one).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Outcomes is what the agent remembers about earlier attempts.
type Outcomes struct {
	Current           Route     // the last route that worked
	Known             bool      // Current was learnt (not just the default)
	LastDirectFailure time.Time // when a direct route last failed for reachability
	// Node is the address that last answered on a direct route (one of the
	// addresses a primary's name resolves to); tried first next time.
	Node string
}

// Plan is the order in which to try the routes: pure function of the config,
// the remembered outcomes and now. The primaries are taken in their
// configured order, except that the one of the last working route comes
// first (the agent stays on the node that answered); every tunnel is tried
// with each primary as its CONNECT target in that order.
//
//   - No tunnels, or the last working route is direct: each primary
//     directly, then each tunnel (with each primary).
//   - On a tunnel and the direct re-probe is due (ProbeInterval since the
//     last direct failure): the same, direct first again.
//   - On a tunnel otherwise: that route, the other tunnel routes in order,
//     each primary directly last.
func Plan(c Config, o Outcomes, now time.Time) []Route {
	cur := o.Current
	if cur.Primary == "" && len(c.Primaries) > 0 {
		cur.Primary = c.Primaries[0] // state written before several primaries
	}
	prims := preferFirst(c.Primaries, cur.Primary)
	var direct, tunneled []Route
	for _, p := range prims {
		direct = append(direct, Route{Primary: p})
	}
	for _, t := range c.Tunnels {
		for _, p := range prims {
			tunneled = append(tunneled, Route{Primary: p, Tunnel: t})
		}
	}
	onTunnel := !cur.IsDirect() && slices.Contains(tunneled, cur)
	if !onTunnel || !now.Before(o.LastDirectFailure.Add(c.ProbeInterval)) {
		return append(direct, tunneled...)
	}
	out := []Route{cur}
	for _, r := range tunneled {
		if r != cur {
			out = append(out, r)
		}
	}
	return append(out, direct...)
}

// preferFirst is list with first moved to the front when list holds it.
func preferFirst(list []string, first string) []string {
	i := slices.Index(list, first)
	if i <= 0 {
		return list
	}
	out := append([]string{first}, list[:i]...)
	return append(out, list[i+1:]...)
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

// ProbeDirect tries the direct routes (each primary, in Plan's order) once
// (attempt should be cheap) and switches to the first that works.
func (s *Selector) ProbeDirect(ctx context.Context, attempt Attempt) error {
	s.mu.Lock()
	var direct []Route
	for _, r := range Plan(s.cfg, Outcomes{Current: Route{Primary: s.out.Current.Primary}}, s.now()) {
		if r.IsDirect() {
			direct = append(direct, r)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, r := range direct {
		err := attempt(ctx, r)
		if err == nil {
			s.succeeded(r)
			return nil
		}
		if ctx.Err() != nil || !IsUnreachable(err) {
			return err
		}
		s.failed(r, err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DialTLS is the configuration's DialTLS, trying first the address that
// answered last on a direct route (a primary whose name resolves to several
// addresses), and remembering the one that answers now.
func (s *Selector) DialTLS(ctx context.Context, r Route, conf *tls.Config) (*tls.Conn, error) {
	s.mu.Lock()
	cfg, node := s.cfg, s.out.Node
	s.mu.Unlock()
	conn, err := cfg.dialTLS(ctx, r, conf, node)
	if err != nil || !r.IsDirect() {
		return conn, err
	}
	if addr := conn.RemoteAddr().String(); addr != node {
		s.mu.Lock()
		s.out.Node = addr
		out := s.out
		s.mu.Unlock()
		s.log.Debug().Str("route", r.String()).Str("node", addr).Msg("primary node answered")
		if s.onChange != nil {
			s.onChange(out)
		}
	}
	return conn, nil
}

func (s *Selector) succeeded(r Route) {
	s.mu.Lock()
	prev := s.out.Current
	if prev.Primary == "" {
		prev.Primary = s.cfg.PrimaryOf(prev) // remembered before several primaries
	}
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

// Label is how r is kept in state.json and shown by status: String, without
// the primary when only one is configured (as agents before several
// primaries wrote it; Plan reads a route without a primary as the first).
func (c Config) Label(r Route) string {
	if len(c.Primaries) <= 1 {
		r.Primary = ""
	}
	return r.String()
}

// Host is the host part of the route's primary (the first configured when
// r names none): the TLS server name and the CONNECT target's host.
func (c Config) Host(r Route) string {
	p := c.PrimaryOf(r)
	h, _, err := net.SplitHostPort(p)
	if err != nil {
		return p
	}
	return h
}

// PrimaryOf is r's primary, or the first configured when r names none.
func (c Config) PrimaryOf(r Route) string {
	if r.Primary == "" && len(c.Primaries) > 0 {
		return c.Primaries[0]
	}
	return r.Primary
}
