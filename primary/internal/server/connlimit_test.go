package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// TestConnectionCap: 300 connections that send nothing hold only the cap;
// every other one is answered 503 with Retry-After (or, past the bounded
// number of refusals answered at once, closed), the metrics say so, and
// once the flood ends a legitimate enrollment works.
func TestConnectionCap(t *testing.T) {
	const limit, flood = 20, 300
	e := newEnv(t, envOpts{maxConns: limit, metrics: true})
	e.setLevel(protocol.LevelMedium)

	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < flood; i++ {
		c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Each connection waits up to 3s for an answer: the held ones get none
	// (the primary waits 5s for a PROXY header, then for the TLS hello).
	var mu sync.Mutex
	var held, answered, closed int
	var sample string
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(io.LimitReader(c, 4096))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case bytes.HasPrefix(b, []byte("HTTP/1.1 503 ")):
				answered++
				sample = string(b)
				c.Close()
			case len(b) == 0 && errors.Is(err, os.ErrDeadlineExceeded):
				held++
			default:
				closed++
				c.Close()
			}
		}()
	}
	wg.Wait()
	if held != limit || answered+closed != flood-limit {
		t.Errorf("of %d connections: %d held, %d answered 503, %d closed; want %d held and the rest refused", flood, held, answered, closed, limit)
	}
	if answered == 0 || !strings.Contains(sample, "\r\nRetry-After: 5\r\n") || !strings.Contains(sample, `"code":"unavailable"`) {
		t.Errorf("refusals answered = %d, sample %q; want 503s with Retry-After and code unavailable", answered, sample)
	}
	if got := e.metric(t, "hostcert_primary_api_connections"); got != limit {
		t.Errorf("hostcert_primary_api_connections = %v, want %d", got, limit)
	}
	if got := e.metric(t, "hostcert_primary_api_connections_refused_total"); got != flood-limit {
		t.Errorf("hostcert_primary_api_connections_refused_total = %v, want %d", got, flood-limit)
	}

	// While the cap is full a client is refused; once the flood is gone a
	// legitimate enrollment goes through.
	if _, err := e.client(nil).Get("https://" + e.addr + protocol.PathCA); err == nil {
		t.Errorf("GET /v1/ca while the cap is full succeeded, want a refusal")
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for e.metric(t, "hostcert_primary_api_connections") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("hostcert_primary_api_connections = %v 15s after the flood closed, want 0", e.metric(t, "hostcert_primary_api_connections"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.dns.Set("after-flood.test", loopback)
	if r := e.enroll(newHost(t, "after-flood.test"), "", "", false); r.status != http.StatusOK {
		t.Errorf("enroll after the flood = %s, want 200", r)
	}
}
