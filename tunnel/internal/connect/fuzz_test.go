package connect

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/tunnel/internal/config"
)

// FuzzConnectRequest sends arbitrary bytes as a client's request to a real
// tunnel on loopback. Whatever arrives: a client that sent a whole request
// head gets an HTTP answer (never a silent close; one that hung up before
// finishing its head may be closed on, as any HTTP server does), 200 only
// for a CONNECT to exactly the allowed target, and the upstream is dialled
// only for such a 200.
func FuzzConnectRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT primary.test:1556 HTTP/1.1\r\nHost: primary.test:1556\r\n\r\n",
		"CONNECT PRIMARY.test.:1556 HTTP/1.1\r\n\r\n",
		"CONNECT primary.test:22 HTTP/1.1\r\n\r\n",
		"CONNECT user@primary.test:1556 HTTP/1.1\r\n\r\n",
		"CONNECT 127.0.0.1:1556 HTTP/1.1\r\n\r\n",
		"GET http://primary.test:1556/ HTTP/1.1\r\nHost: primary.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"connect primary.test:1556 HTTP/1.1\r\n\r\n",
		"CONNECT primary.test:1556 HTTP/9.9\r\n\r\n",
		"CONNECT primary.test:01556 HTTP/1.1\r\n\r\n",
		"CONNECT [::1]:1556 HTTP/1.1\r\n\r\n",
		"CONNECT primary.test:1556 HTTP/1.1\r\nX: " + strings.Repeat("a", 100) + "\r\n\r\n",
		"\x00\x01\x02\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	up := &countingListener{Listener: mustListen(f)}
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	f.Cleanup(func() { up.Close() })
	// Two upstreams for the one target, the first refusing: every admitted
	// CONNECT fails over to the second, and nothing else is ever dialled.
	dead := mustListen(f)
	deadAddr := dead.Addr().String()
	dead.Close()
	tt := startTunnel(f, []string{"primary.test:1556=" + deadAddr + "," + up.Addr().String()}, func(c *config.File) {
		c.Limits.RatePerSource = 1e6
		c.Limits.BurstPerSource = 1e6
		c.Limits.HandshakeTimeout = 2 * time.Second
	})

	f.Fuzz(func(t *testing.T, req []byte) {
		before := up.n.Load()
		c, err := net.DialTimeout("tcp", tt.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(req)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // a request cut short must still be answered
		}
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		wholeHead := bytes.Contains(req, []byte("\n\n")) || bytes.Contains(req, []byte("\n\r\n"))
		if err != nil && line == "" && !wholeHead {
			if n := up.n.Load(); n != before {
				t.Fatalf("request %q was closed on but the upstream was dialled", req)
			}
			return
		}
		if err != nil && line == "" {
			t.Fatalf("request %q: no answer (%v), want an HTTP status line", req, err)
		}
		if !strings.HasPrefix(line, "HTTP/1.") || len(line) < 12 {
			t.Fatalf("request %q: answer %q is not an HTTP status line", req, line)
		}
		code := line[9:12]
		if code == "200" {
			first, _, _ := bytes.Cut(req, []byte("\r\n"))
			fields := strings.Fields(string(first))
			if len(fields) < 2 || fields[0] != http.MethodConnect {
				t.Fatalf("request %q answered 200, want only CONNECT admitted", req)
			}
			target, err := config.NormalizeTarget(fields[1])
			if err != nil || target != "primary.test:1556" {
				t.Fatalf("request %q answered 200 for target %q, want only primary.test:1556", req, fields[1])
			}
			// The tunnel dialled before it answered; wait until the upstream
			// has accepted that connection, so the next input starts even.
			waitFor(t, "the upstream to accept the admitted tunnel", func() bool { return up.n.Load() > before })
			return
		}
		// A refusal dials nothing. The upstream's accept count is read after
		// the answer, and an admitted tunnel dials before it answers 200.
		if n := up.n.Load(); n != before {
			t.Fatalf("request %q answered %s but the upstream was dialled", req, strings.TrimSpace(line))
		}
	})
}

func mustListen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// FuzzNormalizeTarget: an accepted target is canonical — normalising it again
// is a no-op — and it has a host and a port 1-65535.
func FuzzNormalizeTarget(f *testing.F) {
	for _, s := range []string{"primary.test:1556", "PRIMARY.test.:1556", "[::1]:443", "a:0", "a:65536", "a:01", "@:1", ":1", "a b:1", "a:1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := config.NormalizeTarget(s)
		if err != nil {
			return
		}
		if n2, err := config.NormalizeTarget(n); err != nil || n2 != n {
			t.Fatalf("NormalizeTarget(%q) = %q, then %q, %v: not canonical", s, n, n2, err)
		}
		host, port, err := net.SplitHostPort(n)
		if err != nil || host == "" || port == "" || port[0] == '0' {
			t.Fatalf("NormalizeTarget(%q) = %q: bad host or port", s, n)
		}
	})
}
