package server

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	commonmetrics "github.com/hostcert/hostcert/common/metrics"
	"github.com/hostcert/hostcert/common/protocol"
)

// metrics counts every decision by kind, outcome and refusal code
// (hostcert_primary_decisions_total), times the API's requests by route and
// status and the store's commits, gauges the API connections (open, refused
// over the cap) and counts PROXY headers from undeclared peers, next to the
// Go and process collectors. What the fleet looks like (certificates,
// tokens, CRL, CA, readiness) is read at scrape time by the fleet collector
// (metrics_fleet.go).
type metrics struct {
	reg         *prometheus.Registry
	decisions   *prometheus.CounterVec
	requests    *prometheus.HistogramVec
	commitTime  prometheus.Histogram
	commitBatch prometheus.Histogram
	conns       prometheus.Gauge
	refused     prometheus.Counter
	undeclared  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hostcert_primary_decisions_total",
			Help: "Enrollment and renewal decisions by request kind, outcome (granted/refused) and refusal code.",
		}, []string{"kind", "outcome", "code"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hostcert_primary_http_request_duration_seconds",
			Help:    "API requests by route (the API path, \"other\" for any other) and HTTP status code: time to the end of the response.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "code"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hostcert_primary_store_commit_duration_seconds",
			Help:    "Store write transactions: time from BEGIN to the end of COMMIT (one fsync on SQLite).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hostcert_primary_store_commit_batch_size",
			Help:    "Write operations per committed store transaction (SQLite group commit; always 1 on PostgreSQL).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512 (the largest batch)
		}),
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
	m.reg.MustRegister(m.decisions, m.requests, m.commitTime, m.commitBatch, m.conns, m.refused, m.undeclared,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Commit observes one committed store transaction (store.ObserveCommits).
func (m *metrics) Commit(ops int, took time.Duration) {
	m.commitTime.Observe(took.Seconds())
	m.commitBatch.Observe(float64(ops))
}

// apiRoutes are the API's paths, the values of the route label; every
// other path is "other", so a scanner cannot grow the label set.
var apiRoutes = []string{
	protocol.PathCA, protocol.PathCRL, protocol.PathInfo, protocol.PathEnroll, protocol.PathRenew,
	protocol.PathHealthz, protocol.PathReadyz,
}

// routeOther is the route label of a path the API does not serve.
const routeOther = "other"

// instrument times every request to next by route and status code.
func (m *metrics) instrument(next http.Handler) http.Handler {
	byRoute := make(map[string]http.Handler, len(apiRoutes))
	for _, r := range append(apiRoutes, routeOther) {
		byRoute[r] = promhttp.InstrumentHandlerDuration(m.requests.MustCurryWith(prometheus.Labels{"route": r}), next)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := byRoute[r.URL.Path]
		if !ok {
			h = byRoute[routeOther]
		}
		h.ServeHTTP(w, r)
	})
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

// serve serves /metrics on ln until ctx ends, and Go's profiles too when
// profiling is on.
func (m *metrics) serve(ctx context.Context, ln net.Listener, log zerolog.Logger, profiling bool) error {
	var opts []commonmetrics.Option
	if profiling {
		opts = append(opts, commonmetrics.WithProfiling())
	}
	return commonmetrics.Serve(ctx, ln, m.reg, log, opts...)
}
