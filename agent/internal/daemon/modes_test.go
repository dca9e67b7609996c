//go:build !windows

package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/daemon"
)

// TestNewEnvWarnsAboutLooseKey: loading the agent's data directory with a
// world-readable host.pem makes it owner-only and warns, naming the file.
func TestNewEnvWarnsAboutLooseKey(t *testing.T) {
	data := t.TempDir()
	key := filepath.Join(data, certstore.IdentityFile)
	if err := os.WriteFile(key, []byte("not parsed here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncBuf{}
	// host.pem does not parse: NewEnv fails after the modes are restored.
	_, _ = daemon.NewEnv(config.Config{DataDir: data}, zerolog.New(log))
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host.pem mode after NewEnv = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	out := log.String()
	if !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, key) || !strings.Contains(out, "owner-only") || !strings.Contains(out, `"mode_was":"0644"`) {
		t.Errorf("log = %s, want a warning naming %s and its old mode 0644", out, key)
	}
}
