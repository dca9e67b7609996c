package connect

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/tunnel/internal/config"
)

// syncBuffer collects log lines from many goroutines.
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

// waitFor polls cond until it holds or the bounded wait ends.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testTunnel struct {
	srv    *Server
	addr   string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startTunnel runs a tunnel on 127.0.0.1:0 with allow (TARGET[=UPSTREAM]
// flag syntax) and the given tweaks; it is stopped at the end of the test.
func startTunnel(t testing.TB, allow []string, tweak func(*config.File)) *testTunnel {
	t.Helper()
	f := config.File{Listen: "127.0.0.1:0"}
	for _, a := range allow {
		e, err := config.ParseAllowFlag(a)
		if err != nil {
			t.Fatal(err)
		}
		f.Allow = append(f.Allow, e)
	}
	if tweak != nil {
		tweak(&f)
	}
	f, err := f.Resolve(config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	tt := &testTunnel{logs: logs, addr: ln.Addr().String(), done: make(chan error, 1)}
	tt.srv = New(f, zerolog.New(logs).Level(zerolog.DebugLevel))
	ctx, cancel := context.WithCancel(context.Background())
	tt.cancel = cancel
	go func() { tt.done <- tt.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { tt.stop(t) })
	return tt
}

func (tt *testTunnel) stop(t testing.TB) {
	tt.cancel()
	select {
	case err := <-tt.done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
		tt.done <- err
	case <-time.After(40 * time.Second):
		t.Errorf("tunnel did not stop")
	}
}

// countingListener counts accepted connections: refused CONNECTs must not
// make the tunnel dial anything.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// echoServer echoes every connection until EOF; it is closed at test end.
func echoServer(t testing.TB) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The tunnel starts every upstream connection with a PROXY header.
	cl := &countingListener{Listener: &proxyproto.Listener{Listener: ln}}
	go func() {
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return cl
}

// rawRequest sends req on a fresh connection from the given local address
// ("" = any) and returns the parsed answer and the connection.
func rawRequest(t testing.TB, tunnelAddr, local, req string) (*http.Response, net.Conn) {
	t.Helper()
	c, err := dialFrom(tunnelAddr, local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: methodOf(req)})
	if err != nil {
		t.Fatalf("read answer to %q: %v", truncate(req), err)
	}
	_ = c.SetDeadline(time.Time{})
	return resp, c
}

func methodOf(req string) string {
	m, _, _ := strings.Cut(req, " ")
	if m == "CONNECT" {
		return m
	}
	return http.MethodGet
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func dialFrom(addr, local string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return d.Dial("tcp", addr)
}

// connectThrough opens a tunnel to target and checks the 200.
func connectThrough(t testing.TB, tunnelAddr, local, target string) net.Conn {
	t.Helper()
	resp, c := rawRequest(t, tunnelAddr, local, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s = %s, want 200", target, resp.Status)
	}
	return c
}

// echoRoundTrip writes msg and reads it back.
func echoRoundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write through tunnel: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read through tunnel: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo through tunnel = %q, want %q", got, msg)
	}
}

// readsEOF reports whether c is closed by the far end within the wait.
func readsEOF(c net.Conn, wait time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		return errors.New("read data, want EOF")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
		return nil
	}
	return err
}
