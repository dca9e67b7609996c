// Package dnstest runs a real DNS server on loopback for tests and the demo: it answers A
// and AAAA queries from a map that the test can change at run time, over UDP
// and TCP on the same 127.0.0.1 port, so code under test can use an ordinary
// resolver pointed at it (verify.NewResolver(addr)).
package dnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running test DNS server. Names are matched case-insensitively,
// with or without the trailing dot. A name not in the map gets NXDOMAIN; a
// name in the map gets its addresses of the asked type (possibly none).
type Server struct {
	addr    string
	queries atomic.Int64
	stops   []func() error

	mu      sync.Mutex
	records map[string][]netip.Addr
	silent  map[string]bool
	fail    map[string]bool
}

// Start starts a server answering from records and returns its address
// ("127.0.0.1:PORT"). It is stopped by t.Cleanup.
func Start(t testing.TB, records map[string][]netip.Addr) (addr string) {
	t.Helper()
	return New(t, records).Addr()
}

// New is Start returning the Server, for tests that change records while it runs.
func New(t testing.TB, records map[string][]netip.Addr) *Server {
	t.Helper()
	return ListenAddr(t, "127.0.0.1", records)
}

// ListenAddr is New on host (an IP address the machine has, for instance
// the host side of a test network namespace) instead of 127.0.0.1.
func ListenAddr(t testing.TB, host string, records map[string][]netip.Addr) *Server {
	t.Helper()
	s, err := listenOn(host, records)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("dnstest: %v", err)
		}
	})
	return s
}

// Listen starts a server outside a test (the demo uses it); Close stops it.
func Listen(records map[string][]netip.Addr) (*Server, error) {
	return listenOn("127.0.0.1", records)
}

func listenOn(host string, records map[string][]netip.Addr) (*Server, error) {
	s := &Server{
		records: make(map[string][]netip.Addr),
		silent:  make(map[string]bool),
		fail:    make(map[string]bool),
	}
	for name, addrs := range records {
		s.Set(name, addrs...)
	}
	pc, ln, err := listen(host)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)},
		{Listener: ln, Handler: dns.HandlerFunc(s.serve)},
	} {
		started := make(chan struct{})
		done := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			s.Close()
			return nil, fmt.Errorf("serve: %w", err)
		}
		s.stops = append(s.stops, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := srv.ShutdownContext(ctx)
			<-done
			return err
		})
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	var first error
	for _, stop := range s.stops {
		if err := stop(); err != nil && first == nil {
			first = fmt.Errorf("shutdown: %w", err)
		}
	}
	s.stops = nil
	return first
}

// listen binds UDP on host:0 and TCP on the same port, retrying when
// the TCP port happens to be taken.
func listen(host string) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("listen tcp on the udp port: %w", lastErr)
}

// Addr is the server's "HOST:PORT" (127.0.0.1 unless ListenAddr chose
// another host), the same port for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Set makes name resolve to addrs (IPv4 ones answer A, IPv6 ones AAAA),
// replacing what it had. With no addrs the name exists but has no records.
func (s *Server) Set(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canonical(name)
	s.records[n] = append([]netip.Addr(nil), addrs...)
	delete(s.silent, n)
	delete(s.fail, n)
}

// Delete removes name: it gets NXDOMAIN.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canonical(name)
	delete(s.records, n)
	delete(s.silent, n)
	delete(s.fail, n)
}

// Silence makes the server drop every query for name, so lookups time out.
func (s *Server) Silence(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent[canonical(name)] = true
}

// ServFail makes the server answer SERVFAIL for name.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[canonical(name)] = true
}

// Queries is the number of queries received so far.
func (s *Server) Queries() int64 { return s.queries.Load() }

func canonical(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)

	s.mu.Lock()
	addrs, ok := s.records[name]
	silent, fail := s.silent[name], s.fail[name]
	s.mu.Unlock()

	switch {
	case silent:
		return
	case fail:
		m.SetRcode(req, dns.RcodeServerFailure)
	case !ok:
		m.SetRcode(req, dns.RcodeNameError)
	default:
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
			switch {
			case q.Qtype == dns.TypeA && a.Unmap().Is4():
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(a.Unmap().AsSlice())})
			case q.Qtype == dns.TypeAAAA && !a.Unmap().Is4():
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(a.AsSlice())})
			}
		}
	}
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size) // sets TC when it drops answers: the client retries over TCP
	}
	_ = w.WriteMsg(m)
}
