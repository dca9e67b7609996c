package connect

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/hostcert/hostcert/tunnel/internal/config"
)

// tlsPrimary is a TLS server standing in for the primary. httptest's
// certificate is for example.com, so the tunnel's allow list uses that name
// with the server's loopback address as upstream: nothing resolves it.
func tlsPrimary(t testing.TB) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from primary")
	}))
	// The tunnel starts every upstream connection with a PROXY header.
	srv.Listener = &proxyproto.Listener{Listener: srv.Listener}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return srv, port
}

func TestCurlThroughTunnel(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("SKIPPING real-client test: curl is not installed")
	}
	srv, port := tlsPrimary(t)
	target := "example.com:" + port
	tt := startTunnel(t, []string{target + "=" + srv.Listener.Addr().String()}, nil)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "", "-p", "-x", "http://"+tt.addr, "--cacert", ca, "https://"+target+"/")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl -p -x through tunnel: %v\n%s", err, out)
	}
	if string(out) != "hello from primary" {
		t.Fatalf("curl output = %q, want %q", out, "hello from primary")
	}
	waitFor(t, "access log line", func() bool { return strings.Contains(tt.logs.String(), `tunnel closed`) })
	line := lineWith(tt.logs.String(), "tunnel closed")
	for _, field := range []string{`"source":"127.0.0.1:`, `"target":"` + target, `"outcome":"`, `"bytes_up":`, `"bytes_down":`, `"duration_ms":`} {
		if !strings.Contains(line, field) {
			t.Errorf("access log line %s lacks %s", line, field)
		}
	}
}

func lineWith(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func TestGoClientThroughTunnel(t *testing.T) {
	srv, port := tlsPrimary(t)
	target := "example.com:" + port
	tt := startTunnel(t, []string{target + "=" + srv.Listener.Addr().String()}, nil)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: tt.addr}),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 3 { // a few requests, new connections each time
		resp, err := client.Get("https://" + target + "/")
		if err != nil {
			t.Fatalf("GET %d through tunnel: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello from primary" {
			t.Fatalf("GET %d body = %q", i, body)
		}
		tr.CloseIdleConnections()
	}
}

func TestProxyProtocolHeaderCarriesClientAddress(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &proxyproto.Listener{Listener: raw}
	defer ln.Close()
	got := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pc := c.(*proxyproto.Conn)
		if h := pc.ProxyHeader(); h != nil {
			got <- h.SourceAddr
		} else {
			got <- nil
		}
		_, _ = io.Copy(c, c)
	}()
	tt := startTunnel(t, []string{"primary.test:1556=" + raw.Addr().String()}, nil)
	// The client comes from 127.0.0.7: the upstream must see that, not the
	// tunnel's own address.
	c := connectThrough(t, tt.addr, "127.0.0.7", "primary.test:1556")
	echoRoundTrip(t, c, "after the header")
	select {
	case a := <-got:
		if a == nil {
			t.Fatal("upstream saw no PROXY header")
		}
		if a.String() != c.LocalAddr().String() {
			t.Fatalf("PROXY header source = %v, want the client's %v", a, c.LocalAddr())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream got no connection")
	}
}

func TestAbuseIsRefusedWithHTTPAnswers(t *testing.T) {
	up := echoServer(t)
	upAddr := up.Addr().String()
	_, upPort, _ := net.SplitHostPort(upAddr)
	loopSvc := echoServer(t) // an unrelated loopback service on the tunnel host
	target := "primary.test:" + upPort
	tt := startTunnel(t, []string{target + "=" + upAddr}, nil)
	big := strings.Repeat("a", 64<<10)
	cases := []struct {
		name, req string
		want      int
	}{
		{"non-allowed host", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 403},
		{"allowed host, other port", "CONNECT primary.test:22 HTTP/1.1\r\n\r\n", 403},
		{"the tunnel itself", "CONNECT " + tt.addr + " HTTP/1.1\r\n\r\n", 403},
		{"loopback service", "CONNECT " + loopSvc.Addr().String() + " HTTP/1.1\r\n\r\n", 403},
		{"upstream by address", "CONNECT " + upAddr + " HTTP/1.1\r\n\r\n", 403},
		{"name resolving to the upstream", "CONNECT localhost:" + upPort + " HTTP/1.1\r\n\r\n", 403},
		{"allowed name with userinfo", "CONNECT user@primary.test:" + upPort + " HTTP/1.1\r\n\r\n", 400},
		{"allowed name, no port", "CONNECT primary.test HTTP/1.1\r\n\r\n", 400},
		{"empty authority", "CONNECT :" + upPort + " HTTP/1.1\r\n\r\n", 400},
		{"path instead of authority", "CONNECT /primary.test:" + upPort + " HTTP/1.1\r\n\r\n", 400},
		{"absolute-URI GET to the allowed target", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n", 405},
		{"absolute-URI GET elsewhere", "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n", 405},
		{"origin-form GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"POST", "POST http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\nhi", 405},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"header garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400},
		{"bad header line", "CONNECT " + target + " HTTP/1.1\r\nno colon here\r\n\r\n", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 405},
		{"lowercase connect", "connect " + target + " HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"bad protocol version", "CONNECT " + target + " HTTP/9.9\r\n\r\n", 505},
		{"oversized headers", "CONNECT " + target + " HTTP/1.1\r\nX-Big: " + big + "\r\n\r\n", 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := rawRequest(t, tt.addr, "", tc.req)
			if resp.StatusCode != tc.want {
				t.Fatalf("%q = %s, want %d", truncate(tc.req), resp.Status, tc.want)
			}
		})
	}
	if n := up.n.Load(); n != 0 {
		t.Errorf("upstream accepted %d connections from refused requests, want 0", n)
	}
	if n := loopSvc.n.Load(); n != 0 {
		t.Errorf("loopback service accepted %d connections, want 0", n)
	}
	// Every refusal leaves a log line naming its status.
	if got := strings.Count(tt.logs.String(), `"message":"connect refused"`); got < len(cases) {
		t.Errorf("refusal log lines = %d, want at least 15:\n%s", got, tt.logs)
	}
	// And the allowed target still works.
	echoRoundTrip(t, connectThrough(t, tt.addr, "", target), "still serving")
}

func TestRefusalCarriesCodeAndAllow(t *testing.T) {
	tt := startTunnel(t, []string{"primary.test:1556=127.0.0.1:1"}, nil)
	resp, _ := rawRequest(t, tt.addr, "", "GET http://primary.test:1556/ HTTP/1.1\r\nHost: primary.test\r\n\r\n")
	if got := resp.Header.Get("Allow"); got != "CONNECT" {
		t.Errorf("405 Allow = %q, want CONNECT", got)
	}
	if got := resp.Header.Get(RefusalHeader); got != "method_not_allowed" {
		t.Errorf("405 %s = %q, want method_not_allowed", RefusalHeader, got)
	}
	resp, _ = rawRequest(t, tt.addr, "", "CONNECT nope.test:1556 HTTP/1.1\r\n\r\n")
	if got := resp.Header.Get(RefusalHeader); got != "target_not_allowed" {
		t.Errorf("403 %s = %q, want target_not_allowed", RefusalHeader, got)
	}
}

func TestUpstreamUnreachableIs502(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	dead.Close()
	tt := startTunnel(t, []string{"primary.test:1556=" + addr}, nil)
	resp, _ := rawRequest(t, tt.addr, "", "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("CONNECT to a dead upstream = %s, want 502", resp.Status)
	}
}

func TestDefaultUpstreamIsTargetResolvedByTunnel(t *testing.T) {
	up := echoServer(t)
	_, port, _ := net.SplitHostPort(up.Addr().String())
	tt := startTunnel(t, []string{"localhost:" + port}, nil)
	echoRoundTrip(t, connectThrough(t, tt.addr, "", "LOCALHOST.:"+port), "resolved by the tunnel")
}

func TestHandshakeTimeoutAnswers408(t *testing.T) {
	tt := startTunnel(t, []string{"primary.test:1556=127.0.0.1:1"}, func(f *config.File) {
		f.Limits.HandshakeTimeout = 300 * time.Millisecond
	})
	for _, partial := range []string{"", "CONNECT primary.test:1556 HTTP/1.1\r\nHost: prim"} {
		resp, _ := rawRequest(t, tt.addr, "", partial)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("silent client sending %q = %s, want 408", partial, resp.Status)
		}
	}
}

func TestSlowCompleteHandshakeStillWorks(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.Limits.HandshakeTimeout = 2 * time.Second
	})
	c, err := dialFrom(tt.addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n"
	for i := range len(req) { // byte by byte, well inside the deadline
		if _, err := c.Write([]byte{req[i]}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow CONNECT = %v, %v; want 200", resp, err)
	}
	// Past the handshake deadline the tunnel must not time out.
	time.Sleep(2500 * time.Millisecond)
	echoRoundTrip(t, c, "no handshake deadline on tunnels")
}

func TestIdleTimeoutClosesSilentTunnel(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.Limits.IdleTimeout = 300 * time.Millisecond
	})
	c := connectThrough(t, tt.addr, "", "primary.test:1556")
	echoRoundTrip(t, c, "one exchange, then silence")
	if err := readsEOF(c, 10*time.Second); err != nil {
		t.Fatalf("silent tunnel not closed: %v", err)
	}
	waitFor(t, "idle log line", func() bool { return strings.Contains(tt.logs.String(), `"outcome":"idle_timeout"`) })
	waitFor(t, "tunnel count 0", func() bool { return tt.srv.Tunnels() == 0 })
}

func TestIdleTimeoutSparesActiveTunnel(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.Limits.IdleTimeout = 400 * time.Millisecond
	})
	c := connectThrough(t, tt.addr, "", "primary.test:1556")
	for range 12 { // 1.2 s of traffic, three idle timeouts long
		echoRoundTrip(t, c, "keepalive")
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTunnelLimitAnswers503(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.Limits.MaxTunnels = 1
	})
	first := connectThrough(t, tt.addr, "", "primary.test:1556")
	resp, _ := rawRequest(t, tt.addr, "", "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second tunnel = %s, want 503", resp.Status)
	}
	echoRoundTrip(t, first, "first still works")
	first.Close()
	waitFor(t, "slot freed", func() bool { return tt.srv.Tunnels() == 0 })
	echoRoundTrip(t, connectThrough(t, tt.addr, "", "primary.test:1556"), "slot reused")
}

func TestPerSourceLimits(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.Limits.MaxConnectionsPerSource = 2
		f.Limits.RatePerSource = 1000
		f.Limits.BurstPerSource = 1000
	})
	a := connectThrough(t, tt.addr, "127.0.0.2", "primary.test:1556")
	connectThrough(t, tt.addr, "127.0.0.2", "primary.test:1556")
	resp, _ := rawRequest(t, tt.addr, "127.0.0.2", "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(RefusalHeader) != "too_many_connections_from_source" {
		t.Fatalf("third connection from one source = %s %s, want 429 too_many_connections_from_source", resp.Status, resp.Header.Get(RefusalHeader))
	}
	// Another source is unaffected.
	echoRoundTrip(t, connectThrough(t, tt.addr, "127.0.0.3", "primary.test:1556"), "other source")
	a.Close()
	waitFor(t, "source slot freed", func() bool {
		resp, c := rawRequest(t, tt.addr, "127.0.0.2", "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n")
		c.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func TestPerSourceRateLimit(t *testing.T) {
	tt := startTunnel(t, []string{"primary.test:1556=127.0.0.1:1"}, func(f *config.File) {
		f.Limits.RatePerSource = 0.001
		f.Limits.BurstPerSource = 3
	})
	for i := range 3 {
		resp, _ := rawRequest(t, tt.addr, "127.0.0.4", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("request %d inside the burst = %s, want 405", i, resp.Status)
		}
	}
	resp, _ := rawRequest(t, tt.addr, "127.0.0.4", "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(RefusalHeader) != "rate_limited" {
		t.Fatalf("request past the burst = %s %s, want 429 rate_limited", resp.Status, resp.Header.Get(RefusalHeader))
	}
	if !strings.Contains(tt.logs.String(), `"code":"rate_limited"`) {
		t.Errorf("no log line for the rate refusal")
	}
}

func TestGlobalConnectionLimitAnswers503(t *testing.T) {
	tt := startTunnel(t, []string{"primary.test:1556=127.0.0.1:1"}, func(f *config.File) {
		f.Limits.MaxConnections = 2
		f.Limits.MaxTunnels = 2
	})
	for _, src := range []string{"127.0.0.5", "127.0.0.6"} {
		c, err := dialFrom(tt.addr, src)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "two admitted", func() bool {
		tt.srv.adm.mu.Lock()
		defer tt.srv.adm.mu.Unlock()
		return tt.srv.adm.open == 2
	})
	resp, _ := rawRequest(t, tt.addr, "127.0.0.8", "CONNECT primary.test:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("connection past the global cap = %s, want 503", resp.Status)
	}
}

func TestConfigUpdateAppliesToNewConnections(t *testing.T) {
	a, b := echoServer(t), echoServer(t)
	tt := startTunnel(t, []string{"a.test:1556=" + a.Addr().String()}, nil)
	open := connectThrough(t, tt.addr, "", "a.test:1556")

	f, err := config.File{Allow: []config.Allow{{Target: "b.test:1556", Upstream: config.Upstreams{b.Addr().String()}}}}.Resolve(config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	tt.srv.Update(f)
	resp, _ := rawRequest(t, tt.addr, "", "CONNECT a.test:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("removed target after reload = %s, want 403", resp.Status)
	}
	echoRoundTrip(t, connectThrough(t, tt.addr, "", "b.test:1556"), "new target")
	echoRoundTrip(t, open, "tunnel opened before the reload keeps going")
}

func TestShutdownDrainsOpenTunnels(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, nil)
	c := connectThrough(t, tt.addr, "", "primary.test:1556")
	tt.cancel()
	waitFor(t, "listener closed", func() bool {
		c2, err := net.DialTimeout("tcp", tt.addr, time.Second)
		if err == nil {
			c2.Close()
		}
		return err != nil
	})
	echoRoundTrip(t, c, "draining tunnels keep working")
	select {
	case <-tt.done:
		t.Fatal("Serve returned while a tunnel was open")
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	select {
	case err := <-tt.done:
		tt.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the last tunnel closed")
	}
	if !strings.Contains(tt.logs.String(), `"forced_closed":0`) {
		t.Errorf("log lacks forced_closed 0:\n%s", tt.logs)
	}
}

func TestShutdownDeadlineClosesRemainingTunnels(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.ShutdownTimeout = 300 * time.Millisecond
	})
	c := connectThrough(t, tt.addr, "", "primary.test:1556")
	tt.cancel()
	if err := readsEOF(c, 10*time.Second); err != nil {
		t.Fatalf("tunnel left open past the drain deadline: %v", err)
	}
	waitFor(t, "shutdown log", func() bool { return strings.Contains(tt.logs.String(), `"outcome":"shutdown"`) })
}

// TestFloodFromOneSourceIsBounded opens 10,000 idle connections from
// 127.0.0.2 while a legitimate client on 127.0.0.1 keeps using the tunnel.
func TestFloodFromOneSourceIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	raiseNoFile(t, 24000)
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, func(f *config.File) {
		f.Limits.HandshakeTimeout = 30 * time.Second
	})
	legit := connectThrough(t, tt.addr, "127.0.0.1", "primary.test:1556")

	const total, workers = 10000, 64
	var opened, refused, failed atomic.Int64
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total && time.Now().Before(deadline) {
				c, err := dialFrom(tt.addr, "127.0.0.2")
				if err != nil {
					failed.Add(1)
					continue
				}
				opened.Add(1)
				// A refused connection gets an answer straight away; an
				// admitted one stays silent (read times out).
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil && resp.StatusCode == http.StatusTooManyRequests {
					refused.Add(1)
					c.Close()
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
	}
	// Meanwhile the legitimate client is served.
	stop := make(chan struct{})
	served := make(chan int)
	go func() {
		n := 0
		defer func() { served <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			echoRoundTrip(t, legit, fmt.Sprintf("legit %d", n))
			n++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// Sample, server side, how many connections the flooding source holds.
	var peak atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		key := sourceKey(&net.TCPAddr{IP: net.ParseIP("127.0.0.2")})
		for {
			tt.srv.adm.mu.Lock()
			if st := tt.srv.adm.sources[key]; st != nil && int64(st.open) > peak.Load() {
				peak.Store(int64(st.open))
			}
			tt.srv.adm.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-sampled
	nServed := <-served
	t.Logf("flood: %d opened, %d answered 429 within 200ms, %d dial failures, peak %d admitted from the source; legitimate round trips meanwhile: %d",
		opened.Load(), refused.Load(), failed.Load(), peak.Load(), nServed)
	logs := tt.logs.String()
	t.Logf("refusals logged: rate_limited %d, too_many_connections_from_source %d, handshake_timeout %d",
		strings.Count(logs, `"code":"rate_limited"`), strings.Count(logs, `"code":"too_many_connections_from_source"`),
		strings.Count(logs, `"code":"handshake_timeout"`))
	if int(opened.Load()) < total/2 {
		t.Fatalf("only %d of %d flood connections opened; the test did not exercise the limit", opened.Load(), total)
	}
	if limit := int64(config.DefaultMaxConnectionsPerSource); peak.Load() > limit || peak.Load() == 0 {
		t.Errorf("peak admitted connections from the flooding source = %d, want 1..%d (per-source cap)", peak.Load(), limit)
	}
	if refused.Load() < total/2 {
		t.Errorf("only %d flood connections got a 429 answer", refused.Load())
	}
	if nServed == 0 {
		t.Errorf("legitimate client got no round trip during the flood")
	}
	// A new legitimate client from another source is still admitted.
	echoRoundTrip(t, connectThrough(t, tt.addr, "127.0.0.1", "primary.test:1556"), "new legit client")
}

// TestBulkIntegrity moves megabytes both ways, with pauses that end bursts
// in between, and checks every byte and the access log's counts.
func TestBulkIntegrity(t *testing.T) {
	up := echoServer(t)
	tt := startTunnel(t, []string{"primary.test:1556=" + up.Addr().String()}, nil)
	c := connectThrough(t, tt.addr, "", "primary.test:1556")
	const piece, pieces = 1<<20 + 123, 3
	data := make([]byte, piece*pieces)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	for i := range pieces {
		if _, err := c.Write(data[i*piece : (i+1)*piece]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * burstPause)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("echoed %d bytes, want the %d sent, identical", len(b), len(data))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("echo did not finish")
	}
	waitFor(t, "access log", func() bool { return strings.Contains(tt.logs.String(), "tunnel closed") })
	want := fmt.Sprintf(`"bytes_up":%d,"bytes_down":%d`, len(data), len(data))
	if line := lineWith(tt.logs.String(), "tunnel closed"); !strings.Contains(line, want) {
		t.Errorf("access log %s lacks %s", line, want)
	}
}
