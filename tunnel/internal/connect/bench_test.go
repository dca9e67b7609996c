package connect

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/hostcert/hostcert/tunnel/internal/config"
)

// bulkServer reads chunk bytes and answers one byte, forever, per connection.
func bulkServer(b *testing.B, chunk int64) net.Listener {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// Through the tunnel connections start with a PROXY header; direct
	// ones do not.
	ln := &proxyproto.Listener{Listener: raw, Policy: func(net.Addr) (proxyproto.Policy, error) { return proxyproto.USE, nil }}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					if _, err := io.CopyN(io.Discard, c, chunk); err != nil {
						return
					}
					if _, err := c.Write([]byte{1}); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	return ln
}

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialVia opens a tunnel to target through the proxy at tunnelAddr.
func dialVia(tb testing.TB, tunnelAddr, target string) net.Conn {
	c, err := net.Dial("tcp", tunnelAddr)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	return &bufferedConn{Conn: c, r: br}
}

func transfer(b *testing.B, c net.Conn, buf []byte, chunk int64) time.Duration {
	start := time.Now()
	for sent := int64(0); sent < chunk; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkBulkThroughput sends 16 MiB per iteration directly and through
// the tunnel on loopback, back to back, and reports the median rates and the
// median of the per-iteration ratios tunnel/direct (target >= 0.7).
func BenchmarkBulkThroughput(b *testing.B) {
	const chunk = 16 << 20
	sink := bulkServer(b, chunk)
	tt := startTunnel(b, []string{"primary.test:1556=" + sink.Addr().String()}, nil)
	direct, err := net.Dial("tcp", sink.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	tunneled := dialVia(b, tt.addr, "primary.test:1556")
	defer tunneled.Close()
	buf := make([]byte, 128<<10)
	b.SetBytes(chunk)
	d, t := pairs(b,
		func() time.Duration { return transfer(b, direct, buf, chunk) },
		func() time.Duration { return transfer(b, tunneled, buf, chunk) })
	// Each pair ran back to back; the median of their ratios is robust
	// against other load on the machine.
	ratios := make([]float64, len(d))
	for i := range d {
		ratios[i] = d[i].Seconds() / t[i].Seconds()
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(chunk)/(1<<20)/median(d).Seconds(), "direct-MiB/s")
	b.ReportMetric(float64(chunk)/(1<<20)/median(t).Seconds(), "tunnel-MiB/s")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}

// testCert is a self-signed ECDSA P-256 server certificate for primary.test.
func testCert(b *testing.B) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "primary.test"},
		DNSNames: []string{"primary.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// tlsPing is a TLS server that answers one line per connection.
func tlsPing(b *testing.B) (net.Listener, *x509.CertPool) {
	cert, pool := testCert(b)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// The tunnel starts every upstream connection with a PROXY header;
	// direct clients send none (the header is optional here).
	ln := tls.NewListener(&proxyproto.Listener{Listener: raw, Policy: func(net.Addr) (proxyproto.Policy, error) { return proxyproto.USE, nil }},
		&tls.Config{Certificates: []tls.Certificate{cert}})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil && line == "ping\n" {
					_, _ = io.WriteString(c, "pong\n")
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	return ln, pool
}

// BenchmarkTLSRequestLatency makes a new TLS connection (handshake plus one
// small request) per sample, directly and through the tunnel, alternating,
// and reports both medians and their ratio (target <= 1.2).
func BenchmarkTLSRequestLatency(b *testing.B) {
	ln, pool := tlsPing(b)
	// One benchmark client opens connections far faster than any agent.
	tt := startTunnel(b, []string{"primary.test:1556=" + ln.Addr().String()}, func(f *config.File) {
		f.Limits.RatePerSource, f.Limits.BurstPerSource = 1e6, 1e6
	})
	cfg := &tls.Config{RootCAs: pool, ServerName: "primary.test"}
	one := func(via bool) time.Duration {
		start := time.Now()
		var raw net.Conn
		if via {
			raw = dialVia(b, tt.addr, "primary.test:1556")
		} else {
			var err error
			if raw, err = net.Dial("tcp", ln.Addr().String()); err != nil {
				b.Fatal(err)
			}
		}
		c := tls.Client(raw, cfg)
		defer c.Close()
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			b.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "pong\n" {
			b.Fatalf("answer %q, %v", line, err)
		}
		return time.Since(start)
	}
	reportLatency(b, func() time.Duration { return one(false) }, func() time.Duration { return one(true) })
}

// BenchmarkHTTPSRequestLatency is the enrollment-shaped variant: one HTTPS
// POST with a small body to a net/http TLS server per sample, on a new
// connection each time, with Go's own CONNECT-capable transport (what the
// agent uses), directly and through the tunnel, alternating. It reports both
// medians and their ratio (target <= 1.2).
func BenchmarkHTTPSRequestLatency(b *testing.B) {
	cert, pool := testCert(b)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append([]byte(`{"ok":true,"echo":`), append(body, '}')...))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Listener = &proxyproto.Listener{Listener: srv.Listener, Policy: func(net.Addr) (proxyproto.Policy, error) { return proxyproto.USE, nil }}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	target := "primary.test:" + port
	tt := startTunnel(b, []string{target + "=" + srv.Listener.Addr().String()}, func(f *config.File) {
		f.Limits.RatePerSource, f.Limits.BurstPerSource = 1e6, 1e6
	})
	client := func(proxy bool) *http.Client {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr == target { // direct: primary.test is the server
					addr = srv.Listener.Addr().String()
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		if proxy {
			tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: tt.addr})
		}
		return &http.Client{Transport: tr}
	}
	direct, tunneled := client(false), client(true)
	body := []byte(`{"csr":"` + strings.Repeat("A", 600) + `"}`)
	one := func(c *http.Client) time.Duration {
		start := time.Now()
		resp, err := c.Post("https://"+target+"/v1/enroll", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %s", resp.Status)
		}
		return time.Since(start)
	}
	reportLatency(b, func() time.Duration { return one(direct) }, func() time.Duration { return one(tunneled) })
}

// pairs warms both paths up, then measures them back to back b.N times.
func pairs(b *testing.B, direct, tunneled func() time.Duration) (d, t []time.Duration) {
	direct()
	tunneled()
	b.ResetTimer()
	for range b.N {
		d, t = append(d, direct()), append(t, tunneled())
	}
	b.StopTimer()
	return d, t
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// reportLatency reports both medians and their ratio tunnel/direct.
func reportLatency(b *testing.B, direct, tunneled func() time.Duration) {
	d, t := pairs(b, direct, tunneled)
	pd, pt := float64(median(d).Microseconds()), float64(median(t).Microseconds())
	b.ReportMetric(pd, "direct-p50-µs")
	b.ReportMetric(pt, "tunnel-p50-µs")
	b.ReportMetric(pt/pd, "ratio")
}
