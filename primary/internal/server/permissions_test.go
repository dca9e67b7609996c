//go:build !windows

package server

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

func TestTooOpen(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want bool
	}{
		{0o600, false}, {0o400, false}, {0o700, false}, {0o000, false},
		{0o640, true}, {0o604, true}, {0o644, true}, {0o660, true}, {0o602, true},
		{0o710, true}, {0o701, true}, {0o755, true}, {0o666, true}, {0o777, true},
		{fs.ModeDir | 0o700, false}, {fs.ModeDir | 0o750, true},
	}
	for _, tt := range tests {
		if got := tooOpen(tt.mode); got != tt.want {
			t.Errorf("tooOpen(%v) = %v, want %v", tt.mode, got, tt.want)
		}
	}
}

func TestLooseFileFix(t *testing.T) {
	tests := []struct {
		f    LooseFile
		want string
	}{
		{LooseFile{"/var/lib/hostcert/primary/ca/ca-key.pem", 0o644}, "chmod 600 /var/lib/hostcert/primary/ca/ca-key.pem"},
		{LooseFile{"/d/ca/ca-key.pem", 0o444}, "chmod 400 /d/ca/ca-key.pem"},
		{LooseFile{"/d", fs.ModeDir | 0o755}, "chmod 700 /d"},
		{LooseFile{"/my data/primary.db", 0o666}, "chmod 600 '/my data/primary.db'"},
		{LooseFile{"/it's/primary.db", 0o640}, `chmod 600 '/it'\''s/primary.db'`},
	}
	for _, tt := range tests {
		if got := tt.f.Fix(); got != tt.want {
			t.Errorf("%+v.Fix() = %q, want %q", tt.f, got, tt.want)
		}
	}
}

// TestServeRefusesLooseDataDir: a CA key, server key, database (with its
// WAL and SHM) or data directory that others can read stops New with one
// error naming every such file and its chmod; running those chmods lets
// it start.
func TestServeRefusesLooseDataDir(t *testing.T) {
	base, err := os.MkdirTemp("", "hcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "data")
	c, err := ca.Init(dir, ca.InitOptions{Names: []string{"localhost"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, DBName))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db := filepath.Join(dir, DBName)
	for _, p := range []string{db + "-wal", db + "-shm"} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	loose := map[string]fs.FileMode{
		dir:                      0o755,
		filepath.Join(dir, "ca"): 0o750,
		ca.IssuingKeyPath(dir, ca.ID(c.Certificate())): 0o644,
		ca.RootKeyPath(dir, ca.ID(c.Root())):           0o604,
		ca.ServerKeyPath(dir):                          0o640,
		db:                                             0o644,
		db + "-wal":                                    0o604,
		db + "-shm":                                    0o660,
	}
	for p, m := range loose {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	start := func() error {
		srv, err := New(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", Log: zerolog.Nop()})
		if err == nil {
			srv.Close()
		}
		return err
	}
	err = start()
	var pe *PermissionError
	if !errors.As(err, &pe) || !errors.Is(err, ErrTooOpen) {
		t.Fatalf("New with loose files = %v, want a *PermissionError", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans lines, want one line", err)
	}
	got := make(map[string]bool)
	for _, f := range pe.Files {
		got[f.Path] = true
		want, ok := loose[f.Path]
		if !ok {
			t.Errorf("listed %s (%v), which is not loose", f.Path, f.Mode)
			continue
		}
		if f.Mode.Perm() != want {
			t.Errorf("%s listed as %v, want %04o", f.Path, f.Mode.Perm(), want)
		}
		if !strings.Contains(err.Error(), f.Path) || !strings.Contains(err.Error(), f.Fix()) {
			t.Errorf("error %q does not name %s and its fix %q", err, f.Path, f.Fix())
		}
	}
	for p := range loose {
		if !got[p] {
			t.Errorf("error %q does not list %s", err, p)
		}
	}
	// The printed fixes are enough.
	for _, f := range pe.Files {
		if err := os.Chmod(f.Path, f.Mode.Perm()&0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := start(); err != nil {
		t.Fatalf("New after the printed chmods = %v, want nil", err)
	}
}
