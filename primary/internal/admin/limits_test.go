//go:build !windows

package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// syncBuffer is a log sink safe for the server's goroutines.
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

func serveTemp(t *testing.T, log zerolog.Logger) string {
	t.Helper()
	base, err := os.MkdirTemp("", "hca")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	st, err := store.Open(context.Background(), filepath.Join(base, "primary.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(st, nil, nil, nil, log)
	ln, err := s.Listen(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return base
}

// TestOversizedRequest: a request over MaxMessage is refused by the client
// before it sends anything, and, from a client that sends it anyway, by the
// server with a one-line answer naming the size (not a broken pipe) and a
// warning in its log.
func TestOversizedRequest(t *testing.T) {
	var logs syncBuffer
	dir := serveTemp(t, zerolog.New(&logs))

	c := Client{Dir: dir}
	names := make([]string, MaxMessage/10)
	for i := range names {
		names[i] = fmt.Sprintf("h%07d.test", i)
	}
	err := c.Call(context.Background(), CmdHostAdd, NamesArgs{Names: names}, nil)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.What != "request" || tl.Size <= MaxMessage || tl.Max != MaxMessage ||
		!strings.Contains(err.Error(), fmt.Sprintf("request too large for the admin socket (%d bytes, max %d)", tl.Size, MaxMessage)) {
		t.Errorf("Call with %d names = %v, want a *TooLargeError naming the size and the maximum", len(names), err)
	}
	if strings.Contains(logs.String(), "too large") {
		t.Errorf("the client's refusal reached the server: %s", logs.String())
	}

	// A client without the check: the server reads the line to its end,
	// answers, and logs at warn.
	conn, _, err := dial(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	size := MaxMessage + 1<<20
	line := append([]byte(`{"command":"host.add","args":{"names":["`), bytes.Repeat([]byte("a"), size)...)
	line = append(line, "\"]}}\n"...)
	werr := make(chan error, 1)
	go func() { _, err := conn.Write(line); werr <- err }()
	var r Response
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&r); err != nil {
		t.Fatalf("read the answer to an oversized request: %v", err)
	}
	if err := <-werr; err != nil {
		t.Errorf("writing the oversized request: %v, want it read to its end", err)
	}
	want := fmt.Sprintf("request too large for the admin socket (%d bytes, max %d)", len(line), MaxMessage)
	if r.OK || !strings.Contains(r.Error, want) || strings.Contains(r.Error, "\n") {
		t.Errorf("answer to an oversized request = %+v, want one line containing %q", r, want)
	}
	var entry struct {
		Level string `json:"level"`
		Msg   string `json:"message"`
		Bytes int    `json:"bytes"`
		Max   int    `json:"max_bytes"`
	}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if json.Unmarshal([]byte(l), &entry) == nil && strings.Contains(entry.Msg, "too large") {
			break
		}
		entry.Msg = ""
	}
	if entry.Level != "warn" || entry.Bytes != len(line) || entry.Max != MaxMessage {
		t.Errorf("server log = %q, want a warning with bytes=%d max_bytes=%d", logs.String(), len(line), MaxMessage)
	}
}

// TestOversizedAnswer: an answer over MaxMessage is reported as such by the
// client, not as a malformed message.
func TestOversizedAnswer(t *testing.T) {
	base, err := os.MkdirTemp("", "hca")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	ln, err := net.Listen("unix", filepath.Join(base, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadBytes('\n')
		c.Write(append([]byte(`{"ok":true,"data":"`), bytes.Repeat([]byte("x"), MaxMessage)...))
		c.Write([]byte("\"}\n"))
	}()
	err = (&Client{Dir: base, Timeout: 20 * time.Second}).Call(context.Background(), CmdLevelGet, nil, nil)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.What != "answer" || !strings.Contains(err.Error(), "answer too large for the admin socket") {
		t.Errorf("Call with an oversized answer = %v, want answer too large", err)
	}
}

// TestStaleSocketClient: after a crash the socket file stays; an admin
// command says no server is running and how to start one.
func TestStaleSocketClient(t *testing.T) {
	base := staleSocket(t)
	err := (&Client{Dir: base}).Call(context.Background(), CmdLevelGet, nil, nil)
	want := "hostcert-primary serve --data " + base
	if !errors.Is(err, ErrNotServing) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Call on a stale socket = %v, want ErrNotServing and %q", err, want)
	}
}
