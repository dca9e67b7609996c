//go:build !windows

package certstore

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOpenRestoresOwnerOnly: a host.pem (the private key) found at 0644, a
// pending key at 0640 and a data directory at 0755 are made owner-only by
// Open, which reports each; public files keep their modes.
func TestOpenRestoresOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]os.FileMode{IdentityFile: 0o644, PendingFile: 0o640, CertFile: 0o644, CAFile: 0o644}
	for name, mode := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		dir:                              0o700,
		filepath.Join(dir, IdentityFile): 0o600,
		filepath.Join(dir, PendingFile):  0o600,
		filepath.Join(dir, CertFile):     0o644,
		filepath.Join(dir, CAFile):       0o644,
	}
	for p, m := range want {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != m {
			t.Errorf("after Open, %s mode = %04o, want %04o", p, fi.Mode().Perm(), m)
		}
	}
	got := make(map[string]ModeFix)
	for _, f := range s.Restored() {
		got[f.Path] = f
	}
	for p, was := range map[string]os.FileMode{dir: 0o755, filepath.Join(dir, IdentityFile): 0o644, filepath.Join(dir, PendingFile): 0o640} {
		if f, ok := got[p]; !ok || f.Was != was {
			t.Errorf("Restored() = %+v, want %s (was %04o) in it", s.Restored(), p, was)
		}
	}
	if len(got) != 3 {
		t.Errorf("Restored() = %+v, want exactly the directory, host.pem and pending-key.pem", s.Restored())
	}
	// All in order now: nothing to report.
	s, err = Open(dir)
	if err != nil || len(s.Restored()) != 0 {
		t.Errorf("second Open: Restored() = %+v, %v; want none", s.Restored(), err)
	}
}
