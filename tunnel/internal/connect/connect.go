// Package connect is hostcert-tunnel's allow-listed HTTP CONNECT proxy. It
// answers only CONNECT to a configured primary "name:port" and relays the
// bytes to that entry's configured upstream, never to an address the client
// chose; everything else gets a clear HTTP refusal. It enforces handshake and
// idle timeouts, connection caps and per-source rate limits, starts every
// upstream connection with a PROXY protocol v2 header carrying the client's
// address (always: the primary must never take the tunnel's own address for
// the DMZ host's), writes an access log line per tunnel and drains open
// tunnels on shutdown.
package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/tunnel/internal/config"
)

// limits is the runtime view of config.Limits.
type limits struct {
	handshake, idle, dial time.Duration
	maxTunnels, maxConns  int
	perSource, burst      int
	rate                  float64
	maxHeaderBytes        int
}

// settings is one immutable snapshot of the configuration; a reload swaps it
// and new connections use the new one.
type settings struct {
	allow  map[string][]string // normalised target -> its upstreams, in order
	limits limits
	drain  time.Duration
}

func newSettings(f config.File) *settings {
	s := &settings{allow: make(map[string][]string, len(f.Allow)), drain: f.ShutdownTimeout}
	for _, a := range f.Allow {
		s.allow[a.Target] = a.Upstream
	}
	l := f.Limits
	s.limits = limits{
		handshake: l.HandshakeTimeout, idle: l.IdleTimeout, dial: l.DialTimeout,
		maxTunnels: l.MaxTunnels, maxConns: l.MaxConnections,
		perSource: l.MaxConnectionsPerSource, burst: l.BurstPerSource, rate: l.RatePerSource,
		maxHeaderBytes: l.MaxHeaderBytes,
	}
	return s
}

// Server is the tunnel. Create it with New, serve with Serve.
type Server struct {
	log   zerolog.Logger
	cfg   atomic.Pointer[settings]
	adm   admission
	proxy *goproxy.ProxyHttpServer
	// dialer reaches the upstreams; a plain net.Dialer never consults proxy
	// environment variables.
	dialer net.Dialer
	// failed remembers the upstreams that did not answer a dial lately.
	failed failures

	base     context.Context // cancelled when Serve gives up on draining
	stopBase context.CancelFunc

	mu       sync.Mutex
	tunnels  map[*tunnel]struct{}
	metrics  *metrics
	draining bool
	drained  chan struct{} // closed when draining and the last tunnel ended
}

// New builds a tunnel for the validated configuration f (see config.Load).
func New(f config.File, log zerolog.Logger) *Server {
	s := &Server{log: log, tunnels: make(map[*tunnel]struct{}), drained: make(chan struct{})}
	s.base, s.stopBase = context.WithCancel(context.Background())
	s.cfg.Store(newSettings(f))
	s.proxy = s.newProxy()
	s.metrics = newMetrics(s)
	return s
}

// Update applies a new validated configuration to connections accepted from
// now on; open tunnels keep going. The listen address is read once by the
// caller and is not changed here.
func (s *Server) Update(f config.File) { s.cfg.Store(newSettings(f)) }

func (s *Server) settings() *settings { return s.cfg.Load() }

// errNoForwarding is what goproxy's own transport and dialer return: this
// tunnel never forwards plain HTTP and never dials an address of goproxy's
// choosing (only the hijack below dials, and only a configured upstream).
var errNoForwarding = errors.New("hostcert-tunnel does not forward requests")

func (s *Server) newProxy() *goproxy.ProxyHttpServer {
	p := goproxy.NewProxyHttpServer()
	p.Logger = log.New(s.log.With().Str("part", "goproxy").Logger(), "", 0)
	// Deny by default and never follow HTTP_PROXY/HTTPS_PROXY: replace the
	// defaults (a transport using ProxyFromEnvironment and an env dialer)
	// with ones that refuse.
	refuse := func(context.Context, string, string) (net.Conn, error) { return nil, errNoForwarding }
	p.Tr = &http.Transport{Proxy: nil, DialContext: refuse, DialTLSContext: refuse}
	p.ConnectDial = nil
	p.ConnectDialWithReq = func(*http.Request, string, string) (net.Conn, error) { return nil, errNoForwarding }
	p.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.logRefusal(r.RemoteAddr, r.RequestURI, &refuseMethod)
		writeResponse(w, &refuseMethod)
	})
	p.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		s.logRefusal(r.RemoteAddr, r.RequestURI, &refuseMethod)
		return r, refuseMethod.response()
	})
	p.OnRequest().HandleConnectFunc(s.decide)
	return p
}

func writeResponse(w http.ResponseWriter, r *refusal) {
	resp := r.response()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = io.Copy(w, resp.Body)
}

// decide is the allow list: a CONNECT target is admitted only when it is, once
// normalised, exactly a configured target; the upstream dialled is that
// entry's, whatever the client's string would resolve to.
func (s *Server) decide(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	st := s.settings()
	reject := func(r *refusal) (*goproxy.ConnectAction, string) {
		s.logRefusal(ctx.Req.RemoteAddr, host, r)
		ctx.Resp = r.response()
		return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, host
	}
	// Match the request-target as sent (host is goproxy's URL.Host, which
	// has dropped any userinfo).
	target, err := config.NormalizeTarget(ctx.Req.RequestURI)
	if err != nil {
		return reject(&refuseMalformed)
	}
	upstreams, ok := st.allow[target]
	if !ok {
		return reject(&refuseNotAllowed)
	}
	return &goproxy.ConnectAction{
		Action: goproxy.ConnectHijack,
		Hijack: func(_ *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
			s.tunnel(client, target, upstreams, st)
		},
	}, host
}

// ServeHTTP marks the end of the client's handshake and hands the request
// to goproxy.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if cc, ok := r.Context().Value(connKey{}).(*clientConn); ok {
		cc.endHandshake()
	}
	s.proxy.ServeHTTP(w, r)
}

type connKey struct{}

// tunnel runs one admitted CONNECT: dial an upstream (dialFirst), send the PROXY header, answer 200 and relay until done. It owns client.
func (s *Server) tunnel(client net.Conn, target string, upstreams []string, st *settings) {
	defer client.Close()
	clientAddr := client.RemoteAddr().String()
	_ = client.SetDeadline(time.Time{})

	t := &tunnel{client: client, start: time.Now(), idle: st.limits.idle}
	if r := s.register(t, st.limits.maxTunnels); r != nil {
		s.logRefusal(clientAddr, target, r)
		_ = r.writeTo(client)
		return
	}
	defer s.unregister(t)

	up, err := s.dialFirst(upstreams, client, st)
	if err != nil {
		r := &refuseDial
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			r = &refuseDialTimeout
		}
		s.log.Warn().Err(err).Str("source", clientAddr).Str("target", target).Strs("upstreams", upstreams).
			Int("status", r.status).Str("code", r.code).Msg("connect refused")
		s.metrics.refused(r)
		_ = r.writeTo(client)
		return
	}
	s.attach(t, up)
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		t.finish(outcomeError, fmt.Errorf("answer client: %w", err))
	} else {
		t.relay()
	}
	ev := s.log.Info()
	switch t.outcome {
	case outcomeError:
		ev = s.log.Warn().Err(t.err)
	case outcomeReset:
		ev = ev.Err(t.err)
	}
	ev.Str("source", clientAddr).Str("target", target).Str("upstream", up.RemoteAddr().String()).
		Int64("bytes_up", t.up.Load()).Int64("bytes_down", t.down.Load()).
		Dur("duration_ms", time.Since(t.start)).Str("outcome", t.outcome).Msg("tunnel closed")
}

// dialUpstream connects to the configured upstream and sends the PROXY v2
// header naming the client and the address it reached.
func (s *Server) dialUpstream(upstream string, client net.Conn, st *settings) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.base, st.limits.dial)
	defer cancel()
	begun := time.Now()
	up, err := s.dialer.DialContext(ctx, "tcp", upstream)
	s.metrics.dialed(time.Since(begun), err)
	if err != nil {
		return nil, fmt.Errorf("dial upstream %s: %w", upstream, err)
	}
	h, err := proxyHeader(client.RemoteAddr(), client.LocalAddr())
	if err != nil {
		_ = up.Close()
		return nil, err
	}
	_ = up.SetWriteDeadline(time.Now().Add(st.limits.dial))
	if _, err := up.Write(h); err != nil {
		_ = up.Close()
		return nil, fmt.Errorf("send proxy header to %s: %w", upstream, err)
	}
	_ = up.SetWriteDeadline(time.Time{})
	return up, nil
}

func (s *Server) register(t *tunnel, max int) *refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.draining:
		return &refuseShutdown
	case len(s.tunnels) >= max:
		return &refuseTunnels
	}
	s.tunnels[t] = struct{}{}
	return nil
}

// attach records t's upstream connection; closeAll reads it under s.mu.
func (s *Server) attach(t *tunnel, up net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.upstream = up
}

func (s *Server) unregister(t *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tunnels, t)
	s.metrics.closedUp += t.up.Load()
	s.metrics.closedDown += t.down.Load()
	if s.draining && len(s.tunnels) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// Tunnels is the number of established tunnels.
func (s *Server) Tunnels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tunnels)
}

func (s *Server) logRefusal(client, target string, r *refusal) {
	if len(target) > 256 {
		target = target[:256]
	}
	s.log.Warn().Str("source", client).Str("target", target).Int("status", r.status).Str("code", r.code).Msg("connect refused")
	s.metrics.refused(r)
}

// Serve answers on ln until ctx ends, then stops accepting, lets open
// tunnels finish for up to the configured shutdown timeout, and closes what
// is left. It returns nil after a clean stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	st := s.settings()
	hs := &http.Server{
		Handler:                      s,
		DisableGeneralOptionsHandler: true, // "OPTIONS *" gets the 405 too
		MaxHeaderBytes:               st.limits.maxHeaderBytes,
		ErrorLog:                     log.New(s.log.With().Str("part", "http").Logger(), "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	hs.SetKeepAlivesEnabled(false)
	l := &listener{Listener: ln, s: s, lingering: make(chan struct{}, maxLingering)}
	s.log.Info().Str("listen", ln.Addr().String()).Int("allowed_targets", len(st.allow)).
		Msg("tunnel listening")

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		s.stopBase()
		s.closeAll()
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	drain := s.settings().drain
	s.mu.Lock()
	s.draining = true
	open := len(s.tunnels)
	if open == 0 {
		close(s.drained)
	}
	s.mu.Unlock()
	s.log.Info().Int("open_tunnels", open).Dur("drain_timeout_ms", drain).Msg("draining tunnels")
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	_ = hs.Shutdown(dctx) // stops accepting; waits for requests still being read
	select {
	case <-s.drained:
	case <-dctx.Done():
	}
	_ = hs.Close()
	s.stopBase()
	forced := s.closeAll()
	<-errc
	s.log.Info().Int("forced_closed", forced).Msg("tunnel stopped")
	return nil
}

// closeAll ends every open tunnel (outcome "shutdown") and returns how many.
func (s *Server) closeAll() int {
	s.mu.Lock()
	var relaying []*tunnel
	var dialing []net.Conn
	for t := range s.tunnels {
		if t.upstream != nil {
			relaying = append(relaying, t)
		} else {
			dialing = append(dialing, t.client)
		}
	}
	s.mu.Unlock()
	for _, t := range relaying {
		t.finish(outcomeShutdown, nil)
	}
	for _, c := range dialing {
		_ = c.Close()
	}
	return len(relaying) + len(dialing)
}

// proxyHeader is the PROXY protocol v2 header naming client (the DMZ host)
// and local (the tunnel address it reached). Only TCP over IPv4 or IPv6 can
// be relayed; anything else is refused rather than sent without an address.
func proxyHeader(client, local net.Addr) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, client, local)
	if h.Command != proxyproto.PROXY || (h.TransportProtocol != proxyproto.TCPv4 && h.TransportProtocol != proxyproto.TCPv6) {
		return nil, fmt.Errorf("proxy header for %v: unsupported address family", client)
	}
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("proxy header for %v: %w", client, err)
	}
	return b, nil
}
