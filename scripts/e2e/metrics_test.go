//go:build linux

package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/packaging"
)

// scrapeSeries fetches /metrics at addr (retrying while the listener comes
// up), lints it with promlint and returns the names of the series it exposes
// (a histogram's _bucket, _sum and _count).
func scrapeSeries(t *testing.T, what, addr string) map[string]bool {
	t.Helper()
	var body []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /metrics on %s: %v", what, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatalf("%s: promlint: %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("%s: promlint: %s: %s", what, p.Metric, p.Text)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%s: parse /metrics: %v", what, err)
	}
	out := map[string]bool{}
	for name, f := range fams {
		if len(f.GetMetric()) == 0 {
			continue
		}
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[name+s] = true
			}
			continue
		}
		out[name] = true
	}
	return out
}

// TestMetricsBehindAlertsAndDashboard runs the three programs as processes
// with their metrics listeners on, an agent enrolled through the tunnel and
// running, scrapes each /metrics (promlint must find nothing), and checks
// that every metric an alert rule or a dashboard panel of packaging/ reads
// is exposed by one of them.
func TestMetricsBehindAlertsAndDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	dns := dnstest.New(t, nil)
	primaryMetrics := freePort(t, "127.0.0.1")
	pr := newPrimary(t, primaryOpts{dnsServer: dns.Addr(), extra: []string{"--metrics-listen", primaryMetrics}})
	_, port, _ := net.SplitHostPort(pr.listen)
	primary := primaryName + ":" + port

	tunnel, tunnelMetrics := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	cfg := filepath.Join(t.TempDir(), "tunnel.yaml")
	if err := os.WriteFile(cfg, []byte("listen: "+tunnel+"\nmetrics_listen: "+tunnelMetrics+
		"\nallow:\n  - target: "+primary+"\n    upstream: "+pr.listen+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tp := start(t, "tunnel", "", bins.tunnel, "run", "--config", cfg, "--log-format", "json")
	tp.waitFor(t, "listening", 20*time.Second)

	agentMetrics := freePort(t, "127.0.0.1")
	a := newAgentHost(t, "m1.metrics.test", primary, "primary_dial: 127.0.0.1:1", "tunnels: ["+tunnel+"]", "metrics_listen: "+agentMetrics)
	a.must("get-ca-cert", "--fingerprint", pr.fingerprint)
	token := strings.TrimSpace(pr.admin("token", "create", "--name", "m1"))
	a.must("get-cert", "--token", token)
	ag := start(t, "agent run", "", bins.agent, "run", "--config", a.config)
	ag.waitFor(t, "agent running", 20*time.Second)

	exposed := map[string]string{}
	for _, s := range []struct{ what, addr string }{
		{"primary", primaryMetrics}, {"tunnel", tunnelMetrics}, {"agent", agentMetrics},
	} {
		for name := range scrapeSeries(t, s.what, s.addr) {
			exposed[name] = s.what
		}
	}
	exprs, err := packaging.Expressions()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string][]string{}
	for where, e := range exprs {
		for _, n := range packaging.MetricNames(map[string]string{where: e}) {
			used[n] = append(used[n], where)
		}
	}
	if len(used) < 20 {
		t.Fatalf("only %d metric names found in the alert rules and the dashboard: %v", len(used), used)
	}
	for name, where := range used {
		if _, ok := exposed[name]; !ok {
			sort.Strings(where)
			t.Errorf("%s (used by %s) is exposed by no program", name, strings.Join(where, "; "))
		}
	}
}
