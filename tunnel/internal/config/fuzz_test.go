package config

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoad: whatever bytes the config file holds, Load either refuses with
// an error or returns a configuration whose allow list is normalised and
// non-empty, and that loads again, written back as YAML, to itself.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"allow:\n  - target: primary.example.com:1556\n",
		"listen: 127.0.0.1:1556\nallow:\n  - target: PRIMARY.example.com.:1556\n    upstream: 10.0.0.1:1556\nproxy_protocol: true\n",
		"allow: [{target: p:1556}]\nlimits: {handshake_timeout: 5s, idle_timeout: 1m, max_tunnels: 10, max_connections: 20, max_connections_per_source: 2, new_connections_per_second: 1.5, new_connections_burst: 3, max_header_bytes: 4096}\n",
		"allow: [{target: p:1556}]\nshutdown_timeout: 1s\n",
		"allow: []\n", "allow: [{target: 'p'}]\n", "nope: 1\n", "", "a: &a [*a, *a]\n", "allow: [{target: 'p:0'}]\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "tunnel.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, Overrides{})
		if err != nil {
			return
		}
		if len(c.Allow) == 0 {
			t.Fatalf("Load(%q) accepted a configuration that allows nothing", data)
		}
		for _, a := range c.Allow {
			if n, err := NormalizeTarget(a.Target); err != nil || n != a.Target {
				t.Fatalf("Load(%q): allow target %q is not normalised (%q, %v)", data, a.Target, n, err)
			}
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal %+v: %v", c, err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := Load(path, Overrides{})
		if err != nil {
			t.Fatalf("Load of the written-back configuration %q: %v (first load of %q accepted)", out, err, data)
		}
		// Compared as YAML, so that an empty list and none are the same.
		if out2, err := yaml.Marshal(again); err != nil || string(out2) != string(out) {
			t.Fatalf("Load(%q) = %+v, written back and loaded again = %+v", data, c, again)
		}
	})
}
