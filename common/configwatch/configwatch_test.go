package configwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func loadInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("config %s line 1: %w", path, err)
	}
	return n, nil
}

func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.conf")
	os.WriteFile(p, []byte("1"), 0o600)
	w, err := New(p, loadInt, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	w.SetDebounce(20 * time.Millisecond)
	changes := make(chan int, 10)
	w.OnChange(func(n int) { changes <- n })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// An editor-style save: write a temp file and rename it over the config.
	tmp := filepath.Join(dir, "c.conf.swp")
	os.WriteFile(tmp, []byte("2"), 0o600)
	os.Rename(tmp, p)
	select {
	case n := <-changes:
		if n != 2 {
			t.Fatalf("OnChange got %d, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after rename-save")
	}

	os.WriteFile(p, []byte("not a number"), 0o600)
	deadline := time.Now().Add(5 * time.Second)
	for w.LastError() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w.LastError() == nil {
		t.Fatal("bad edit was not rejected")
	}
	if got := w.Current(); got != 2 {
		t.Errorf("Current() after bad edit = %d, want 2", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestNewFailsOnBadFirstLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(p, []byte("x"), 0o600)
	if w, err := New(p, loadInt, zerolog.Nop()); err == nil {
		w.Close()
		t.Error("New(bad file) = nil error, want an error")
	}
}
