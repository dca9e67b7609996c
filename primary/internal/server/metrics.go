package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/protocol"
)

// metrics counts every decision by kind, outcome and refusal code
// (hostcert_primary_decisions_total), the API connections (open, refused
// over the cap) and PROXY headers from undeclared peers, next to the Go and
// process collectors.
type metrics struct {
	reg        *prometheus.Registry
	decisions  *prometheus.CounterVec
	conns      prometheus.Gauge
	refused    prometheus.Counter
	undeclared prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hostcert_primary_decisions_total",
			Help: "Enrollment and renewal decisions by request kind, outcome (granted/refused) and refusal code.",
		}, []string{"kind", "outcome", "code"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hostcert_primary_api_connections",
			Help: "Open connections on the API listener (at most serve --max-conns).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hostcert_primary_api_connections_refused_total",
			Help: "API connections refused (503) because --max-conns were open.",
		}),
		undeclared: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hostcert_primary_proxy_headers_undeclared_total",
			Help: "Connections that started with a PROXY header from a peer not declared with --tunnel-addr (their requests are not verified).",
		}),
	}
	m.reg.MustRegister(m.decisions, m.conns, m.refused, m.undeclared, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Decision implements enroll.Counter.
func (m *metrics) Decision(kind string, granted bool, code protocol.Code) {
	outcome := "refused"
	if granted {
		outcome = "granted"
	}
	m.decisions.WithLabelValues(kind, outcome, string(code)).Inc()
}

// ConnOpened, ConnClosed and ConnRefused implement connCounter.
func (m *metrics) ConnOpened()  { m.conns.Inc() }
func (m *metrics) ConnClosed()  { m.conns.Dec() }
func (m *metrics) ConnRefused() { m.refused.Inc() }

// UndeclaredProxy counts a PROXY header from an undeclared peer.
func (m *metrics) UndeclaredProxy() { m.undeclared.Inc() }

// serve serves /metrics on ln until ctx ends.
func (m *metrics) serve(ctx context.Context, ln net.Listener, log zerolog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
