package packaging

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// promtool is the path of promtool (the distribution's prometheus package,
// which scripts/deps.sh installs). Under CI a missing promtool fails the
// test; elsewhere it skips loudly.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("promtool is required under CI and missing (%v); scripts/deps.sh installs the prometheus package", err)
	}
	t.Skipf("SKIPPED: promtool not found (%v); install the prometheus package (scripts/deps.sh) to check the alert rules", err)
	return ""
}

// TestAlertRules: promtool accepts the shipped rules, and its unit tests
// (hostcert-alerts_test.yml) see every alert fire on synthetic series and
// stay quiet on healthy ones.
func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", AlertRulesFile},
		{"test", "rules", AlertTestsFile},
	} {
		out, err := exec.Command(pt, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s = %v:\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesTested: every alert of the rules file has a promtool unit
// test (an alert_rule_test naming it).
func TestAlertRulesTested(t *testing.T) {
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(AlertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for key := range exprs {
		name, ok := strings.CutPrefix(key, "alert ")
		if !ok {
			continue
		}
		n++
		if !strings.Contains(string(tests), "alertname: "+name+"\n") {
			t.Errorf("alert %s has no promtool unit test in %s", name, AlertTestsFile)
		}
	}
	// The four alerts the operators asked for, at least.
	for _, name := range []string{"HostcertCertificatesExpiringSoon", "HostcertAgentRenewalFailing", "HostcertAgentCRLStale", "HostcertPrimaryNotReady"} {
		if _, ok := exprs["alert "+name]; !ok {
			t.Errorf("alert %s missing from %s", name, AlertRulesFile)
		}
	}
	if n == 0 {
		t.Fatal("no alerts parsed")
	}
}

// TestDashboard: the dashboard is valid JSON whose data source is a
// variable (no installation-specific UID), every panel and query uses it,
// panel IDs are unique, and every query reads hostcert metrics.
func TestDashboard(t *testing.T) {
	d, err := LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: want both", d.Title, d.UID)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasVar = true
		}
	}
	if !hasVar {
		t.Errorf("templating = %+v, want a datasource variable named datasource of type prometheus", d.Templating.List)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q datasource = %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if q.Datasource == nil || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s datasource = %+v, want uid ${datasource}", p.Title, q.RefID, q.Datasource)
			}
			if !strings.Contains(q.Expr, "hostcert_") {
				t.Errorf("panel %q query %s = %q reads no hostcert metric", p.Title, q.RefID, q.Expr)
			}
		}
	}
	if queries == 0 {
		t.Fatal("no queries parsed")
	}
}

// TestMetricNames: the names are found in expressions, label values and
// functions are not, and histogram series keep their suffix.
func TestMetricNames(t *testing.T) {
	got := MetricNames(map[string]string{
		"a": `sum by (code) (rate(hostcert_tunnel_refusals_total{code="x"}[5m]))`,
		"b": `histogram_quantile(0.95, sum by (le) (rate(hostcert_primary_http_request_duration_seconds_bucket[5m])))`,
		"c": `hostcert_agent_crl_age_seconds > hostcert_agent_crl_refresh_interval_seconds + 3600`,
	})
	want := "[hostcert_agent_crl_age_seconds hostcert_agent_crl_refresh_interval_seconds hostcert_primary_http_request_duration_seconds_bucket hostcert_tunnel_refusals_total]"
	if s := "[" + strings.Join(got, " ") + "]"; s != want {
		t.Errorf("MetricNames = %s, want %s", s, want)
	}
}
