package connect

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the tunnel's Prometheus metrics: refusals by code and the
// upstream dial latency are counted as they happen; open connections and
// tunnels and the bytes relayed are read from the server at scrape time
// (bytes of open tunnels included, so a long tunnel shows its traffic
// before it closes).
type metrics struct {
	reg      *prometheus.Registry
	refusals *prometheus.CounterVec
	dials    *prometheus.HistogramVec

	// Bytes of closed tunnels, by direction; guarded by Server.mu, which
	// also guards the set of open tunnels they are moved out of.
	closedUp, closedDown int64
}

var (
	descConns = prometheus.NewDesc("hostcert_tunnel_connections",
		"Open client connections admitted by the tunnel (handshaking or relaying).", nil, nil)
	descTunnels = prometheus.NewDesc("hostcert_tunnel_tunnels",
		"Open tunnels (CONNECT admitted, upstream dialled or being dialled).", nil, nil)
	descBytes = prometheus.NewDesc("hostcert_tunnel_relayed_bytes_total",
		"Bytes relayed, by direction: upstream (client to primary) or downstream (primary to client).",
		[]string{"direction"}, nil)
)

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hostcert_tunnel_refusals_total",
			Help: "Connections and requests the tunnel refused, by refusal code (docs/tunnel.md lists them).",
		}, []string{"code"}),
		dials: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hostcert_tunnel_upstream_dial_duration_seconds",
			Help:    "Time to connect (TCP) to the upstream primary, by result (ok, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
	}
	// Every code and result starts at 0, so that rate() and alerts see the
	// series before the first refusal or dial.
	for _, r := range []*refusal{&refuseMalformed, &refuseNotAllowed, &refuseMethod, &refuseTimeout, &refuseRate,
		&refuseSourceConns, &refuseBusy, &refuseTunnels, &refuseShutdown, &refuseDial, &refuseDialTimeout} {
		m.refusals.WithLabelValues(r.code)
	}
	m.refusals.WithLabelValues("headers_too_large")
	m.dials.WithLabelValues("ok")
	m.dials.WithLabelValues("error")
	m.reg.MustRegister(m.refusals, m.dials, serverCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Metrics is the tunnel's registry, for the metrics listener.
func (s *Server) Metrics() *prometheus.Registry { return s.metrics.reg }

func (m *metrics) refused(r *refusal) { m.refusals.WithLabelValues(r.code).Inc() }

func (m *metrics) dialed(took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.dials.WithLabelValues(result).Observe(took.Seconds())
}

// serverCollector reads the open connections, tunnels and bytes at scrape time.
type serverCollector struct{ s *Server }

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descTunnels
	ch <- descBytes
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.adm.mu.Lock()
	conns := s.adm.open
	s.adm.mu.Unlock()
	s.mu.Lock()
	open := len(s.tunnels)
	up, down := s.metrics.closedUp, s.metrics.closedDown
	for t := range s.tunnels {
		up += t.up.Load()
		down += t.down.Load()
	}
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(conns))
	ch <- prometheus.MustNewConstMetric(descTunnels, prometheus.GaugeValue, float64(open))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(up), "upstream")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(down), "downstream")
}
