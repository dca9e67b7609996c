//go:build !windows

package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// TestProtocolErrors: malformed requests, unknown commands and unknown
// arguments get a one-line error; a stale socket is replaced, a live one is
// not stolen.
func TestProtocolErrors(t *testing.T) {
	base, err := os.MkdirTemp("", "hca")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	st, err := store.Open(context.Background(), filepath.Join(base, "primary.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := NewServer(st, nil, nil, nil, zerolog.Nop())
	ln, err := s.Listen(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}()

	if _, err := NewServer(nil, nil, nil, nil, zerolog.Nop()).Listen(base); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen on a live socket = %v, want in use", err)
	}

	raw := func(line string) Response {
		c, _, err := dial(base, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte(line + "\n"))
		var r Response
		if err := json.NewDecoder(bufio.NewReader(c)).Decode(&r); err != nil {
			t.Fatalf("read answer to %q: %v", line, err)
		}
		return r
	}
	for line, want := range map[string]string{
		`{"command":`:               "malformed request",
		`{"command":"format-disk"}`: "unknown admin command",
		`{"command":"level.set","args":{"lvl":"medium"}}`:    "bad arguments",
		`{"command":"explain","args":{"name":"a","from":1}}`: "bad arguments",
	} {
		r := raw(line)
		if r.OK || !strings.Contains(r.Error, want) || strings.Contains(r.Error, "\n") {
			t.Errorf("request %s = %+v, want a one-line error containing %q", line, r, want)
		}
	}
	c := Client{Dir: base}
	var ce *CommandError
	if err := c.Call(context.Background(), "nope", nil, nil); !errors.As(err, &ce) || ce.Command != "nope" {
		t.Errorf("Call(nope) = %v, want a *CommandError", err)
	}
	// The failed level.set was audited with the peer's uid.
	rows, err := st.ListAudit(context.Background(), time.Time{}, 10)
	if err != nil || len(rows) != 1 || rows[0].Action != CmdLevelSet || rows[0].Outcome != "error" || rows[0].Actor != fmt.Sprintf("admin:%d", os.Getuid()) {
		t.Errorf("audit after a failed level.set = %+v, %v; want one error row by admin:%d", rows, err, os.Getuid())
	}
}

// staleSocket is a data directory holding a socket file nobody listens
// on, as a killed server leaves behind (a short path: socket paths are
// limited to about 100 bytes).
func staleSocket(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "hca")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	l, err := net.Listen("unix", filepath.Join(base, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	return base
}

func TestStaleSocketReplaced(t *testing.T) {
	base := staleSocket(t)
	ln, err := NewServer(nil, nil, nil, nil, zerolog.Nop()).Listen(base)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}
