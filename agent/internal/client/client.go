// Package client speaks the primary's HTTPS API (common/protocol) for the
// agent, over whatever route the route.Selector picks. Every call verifies
// the primary against the stored CA — chain, primary role, name — before a
// byte of the request is sent, except FetchCA, the one bootstrap call that
// cannot.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/pause"
	"github.com/hostcert/hostcert/agent/internal/route"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/common/version"
)

// maxResponse bounds every response body the agent reads.
const maxResponse = 4 << 20

// Client calls the primary.
type Client struct {
	sel      *route.Selector
	roots    atomic.Pointer[x509.CertPool] // nil only for bootstrap
	identity *atomic.Pointer[certstore.Identity]
	timeout  time.Duration
	// sessions resume TLS sessions with the primary (see sessionsFor).
	sessions atomic.Pointer[sessions]
	full     atomic.Uint64
	resumed  atomic.Uint64
}

// sessionCacheSize bounds the TLS sessions kept: one per primary name
// (direct and through a tunnel share it: TLS is end to end).
const sessionCacheSize = 16

// sessions is the TLS session cache of one client identity. A resumed TLS
// session carries the client certificate of the handshake that made it, so
// a session is only ever resumed with the identity it was made with: a new
// certificate (a renewal, a reissue) or none (before enrollment) starts an
// empty cache. Sessions live in memory only: the resumption secret of a
// session made with this host's certificate renews as this host until the
// ticket expires, like the key, and the primary's ticket keys do not
// survive its restart anyway (docs/agent.md).
type sessions struct {
	leaf  *x509.Certificate // nil: no client certificate
	cache tls.ClientSessionCache
}

// sessionsFor is the session cache for id, replacing the cache of another
// identity.
func (c *Client) sessionsFor(id *certstore.Identity) tls.ClientSessionCache {
	var leaf *x509.Certificate
	if id != nil {
		leaf = id.Cert
	}
	for {
		cur := c.sessions.Load()
		if cur != nil && sameCert(cur.leaf, leaf) {
			return cur.cache
		}
		next := &sessions{leaf: leaf, cache: tls.NewLRUClientSessionCache(sessionCacheSize)}
		if c.sessions.CompareAndSwap(cur, next) {
			return next.cache
		}
	}
}

func sameCert(a, b *x509.Certificate) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// Handshakes counts the TLS connections this client completed with the
// primary: full handshakes and resumed sessions.
func (c *Client) Handshakes() (full, resumed uint64) { return c.full.Load(), c.resumed.Load() }

// New returns a client verifying the primary against roots and presenting
// the identity (when set) to any server that asks for a client certificate.
// roots may be nil: then only FetchCA works.
func New(sel *route.Selector, roots *x509.CertPool, identity *atomic.Pointer[certstore.Identity], timeout time.Duration) *Client {
	if identity == nil {
		identity = new(atomic.Pointer[certstore.Identity])
	}
	c := &Client{sel: sel, identity: identity, timeout: timeout}
	c.roots.Store(roots)
	return c
}

// SetRoots replaces the roots the primary is verified against (the trust
// store after the agent learnt a new root); the next connection uses them.
func (c *Client) SetRoots(roots *x509.CertPool) { c.roots.Store(roots) }

// Selector is the route selector the client uses.
func (c *Client) Selector() *route.Selector { return c.sel }

// ErrNoTrust is returned by verified calls on a client without roots.
var ErrNoTrust = certstore.ErrNoTrust

// tlsConfig is the TLS configuration of one call. The client certificate
// is the identity current when the call starts; verified calls resume TLS
// sessions made with that same identity (sessionsFor). VerifyConnection
// runs on resumed sessions too, so the primary is checked against the
// current roots on every connection.
func (c *Client) tlsConfig(insecure bool) *tls.Config {
	roots := c.roots.Load()
	id := c.identity.Load()
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if id != nil {
				return id.TLS, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	conf.InsecureSkipVerify = true //nolint:gosec // verified below, or by the caller at bootstrap
	if !insecure {
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return VerifyPrimary(cs.PeerCertificates, roots, cs.ServerName)
		}
		// The bootstrap's unverified connections neither make nor use
		// sessions.
		conf.ClientSessionCache = c.sessionsFor(id)
	}
	return conf
}

// VerifyPrimary is the agent's one check of the primary: the chain leads to
// a trusted CA for server auth, the certificate has the primary role —
// whatever name or address the primary was reached by, a host's
// certificate never passes — and it holds the name the agent asked for.
// Errors are *pki.ChainError, *pki.RoleError or *pki.NameMismatchError.
func VerifyPrimary(chain []*x509.Certificate, roots *x509.CertPool, name string) error {
	return pki.VerifyPeer(chain, pki.PeerCheck{
		Roots: roots, Role: pki.RolePrimary, Name: name, Usage: x509.ExtKeyUsageServerAuth,
	})
}

// Response is one answer of the primary.
type Response struct {
	Status int
	Body   []byte
	Peer   []*x509.Certificate // the primary's TLS chain as presented
	Route  route.Route
	// Resumed says the connection resumed an earlier TLS session.
	Resumed bool
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, insecure bool) (Response, error) {
	return c.doWith(ctx, method, path, body, insecure, nil)
}

// doWith is do with further request headers. When they are set (a
// conditional request), 304 Not Modified is an answer, not an error.
func (c *Client) doWith(ctx context.Context, method, path string, body []byte, insecure bool, hdr http.Header) (Response, error) {
	if !insecure && c.roots.Load() == nil {
		return Response{}, ErrNoTrust
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	conf := c.tlsConfig(insecure)
	var resp Response
	r, err := c.sel.Do(ctx, func(ctx context.Context, r route.Route) error {
		rc := c.sel.Config()
		tr := &http.Transport{
			Proxy:             nil, // the agent's routes are explicit; never follow proxy env vars
			DisableKeepAlives: true,
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return c.sel.DialTLS(ctx, r, conf)
			},
			ResponseHeaderTimeout: c.timeout,
		}
		defer tr.CloseIdleConnections()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, "https://"+rc.PrimaryOf(r)+path, rd)
		if err != nil {
			return err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", version.String("hostcert-agent"))
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		hr, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return err
		}
		defer hr.Body.Close()
		data, err := io.ReadAll(io.LimitReader(hr.Body, maxResponse))
		if err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
		resp = Response{Status: hr.StatusCode, Body: data, Route: r}
		if hr.TLS != nil {
			resp.Peer = hr.TLS.PeerCertificates
			resp.Resumed = hr.TLS.DidResume
			if hr.TLS.DidResume {
				c.resumed.Add(1)
			} else {
				c.full.Add(1)
			}
		}
		return nil
	})
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	resp.Route = r
	if resp.Status == http.StatusNotModified && hdr != nil {
		return resp, nil
	}
	if resp.Status/100 != 2 {
		return resp, apiError(method, path, resp)
	}
	return resp, nil
}

// apiError turns a refusal into a *protocol.Error (wrapped with the call).
func apiError(method, path string, r Response) error {
	var e protocol.Error
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Code == "" {
		return fmt.Errorf("%s %s: primary answered HTTP %d", method, path, r.Status)
	}
	return fmt.Errorf("%s %s: %w", method, path, &e)
}

// FetchCA gets /v1/ca WITHOUT verifying the primary (bootstrap). It returns
// the bundle, the TLS chain the server presented and the name of the
// primary that answered (one of several), for the caller to check the chain
// against the bundle once a person has confirmed its fingerprint.
func (c *Client) FetchCA(ctx context.Context) (bundle, peer []*x509.Certificate, host string, err error) {
	r, err := c.do(ctx, http.MethodGet, protocol.PathCA, nil, true)
	if err != nil {
		return nil, nil, "", err
	}
	host = c.sel.Config().Host(r.Route)
	certs, err := pki.ParseCerts(r.Body)
	if err != nil {
		return nil, nil, "", fmt.Errorf("CA bundle from the primary: %w", err)
	}
	for _, ca := range certs {
		if !ca.IsCA {
			return nil, nil, "", fmt.Errorf("CA bundle from the primary: %s is not a CA certificate", ca.Subject)
		}
	}
	return certs, r.Peer, host, nil
}

// CABundle gets /v1/ca over the verified connection: what it holds comes
// from the primary this host trusts (roots, cross-signed roots, issuing CAs).
func (c *Client) CABundle(ctx context.Context) ([]*x509.Certificate, error) {
	r, err := c.do(ctx, http.MethodGet, protocol.PathCA, nil, false)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCerts(r.Body)
	if err != nil {
		return nil, fmt.Errorf("CA bundle from the primary: %w", err)
	}
	return certs, nil
}

// Info gets /v1/info.
func (c *Client) Info(ctx context.Context) (protocol.Info, error) {
	var info protocol.Info
	r, err := c.do(ctx, http.MethodGet, protocol.PathInfo, nil, false)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(r.Body, &info); err != nil {
		return info, fmt.Errorf("decode info: %w", err)
	}
	return info, nil
}

// CRL gets /v1/crl (DER): the CRL of the CA with pki.KeyID issuer, or
// the current issuing CA's when issuer is "". held, when set, is a CRL this
// host holds: the request is then conditional — If-None-Match with its
// protocol.CRLETag, and If-Modified-Since its thisUpdate when it is the
// asked CA's own (a date says nothing across CAs; the tag names the bytes)
// — and the primary's 304 comes back as notModified, without bytes: held
// is the CRL the primary serves.
func (c *Client) CRL(ctx context.Context, issuer string, held *x509.RevocationList) (der []byte, notModified bool, err error) {
	path := protocol.PathCRL
	if issuer != "" {
		path += "?" + url.Values{protocol.CRLIssuerParam: {issuer}}.Encode()
	}
	var hdr http.Header
	if held != nil && len(held.Raw) > 0 {
		hdr = http.Header{}
		hdr.Set("If-None-Match", protocol.CRLETag(held.Raw))
		if issuer != "" && pki.KeyID(held.AuthorityKeyId) == issuer {
			hdr.Set("If-Modified-Since", held.ThisUpdate.UTC().Format(http.TimeFormat))
		}
	}
	r, err := c.doWith(ctx, http.MethodGet, path, nil, false, hdr)
	if err != nil {
		return nil, false, err
	}
	if r.Status == http.StatusNotModified {
		return nil, true, nil
	}
	return r.Body, false, nil
}

// Enroll posts an issue/reissue request.
func (c *Client) Enroll(ctx context.Context, req protocol.EnrollRequest) (protocol.CertResponse, error) {
	return c.post(ctx, protocol.PathEnroll, req)
}

// Renew posts a renewal over mutual TLS with the current identity.
func (c *Client) Renew(ctx context.Context, req protocol.RenewRequest) (protocol.CertResponse, error) {
	if c.identity.Load() == nil {
		return protocol.CertResponse{}, errors.New("renew: no current certificate")
	}
	return c.post(ctx, protocol.PathRenew, req)
}

func (c *Client) post(ctx context.Context, path string, v any) (protocol.CertResponse, error) {
	var out protocol.CertResponse
	body, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	r, err := c.do(ctx, http.MethodPost, path, body, false)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return out, fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return out, nil
}

// ProbeDirect checks the direct route with a verified TLS handshake and
// switches back to it when it works.
func (c *Client) ProbeDirect(ctx context.Context) error {
	conf := c.tlsConfig(false)
	return c.sel.ProbeDirect(ctx, func(ctx context.Context, r route.Route) error {
		conn, err := c.sel.DialTLS(ctx, r, conf)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// RunProber re-probes the direct route while the agent is on a tunnel, every
// probe interval (checked at least once a minute), until ctx ends.
func (c *Client) RunProber(ctx context.Context) error {
	for {
		wait := c.sel.Config().ProbeInterval
		if wait <= 0 || wait > time.Minute {
			wait = time.Minute
		}
		if !pause.For(ctx, wait) {
			return nil
		}
		if c.roots.Load() != nil && c.sel.ProbeDue() {
			_ = c.ProbeDirect(ctx) // a failure is recorded by the selector
		}
	}
}
