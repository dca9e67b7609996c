package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/hostcert/hostcert/primary/internal/enroll"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// The API listener is three layers over TCP: the connection cap (capListener),
// the PROXY protocol gate (gate) and TLS.

// DefaultMaxConns is the default cap on open API connections.
const DefaultMaxConns = 1024

// Refusing a connection over the cap.
const (
	// refuseWait bounds how long a refused connection is kept to deliver
	// its answer.
	refuseWait = time.Second
	// maxRefusing bounds the refused connections being answered at once;
	// beyond it a refused connection is closed without an answer.
	maxRefusing = 64
	// RetryAfter is the Retry-After of the refusal, in seconds.
	RetryAfter = 5
)

// refusalBody is the JSON of a refusal over the cap (protocol.Error).
const refusalBody = `{"code":"unavailable","message":"the primary has too many open connections; retry later"}` + "\n"

// refusal is the whole answer to a connection over the cap: plain HTTP,
// before any TLS, so that it costs no handshake.
var refusal = fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
	"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", RetryAfter, len(refusalBody), refusalBody)

// connCounter is what the listeners report to (the metrics).
type connCounter interface {
	ConnOpened()
	ConnClosed()
	ConnRefused()
}

// capListener holds at most max connections open; each one over the cap
// gets the refusal and is closed.
type capListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing chan struct{}
	count    connCounter
}

func newCapListener(ln net.Listener, max int, count connCounter) *capListener {
	return &capListener{Listener: ln, max: int64(max), refusing: make(chan struct{}, maxRefusing), count: count}
}

// Open is the number of connections held.
func (l *capListener) Open() int64 { return l.open.Load() }

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.count.ConnRefused()
			l.refuse(c)
			continue
		}
		l.count.ConnOpened()
		return &cappedConn{Conn: c, l: l}, nil
	}
}

// refuse answers c with the refusal and closes it, without blocking Accept.
func (l *capListener) refuse(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseWait))
		if _, err := io.WriteString(c, refusal); err != nil {
			return
		}
		// Half-close and read what the client already sent (its TLS hello),
		// so that the close does not reset the connection before the client
		// has read the answer.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// cappedConn gives its place back once, on the first Close.
type cappedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.count.ConnClosed()
	})
	return err
}

// undeclaredReporter is told about every connection that starts with a
// PROXY header but does not come from a declared tunnel. It runs on the
// connection's own goroutine.
type undeclaredReporter func(peer netip.AddrPort, relayed net.Addr)

// gate applies the PROXY protocol rules (docs/primary.md): a declared
// tunnel's connection must start with a v2 header, whose client address
// becomes the connection's remote address; a header from any other peer is
// read and reported, its address is not used, and the connection's requests
// verify no name.
type gate struct {
	net.Listener
	tunnels  []netip.Prefix
	wait     time.Duration
	reporter undeclaredReporter
}

func (g *gate) declared(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.tunnels {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (g *gate) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return g.wrap(c), nil
}

// wrap puts the PROXY rules around one accepted connection.
func (g *gate) wrap(c net.Conn) *sourceConn {
	peer, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	sc := &sourceConn{peer: peer, declared: g.declared(peer.Addr()), report: g.reporter}
	if sc.declared {
		sc.Conn = proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.ValidateHeader(onlyV2), proxyproto.SetReadHeaderTimeout(g.wait))
	} else {
		sc.Conn = proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.USE), proxyproto.SetReadHeaderTimeout(g.wait))
	}
	return sc
}

// sourceConn is one API connection with what the PROXY rules made of it:
// the address its requests come from and, when that address must verify no
// name, why.
type sourceConn struct {
	*proxyproto.Conn
	peer     netip.AddrPort
	declared bool
	report   undeclaredReporter

	once   sync.Once
	remote net.Addr
	why    string
}

// classify reads the PROXY header (at most once; it may wait for the
// client's first bytes) and decides the connection's source.
func (c *sourceConn) classify() {
	c.once.Do(func() {
		h := c.Conn.ProxyHeader()
		raw := c.Conn.Raw().RemoteAddr()
		c.remote = raw
		switch {
		case h == nil:
			// No header: a direct client (a declared tunnel's connection
			// without one fails on its first read).
		case !c.declared:
			c.why = fmt.Sprintf("relayed by undeclared peer %s (PROXY header ignored; declare the tunnel with serve --tunnel-addr)", c.peer.Addr())
			if c.report != nil {
				c.report(c.peer, h.SourceAddr)
			}
		case h.Command.IsLocal() || h.SourceAddr == nil || !isTCP(h.SourceAddr):
			c.why = fmt.Sprintf("tunnel %s relayed no client address", c.peer.Addr())
		default:
			c.remote = h.SourceAddr
		}
	})
}

func isTCP(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP != nil
}

// RemoteAddr is the address the connection's requests come from: a declared
// tunnel's relayed client, else the TCP peer.
func (c *sourceConn) RemoteAddr() net.Addr {
	c.classify()
	return c.remote
}

// NotVerifiable says why this connection's source must verify no name, or "".
func (c *sourceConn) NotVerifiable() string {
	c.classify()
	return c.why
}

// connKey carries the accepted *sourceConn in a connection's context.
type connKey struct{}

// connContext is the API server's ConnContext: it only remembers the
// connection (it runs on the accept loop, which must not wait for a header).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	if sc, ok := c.(*sourceConn); ok {
		// The route issuance records for the inventory: through a
		// declared tunnel or direct (known from the TCP peer alone).
		route := store.RouteDirect
		if sc.declared {
			route = store.RouteTunnel
		}
		return enroll.WithRoute(context.WithValue(ctx, connKey{}, sc), route)
	}
	return ctx
}

// errNotV2 refuses PROXY protocol v1 (text) headers: tunnels speak v2.
var errNotV2 = errors.New("PROXY protocol v1 header refused: tunnels must send v2")

func onlyV2(h *proxyproto.Header) error {
	if h.Version != 2 {
		return errNotV2
	}
	return nil
}
