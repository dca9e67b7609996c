//go:build unix

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// binary builds hostcert-tunnel once per test run.
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hostcert-tunnel-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hostcert-tunnel")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer collects the process's log output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the binary with a config file (listen address filled in) and
// waits until it listens. It is killed at the end of the test if still running.
func start(tb testing.TB, configBody string, args ...string) (*proc, string) {
	tb.Helper()
	addr := freeAddr(tb)
	cfg := filepath.Join(tb.TempDir(), "tunnel.yaml")
	if err := os.WriteFile(cfg, []byte("listen: "+addr+"\n"+configBody), 0o600); err != nil {
		tb.Fatal(err)
	}
	p := &proc{addr: addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary(tb), append([]string{"run", "--config", cfg, "--log-format", "json"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Proxy variables must be ignored: point them at a black hole.
	p.cmd.Env = append(os.Environ(), "HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9", "NO_PROXY=")
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("tunnel did not start:\n%s", p.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p, cfg
}

func echoServer(tb testing.TB) net.Listener {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	// The tunnel starts every upstream connection with a PROXY header.
	ln := &proxyproto.Listener{Listener: raw}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// connect opens a tunnel and returns the connection and the status.
func connect(tb testing.TB, addr, target string) (net.Conn, int) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		tb.Fatalf("CONNECT %s: %v", target, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, resp.StatusCode
}

func echo(tb testing.TB, c net.Conn, msg string) {
	tb.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		tb.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		tb.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
}

func waitLog(tb testing.TB, p *proc, s string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), s) {
		if time.Now().After(deadline) {
			tb.Fatalf("log never showed %q:\n%s", s, p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "hostcert-tunnel ") {
		t.Fatalf("--version = %q, %v", out, err)
	}
}

func TestRunWithoutAllowFails(t *testing.T) {
	out, err := exec.Command(binary(t), "run", "--config", filepath.Join(t.TempDir(), "missing.yaml")).CombinedOutput()
	if err == nil {
		t.Fatalf("run with a missing --config succeeded:\n%s", out)
	}
	if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); lines != 0 || !strings.HasPrefix(string(out), "hostcert-tunnel: ") {
		t.Errorf("error output = %q, want one line starting hostcert-tunnel:", out)
	}
}

// TestProcessReloadAndDrain runs the binary: proxy variables in its
// environment are ignored, a config edit adds a target for new connections,
// a bad edit is rejected and the last good config kept, and SIGTERM drains
// an open tunnel before the process exits.
func TestProcessReloadAndDrain(t *testing.T) {
	a, b := echoServer(t), echoServer(t)
	allowA := "allow:\n  - target: a.test:1556\n    upstream: " + a.Addr().String() + "\n"
	p, cfg := start(t, allowA)
	open, st := connect(t, p.addr, "a.test:1556")
	if st != http.StatusOK {
		t.Fatalf("CONNECT a.test = %d, want 200", st)
	}
	echo(t, open, "through the process (proxy env ignored)")

	write := func(body string) {
		if err := os.WriteFile(cfg+".tmp", []byte("listen: "+p.addr+"\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil {
			t.Fatal(err)
		}
	}
	write(allowA + "  - target: b.test:1556\n    upstream: " + b.Addr().String() + "\n")
	waitLog(t, p, "config reloaded")
	c, st := connect(t, p.addr, "b.test:1556")
	if st != http.StatusOK {
		t.Fatalf("CONNECT b.test after reload = %d, want 200", st)
	}
	echo(t, c, "new target")
	c.Close()

	write("allow:\n  - target: a.test:1556\n    upstreem: x\n")
	waitLog(t, p, "config change rejected")
	c, st = connect(t, p.addr, "b.test:1556")
	if st != http.StatusOK {
		t.Fatalf("CONNECT b.test after a rejected edit = %d, want 200 (last good config)", st)
	}
	c.Close()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "draining tunnels")
	echo(t, open, "still relaying while draining")
	select {
	case err := <-p.done:
		t.Fatalf("process exited with a tunnel open: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	open.Close()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("process exit after drain: %v\n%s", err, p.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("process did not exit after the last tunnel closed:\n%s", p.logs)
	}
	if !strings.Contains(p.logs.String(), `"forced_closed":0`) {
		t.Errorf("drain log lacks forced_closed 0:\n%s", p.logs)
	}
}

// TestProcessMetrics runs the binary with metrics_listen: its /metrics
// counts a tunnel's bytes and a refusal, and promlint finds nothing.
func TestProcessMetrics(t *testing.T) {
	up := echoServer(t)
	maddr := freeAddr(t)
	p, _ := start(t, "metrics_listen: "+maddr+"\nallow:\n  - target: a.test:1556\n    upstream: "+up.Addr().String()+"\n")
	c, st := connect(t, p.addr, "a.test:1556")
	if st != http.StatusOK {
		t.Fatalf("CONNECT a.test = %d, want 200", st)
	}
	echo(t, c, "0123456789")
	c.Close()
	if _, st := connect(t, p.addr, "b.test:1556"); st != http.StatusForbidden {
		t.Fatalf("CONNECT b.test = %d, want 403", st)
	}
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + maddr + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v\n%s", err, p.logs)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, "hostcert_tunnel_tunnels 0") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		`hostcert_tunnel_relayed_bytes_total{direction="upstream"} 10`,
		`hostcert_tunnel_relayed_bytes_total{direction="downstream"} 10`,
		`hostcert_tunnel_refusals_total{code="target_not_allowed"} 1`,
		`hostcert_tunnel_upstream_dial_duration_seconds_count{result="ok"} 1`,
		`hostcert_tunnel_tunnels 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint = %v, %v, want no problems", problems, err)
	}
}
