package route

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// UnreachableError marks a failure to reach the primary over one route:
// the only kind of error that makes the agent try the next route.
type UnreachableError struct {
	Route Route
	Err   error
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("%s unreachable: %v", e.Route, e.Err) }
func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err (anywhere in its chain) is an UnreachableError.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// Reachability classifies an error from connecting to the primary: true for
// refused, timed out, unreachable, name not resolvable and reset; false for
// everything else, in particular every TLS and certificate error.
func Reachability(err error) bool {
	if err == nil {
		return false
	}
	var (
		verr  *tls.CertificateVerificationError
		rherr tls.RecordHeaderError
		aerr  tls.AlertError
		uaerr x509.UnknownAuthorityError
		hnerr x509.HostnameError
		cierr x509.CertificateInvalidError
	)
	if errors.As(err, &verr) || errors.As(err, &rherr) || errors.As(err, &aerr) ||
		errors.As(err, &uaerr) || errors.As(err, &hnerr) || errors.As(err, &cierr) || errors.Is(err, pki.ErrPeer) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	for _, e := range reachErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var operr *net.OpError
	if errors.As(err, &operr) && operr.Op == "dial" {
		return true
	}
	return false
}

var reachErrnos = append([]error{
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
	syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT,
}, platformErrnos...)

// DialTLS connects to the primary over r and completes the TLS handshake
// (server name: the host of r's primary). Reachability failures come back as
// *UnreachableError.
func (c Config) DialTLS(ctx context.Context, r Route, conf *tls.Config) (*tls.Conn, error) {
	return c.dialTLS(ctx, r, conf, "")
}

// dialTLS tries each address of r in turn (see addrs; prefer first), each
// within DialTimeout, and returns the first TLS connection. Only a
// reachability failure moves on to the next address; a TLS or certificate
// error is returned at once.
func (c Config) dialTLS(ctx context.Context, r Route, conf *tls.Config, prefer string) (*tls.Conn, error) {
	fail := func(dctx context.Context, err error) error {
		if ctx.Err() == nil && (Reachability(err) || errors.Is(err, ErrTunnelRefused) || dctx.Err() != nil && !isTLSError(err)) {
			return &UnreachableError{Route: r, Err: err}
		}
		return err
	}
	addrs, err := c.addrs(ctx, r, prefer)
	if err != nil {
		return nil, fail(ctx, err)
	}
	conf = conf.Clone()
	if conf.ServerName == "" {
		conf.ServerName = c.Host(r)
	}
	var errs []error
	for _, addr := range addrs {
		tc, err := c.dialOne(ctx, r, addr, conf, fail)
		if err == nil {
			return tc, nil
		}
		if !IsUnreachable(err) {
			return nil, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, &UnreachableError{Route: r, Err: errors.Join(errs...)}
}

// dialOne connects to addr (the primary, or r's tunnel) and completes the
// TLS handshake within DialTimeout; fail classifies its errors.
func (c Config) dialOne(ctx context.Context, r Route, addr string, conf *tls.Config, fail func(context.Context, error) error) (*tls.Conn, error) {
	dctx := ctx
	if c.DialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, c.DialTimeout)
		defer cancel()
	}
	raw, err := c.dial(dctx, r, addr)
	if err != nil {
		return nil, fail(dctx, err)
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, fail(dctx, fmt.Errorf("tls handshake with %s at %s: %w", c.PrimaryOf(r), addr, err))
	}
	return tc, nil
}

// addrs are the addresses to dial for r, in order: the tunnel; the
// PrimaryDial override; the primary itself when its host is an IP address;
// else every address its name resolves to, prefer (the node that answered
// last) first.
func (c Config) addrs(ctx context.Context, r Route, prefer string) ([]string, error) {
	if !r.IsDirect() {
		return []string{r.Tunnel}, nil
	}
	if c.PrimaryDial != "" {
		return []string{c.PrimaryDial}, nil
	}
	p := c.PrimaryOf(r)
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return nil, fmt.Errorf("primary %q: %w", p, err)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{p}, nil
	}
	res := c.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	ips, err := res.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, port))
	}
	return preferFirst(out, prefer), nil
}

func isTLSError(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		rherr tls.RecordHeaderError
		aerr  tls.AlertError
	)
	return errors.As(err, &verr) || errors.As(err, &rherr) || errors.As(err, &aerr) || errors.Is(err, pki.ErrPeer)
}

func (c Config) dial(ctx context.Context, r Route, addr string) (net.Conn, error) {
	var d net.Dialer
	if c.SourceAddress != "" {
		ip, err := netip.ParseAddr(c.SourceAddress)
		if err != nil {
			return nil, fmt.Errorf("source address %q: %w", c.SourceAddress, err)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	}
	if r.IsDirect() {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		return conn, nil
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial tunnel %s: %w", addr, err)
	}
	tunneled, err := connect(ctx, conn, c.PrimaryOf(r))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel %s: %w", addr, err)
	}
	return tunneled, nil
}

// ErrTunnelRefused is a tunnel's non-200 answer to CONNECT; it counts as the
// route being unreachable (the next tunnel is tried).
var ErrTunnelRefused = errors.New("tunnel refused CONNECT")

// connect asks the tunnel on conn for a byte stream to target (HTTP CONNECT).
func connect(ctx context.Context, conn net.Conn, target string) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nUser-Agent: hostcert-agent\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("read CONNECT answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w %s: %s", ErrTunnelRefused, target, resp.Status)
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
