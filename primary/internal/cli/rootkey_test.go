package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/server"
)

// TestRootKeyRelativePath: the CLI runs on the server's machine, so
// `--root-key ./root.key` names the file in the operator's working
// directory; the CLI sends the server the absolute path (the server itself
// still refuses a relative one: admin's table test).
func TestRootKeyRelativePath(t *testing.T) {
	work := tempDir(t)
	dir := filepath.Join(work, "data")
	mustRun(t, "init", "--data", dir, "--name", "localhost", "--root-key-out", filepath.Join(work, "root.key"))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{DataDir: dir, Listen: "127.0.0.1:0", Console: "", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
	if out := mustRun(t, "ca", "rotate", "--root-key", "root.key", "--data", dir); !strings.Contains(out, "issuing") {
		t.Errorf("ca rotate --root-key root.key = %q", out)
	}
	mustRun(t, "ca", "sign-root-crl", "--root-key", "./root.key", "--data", dir)
}
