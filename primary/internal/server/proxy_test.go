package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
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
// verification compares against); any other peer's (127.0.0.2) header is
// not believed.
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
	// From a non-tunnel peer with a header: served, but verified by neither
	// address (TestProxyHeaderFromUndeclaredPeer).
	e.dns.Set("dmz4.test", dmz.Addr(), netip.MustParseAddr("127.0.0.2"))
	resp, err = enroll(e.clientVia("127.0.0.2", 2, dmz), "dmz4.test")
	if err != nil {
		t.Fatalf("non-tunnel connection with a PROXY header: %v", err)
	}
	var refused protocol.Error
	json.NewDecoder(resp.Body).Decode(&refused)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || refused.Code != protocol.CodeTokenRequired {
		t.Errorf("non-tunnel connection with a PROXY header = %d %s, want token_required (not verified)", resp.StatusCode, refused.Code)
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

// clientHeader dials from local and starts every connection with h.
func (e *env) clientHeader(local string, h *proxyproto.Header) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, err
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

// TestProxyHeaderFromUndeclaredPeer is the default tunnel of SPEC §4: a
// primary with no --tunnel-addr, a tunnel (127.0.0.1) relaying a DMZ host
// with a PROXY header, and a registered name that resolves to the tunnel's
// own address. The request is served but not verified — neither the tunnel's
// address nor the relayed one verifies it — so at high it needs a token; the
// header is logged at warn, counted and audited.
func TestProxyHeaderFromUndeclaredPeer(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	e.setLevel(protocol.LevelHigh)
	dmz := netip.MustParseAddrPort("198.51.100.7:40000")
	const name = "media-alias.test"
	e.call(admin.CmdHostAdd, admin.NamesArgs{Names: []string{name, "lan-direct.test"}}, nil)
	e.dns.Set(name, loopback, dmz.Addr())
	e.dns.Set("lan-direct.test", loopback)

	h := newHost(t, name)
	body, _ := json.Marshal(protocol.EnrollRequest{Name: name, CSR: h.csr(t)})
	r := e.post(e.clientVia("127.0.0.1", 2, dmz), protocol.PathEnroll, "application/json", body)
	if r.status == http.StatusOK || r.err.Code != protocol.CodeTokenRequired {
		t.Fatalf("enroll through an undeclared tunnel = %s, want token_required (not verified)", r)
	}
	if !strings.Contains(e.log.String(), "proxy header from undeclared peer") {
		t.Errorf("log has no warning about the undeclared peer:\n%s", e.log)
	}
	var rows []admin.AuditEntry
	e.call(admin.CmdAudit, admin.AuditArgs{}, &rows)
	audited := false
	for _, a := range rows {
		audited = audited || a.Action == "proxy.undeclared" && a.Source == "127.0.0.1"
	}
	if !audited {
		t.Errorf("no audit row proxy.undeclared from 127.0.0.1 in %+v", rows)
	}
	if got := e.metric(t, "hostcert_primary_proxy_headers_undeclared_total"); got != 1 {
		t.Errorf("hostcert_primary_proxy_headers_undeclared_total = %v, want 1", got)
	}

	// The same peer without a header is a direct client: its own address
	// verifies its name.
	direct := newHost(t, "lan-direct.test")
	if r := e.enroll(direct, "", "", false); r.status != http.StatusOK || !r.cert.Decision.Verified {
		t.Errorf("direct enroll from 127.0.0.1 = %s, want 200 verified", r)
	}
}

// TestProxyHeaderWithoutClientAddress: a declared tunnel whose header
// relays no client address (LOCAL) is served, and its own address verifies
// nothing.
func TestProxyHeaderWithoutClientAddress(t *testing.T) {
	e := newEnv(t, envOpts{tunnels: []string{"127.0.0.1"}})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("local.test", loopback)
	h := newHost(t, "local.test")
	body, _ := json.Marshal(protocol.EnrollRequest{Name: h.name, CSR: h.csr(t)})
	r := e.post(e.clientHeader("127.0.0.1", &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}), protocol.PathEnroll, "application/json", body)
	if r.status == http.StatusOK || r.err.Code != protocol.CodeTokenRequired {
		t.Fatalf("enroll through a tunnel relaying no address = %s, want token_required (not verified)", r)
	}
}

// metric reads one unlabelled sample from /metrics.
func (e *env) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s = %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
