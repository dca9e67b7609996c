// Package nettest holds network helpers for tests, all on 127.0.0.1: a
// minimal HTTP CONNECT relay (a stand-in for a tunnel in tests that are not
// about the tunnel) and an in-process toxiproxy for faults (black holes,
// resets, latency) between a client and a server.
package nettest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Relay is a minimal HTTP CONNECT relay standing in for hostcert-tunnel in
// tests: it answers CONNECT for Target only (403 otherwise), dials Upstream
// and copies bytes both ways.
type Relay struct {
	Target   string // the HOST:PORT clients must ask for
	Upstream string // where the bytes go
	ln       net.Listener
	conns    atomic.Int64
	wg       sync.WaitGroup
}

// NewRelay listens on 127.0.0.1:0.
func NewRelay(target, upstream string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{Target: target, Upstream: upstream, ln: ln}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Addr is the relay's address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Connections is how many clients connected so far.
func (r *Relay) Connections() int64 { return r.conns.Load() }

// Close stops accepting and waits for the accept loop.
func (r *Relay) Close() error { err := r.ln.Close(); r.wg.Wait(); return err }

func (r *Relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.conns.Add(1)
		go r.handle(c)
	}
}

func (r *Relay) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if req.Host != r.Target {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", r.Upstream)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	<-done
}
