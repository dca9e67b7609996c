package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMainRefusesBadInvocations(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"run", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, "read tunnel config"},
		{[]string{"run", "--allow", "primary.example.com"}, "--allow"},
		{[]string{"run", "--allow", "p:1556", "--listen", "nonsense"}, "listen"},
		{[]string{"service", "explode"}, "unknown service action"},
		{[]string{"frobnicate"}, "unknown command"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), tt.args, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), tt.wantErr) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("Main(%q) = %d, %q; want non-zero and one line containing %q", tt.args, code, errOut.String(), tt.wantErr)
		}
	}
}

func TestServiceArgumentsCarryRunFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "tunnel.yaml")
	if err := os.WriteFile(cfg, []byte("allow:\n  - target: p:1556\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &app{}
	root := a.root()
	root.SetArgs([]string{"service", "status", "--config", cfg, "--allow", "p:1556=10.0.0.5:1556", "--proxy-protocol", "--log-level", "debug"})
	cmd, err := root.ExecuteC()
	_ = err // status of an uninstalled service may fail here; only the arguments matter
	sc := a.svcConfig(cmd)
	want := []string{"run", "--config", cfg, "--allow", "p:1556=10.0.0.5:1556", "--log-level", "debug"}
	if !slices.Equal(sc.Arguments, want) {
		t.Errorf("service arguments = %q, want %q", sc.Arguments, want)
	}
	if sc.Name != "hostcert-tunnel" || sc.StopTimeout <= 0 {
		t.Errorf("service config = %+v", sc)
	}
}
