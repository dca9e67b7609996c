package config

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoad: whatever bytes the config file holds, Load either refuses with
// an error or returns a configuration that validates and that loads again,
// written back as YAML, to itself (defaults are applied once, in one place).
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"primary: primary.example.com\n",
		"primary: primary.example.com:1556\nprimary_dial: 127.0.0.1:1556\ntunnels: [media1:1556, media2]\n",
		"primary: p\ndata_dir: /tmp/x\nname: web01\nnat: true\nkey_algorithm: rsa-3072\nrenew_before: 720h\nkeep_key: true\n",
		"primary: p\ndial_timeout: 1s\nrequest_timeout: 10s\nprobe_interval: 1m\nlog_format: json\nlog_level: debug\n",
		"primary: p\nsource_address: 127.0.0.2\n",
		"primary: [1, 2]\n", "unknown: 1\n", "", "---\n", "a: &a [*a]\n", "primary: p\nrenew_before: -1s\n",
		"primary: p\x00\n", "primary: 'http://p/'\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, false, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Load(%q) refused with an empty message", data)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load(%q) returned a configuration that does not validate: %v", data, err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal %+v: %v", c, err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := Load(path, false, nil)
		if err != nil {
			t.Fatalf("Load of the written-back configuration %q: %v (first load of %q accepted)", out, err, data)
		}
		// Compared as YAML, so that an empty list and none are the same.
		if out2, err := yaml.Marshal(again); err != nil || string(out2) != string(out) {
			t.Fatalf("Load(%q) = %+v, written back and loaded again = %+v", data, c, again)
		}
	})
}
