package connect

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxLingering bounds how many refused connections are closed gently at
// once; past it a refused connection gets its answer and an immediate close.
const maxLingering = 256

// listener admits connections before net/http sees them: per-source rate and
// connection caps and the global connection cap are enforced here, and a
// refused connection gets its HTTP answer without a goroutine of net/http.
type listener struct {
	net.Listener
	s         *Server
	lingering chan struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		st := l.s.settings()
		src := sourceKey(c.RemoteAddr())
		release, r := l.s.adm.admit(src, time.Now(), st.limits)
		if r != nil {
			l.s.logRefusal(c.RemoteAddr().String(), "", r)
			select {
			case l.lingering <- struct{}{}:
				go func() {
					defer func() { <-l.lingering }()
					lingerClose(c, r)
				}()
			default:
				_ = r.writeTo(c)
				_ = c.Close()
			}
			continue
		}
		return newClientConn(c, release, st.limits.handshake, l.s), nil
	}
}

// clientConn is an admitted client connection. Until the CONNECT request has
// been read it enforces the handshake deadline (whatever net/http asks for)
// and answers 408 when it passes; closing it gives its admission slot back.
type clientConn struct {
	net.Conn
	s           *Server
	deadline    time.Time
	handshaking atomic.Bool
	timedOut    sync.Once
	closed      sync.Once
	release     func()
}

func newClientConn(c net.Conn, release func(), handshake time.Duration, s *Server) *clientConn {
	cc := &clientConn{Conn: c, s: s, deadline: time.Now().Add(handshake), release: release}
	cc.handshaking.Store(true)
	_ = c.SetReadDeadline(cc.deadline)
	return cc
}

// endHandshake is called once the request has been read in full.
func (c *clientConn) endHandshake() {
	if c.handshaking.Swap(false) {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
}

func (c *clientConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.handshaking.Load() && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(c.deadline) {
		c.timedOut.Do(func() {
			c.s.logRefusal(c.RemoteAddr().String(), "", &refuseTimeout)
			_ = refuseTimeout.writeTo(c.Conn)
		})
	}
	return n, err
}

// Write notices the answers net/http sends on its own before a handler runs
// (400 for a malformed request, 431 for oversized headers, 505 for an
// unsupported version) so that every refusal has its log line.
func (c *clientConn) Write(b []byte) (int, error) {
	if c.handshaking.Load() {
		if status, ok := statusOf(b); ok {
			r := refusal{status: status, code: "malformed_request"}
			if status == http.StatusRequestHeaderFieldsTooLarge {
				r.code = "headers_too_large"
			}
			c.s.logRefusal(c.RemoteAddr().String(), "", &r)
		}
	}
	return c.Conn.Write(b)
}

// statusOf reads the status code of an HTTP/1.x status line at the start of b.
func statusOf(b []byte) (int, bool) {
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[8] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(string(b[9:12]))
	return code, err == nil
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	if c.handshaking.Load() && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(c.release)
	return err
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
