package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStrict(t *testing.T) {
	_, err := Parse([]byte("primary: p.example:1556\nbogus_key: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "bogus_key") {
		t.Fatalf("Parse(unknown key) = %v, want an error naming bogus_key and line 2", err)
	}
	c, err := Parse(nil)
	if err != nil || len(c.Primary) != 0 {
		t.Fatalf("Parse(empty) = %+v, %v, want zero config", c, err)
	}
}

// The packaged example config (packaging/config/agent.yaml) must load.
func TestPackagedExample(t *testing.T) {
	path := filepath.Join("..", "..", "..", "packaging", "config", "agent.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no packaged example: %v", err)
	}
	if _, err := Load(path, false, nil); err != nil {
		t.Fatalf("Load(%s) = %v, want nil", path, err)
	}
}

func TestLoadDefaultsAndOverrides(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte("primary: p.example\ntunnels: [m1.example, 'm2.example:99']\nrenew_before: 240h\nkeep_key: true\n"), 0o644)
	c, err := Load(path, false, Overrides{func(c *Config) { c.DataDir = "/tmp/x" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"primary", c.Primary.String(), "p.example:1556"},
		{"tunnels[0]", c.Tunnels[0], "m1.example:1556"},
		{"tunnels[1]", c.Tunnels[1], "m2.example:99"},
		{"data_dir", c.DataDir, "/tmp/x"},
		{"key_algorithm", c.KeyAlgorithm, "ecdsa-p256"},
	} {
		if tc.got != tc.want {
			t.Errorf("Load().%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if c.RenewBefore != 240*time.Hour || !c.KeepKey || c.DialTimeout != DefaultDialTimeout || c.ProbeInterval != DefaultProbeInterval {
		t.Errorf("Load() = %+v, want renew_before 240h, keep_key, default timeouts", c)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), true, nil); err != nil {
		t.Errorf("Load(missing, optional) = %v, want nil", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), false, nil); err == nil {
		t.Errorf("Load(missing, required) = nil, want an error")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		ok   bool
	}{
		{"primary: p:1556", true},
		{"primary: 'p:notaport'", false},
		{"primary: 'p:0'", false},
		{"primary_dial: ':1556'", false},
		{"tunnels: ['m:70000']", false},
		{"key_algorithm: rsa-3072", true},
		{"key_algorithm: dsa", false},
		{"renew_before: -1h", false},
		{"log_format: xml", false},
		{"log_level: loud", false},
		{"renew_before: soon", false},
		{"other_names: [web, web.internal.example]", true},
		{"other_names: ['']", false},
		{"other_names: ['has space.example']", false},
		{"other_names: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p]", false}, // 16 > MaxOtherNames
		{"other_names: web", false},                               // a list, not a scalar
	} {
		c, err := Parse([]byte(tc.yaml))
		if err == nil {
			c.applyDefaults()
			err = c.Validate()
		}
		if (err == nil) != tc.ok {
			t.Errorf("validate(%q) = %v, want ok=%t", tc.yaml, err, tc.ok)
		}
		if err != nil && tc.ok == false && strings.Contains(tc.yaml, "primary") && !errors.Is(err, ErrInvalid) {
			t.Errorf("validate(%q) = %v, want ErrInvalid", tc.yaml, err)
		}
	}
}

func TestWithDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"p.example": "p.example:1556", "p.example:443": "p.example:443",
		"10.0.0.1": "10.0.0.1:1556", "::1": "[::1]:1556", "[::1]:9": "[::1]:9",
	} {
		if got := WithDefaultPort(in); got != want {
			t.Errorf("WithDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// metrics_listen is off by default; a bare port binds loopback; an address
// is kept; a malformed one is an error naming the key.
func TestMetricsListen(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"metrics_listen: 9556\n", "127.0.0.1:9556"},
		{"metrics_listen: ':9556'\n", "127.0.0.1:9556"},
		{"metrics_listen: '10.1.2.3:9556'\n", "10.1.2.3:9556"},
	} {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		os.WriteFile(path, []byte("primary: p.example\n"+tc.in), 0o644)
		c, err := Load(path, false, nil)
		if err != nil || c.MetricsListen != tc.want {
			t.Errorf("Load(%q).MetricsListen = %q, %v, want %q, nil", tc.in, c.MetricsListen, err, tc.want)
		}
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("primary: p.example\nmetrics_listen: 'host:'\n"), 0o644)
	if _, err := Load(path, false, nil); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Errorf("Load(metrics_listen: 'host:') = %v, want an error naming metrics_listen", err)
	}
}
