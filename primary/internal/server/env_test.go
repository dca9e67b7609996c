package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// env is a real primary (real CA, real SQLite store, real TLS) on
// 127.0.0.1:0 with a real DNS server for verification.
type env struct {
	t      testing.TB
	dir    string
	srv    *Server
	addr   string
	dns    *dnstest.Server
	roots  *x509.CertPool
	caCert *x509.Certificate // the root
	// issuing is the issuing CA, bundle what GET /v1/ca serves.
	issuing *x509.Certificate
	bundle  []byte
	admin   admin.Client
	log     *syncWriter
	// storeAt is the server's Config.Store ("" = SQLite in dir).
	storeAt string
}

type envOpts struct {
	tunnels  []string
	validity time.Duration
	metrics  bool
	listen   string // default 127.0.0.1:0
	store    string // Config.Store: "" for SQLite in the data directory, or a PostgreSQL DSN
	maxConns int    // default DefaultMaxConns
	// initNames, when set, are the names init gave the primary; serve then
	// renames it to localhost (the test clients' server name).
	initNames []string
	// serveNames are names serve gives the primary besides localhost.
	serveNames []string
	// keepNames serves without names: the primary keeps init's.
	keepNames bool
	// console serves the web console on 127.0.0.1:0.
	console bool
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	// Short path: unix socket paths are limited to ~100 bytes.
	dir, err := os.MkdirTemp("", "hcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dir = filepath.Join(dir, "data")
	initNames := []string{"localhost"}
	if o.initNames != nil {
		initNames = o.initNames
	}
	c, err := ca.Init(dir, ca.InitOptions{Names: initNames, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	d := dnstest.New(t, nil)
	logBuf := &syncWriter{w: &bytes.Buffer{}}
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	names := append([]string{"localhost"}, o.serveNames...)
	if o.keepNames {
		names = nil
	}
	srv, err := New(ctx, Config{
		DataDir: dir, Listen: o.listen, TunnelAddrs: o.tunnels, DNSServer: d.Addr(), Names: names,
		CertValidity: o.validity, Log: zerolog.New(logBuf), MetricsListen: metricsAddr(o.metrics),
		Store: o.store, MaxConns: o.maxConns, Console: consoleAddr(o.console),
	})
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(c.Root())
	return &env{
		t: t, dir: dir, srv: srv, addr: srv.Addr().String(), dns: d, roots: roots,
		caCert: c.Root(), issuing: c.Certificate(), bundle: c.BundlePEM(), admin: admin.Client{Dir: dir}, log: logBuf, storeAt: o.store,
	}
}

// store opens a second handle on the database (read-only use in tests).
func (e *env) store() *store.Store {
	e.t.Helper()
	st, err := OpenStore(context.Background(), e.dir, e.storeAt)
	if err != nil {
		e.t.Fatalf("store.Open: %v", err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// call runs an admin command over the real socket.
func (e *env) call(cmd string, args, out any) {
	e.t.Helper()
	if err := e.admin.Call(context.Background(), cmd, args, out); err != nil {
		e.t.Fatalf("admin %s: %v", cmd, err)
	}
}

func (e *env) setLevel(l protocol.Level) {
	e.t.Helper()
	e.call(admin.CmdLevelSet, admin.LevelArgs{Level: l}, nil)
}

func (e *env) token(name string, maxUses int, reissueHost string) string {
	e.t.Helper()
	var tok admin.CreatedToken
	e.call(admin.CmdTokenCreate, admin.TokenArgs{Name: name, MaxUses: maxUses, ReissueHost: reissueHost}, &tok)
	return tok.Value
}

// client is an HTTPS client trusting the test CA; cert, when set, is the
// TLS client certificate.
func (e *env) client(cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true},
	}
}

// reply is one API answer.
type reply struct {
	status int
	cert   protocol.CertResponse
	err    protocol.Error
	raw    []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.raw)) }

func (e *env) post(c *http.Client, path, contentType string, body []byte) reply {
	e.t.Helper()
	resp, err := c.Post("https://"+e.addr+path, contentType, bytes.NewReader(body))
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read %s answer: %v", path, err)
	}
	r := reply{status: resp.StatusCode, raw: raw}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &r.cert); err != nil {
			e.t.Fatalf("decode %s answer %q: %v", path, raw, err)
		}
	} else if err := json.Unmarshal(raw, &r.err); err != nil {
		e.t.Fatalf("decode %s refusal %q: %v", path, raw, err)
	}
	return r
}

// host is a test host: its key and the certificate it got.
type host struct {
	name string
	more []string // further names its CSRs ask for
	key  crypto.Signer
	tls  *tls.Certificate
	leaf *x509.Certificate
}

func newHost(t testing.TB, name string) *host {
	t.Helper()
	k, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return &host{name: name, key: k}
}

func (h *host) csr(t testing.TB) string {
	t.Helper()
	b, err := pki.CreateCSR(h.key, h.name, h.more...)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// take keeps the certificate of a granted reply.
func (h *host) take(t testing.TB, r reply) {
	t.Helper()
	certs, err := pki.ParseCerts([]byte(r.cert.Certificate))
	if err != nil {
		t.Fatalf("parse issued certificate: %v", err)
	}
	h.leaf = certs[0]
	h.tls = &tls.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: h.key, Leaf: certs[0]}
}

func (e *env) enroll(h *host, token, hostID string, nat bool) reply {
	e.t.Helper()
	body, _ := json.Marshal(protocol.EnrollRequest{Name: h.name, HostID: hostID, CSR: h.csr(e.t), Token: token, NAT: nat})
	r := e.post(e.client(nil), protocol.PathEnroll, "application/json", body)
	if r.status == http.StatusOK {
		h.take(e.t, r)
	}
	return r
}

func (e *env) renew(h *host, with *tls.Certificate) reply {
	e.t.Helper()
	body, _ := json.Marshal(protocol.RenewRequest{CSR: h.csr(e.t)})
	return e.post(e.client(with), protocol.PathRenew, "application/json", body)
}

// get fetches a public endpoint.
func (e *env) get(path string, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+e.addr+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client(nil).Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// crl fetches and parses the served CRL, checking its signature.
func (e *env) crl() *x509.RevocationList {
	e.t.Helper()
	resp, der := e.get(protocol.PathCRL, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /v1/crl = %d %s", resp.StatusCode, der)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		e.t.Fatalf("parse CRL: %v", err)
	}
	if err := l.CheckSignatureFrom(e.issuing); err != nil {
		e.t.Fatalf("CRL signature: %v", err)
	}
	return l
}

// waitCRL polls the served CRL until has(serial) == want (bounded).
func (e *env) waitCRL(serial string, want bool) *x509.RevocationList {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := e.crl()
		if crlHas(l, serial) == want {
			return l
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("CRL number %v: contains %s = %v after 10s, want %v", l.Number, serial, !want, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func crlHas(l *x509.RevocationList, serial string) bool {
	for _, r := range l.RevokedCertificateEntries {
		if ca.SerialHex(r.SerialNumber) == serial {
			return true
		}
	}
	return false
}

// syncWriter serialises log writes into the buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func x509VerifyOpts(e *env) x509.VerifyOptions {
	inter := x509.NewCertPool()
	inter.AddCert(e.issuing)
	return x509.VerifyOptions{Roots: e.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

// selfSigned is a client certificate from no CA of ours.
func selfSigned(t testing.TB, name string) *tls.Certificate {
	t.Helper()
	k, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// corruptSignature flips a bit in the last byte of a PEM CSR's DER (inside
// its signature), so the CSR parses but its signature does not verify.
func corruptSignature(t testing.TB, csrPEM string) string {
	t.Helper()
	blk, _ := pem.Decode([]byte(csrPEM))
	der := append([]byte(nil), blk.Bytes...)
	der[len(der)-1] ^= 0x01
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("corrupted CSR no longer parses: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func metricsAddr(on bool) string {
	if on {
		return "127.0.0.1:0"
	}
	return ""
}

func consoleAddr(on bool) string { return metricsAddr(on) }
