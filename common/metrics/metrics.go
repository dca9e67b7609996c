// Package metrics serves a Prometheus registry at /metrics on an opt-in
// listener, the one way the primary, the agent and the tunnel expose their
// metrics, and resolves the listen address of such a listener: a bare port
// binds loopback only.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Path is where the registry is served.
const Path = "/metrics"

// Timeouts of the metrics server: a scrape is small and quick.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 30 * time.Second
	shutdownGrace     = 5 * time.Second
)

// ListenAddr resolves a configured metrics address: "" stays "" (off); a
// bare port ("9556" or ":9556") binds loopback (127.0.0.1:9556); a host and
// port is used as given (a management network is the operator's choice).
func ListenAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", nil
	}
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("metrics listen address %q: %w", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("metrics listen address %q: no port", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// ProfilePath is where WithProfiling serves net/http/pprof.
const ProfilePath = "/debug/pprof/"

// Option changes what Serve serves.
type Option func(*http.ServeMux, *http.Server)

// WithProfiling also serves Go's profiles (net/http/pprof) under
// ProfilePath: CPU, heap, allocations, goroutines. Opt-in: a profile shows
// code paths and timings, never keys or tokens, but it costs CPU while it
// runs, so only an operator who asks for it gets it.
func WithProfiling() Option {
	return func(mux *http.ServeMux, srv *http.Server) {
		// A CPU profile streams for its ?seconds= (30 by default).
		srv.WriteTimeout = writeTimeout + 2*time.Minute
		mux.HandleFunc(ProfilePath, pprof.Index)
		mux.HandleFunc(ProfilePath+"cmdline", pprof.Cmdline)
		mux.HandleFunc(ProfilePath+"profile", pprof.Profile)
		mux.HandleFunc(ProfilePath+"symbol", pprof.Symbol)
		mux.HandleFunc(ProfilePath+"trace", pprof.Trace)
	}
}

// Serve serves reg at Path on ln until ctx ends; every other path is 404
// (but what the options add).
func Serve(ctx context.Context, ln net.Listener, reg prometheus.Gatherer, log zerolog.Logger, opts ...Option) error {
	mux := http.NewServeMux()
	mux.Handle(Path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errorLog{log}}))

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, WriteTimeout: writeTimeout}
	for _, o := range opts {
		o(mux, srv)
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}

// errorLog reports what promhttp could not gather.
type errorLog struct{ log zerolog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn().Str("error", fmt.Sprint(v...)).Msg("gathering metrics")
}
