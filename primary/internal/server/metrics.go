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
// (hostcert_primary_decisions_total), next to the Go and process collectors.
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hostcert_primary_decisions_total",
			Help: "Enrollment and renewal decisions by request kind, outcome (granted/refused) and refusal code.",
		}, []string{"kind", "outcome", "code"}),
	}
	m.reg.MustRegister(m.decisions, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
