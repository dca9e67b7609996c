package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/packaging"
)

func TestNormalizeTarget(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"primary.example.com:1556", "primary.example.com:1556", true},
		{"Primary.Example.COM.:1556", "primary.example.com:1556", true},
		{"10.0.0.5:1556", "10.0.0.5:1556", true},
		{"[2001:db8::1]:1556", "[2001:db8::1]:1556", true},
		{"primary.example.com", "", false},
		{"primary.example.com:", "", false},
		{":1556", "", false},
		{"primary:0", "", false},
		{"primary:65536", "", false},
		{"primary:01556", "", false},
		{"primary:https", "", false},
		{"user@primary:1556", "", false},
		{"primary/x:1556", "", false},
		{"/primary:1556", "", false},
		{"", "", false},
		// Found by FuzzNormalizeTarget: an empty label left a host "."
		// that normalised again to "".
		{"..:1", "", false},
		{".:1", "", false},
		{"a..b:1", "", false},
		{".a:1", "", false},
		{"[::ffff:10.0.0.5]:1556", "10.0.0.5:1556", true},
		{"[2001:DB8:0::1]:1556", "[2001:db8::1]:1556", true},
		{"host.123:1556", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeTarget(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizeTarget(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseAllowFlag(t *testing.T) {
	tests := []struct {
		in   string
		want Allow
		ok   bool
	}{
		{"primary.example.com:1556", Allow{Target: "primary.example.com:1556"}, true},
		{"PRIMARY:1556=10.0.0.5:1556", Allow{Target: "primary:1556", Upstream: Upstreams{"10.0.0.5:1556"}}, true},
		{"[::1]:1556=[::1]:2000", Allow{Target: "[::1]:1556", Upstream: Upstreams{"[::1]:2000"}}, true},
		{"primary.example.com:1556=10.0.0.1:1556,10.0.0.2:1556", Allow{Target: "primary.example.com:1556", Upstream: Upstreams{"10.0.0.1:1556", "10.0.0.2:1556"}}, true},
		{"primary:1556=10.0.0.5", Allow{}, false},
		{"primary:1556=10.0.0.1:1556,10.0.0.2", Allow{}, false},
		{"primary:1556=10.0.0.1:1556,", Allow{}, false},
		{"primary=10.0.0.5:1556", Allow{}, false},
	}
	for _, tt := range tests {
		got, err := ParseAllowFlag(tt.in)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseAllowFlag(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tunnel.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaults(t *testing.T) {
	f, err := Load(write(t, "allow:\n  - target: Primary.Example.com:1556\n"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	want := File{
		Listen:          ":1556",
		Allow:           []Allow{{Target: "primary.example.com:1556", Upstream: Upstreams{"primary.example.com:1556"}}},
		ShutdownTimeout: 30 * time.Second,
		Limits: Limits{
			HandshakeTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, DialTimeout: 10 * time.Second,
			MaxTunnels: 1024, MaxConnections: 2048, MaxConnectionsPerSource: 64,
			RatePerSource: 20, BurstPerSource: 40, MaxHeaderBytes: 8192,
		},
	}
	if got := f; got.Listen != want.Listen || got.Limits != want.Limits || got.ShutdownTimeout != want.ShutdownTimeout ||
		len(got.Allow) != 1 || !reflect.DeepEqual(got.Allow[0], want.Allow[0]) || got.ProxyProtocol != nil || got.MetricsListen != "" {
		t.Errorf("Load(minimal) = %+v, want %+v", got, want)
	}
}

func TestLoadFull(t *testing.T) {
	f, err := Load(write(t, `
listen: "127.0.0.1:8443"
allow:
  - target: primary.example.com:1556
    upstream: 10.0.0.5:1556
proxy_protocol: true
limits:
  handshake_timeout: 5s
  idle_timeout: 1m
  max_tunnels: 10
  max_connections: 20
  max_connections_per_source: 2
  new_connections_per_second: 0.5
  new_connections_burst: 3
shutdown_timeout: 2s
metrics_listen: ":9557"
`), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if f.ProxyProtocol == nil || !*f.ProxyProtocol || f.Listen != "127.0.0.1:8443" || f.Allow[0].Upstream.String() != "10.0.0.5:1556" ||
		f.Limits.HandshakeTimeout != 5*time.Second || f.Limits.IdleTimeout != time.Minute ||
		f.Limits.MaxConnectionsPerSource != 2 || f.Limits.RatePerSource != 0.5 || f.ShutdownTimeout != 2*time.Second ||
		f.MetricsListen != "127.0.0.1:9557" {
		t.Errorf("Load(full) = %+v", f)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"unknown key names key and line", "allow:\n  - target: p:1556\nlisten_addr: x\n", "line 3: field listen_addr not found"},
		{"unknown nested key", "allow:\n  - target: p:1556\n    upstrem: x:1\n", "line 3: field upstrem not found"},
		{"no allow list", "listen: ':1556'\n", "at least one target"},
		{"target without port", "allow:\n  - target: primary\n", "allow[0].target"},
		{"bad upstream", "allow:\n  - target: p:1556\n    upstream: 10.0.0.5\n", "allow[0].upstream"},
		{"bad second upstream", "allow:\n  - target: p:1556\n    upstream: [10.0.0.1:1556, 10.0.0.2]\n", "allow[0].upstream[1]"},
		{"upstream listed twice", "allow:\n  - target: p:1556\n    upstream: [10.0.0.1:1556, 10.0.0.1:1556]\n", "allow[0].upstream[1] \"10.0.0.1:1556\": listed twice"},
		{"upstream as a map", "allow:\n  - target: p:1556\n    upstream: {a: 1}\n", "line 3: upstream"},
		{"duplicate target", "allow:\n  - target: p:1556\n  - target: P.:1556\n", "listed twice"},
		{"negative limit", "allow:\n  - target: p:1556\nlimits:\n  max_tunnels: -1\n", "limits.max_tunnels"},
		{"bad duration", "allow:\n  - target: p:1556\nlimits:\n  idle_timeout: soon\n", "line 4: cannot unmarshal"},
		{"tunnels above connections", "allow:\n  - target: p:1556\nlimits:\n  max_tunnels: 10\n  max_connections: 5\n", "max_connections"},
		{"not yaml", "allow: [\n", "parse"},
		{"empty file", "", "at least one target"},
		{"listen port out of range", "listen: 127.0.0.1:99999\nallow:\n  - target: p:1556\n", `listen "127.0.0.1:99999": port`},
		{"metrics_listen without a port", "metrics_listen: 'host:'\nallow:\n  - target: p:1556\n", "metrics_listen"},
		{"listen port not a number", "listen: ':fifteen'\nallow:\n  - target: p:1556\n", "listen"},
		{"proxy protocol off", "allow:\n  - target: p:1556\nproxy_protocol: false\n", "proxy_protocol: false is no longer supported"},
	}
	for _, tt := range tests {
		_, err := Load(write(t, tt.body), Overrides{})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Load = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestMaxConnectionsFollowsMaxTunnels(t *testing.T) {
	f, err := Load(write(t, "allow:\n  - target: p:1556\nlimits:\n  max_tunnels: 5000\n"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Limits.MaxConnections != 10000 {
		t.Errorf("max_connections with max_tunnels 5000 = %d, want 10000", f.Limits.MaxConnections)
	}
}

func TestOverridesWin(t *testing.T) {
	on := true
	f, err := Load(write(t, "listen: ':1556'\nallow:\n  - target: file:1556\n"), Overrides{
		Listen: "127.0.0.1:9", Allow: []Allow{{Target: "flag:1556"}}, ProxyProtocol: &on,
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.Listen != "127.0.0.1:9" || f.ProxyProtocol == nil || !*f.ProxyProtocol || len(f.Allow) != 1 || f.Allow[0].Target != "flag:1556" {
		t.Errorf("Load with overrides = %+v, want flag values", f)
	}
	// The header cannot be turned off, from the file or the command line.
	off := false
	if _, err := Load(write(t, "allow:\n  - target: file:1556\n"), Overrides{ProxyProtocol: &off}); !errors.Is(err, ErrProxyProtocolOff) {
		t.Errorf("Load with --proxy-protocol=false = %v, want ErrProxyProtocolOff", err)
	}
}

func TestPackagedExampleConfig(t *testing.T) {
	body := packaging.ExampleConfig("tunnel.yaml")
	if body == "" {
		t.Skip("packaging has no tunnel.yaml yet")
	}
	f, err := Parse([]byte(body))
	if err != nil {
		t.Fatalf("packaged tunnel.yaml does not parse strictly: %v", err)
	}
	// It ships with the allow list commented out: the tunnel refuses to
	// start until the operator names the primary.
	if _, err := f.Resolve(Overrides{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("packaged tunnel.yaml without allow = %v, want ErrInvalid", err)
	}
	if _, err := f.Resolve(Overrides{Allow: []Allow{{Target: "primary.example.com:1556"}}}); err != nil {
		t.Errorf("packaged tunnel.yaml with an allow entry: %v", err)
	}
}

// upstream: takes one address or a list (several primary nodes behind one
// allowed target), in order.
func TestLoadSeveralUpstreams(t *testing.T) {
	for body, want := range map[string]Upstreams{
		"allow:\n  - target: p.example:1556\n    upstream: 10.0.0.1:1556\n":                                 {"10.0.0.1:1556"},
		"allow:\n  - target: p.example:1556\n    upstream: [10.0.0.1:1556, 10.0.0.2:1556]\n":                {"10.0.0.1:1556", "10.0.0.2:1556"},
		"allow:\n  - target: p.example:1556\n    upstream:\n      - 10.0.0.2:1556\n      - 10.0.0.1:1556\n": {"10.0.0.2:1556", "10.0.0.1:1556"},
	} {
		f, err := Load(write(t, body), Overrides{})
		if err != nil || len(f.Allow) != 1 || !reflect.DeepEqual(f.Allow[0].Upstream, want) {
			t.Errorf("Load(%q) = %+v, %v; want upstreams %q", body, f.Allow, err, want)
		}
	}
}
