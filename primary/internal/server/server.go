// Package server wires `hostcert-primary serve`: it loads the CA, opens the
// store, keeps the primary's own TLS certificate and the CRL fresh, and runs
// the HTTPS API (behind a PROXY-protocol-v2 gate for configured tunnels) and
// the admin socket until its context ends, then shuts down gracefully.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	commonmetrics "github.com/hostcert/hostcert/common/metrics"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/api"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/console"
	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/enroll"
	"github.com/hostcert/hostcert/primary/internal/store"
	"github.com/hostcert/hostcert/primary/internal/verify"
)

// DBName is the SQLite database file in the data directory.
const DBName = "primary.db"

// Timeouts and limits of the HTTPS server.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
	ProxyHeaderWait   = 5 * time.Second
	ShutdownGrace     = 10 * time.Second
	ServerCertCheck   = 24 * time.Hour
	auditWait         = 5 * time.Second
)

// Config configures Serve.
type Config struct {
	DataDir string
	// Listen is the API address; default ":1556".
	Listen string
	// TunnelAddrs are the addresses (IPs or CIDR prefixes) of the tunnels
	// (media servers). Their connections must start with a PROXY protocol
	// v2 header. A header from anyone else is logged, counted and audited,
	// and that connection's requests verify no name.
	TunnelAddrs []string
	// MaxConns caps the open API connections; DefaultMaxConns when zero.
	MaxConns int
	// DNSServer is the DNS server used for verification; "" = the system's.
	DNSServer string
	// DNS bounds the lookups of verification (in flight, cache); zero
	// fields take verify's defaults.
	DNS verify.Limits
	// Names of the primary's own TLS certificate; empty = keep the names of
	// the current one.
	Names []string
	// MetricsListen, when set, serves Prometheus metrics at /metrics on
	// that address (keep it on loopback or a management network).
	MetricsListen string
	// Profiling also serves Go's profiles (net/http/pprof) on the metrics
	// listener.
	Profiling bool
	// Console, when set, serves the web console (package console) on that
	// address, with the primary's TLS certificate; keep it on loopback or
	// a management network. Never the API's address.
	Console string
	// Store is where the database lives: "" for the SQLite file DBName in
	// DataDir, or a postgres:// URL (store.OpenTarget).
	Store string
	// Node names this primary node in the audit log it shares with other
	// nodes on one PostgreSQL database (the name init or join recorded).
	Node string
	// CertValidity of host certificates; 0 = 365 days.
	CertValidity time.Duration
	Log          zerolog.Logger
}

// Server is a primary ready to serve: its listeners are bound.
type Server struct {
	cfg      Config
	ca       *ca.CA
	store    *store.Store
	crls     *crl.Publisher
	enroll   *enroll.Service
	api      *http.Server
	apiLn    net.Listener
	adminSrv *admin.Server
	adminLn  net.Listener
	metrics  *metrics
	conns    *capListener
	metricLn net.Listener
	console  *console.Console
	consLn   net.Listener
	names    []string
	cert     atomic.Pointer[tls.Certificate]
	levels   *enroll.LevelCache
	fleet    *fleet
	log      zerolog.Logger
}

// On a shared PostgreSQL store other nodes change what this one caches:
// changes are announced (store.Listen), and these bound how stale a cache
// can get should an announcement be lost.
const (
	sharedLevelTTL    = time.Second
	sharedCRLInterval = time.Minute
)

func levelTTL(backend string) time.Duration {
	if backend == "postgres" {
		return sharedLevelTTL
	}
	return 0 // the default
}

func crlInterval(backend string) time.Duration {
	if backend == "postgres" {
		return sharedCRLInterval
	}
	return 0 // the default
}

// follow keeps this node's caches in step with what other nodes commit:
// a level change drops the cached level, a revocation regenerates the CRL,
// and after a (re)connection both, since announcements may have been lost.
func (s *Server) follow(ctx context.Context) error {
	return s.store.Listen(ctx, func(t store.Topic) {
		switch t {
		case store.TopicLevel:
			s.levels.Invalidate()
		case store.TopicRevoked:
			s.crls.Trigger()
		case store.TopicNames:
			s.fleet.follow(ctx, true, false)
		case store.TopicCA:
			s.fleet.follow(ctx, false, true)
		case store.TopicResync:
			s.levels.Invalidate()
			s.crls.Trigger()
			s.fleet.follow(ctx, true, true)
		}
	}, func(err error) {
		s.log.Warn().Err(err).Msg("lost the store's change notifications; reconnecting")
	})
}

// New loads the data directory, opens the store, generates the first CRL and
// binds the API and admin listeners. Close it if Run is never called. It
// refuses a data directory whose keys or database others can access
// (CheckPermissions). It
// also sets the process's garbage collector for serving (see gc.go) unless
// GOGC / GOMEMLIMIT are set.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", protocol.DefaultPort)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("--max-conns %d: must be positive", cfg.MaxConns)
	}
	log := cfg.Log
	tunnels, err := parseTunnels(cfg.TunnelAddrs)
	if err != nil {
		return nil, err
	}
	tuneGC()
	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Like sshd: never serve with a key or database others can read.
	if err := CheckPermissions(cfg.DataDir); err != nil {
		return nil, err
	}
	s.ca, err = ca.Load(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s (run `hostcert-primary init` first): %w", cfg.DataDir, err)
	}
	s.store, err = OpenStore(ctx, cfg.DataDir, cfg.Store)
	if err != nil {
		return nil, err
	}
	s.store.SetNode(cfg.Node)
	s.fleet = &fleet{dir: cfg.DataDir, node: cfg.Node, ca: s.ca, st: s.store, shared: s.store.Backend() == "postgres",
		log: log.With().Str("part", "fleet").Logger(), after: s.caChanged}
	if err := s.fleet.setupKey(ctx); err != nil {
		return nil, err
	}
	// A rotation another node made while this one was down.
	if _, err := s.fleet.syncCA(ctx); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	// Never sign for a fleet whose database belongs to another CA.
	var roots []string
	for _, r := range s.ca.Bundle() {
		roots = append(roots, pki.Fingerprint(r))
	}
	if err := s.store.ClaimCA(ctx, s.ca.Fingerprint(), roots); err != nil {
		return nil, fmt.Errorf("serve: %w; this data directory's CA does not sign for that fleet", err)
	}
	s.names = cfg.Names
	if len(s.names) == 0 {
		s.names = certNames(s.ca.ServerTLS())
	}
	if err := s.ensureServerCert(); err != nil {
		return nil, err
	}
	// Every name of every node is reserved on every node.
	if err := s.fleet.syncNames(ctx); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}

	s.crls = crl.New(s.store, s.ca, log.With().Str("part", "crl").Logger(), 0, crlInterval(s.store.Backend()))
	if s.fleet.shared {
		s.crls.UseShared(s.store)
	}
	if err := s.crls.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("first CRL: %w", err)
	}
	s.metrics = newMetrics()
	s.store.ObserveCommits(s.metrics.Commit)
	s.metrics.reg.MustRegister(newFleetCollector(s.store, s.crls, s.ca, s, log.With().Str("part", "metrics").Logger()))
	levels := enroll.NewLevelCache(s.store, levelTTL(s.store.Backend()))
	s.levels = levels
	s.enroll = enroll.New(enroll.Config{
		Registry: s.store, Ledger: s.store, Journal: journal{levels, s.store}, CA: s.ca, Primary: s.ca,
		Resolver: verify.NewBounded(verify.NewResolver(cfg.DNSServer), cfg.DNS),
		Counter:  s.metrics,
		Validity: cfg.CertValidity,
		Revoked:  s.crls.Trigger,
		Log:      log.With().Str("part", "enroll").Logger(),
	})
	handler := api.New(s.enroll, s.crls, s.ca, levels, log.With().Str("part", "api").Logger())
	handler.UseReadiness(s)

	s.adminSrv = admin.NewServer(s.store, s.ca, s.enroll, s.crls, log.With().Str("part", "admin").Logger())
	s.adminSrv.UseLevels(levels)
	s.adminSrv.UseRotator(s.fleet, s.ca)
	s.adminSrv.UseIssuer(s.ca)
	s.adminSrv.UseRootSigner(s.fleet)
	s.adminLn, err = s.adminSrv.Listen(cfg.DataDir)
	if err != nil {
		return nil, err
	}

	if cfg.Console != "" {
		if err := s.startConsole(cfg.Console); err != nil {
			return nil, err
		}
	}

	if cfg.MetricsListen, err = commonmetrics.ListenAddr(cfg.MetricsListen); err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	if cfg.Profiling && cfg.MetricsListen == "" {
		return nil, errors.New("profiling: the profiles are served on the metrics listener; give --metrics-listen too")
	}
	if cfg.MetricsListen != "" {
		s.metricLn, err = net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return nil, fmt.Errorf("metrics: listen on %s: %w", cfg.MetricsListen, err)
		}
	}
	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.conns = newCapListener(tcp, cfg.MaxConns, s.metrics)
	pp := &gate{Listener: s.conns, tunnels: tunnels, wait: ProxyHeaderWait, reporter: s.undeclaredProxy(ctx)}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The API checks the client certificate itself (renew), so that an
		// expired or foreign certificate gets a clear refusal code instead
		// of a failed handshake.
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			// After a CA rotation the CA holds the reissued certificate.
			if c := s.ca.ServerTLS(); c != nil {
				return c, nil
			}
			return s.cert.Load(), nil
		},
		NextProtos: []string{"http/1.1"},
	}
	s.apiLn = tls.NewListener(pp, tlsConf)
	s.api = &http.Server{
		Handler:           s.metrics.instrument(notVerifiable(handler)),
		ConnContext:       connContext,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          newStdLogger(log.With().Str("part", "http").Logger()),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	return s, nil
}

// OpenStore opens the store of a data directory: target when set (a
// postgres:// URL or a SQLite path), else the SQLite file DBName in dataDir.
// An unreachable PostgreSQL server is one line
// ("store: cannot reach postgres at HOST:PORT (reason)"); no error carries
// a password.
func OpenStore(ctx context.Context, dataDir, target string) (*store.Store, error) {
	if target == "" {
		target = filepath.Join(dataDir, DBName)
	}
	st, err := store.OpenTarget(ctx, target)
	var reach *store.ReachError
	switch {
	case errors.As(err, &reach):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", store.RedactDSN(target), err)
	}
	return st, nil
}

// Ready reports whether this node can serve: the CA and the TLS certificate
// are loaded and the store answers within ctx (GET /readyz).
func (s *Server) Ready(ctx context.Context) error {
	if s.ca == nil || s.cert.Load() == nil {
		return errors.New("the CA is not loaded")
	}
	return s.store.Ping(ctx)
}

// Addr is the bound API address.
func (s *Server) Addr() net.Addr { return s.apiLn.Addr() }

// MetricsAddr is the bound metrics address, nil when metrics are off.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricLn == nil {
		return nil
	}
	return s.metricLn.Addr()
}

// ConsoleAddr is the bound address of the web console, nil when it is off.
func (s *Server) ConsoleAddr() net.Addr {
	if s.consLn == nil {
		return nil
	}
	return s.consLn.Addr()
}

// CRLs is the CRL publisher (for tests and the CLI).
func (s *Server) CRLs() *crl.Publisher { return s.crls }

// Run serves until ctx ends or a part fails, then shuts down gracefully and
// closes the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.crls.Run(gctx) })
	g.Go(func() error { return s.follow(gctx) })
	g.Go(func() error { return s.fleet.run(gctx) })
	g.Go(func() error { return s.renewServerCert(gctx) })
	g.Go(func() error { return s.adminSrv.Serve(gctx, s.adminLn) })
	if s.metricLn != nil {
		g.Go(func() error { return s.metrics.serve(gctx, s.metricLn, s.log, s.cfg.Profiling) })
	}
	if s.consLn != nil {
		g.Go(func() error {
			s.log.Info().Str("addr", s.consLn.Addr().String()).Msg("serving the web console")
			return s.console.Serve(gctx, s.consLn)
		})
	}
	g.Go(func() error {
		s.log.Info().Str("addr", s.apiLn.Addr().String()).Str("data_dir", s.cfg.DataDir).
			Strs("tunnels", s.cfg.TunnelAddrs).Str("ca_fingerprint", s.ca.Fingerprint()).
			Str("store", s.store.Backend()).Str("store_at", s.store.Path()).Msg("serving")
		if err := s.api.Serve(s.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.log.Info().Msg("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
		defer cancel()
		if err := s.api.Shutdown(sctx); err != nil {
			s.log.Warn().Err(err).Msg("graceful shutdown incomplete")
			_ = s.api.Close()
		}
		return nil
	})
	err := g.Wait()
	s.log.Info().Msg("stopped")
	return err
}

// Close releases everything New opened. Safe to call more than once.
func (s *Server) Close() {
	if s.apiLn != nil {
		s.apiLn.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
	if s.metricLn != nil {
		s.metricLn.Close()
	}
	if s.consLn != nil {
		s.consLn.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Error().Err(err).Msg("closing store")
		}
		s.store = nil
	}
}

// ensureServerCert renews the primary's own certificate when due and
// publishes it to the TLS listener.
func (s *Server) ensureServerCert() error {
	renewed, err := s.ca.EnsureServerCert(s.names, time.Now())
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if renewed {
		s.log.Info().Strs("names", s.names).Msg("server certificate renewed")
	}
	c := s.ca.ServerTLS()
	if c == nil {
		return errors.New("server certificate: none after EnsureServerCert")
	}
	s.cert.Store(c)
	return nil
}

// caChanged follows a CA adopted from another node: the TLS listener gets
// the reissued certificate and the new issuing CA's CRL is served.
func (s *Server) caChanged(ctx context.Context) {
	if c := s.ca.ServerTLS(); c != nil {
		s.cert.Store(c)
	}
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		s.log.Error().Err(err).Msg("regenerating crls after adopting the fleet's ca")
	}
}

// renewServerCert checks the server certificate daily.
func (s *Server) renewServerCert(ctx context.Context) error {
	t := time.NewTicker(ServerCertCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.ensureServerCert(); err != nil {
				s.log.Error().Err(err).Msg("renewing server certificate")
			}
		}
	}
}

// journal is the enrollment path's view of the level (cached) and the
// audit log (the store).
type journal struct {
	*enroll.LevelCache
	st admin.AuditLog
}

func (j journal) AppendAudit(ctx context.Context, a store.Audit) error {
	return j.st.AppendAudit(ctx, a)
}

// certNames are the names of a TLS certificate: its DNS names and IP
// addresses.
func certNames(c *tls.Certificate) []string {
	if c == nil || c.Leaf == nil {
		return nil
	}
	return ca.CertNames(c.Leaf)
}

// parseTunnels accepts IP addresses and CIDR prefixes.
func parseTunnels(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, raw := range in {
		for _, s := range strings.Split(raw, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--tunnel-addr %q: want an IP address or a CIDR prefix", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// notVerifiable marks the requests of a connection whose source must verify
// no name (a PROXY header from an undeclared peer, a tunnel that relayed no
// client address): verification answers "not verified" with the reason.
func notVerifiable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sc, ok := r.Context().Value(connKey{}).(*sourceConn); ok {
			if why := sc.NotVerifiable(); why != "" {
				r = r.WithContext(verify.NotVerifiable(r.Context(), why))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// undeclaredProxy warns about, counts and audits a PROXY header from a peer
// that is not a declared tunnel: most likely a tunnel the primary was not
// told about (serve --tunnel-addr).
func (s *Server) undeclaredProxy(ctx context.Context) undeclaredReporter {
	st := s.store // Close clears the field; a late connection gets a closed store's error
	return func(peer netip.AddrPort, relayed net.Addr) {
		rel := ""
		if relayed != nil {
			rel = relayed.String()
		}
		s.metrics.UndeclaredProxy()
		s.log.Warn().Str("source", peer.Addr().String()).Str("relayed", rel).
			Msg("proxy header from undeclared peer: request not verified; declare the tunnel with --tunnel-addr")
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWait)
		defer cancel()
		err := st.AppendAudit(actx, store.Audit{
			At: time.Now(), Actor: "api", Source: peer.Addr().String(), Action: "proxy.undeclared", Outcome: "refused",
			Code: string(protocol.CodeNotVerified),
			Detail: map[string]any{
				"relayed": rel,
				"reason":  "PROXY header from undeclared peer " + peer.Addr().String() + ": its requests are not verified; declare the tunnel with serve --tunnel-addr",
			},
		})
		if err != nil {
			s.log.Error().Err(err).Str("source", peer.Addr().String()).Msg("auditing proxy header from undeclared peer")
		}
	}
}
