package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// clientVia dials from the local address local and, when version is 1 or 2,
// starts the connection with a PROXY header relaying client src.
func (e *env) clientVia(local string, version byte, src netip.AddrPort) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if version != 0 {
			dst, _ := netip.ParseAddrPort(addr)
			h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
			if _, err := h.WriteTo(c); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   &tls.Config{RootCAs: e.roots, ServerName: "localhost"},
			DisableKeepAlives: true,
		},
	}
}

// TestProxyProtocol: a tunnel (127.0.0.1 here) must send a PROXY v2 header,
// whose client address becomes the request's source (and is what DNS
// verification compares against); any other peer (127.0.0.2) must not.
func TestProxyProtocol(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		ln.Close()
	}
	e := newEnv(t, envOpts{tunnels: []string{"127.0.0.1/32"}})
	e.setLevel(protocol.LevelMedium)
	dmz := netip.MustParseAddrPort("198.51.100.7:40000")
	e.dns.Set("dmz.test", dmz.Addr())
	e.dns.Set("lan.test", netip.MustParseAddr("127.0.0.2"))

	enroll := func(c *http.Client, name string) (*http.Response, error) {
		h := newHost(t, name)
		body, _ := json.Marshal(protocol.EnrollRequest{Name: name, CSR: h.csr(t)})
		return c.Post("https://"+e.addr+protocol.PathEnroll, "application/json", bytes.NewReader(body))
	}

	// Through the tunnel with a v2 header: the relayed address is verified.
	resp, err := enroll(e.clientVia("127.0.0.1", 2, dmz), "dmz.test")
	if err != nil {
		t.Fatalf("enroll through the tunnel with a v2 header: %v", err)
	}
	var cr protocol.CertResponse
	json.NewDecoder(resp.Body).Decode(&cr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !cr.Decision.Verified {
		t.Errorf("enroll through the tunnel = %d verified=%v, want 200 verified (source %s)", resp.StatusCode, cr.Decision.Verified, dmz.Addr())
	}
	var rows []admin.AuditEntry
	e.call(admin.CmdAudit, admin.AuditArgs{}, &rows)
	found := false
	for _, a := range rows {
		if a.Action == "issue" && a.Name == "dmz.test" {
			found = a.Source == dmz.Addr().String()
		}
	}
	if !found {
		t.Errorf("audit row of the tunnelled issue does not name source %s", dmz.Addr())
	}

	// From the tunnel without a header, or with a v1 header: refused.
	if resp, err := enroll(e.clientVia("127.0.0.1", 0, dmz), "dmz2.test"); err == nil {
		resp.Body.Close()
		t.Errorf("tunnel connection without a PROXY header answered %d, want the connection refused", resp.StatusCode)
	}
	if resp, err := enroll(e.clientVia("127.0.0.1", 1, dmz), "dmz3.test"); err == nil {
		resp.Body.Close()
		t.Errorf("tunnel connection with a PROXY v1 header answered %d, want the connection refused", resp.StatusCode)
	}
	// From a non-tunnel peer with a header: refused (it could forge its address).
	if resp, err := enroll(e.clientVia("127.0.0.2", 2, dmz), "dmz4.test"); err == nil {
		resp.Body.Close()
		t.Errorf("non-tunnel connection with a PROXY header answered %d, want the connection refused", resp.StatusCode)
	}
	// From a non-tunnel peer without a header: served, its own address is the source.
	resp, err = enroll(e.clientVia("127.0.0.2", 0, dmz), "lan.test")
	if err != nil {
		t.Fatalf("direct enroll from 127.0.0.2: %v", err)
	}
	json.NewDecoder(resp.Body).Decode(&cr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !cr.Decision.Verified {
		t.Errorf("direct enroll from 127.0.0.2 = %d verified=%v, want 200 verified", resp.StatusCode, cr.Decision.Verified)
	}
}

func TestParseTunnels(t *testing.T) {
	got, err := parseTunnels([]string{"10.0.0.5", "192.0.2.0/24, ::ffff:10.0.0.6", "2001:db8::/48"})
	want := []string{"10.0.0.5/32", "192.0.2.0/24", "10.0.0.6/32", "2001:db8::/48"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("parseTunnels = %v, %v, want %v", got, err, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("parseTunnels[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"media1.example", "10.0.0.300", "10.0.0.0/33"} {
		if _, err := parseTunnels([]string{bad}); err == nil {
			t.Errorf("parseTunnels(%q) = nil error, want an error", bad)
		}
	}
}
