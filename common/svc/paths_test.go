package svc

import (
	"path/filepath"
	"runtime"
	"testing"
)

func TestDefaultPaths(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the table below is the Linux layout; Windows uses %ProgramData%")
	}
	tests := []struct {
		program, config, data string
	}{
		{"agent", "/etc/hostcert/agent.yaml", "/var/lib/hostcert/agent"},
		{"tunnel", "/etc/hostcert/tunnel.yaml", "/var/lib/hostcert/tunnel"},
		{"primary", "/etc/hostcert/primary.yaml", "/var/lib/hostcert/primary"},
	}
	for _, tt := range tests {
		if got := DefaultConfigPath(tt.program); got != tt.config {
			t.Errorf("DefaultConfigPath(%q) = %q, want %q", tt.program, got, tt.config)
		}
		if got := DefaultDataDir(tt.program); got != tt.data {
			t.Errorf("DefaultDataDir(%q) = %q, want %q", tt.program, got, tt.data)
		}
		if !filepath.IsAbs(DefaultDataDir(tt.program)) {
			t.Errorf("DefaultDataDir(%q) is not absolute", tt.program)
		}
	}
}
