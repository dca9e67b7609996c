package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/primary/internal/ca"
)

func TestStoreTarget(t *testing.T) {
	files := map[string]string{"/run/dsn": "postgres://u:pw@db/hc", "/run/empty": ""}
	read := func(p string) (string, error) {
		v, ok := files[p]
		if !ok {
			return "", fmt.Errorf("--store-file: %w", os.ErrNotExist)
		}
		return v, nil
	}
	for _, c := range []struct {
		flag, file, env string
		want            string
		warn, err       bool
	}{
		{want: ""}, // SQLite in the data directory
		{env: " postgres://u@db/hc ", want: "postgres://u@db/hc"},
		{flag: "/srv/p.db", env: "postgres://u@db/hc", want: "/srv/p.db"},
		{flag: "postgres://u@db/hc", want: "postgres://u@db/hc"},
		{flag: "postgres://u:pw@db/hc", want: "postgres://u:pw@db/hc", warn: true},
		{file: "/run/dsn", env: "postgres://other@db/hc", want: "postgres://u:pw@db/hc"},
		{file: "/run/empty", err: true},
		{file: "/run/missing", err: true},
		{flag: "postgres://u@db/hc", file: "/run/dsn", err: true},
	} {
		got, warning, err := storeTarget(c.flag, c.file, c.env, read)
		if (err != nil) != c.err || got != c.want || (warning != "") != c.warn {
			t.Errorf("storeTarget(%q, %q, %q) = %q, %q, %v, want %q, warning %v, error %v",
				c.flag, c.file, c.env, got, warning, err, c.want, c.warn, c.err)
		}
	}
}

func TestReadStoreFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(p, []byte("postgres://u:pw@db/hc\n# comment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readStoreFile(p); err != nil || got != "postgres://u:pw@db/hc" {
		t.Errorf("readStoreFile(0600 file) = %q, %v, want the first line", got, err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readStoreFile(p); err == nil || !strings.Contains(err.Error(), "chmod o-rwx") {
		t.Errorf("readStoreFile(0644 file) error = %v, want a refusal naming the chmod", err)
	}
}

// TestInitUnreachableStore: init against a PostgreSQL server that is not
// there fails with one line that names the address and the cause, never
// the password, and leaves no CA behind.
func TestInitUnreachableStore(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv(StoreEnv, "postgres://hostcert:s3cret-pw@"+addr+"/hostcert?sslmode=disable")
	dir := tempDir(t)
	code, _, errs := run(t, "init", "--data", dir, "--name", "primary.test")
	want := Program + ": store: cannot reach postgres at " + addr + " (connection refused)\n"
	if code != 1 || errs != want {
		t.Errorf("init with an unreachable store = exit %d, stderr %q, want exit 1 and %q", code, errs, want)
	}
	if _, err := ca.Load(dir); err == nil || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("ca.Load after a failed init = %v, want no CA", err)
	}

	// serve (of a data directory with a CA) says the same, in the same line.
	served := tempDir(t)
	mustRun(t, "init", "--data", served, "--name", "primary.test", "--store", filepath.Join(t.TempDir(), "p.db"))
	code, _, errs = run(t, "serve", "--data", served, "--listen", "127.0.0.1:0", "--console", "", "--log-format", "json", "--log-level", "error")
	if code != 1 || !strings.HasSuffix(errs, want) || strings.Contains(errs, "s3cret") {
		t.Errorf("serve with an unreachable store = exit %d, stderr %q, want exit 1 ending in %q, without the password", code, errs, want)
	}
}
