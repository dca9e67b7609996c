//go:build !windows

package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/server"
)

// TestInitOwnerOnlyFromBirth: even with umask 0, everything init creates
// (keys, certificates, the database) is owner-only, so serve accepts it.
func TestInitOwnerOnlyFromBirth(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := tempDir(t)
	mustRun(t, "init", "--data", dir, "--name", "primary.test")
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("init created %s with mode %v, want owner-only", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil || n < 6 {
		t.Fatalf("walk %s: %d entries, %v", dir, n, err)
	}
	if err := server.CheckPermissions(dir); err != nil {
		t.Errorf("CheckPermissions after init = %v, want nil", err)
	}
}

// TestServeRefusesWorldReadableKey: serve exits 1 with one line naming the
// CA key and the chmod that fixes it.
func TestServeRefusesWorldReadableKey(t *testing.T) {
	dir := tempDir(t)
	mustRun(t, "init", "--data", dir, "--name", "primary.test")
	c, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := ca.IssuingKeyPath(dir, ca.ID(c.Certificate()))
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "fix: chmod 600 "+key, "serve", "--data", dir, "--listen", "127.0.0.1:0", "--console", "")
}
