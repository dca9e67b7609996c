package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"math"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// scrape fetches /metrics from a running server and parses it.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams, body
}

// value is the value of the series of family name with exactly the labels
// given (name=value pairs); ok false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// lint fails the test on every problem promlint finds in a scrape.
func lint(t *testing.T, body []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsScrape: a real primary, after real requests, exports on its
// metrics listener what an operator alerts on, named by Prometheus
// conventions (promlint on the scrape and testutil.GatherAndLint on the
// registry find nothing).
func TestMetricsScrape(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	e.dns.Set("m.test", loopback)
	e.dns.Set("gone.test", loopback)
	e.enroll(newHost(t, "m.test"), "", "", false) // unknown at high: token_required
	e.setLevel(protocol.LevelMedium)
	if r := e.enroll(newHost(t, "m.test"), "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll m.test = %v, want 200", r)
	}
	gone := newHost(t, "gone.test")
	if r := e.enroll(gone, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll gone.test = %v, want 200", r)
	}
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "gone.test", Reason: "keyCompromise"}, nil)
	e.waitCRL(ca.SerialHex(gone.leaf.SerialNumber), true)
	e.token("spare", 3, "")
	e.get("/no/such/path", nil)

	fams, body := scrape(t, e.srv.MetricsAddr().String())
	lint(t, body)
	if problems, err := testutil.GatherAndLint(e.srv.metrics.reg); err != nil || len(problems) > 0 {
		t.Errorf("GatherAndLint = %v, %v, want no problems", problems, err)
	}

	exact := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hostcert_primary_decisions_total", []string{"kind", "issue", "outcome", "refused", "code", "token_required"}, 1},
		{"hostcert_primary_decisions_total", []string{"kind", "issue", "outcome", "granted", "code", ""}, 2},
		{"hostcert_primary_http_request_duration_seconds", []string{"route", "/v1/enroll", "code", "200"}, 2},
		{"hostcert_primary_http_request_duration_seconds", []string{"route", "other", "code", "404"}, 1},
		// m.test is current; gone.test is revoked: not counted.
		{"hostcert_primary_certificates", []string{"expires_in", "180d+"}, 1},
		{"hostcert_primary_certificates", []string{"expires_in", "0-7d"}, 0},
		{"hostcert_primary_certificates", []string{"expires_in", "expired"}, 0},
		{"hostcert_primary_tokens_active", []string{"kind", "standard"}, 1},
		{"hostcert_primary_tokens_active", []string{"kind", "reissue"}, 0},
		{"hostcert_primary_crl_entries", nil, 1},
		{"hostcert_primary_crl_refresh_interval_seconds", nil, crl.DefaultInterval.Seconds()},
		{"hostcert_primary_ready", nil, 1},
		{"hostcert_primary_inventory_errors_total", nil, 0},
	}
	for _, c := range exact {
		if got, ok := value(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	st := e.srv.store.Stats()
	if got, _ := value(fams, "hostcert_primary_store_commit_batch_size"); got < 1 || got > float64(st.Batches) {
		t.Errorf("store commits observed = %v, want 1..%d (Stats().Batches)", got, st.Batches)
	}
	if got, _ := value(fams, "hostcert_primary_store_commit_duration_seconds"); got < 1 {
		t.Errorf("store commit durations observed = %v, want at least 1", got)
	}
	if age, ok := value(fams, "hostcert_primary_crl_age_seconds"); !ok || age < 0 || age > 60 {
		t.Errorf("hostcert_primary_crl_age_seconds = %v (present %v), want 0..60", age, ok)
	}
	year := (365 * 24 * time.Hour).Seconds()
	if left, ok := value(fams, "hostcert_primary_ca_expiry_seconds", "subject", e.caCert.Subject.CommonName); !ok || left < year {
		t.Errorf("hostcert_primary_ca_expiry_seconds{subject=%q} = %v (present %v), want over a year", e.caCert.Subject.CommonName, left, ok)
	}
	if ts, ok := value(fams, "hostcert_primary_inventory_timestamp_seconds"); !ok || math.Abs(ts-float64(time.Now().Unix())) > 60 {
		t.Errorf("hostcert_primary_inventory_timestamp_seconds = %v (present %v), want about now", ts, ok)
	}
}

// fakeInventory counts its queries and fails when told to.
type fakeInventory struct {
	inv   store.ExpiryCounts
	err   error
	calls int
}

func (f *fakeInventory) ExpiryCounts(context.Context, time.Time, []time.Duration) (store.ExpiryCounts, error) {
	f.calls++
	return f.inv, f.err
}

type fakeCRLs struct{ l, root *crl.List }

func (f fakeCRLs) Current() *crl.List { return f.l }
func (f fakeCRLs) Roots() []*crl.List {
	if f.root == nil {
		return nil
	}
	return []*crl.List{f.root}
}

type fakeCA []*x509.Certificate

func (f fakeCA) Bundle() []*x509.Certificate { return f }

type fakeReady struct{ err error }

func (f *fakeReady) Ready(context.Context) error { return f.err }

// TestFleetCollector: the inventory query runs at most once per maxAge
// however often Prometheus scrapes; a failed query keeps the last counts
// and is counted; readiness, CRL and CA values are read at each scrape.
func TestFleetCollector(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	inv := &fakeInventory{inv: store.ExpiryCounts{Expired: 2, Within: []int64{3, 0, 0, 0, 9}, LiveTokens: map[string]int64{"standard": 4}}}
	ready := &fakeReady{}
	caCert := &x509.Certificate{NotAfter: now.Add(100 * time.Second), SerialNumber: big.NewInt(255)}
	caCert.Subject.CommonName = "test CA"
	c := newFleetCollector(inv, fakeCRLs{&crl.List{Entries: 5, ThisUpdate: now.Add(-30 * time.Second), NextUpdate: now.Add(time.Hour)},
		&crl.List{Issuer: "0011223344556677", Root: true, NextUpdate: now.Add(10 * time.Second)}},
		fakeCA{caCert}, ready, zerolog.Nop())
	c.now = func() time.Time { return now }
	c.maxAge = time.Minute

	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("CollectAndLint = %v, %v, want no problems", problems, err)
	}
	want := func(text string, names ...string) {
		t.Helper()
		if err := testutil.CollectAndCompare(c, strings.NewReader(text), names...); err != nil {
			t.Error(err)
		}
	}
	want(`
# HELP hostcert_primary_certificates Current, unrevoked host certificates (one per host) by remaining life: expired, 0-7d, 7-30d, 30-90d, 90-180d, 180d+.
# TYPE hostcert_primary_certificates gauge
hostcert_primary_certificates{expires_in="expired"} 2
hostcert_primary_certificates{expires_in="0-7d"} 3
hostcert_primary_certificates{expires_in="7-30d"} 0
hostcert_primary_certificates{expires_in="30-90d"} 0
hostcert_primary_certificates{expires_in="90-180d"} 0
hostcert_primary_certificates{expires_in="180d+"} 9
# HELP hostcert_primary_ca_expiry_seconds Seconds until the CA certificate's NotAfter (negative once expired), for every CA in the bundle.
# TYPE hostcert_primary_ca_expiry_seconds gauge
hostcert_primary_ca_expiry_seconds{serial="ff",subject="test CA"} 100
# HELP hostcert_primary_crl_age_seconds Seconds since the served CRL was generated (its thisUpdate).
# TYPE hostcert_primary_crl_age_seconds gauge
hostcert_primary_crl_age_seconds 30
# HELP hostcert_primary_crl_entries Revoked certificates listed in the served CRL.
# TYPE hostcert_primary_crl_entries gauge
hostcert_primary_crl_entries 5
# HELP hostcert_primary_ready 1 when this node can serve (CA loaded, store answering), as /readyz says; else 0.
# TYPE hostcert_primary_ready gauge
hostcert_primary_ready 1
# HELP hostcert_primary_root_crl_next_update_timestamp_seconds Each root's CRL's nextUpdate (it lists revoked issuing CAs): after it, agents under that root cannot tell their certificate's state. An offline root's CRL is signed again with ca sign-root-crl --root-key FILE.
# TYPE hostcert_primary_root_crl_next_update_timestamp_seconds gauge
hostcert_primary_root_crl_next_update_timestamp_seconds{root="0011223344556677"} 1.79608321e+09
`, "hostcert_primary_certificates", "hostcert_primary_ca_expiry_seconds", "hostcert_primary_crl_age_seconds",
		"hostcert_primary_crl_entries", "hostcert_primary_ready", "hostcert_primary_root_crl_next_update_timestamp_seconds")

	// Scrapes within maxAge reuse the counts: the query ran once so far
	// (CollectAndLint and CollectAndCompare both collected).
	if inv.calls != 1 {
		t.Errorf("inventory queries after scrapes within maxAge = %d, want 1", inv.calls)
	}
	// Later, the query fails and the store is gone: the counts stay, the
	// failure is counted, readiness drops to 0.
	now = now.Add(2 * time.Minute)
	inv.err = errors.New("database is locked")
	ready.err = store.ErrUnavailable
	want(`
# HELP hostcert_primary_inventory_errors_total Failed certificate and token counts (the previous counts stay exported).
# TYPE hostcert_primary_inventory_errors_total counter
hostcert_primary_inventory_errors_total 1
# HELP hostcert_primary_ready 1 when this node can serve (CA loaded, store answering), as /readyz says; else 0.
# TYPE hostcert_primary_ready gauge
hostcert_primary_ready 0
# HELP hostcert_primary_tokens_active Tokens neither expired nor used up, by kind (standard, reissue).
# TYPE hostcert_primary_tokens_active gauge
hostcert_primary_tokens_active{kind="reissue"} 0
hostcert_primary_tokens_active{kind="standard"} 4
`, "hostcert_primary_inventory_errors_total", "hostcert_primary_ready", "hostcert_primary_tokens_active")
	if inv.calls != 2 {
		t.Errorf("inventory queries after maxAge = %d, want 2", inv.calls)
	}
	var _ prometheus.Collector = c
}
