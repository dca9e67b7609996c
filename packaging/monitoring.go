package packaging

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"

	"gopkg.in/yaml.v3"
)

// The Prometheus alert rules (with their promtool unit tests) and the
// Grafana dashboard the packages ship.
const (
	AlertRulesFile = "prometheus/hostcert-alerts.yml"
	AlertTestsFile = "prometheus/hostcert-alerts_test.yml"
	DashboardFile  = "grafana/hostcert-dashboard.json"
)

//go:embed prometheus/hostcert-alerts.yml grafana/hostcert-dashboard.json
var monitoring embed.FS

// metricName matches hostcert's metric names in a PromQL expression (every
// hostcert metric starts with hostcert_; label names and values never do).
var metricName = regexp.MustCompile(`\bhostcert_[a-zA-Z0-9_]+`)

// Expressions are every PromQL expression of the alert rules (by alert
// name) and of the dashboard (by panel title and query ref).
func Expressions() (map[string]string, error) {
	out := map[string]string{}
	raw, err := monitoring.ReadFile(AlertRulesFile)
	if err != nil {
		return nil, err
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		return nil, fmt.Errorf("%s: %w", AlertRulesFile, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert+r.Record] = r.Expr
		}
	}
	dash, err := LoadDashboard()
	if err != nil {
		return nil, err
	}
	for _, p := range dash.Panels {
		for _, t := range p.Targets {
			out["panel "+p.Title+" "+t.RefID] = t.Expr
		}
	}
	return out, nil
}

// MetricNames are the hostcert metric names the expressions use (a
// histogram's _bucket, _sum and _count series as written), sorted.
func MetricNames(exprs map[string]string) []string {
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Dashboard is the part of a Grafana dashboard the tests check.
type Dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *Datasource `json:"datasource"`
	} `json:"targets"`
}

// Datasource is a panel's or a query's data source reference.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// LoadDashboard decodes the shipped dashboard.
func LoadDashboard() (Dashboard, error) {
	var d Dashboard
	raw, err := monitoring.ReadFile(DashboardFile)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	return d, nil
}
