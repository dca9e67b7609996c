package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/pkitest"
)

// fixedResolver resolves every name to its addresses.
type fixedResolver []string

func (f fixedResolver) LookupHost(context.Context, string) ([]string, error) { return f, nil }

// twoAddrs listens on 127.0.0.1 and 127.0.0.2 at one port: two nodes behind
// one name.
func twoAddrs(t *testing.T) (first, second net.Listener, port string) {
	t.Helper()
	for range 20 {
		l2, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2 on loopback: %v", err)
		}
		_, port, _ = net.SplitHostPort(l2.Addr().String())
		l1, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err == nil {
			t.Cleanup(func() { l1.Close(); l2.Close() })
			return l1, l2, port
		}
		l2.Close()
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, nil, ""
}

// blackHole accepts connections and never answers (a node that hangs).
func blackHole(l net.Listener) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			defer c.Close()
		}
	}()
	return &n
}

// serveTLS completes TLS handshakes with cert.
func serveTLS(l net.Listener, cert tls.Certificate) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				tc.Handshake()
				tc.Close()
			}()
		}
	}()
	return &n
}

// A name that resolves to two addresses: the first hangs, the handshake
// completes on the second within its own dial timeout, the selector
// remembers that address and tries it first next time.
// The dial timeout covers the TLS handshake: it is generous, so that a
// handshake on a loaded machine (-race, 2 cores) is not taken for a hang.
func TestDialFailsOverBetweenAddresses(t *testing.T) {
	ca := pkitest.NewCA(t, "test CA")
	l1, l2, port := twoAddrs(t)
	hung := blackHole(l1)
	served := serveTLS(l2, ca.ServerCert(t, "primary.test"))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := Config{Primaries: []string{"primary.test:" + port}, DialTimeout: 1500 * time.Millisecond, Resolver: fixedResolver{"127.0.0.1", "127.0.0.2"}}
	var saved []Outcomes
	s := NewSelector(cfg, Outcomes{}, discard(), func(o Outcomes) { saved = append(saved, o) })
	r := Route{Primary: cfg.Primaries[0]}
	conn, err := s.DialTLS(context.Background(), r, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("DialTLS(first address hangs) = %v, want the second address", err)
	}
	conn.Close()
	want := "127.0.0.2:" + port
	if got := s.Outcomes().Node; got != want || len(saved) == 0 || saved[len(saved)-1].Node != want {
		t.Fatalf("node after failover = %q (persisted %v), want %s", got, saved, want)
	}
	if hung.Load() != 1 || served.Load() != 1 {
		t.Errorf("first dial reached the hung address %d times, the good one %d times; want 1 and 1", hung.Load(), served.Load())
	}
	conn, err = s.DialTLS(context.Background(), r, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if hung.Load() != 1 || served.Load() != 2 {
		t.Errorf("second dial: hung address reached %d times, good one %d; want the remembered node first (1, 2)", hung.Load(), served.Load())
	}
}

// A certificate error at the first address never moves on to the next.
func TestDialNoFailoverOnCertificateError(t *testing.T) {
	ca, other := pkitest.NewCA(t, "test CA"), pkitest.NewCA(t, "another CA")
	l1, l2, port := twoAddrs(t)
	serveTLS(l1, other.ServerCert(t, "primary.test"))
	served := serveTLS(l2, ca.ServerCert(t, "primary.test"))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := Config{Primaries: []string{"primary.test:" + port}, DialTimeout: time.Second, Resolver: fixedResolver{"127.0.0.1", "127.0.0.2"}}
	_, err := cfg.DialTLS(context.Background(), Route{}, &tls.Config{RootCAs: pool})
	var verr *tls.CertificateVerificationError
	if err == nil || IsUnreachable(err) || !errors.As(err, &verr) || served.Load() != 0 {
		t.Errorf("DialTLS(foreign CA at the first address) = %v after %d dials of the second; want the certificate error, no failover", err, served.Load())
	}
}

// Through a tunnel the CONNECT target is the route's primary (the first
// configured for a route remembered without one); a tunnel's refusal is a
// reachability failure.
func TestTunnelConnectsToTheRoutesPrimary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	targets := make(chan string, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			targets <- line
			c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	cfg := Config{Primaries: []string{"a.test:1556", "b.test:1556"}, Tunnels: []string{l.Addr().String()}, DialTimeout: 2 * time.Second}
	for _, tc := range []struct {
		r    Route
		want string
	}{
		{Route{Primary: "b.test:1556", Tunnel: l.Addr().String()}, "CONNECT b.test:1556 HTTP/1.1"},
		{Route{Tunnel: l.Addr().String()}, "CONNECT a.test:1556 HTTP/1.1"},
	} {
		_, err := cfg.DialTLS(context.Background(), tc.r, &tls.Config{})
		if !IsUnreachable(err) || !errors.Is(err, ErrTunnelRefused) {
			t.Errorf("DialTLS(%v) = %v, want the tunnel's refusal as unreachable", tc.r, err)
		}
		if got := <-targets; got != tc.want {
			t.Errorf("DialTLS(%v) sent %q, want %q", tc.r, got, tc.want)
		}
	}
}
