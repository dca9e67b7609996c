package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRun: run's one validation refuses what start-up must refuse —
// an empty file, a file without primary:, a bad key — and accepts a
// primary from the file or from a flag.
func TestLoadRun(t *testing.T) {
	withPrimary := Overrides{func(c *Config) { c.Primary = Addrs{"flag.example"} }}
	tests := []struct {
		name    string
		file    string
		over    Overrides
		wantErr string // "" = accepted
	}{
		{"empty file", "", nil, "no primary configured"},
		{"comments only", "# nothing yet\n", nil, "no primary configured"},
		{"no primary", "tunnels: [m1.example]\n", nil, "no primary configured"},
		{"bad value", "primary: p.example:99999\n", nil, "primary:"},
		{"unknown key", "primary: p.example\nprimry: x\n", nil, "line 2"},
		{"primary in file", "primary: p.example\n", nil, ""},
		{"primary by flag", "", withPrimary, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadRun(p, false, tt.over)
			if tt.wantErr == "" {
				if err != nil || len(c.Primary) == 0 {
					t.Errorf("LoadRun(%q) = %+v, %v, want a config with a primary", tt.file, c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), p) {
				t.Errorf("LoadRun(%q) = %v, want an error naming %s and containing %q", tt.file, err, p, tt.wantErr)
			}
		})
	}
	// The file is what is missing: an error, not "flags only", unless optional.
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := LoadRun(missing, false, withPrimary); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadRun(missing, required) = %v, want ErrNotExist", err)
	}
	if _, err := LoadRun(missing, true, withPrimary); err != nil {
		t.Errorf("LoadRun(missing, optional) with --primary = %v, want nil", err)
	}
}
