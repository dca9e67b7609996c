package connect

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: refusals are counted by code, open connections and tunnels
// are gauged, the bytes of open and closed tunnels are counted by
// direction, and every upstream dial is timed; the registry lints clean.
func TestMetrics(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"p.test:1556=" + up.Addr().String(), "dead.test:1556=" + deadAddr(t)}, nil)
	m := tt.srv.metrics

	resp, _ := rawRequest(t, tt.addr, "", "CONNECT other.test:1556 HTTP/1.1\r\nHost: other.test:1556\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT other.test = %s, want 403", resp.Status)
	}
	resp, _ = rawRequest(t, tt.addr, "", "GET http://p.test:1556/ HTTP/1.1\r\nHost: p.test\r\n\r\n")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET = %s, want 405", resp.Status)
	}
	resp, _ = rawRequest(t, tt.addr, "", "CONNECT dead.test:1556 HTTP/1.1\r\nHost: dead.test:1556\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("CONNECT dead.test = %s, want 502", resp.Status)
	}
	for code, want := range map[string]float64{"target_not_allowed": 1, "method_not_allowed": 1, "upstream_unreachable": 1} {
		if got := testutil.ToFloat64(m.refusals.WithLabelValues(code)); got != want {
			t.Errorf("hostcert_tunnel_refusals_total{code=%q} = %v, want %v", code, got, want)
		}
	}

	closed := connectThrough(t, tt.addr, "", "p.test:1556")
	echoRoundTrip(t, closed, "12345") // 5 bytes each way
	closed.Close()
	waitFor(t, "the first tunnel to close", func() bool { return tt.srv.Tunnels() == 0 })
	open := connectThrough(t, tt.addr, "", "p.test:1556")
	echoRoundTrip(t, open, "abc") // 3 more each way, still open
	waitFor(t, "the second tunnel to be open", func() bool { return tt.srv.Tunnels() == 1 })

	want := `
# HELP hostcert_tunnel_relayed_bytes_total Bytes relayed, by direction: upstream (client to primary) or downstream (primary to client).
# TYPE hostcert_tunnel_relayed_bytes_total counter
hostcert_tunnel_relayed_bytes_total{direction="downstream"} 8
hostcert_tunnel_relayed_bytes_total{direction="upstream"} 8
# HELP hostcert_tunnel_tunnels Open tunnels (CONNECT admitted, upstream dialled or being dialled).
# TYPE hostcert_tunnel_tunnels gauge
hostcert_tunnel_tunnels 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "hostcert_tunnel_relayed_bytes_total", "hostcert_tunnel_tunnels"); err != nil {
		t.Error(err)
	}
	if got := gathered(t, m.reg, "hostcert_tunnel_connections", ""); got < 1 {
		t.Errorf("hostcert_tunnel_connections = %v with a tunnel open, want at least 1", got)
	}
	// Three dials: p.test twice (ok), dead.test once (error).
	for result, want := range map[string]float64{"ok": 2, "error": 1} {
		if got := gathered(t, m.reg, "hostcert_tunnel_upstream_dial_duration_seconds", result); got != want {
			t.Errorf("hostcert_tunnel_upstream_dial_duration_seconds_count{result=%q} = %v, want %v", result, got, want)
		}
	}
	if problems, err := testutil.GatherAndLint(m.reg); err != nil || len(problems) > 0 {
		t.Errorf("GatherAndLint = %v, %v, want no problems", problems, err)
	}
	open.Close()
}

// gathered is the value (a histogram's count) of the series of name whose
// one label has value label ("" for a series without labels).
func gathered(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if (label == "" && len(m.GetLabel()) == 0) || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				switch {
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				case m.Counter != nil:
					return m.Counter.GetValue()
				default:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}
