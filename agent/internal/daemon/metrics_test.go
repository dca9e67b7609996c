package daemon_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"github.com/hostcert/hostcert/internal/nettest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// freeLoopback is a 127.0.0.1 port nothing listens on (for the metrics listener).
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// agentScrape fetches the agent's /metrics and returns name{labels} -> value.
func agentScrape(t *testing.T, addr string) (map[string]float64, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "hostcert_") {
			continue
		}
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			}
		}
	}
	return out, string(b)
}

// TestRunMetrics: with metrics_listen, run serves the certificate's expiry,
// the last renewal success and failure, the route in use and the CRL's age
// on loopback; a failing renewal shows as a failure newer than the last
// success, and the next success clears that. promlint finds nothing.
func TestRunMetrics(t *testing.T) {
	srv := primarytest.Start(t, primarytest.Options{CertValidity: 20 * time.Second})
	toxi, err := nettest.NewToxi(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer toxi.Close()
	maddr := freeLoopback(t)
	_, port, _ := net.SplitHostPort(maddr)
	// A bare port: the listener binds loopback.
	a := setup(t, srv, toxi.Addr(), "metrics_listen: \""+port+"\"\n")
	if err := toxi.BlackHole(); err != nil {
		t.Fatal(err)
	}
	shortLived(t, a, srv)
	before := a.identity().Cert
	a.start()

	var m map[string]float64
	eventually(t, "a renewal failure in the metrics", func() bool {
		if c, err := net.DialTimeout("tcp", maddr, time.Second); err != nil {
			return false
		} else {
			c.Close()
		}
		m, _ = agentScrape(t, maddr)
		return m["hostcert_agent_renewal_failures_total"] >= 1
	})
	if got, want := m["hostcert_agent_certificate_expiry_timestamp_seconds"], float64(before.NotAfter.Unix()); got != want {
		t.Errorf("hostcert_agent_certificate_expiry_timestamp_seconds = %v, want %v", got, want)
	}
	success, failure := m["hostcert_agent_renewal_last_success_timestamp_seconds"], m["hostcert_agent_renewal_last_failure_timestamp_seconds"]
	if success <= 0 || failure <= success {
		t.Errorf("last success %v, last failure %v during the fault, want 0 < success < failure", success, failure)
	}
	if m["hostcert_agent_route_info,route=direct,tunnel="] != 1 {
		t.Errorf("route in use = %v, want hostcert_agent_route_info{route=direct} 1", m)
	}
	if _, ok := m["hostcert_agent_crl_age_seconds"]; !ok {
		t.Errorf("no hostcert_agent_crl_age_seconds after get-cert stored a CRL: %v", m)
	}
	if got := m["hostcert_agent_crl_refresh_interval_seconds"]; got != (4 * time.Hour).Seconds() {
		t.Errorf("hostcert_agent_crl_refresh_interval_seconds = %v, want 14400 (level high)", got)
	}

	if err := toxi.Heal(); err != nil {
		t.Fatal(err)
	}
	// After the fault: a success newer than the failure, and the renewed
	// certificate's expiry (the state file is written a moment before the
	// certificate in use is swapped, and the agent keeps renewing this
	// short-lived certificate: only "later than before" is stable).
	eventually(t, "a renewal success newer than the failure, and a later expiry", func() bool {
		m, _ = agentScrape(t, maddr)
		return m["hostcert_agent_renewal_last_success_timestamp_seconds"] > m["hostcert_agent_renewal_last_failure_timestamp_seconds"] &&
			m["hostcert_agent_certificate_expiry_timestamp_seconds"] > float64(before.NotAfter.Unix())
	})
	if m["hostcert_agent_tls_handshakes_total,resumed=false"] < 1 {
		t.Errorf("hostcert_agent_tls_handshakes_total{resumed=false} = %v after renewals, want at least 1", m["hostcert_agent_tls_handshakes_total,resumed=false"])
	}
	if _, ok := m["hostcert_agent_tls_handshakes_total,resumed=true"]; !ok {
		t.Errorf("no hostcert_agent_tls_handshakes_total{resumed=true}: %v", m)
	}
	_, body := agentScrape(t, maddr)
	if problems, err := promlint.New(strings.NewReader(body)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint = %v, %v, want no problems", problems, err)
	}
}
