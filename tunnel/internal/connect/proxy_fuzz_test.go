package connect

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
)

// FuzzProxyHeader: for any client and local address, the header the tunnel
// writes either is refused (not a TCP address over IPv4 or IPv6) or parses
// back, as a v2 PROXY header, to exactly the client's address and port.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte{203, 0, 113, 5}, uint16(51000), []byte{192, 0, 2, 1}, uint16(1556))
	f.Add([]byte(net.ParseIP("2001:db8::5").To16()), uint16(1), []byte(net.ParseIP("2001:db8::1").To16()), uint16(1556))
	f.Add([]byte{203, 0, 113, 5}, uint16(0), []byte(net.ParseIP("2001:db8::1").To16()), uint16(1556))
	f.Add([]byte{1, 2, 3}, uint16(7), []byte{192, 0, 2, 1}, uint16(1556))
	f.Add([]byte{}, uint16(7), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, clientIP []byte, clientPort uint16, localIP []byte, localPort uint16) {
		client := &net.TCPAddr{IP: net.IP(clientIP), Port: int(clientPort)}
		local := &net.TCPAddr{IP: net.IP(localIP), Port: int(localPort)}
		b, err := proxyHeader(client, local)
		ca, cok := netip.AddrFromSlice(clientIP)
		_, lok := netip.AddrFromSlice(localIP)
		if !cok || !lok {
			if err == nil {
				t.Fatalf("proxyHeader(%v, %v) = %x, want an error for addresses that are not IP", client, local, b)
			}
			return
		}
		if err != nil {
			t.Fatalf("proxyHeader(%v, %v): %v", client, local, err)
		}
		h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("the header written for %v does not parse: %v (%x)", client, err, b)
		}
		src, ok := h.SourceAddr.(*net.TCPAddr)
		if h.Version != 2 || h.Command != proxyproto.PROXY || !ok {
			t.Fatalf("header for %v = %+v, want v2 PROXY with a TCP source", client, h)
		}
		got, _ := netip.AddrFromSlice(src.IP)
		if got.Unmap() != ca.Unmap() || src.Port != int(clientPort) {
			t.Errorf("header source = %v, want %v port %d", src, ca, clientPort)
		}
	})
}
