package packaging

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The keys the example configs may use: the agent's and the tunnel's config
// contract (docs/packaging.md). The programs' own tests load the files with
// their real config loaders through ExampleConfig.
type agentKeys struct {
	Primary      string   `yaml:"primary"`
	PrimaryDial  string   `yaml:"primary_dial"`
	Tunnels      []string `yaml:"tunnels"`
	DataDir      string   `yaml:"data_dir"`
	Name         string   `yaml:"name"`
	OtherNames   []string `yaml:"other_names"`
	KeyAlgorithm string   `yaml:"key_algorithm"`
	RenewBefore  string   `yaml:"renew_before"`
	KeepKey      bool     `yaml:"keep_key"`
	LogFormat    string   `yaml:"log_format"`
	LogLevel     string   `yaml:"log_level"`
	Metrics      string   `yaml:"metrics_listen"`
}

type tunnelKeys struct {
	Listen string `yaml:"listen"`
	Allow  []struct {
		Target   string `yaml:"target"`
		Upstream string `yaml:"upstream"`
	} `yaml:"allow"`
	ProxyProtocol bool           `yaml:"proxy_protocol"`
	Limits        map[string]any `yaml:"limits"`
	Metrics       string         `yaml:"metrics_listen"`
}

// uncomment turns the commented-out settings ("#key: v", "#  - item") into
// live ones, leaving prose comments ("# text") alone.
var commentedSetting = regexp.MustCompile(`(?m)^#([^ #\n]|  )`)

func uncomment(s string) string { return commentedSetting.ReplaceAllString(s, "$1") }

func decodeStrict(t *testing.T, name, text string, into any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Errorf("decode %s strictly: %v\n%s", name, err, text)
	}
}

func TestExampleConfigs(t *testing.T) {
	agent := ExampleConfig("agent.yaml")
	tunnel := ExampleConfig("tunnel.yaml")
	if agent == "" || tunnel == "" {
		t.Fatalf("ExampleConfig(agent.yaml) = %d bytes, ExampleConfig(tunnel.yaml) = %d bytes, want both", len(agent), len(tunnel))
	}

	var a agentKeys
	decodeStrict(t, "agent.yaml", agent, &a)
	if a.DataDir != "/var/lib/hostcert/agent" {
		t.Errorf("agent.yaml data_dir = %q, want /var/lib/hostcert/agent (the unit's StateDirectory)", a.DataDir)
	}
	var all agentKeys
	decodeStrict(t, "agent.yaml, every example uncommented", uncomment(agent), &all)
	if all.Primary == "" || len(all.Tunnels) != 2 || all.RenewBefore == "" || all.KeyAlgorithm == "" {
		t.Errorf("uncommented agent.yaml = %+v, want primary, two tunnels, renew_before and key_algorithm set", all)
	}

	var tu tunnelKeys
	decodeStrict(t, "tunnel.yaml", tunnel, &tu)
	if tu.Listen != ":1556" || len(tu.Allow) != 0 {
		t.Errorf("tunnel.yaml = %+v, want listen :1556 and nothing allowed until configured", tu)
	}
	var allT tunnelKeys
	decodeStrict(t, "tunnel.yaml, every example uncommented", uncomment(tunnel), &allT)
	if len(allT.Allow) != 1 || allT.Allow[0].Target == "" || allT.Allow[0].Upstream == "" || !allT.ProxyProtocol {
		t.Errorf("uncommented tunnel.yaml = %+v, want one allow entry with target and upstream, proxy_protocol", allT)
	}
}

func TestUncomment(t *testing.T) {
	tests := []struct{ in, want string }{
		{"#primary: x\n", "primary: x\n"},
		{"#  - a\n", "  - a\n"},
		{"# prose: not a key\n", "# prose: not a key\n"},
		{"#\n", "#\n"},
		{"## heading\n", "## heading\n"},
	}
	for _, tt := range tests {
		if got := uncomment(tt.in); got != tt.want {
			t.Errorf("uncomment(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPrimaryEnv(t *testing.T) {
	env := ExampleConfig("primary.env")
	var live []string
	for _, l := range strings.Split(env, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		live = append(live, l)
	}
	if len(live) != 1 || !strings.HasPrefix(live[0], "HOSTCERT_PRIMARY_ARGS=") {
		t.Errorf("primary.env settings = %q, want only HOSTCERT_PRIMARY_ARGS=", live)
	}
	if !bytes.Contains([]byte(SystemdUnitFile("hostcert-primary")), []byte("EnvironmentFile=-/etc/hostcert/primary.env")) {
		t.Error("hostcert-primary.service does not read /etc/hostcert/primary.env")
	}
}
