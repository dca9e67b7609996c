//go:build unix

package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReloadAsStrictAsStartUp runs the binary: every file that start-up
// refuses (empty, no allow list, a listen port net.Listen cannot use) is
// refused on reload too when saved editor-style over the watched config,
// the reason names the file and the key, and the last good configuration
// keeps serving.
func TestReloadAsStrictAsStartUp(t *testing.T) {
	up := echoServer(t)
	good := "allow:\n  - target: a.test:1556\n    upstream: " + up.Addr().String() + "\n"
	bad := []struct{ name, body, key string }{
		{"empty", "", "allow"},
		{"no allow", "shutdown_timeout: 5s\n", "allow"},
		{"listen port out of range", "listen: 127.0.0.1:99999\n" + good, "listen"},
	}
	for _, b := range bad {
		p := filepath.Join(t.TempDir(), "tunnel.yaml")
		os.WriteFile(p, []byte(b.body), 0o600)
		out, err := exec.Command(binary(t), "run", "--config", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), b.key) {
			t.Fatalf("start-up with the %s file = %v, %q; want a refusal naming %s", b.name, err, out, b.key)
		}
	}

	p, cfg := start(t, good)
	for i, b := range bad {
		body := b.body
		if !strings.HasPrefix(body, "listen:") {
			body = "listen: " + p.addr + "\n" + body
		}
		if err := os.WriteFile(cfg+".tmp", []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(p.logs.String(), "config change rejected") < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("the %s edit was never rejected:\n%s", b.name, p.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Contains(p.logs.String(), "config reloaded") {
			t.Fatalf("the %s file was reloaded:\n%s", b.name, p.logs)
		}
		c, st := connect(t, p.addr, "a.test:1556")
		if st != http.StatusOK {
			t.Fatalf("CONNECT a.test after the rejected %s edit = %d, want 200 (last good config)", b.name, st)
		}
		echo(t, c, "still the last good config")
		c.Close()
	}
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(line, "config change rejected") && !strings.Contains(line, cfg) {
			t.Errorf("rejection %s does not name %s", line, cfg)
		}
	}
}
