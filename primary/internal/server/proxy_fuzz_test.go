package server

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// memConn is a connection whose peer sent data and then closed; it never
// blocks, so the fuzzer runs the PROXY gate without sockets.
type memConn struct {
	r             *bytes.Reader
	local, remote net.Addr
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return c.local }
func (c *memConn) RemoteAddr() net.Addr             { return c.remote }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzProxyHeader feeds arbitrary first bytes of a connection, from a
// declared tunnel or from any other peer, through the PROXY gate. Whatever
// the bytes: nothing panics; an undeclared peer's connection always has the
// peer's own address and, when a header was there, is reported once and
// verifies nothing; a declared tunnel's connection either fails, or
// verifies nothing, or carries the TCP client address of a v2 header; what
// the application reads is the rest of what was sent.
func FuzzProxyHeader(f *testing.F) {
	tunnel := netip.MustParseAddrPort("192.0.2.7:40000")
	other := netip.MustParseAddrPort("198.51.100.9:40001")
	local := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1556}
	client := &net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 51000}
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00}
	v2, _ := proxyproto.HeaderProxyFromAddrs(2, client, local).Format()
	v2six, _ := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::5"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1556}).Format()
	v2local, _ := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	v1, _ := proxyproto.HeaderProxyFromAddrs(1, client, local).Format()
	for _, seed := range [][]byte{
		nil, hello, append(v2, hello...), append(v2six, hello...), append(v2local, hello...), append(v1, hello...),
		v2[:13], []byte("PROXY UNKNOWN\r\n"), []byte("PROXY TCP4 1.2.3.4\r\n"),
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, declared bool) {
		reports := 0
		g := &gate{
			tunnels: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			wait:    time.Second,
			reporter: func(peer netip.AddrPort, _ net.Addr) {
				reports++
				if peer != other {
					t.Errorf("reported peer %s, want %s", peer, other)
				}
			},
		}
		peer := other
		if declared {
			peer = tunnel
		}
		sc := g.wrap(&memConn{r: bytes.NewReader(data), local: local, remote: net.TCPAddrFromAddrPort(peer)})
		remote, why := sc.RemoteAddr(), sc.NotVerifiable()
		_ = sc.RemoteAddr() // classified once
		rest, readErr := io.ReadAll(sc)
		if !bytes.HasSuffix(data, rest) {
			t.Errorf("application read %q, not a suffix of what was sent %q", rest, data)
		}
		h := sc.Conn.ProxyHeader()
		if !declared {
			if remote.String() != net.TCPAddrFromAddrPort(peer).String() {
				t.Errorf("undeclared peer: RemoteAddr = %v, want the peer %v", remote, peer)
			}
			if (h != nil) != (reports == 1) || reports > 1 {
				t.Errorf("undeclared peer: header %v, reported %d times, want once exactly when there is a header", h != nil, reports)
			}
			if (h != nil) != (why != "") || (why != "" && !strings.Contains(why, "undeclared peer")) {
				t.Errorf("undeclared peer: header %v, not verifiable %q; want a reason exactly when there is a header", h != nil, why)
			}
			return
		}
		if reports != 0 {
			t.Errorf("declared tunnel reported as undeclared")
		}
		if readErr != nil {
			return // the connection fails: no request is ever served
		}
		if h == nil || h.Version != 2 {
			t.Fatalf("declared tunnel served without a v2 header (header %+v)", h)
		}
		if why != "" {
			if remote.String() != net.TCPAddrFromAddrPort(peer).String() {
				t.Errorf("tunnel relaying no address: RemoteAddr = %v, want the tunnel's %v (which verifies nothing)", remote, peer)
			}
			return
		}
		ta, ok := remote.(*net.TCPAddr)
		if !ok || h.Command != proxyproto.PROXY || remote.String() != h.SourceAddr.String() {
			t.Errorf("declared tunnel: RemoteAddr = %v (%T), want the header's TCP source %v", remote, remote, h.SourceAddr)
		} else if ta.IP == nil {
			t.Errorf("declared tunnel: RemoteAddr %v has no IP", ta)
		}
	})
}
