//go:build !windows

package server

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// adminCert has the server issue an administrator's certificate for a key
// made here (as hostcert-primary admin add does) and returns it as a TLS
// client certificate with its chain.
func (e *env) adminCert(name string) (*tls.Certificate, admin.AdminIssued) {
	e.t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		e.t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		e.t.Fatal(err)
	}
	var res admin.AdminIssued
	e.call(admin.CmdAdminAdd, admin.AdminAddArgs{Name: name, ValidFor: "90d",
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}, &res)
	certs, err := pki.ParseCerts([]byte(res.CertPEM + res.ChainPEM))
	if err != nil {
		e.t.Fatal(err)
	}
	return clientCert(certs, key), res
}

func clientCert(chain []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// consoleClient is a browser-like client of the console: it trusts the
// fleet's root, keeps cookies, presents cert (when set) and does not follow
// redirects.
func (e *env) consoleClient(cert *tls.Certificate) *http.Client {
	e.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	conf := &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	addr := e.srv.ConsoleAddr().String()
	return &http.Client{
		Jar: jar, Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: conf,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// consoleURL is the console's origin, as its pages name it.
func (e *env) consoleURL(path string) string {
	_, port, _ := net.SplitHostPort(e.srv.ConsoleAddr().String())
	return "https://localhost:" + port + path
}

type page struct {
	status int
	body   string
	err    error
}

func fetch(c *http.Client, method, u string, form url.Values) page {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return page{err: err}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return page{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(b), err: err}
}

func csrfIn(t *testing.T, body string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	rest := body[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// TestConsoleLoginByAdminCertificate: over a real server's console
// listener, an administrator's certificate (admin.add) logs a Go client in
// as that administrator: the dashboard, and a POST that needs the
// session's CSRF token like any other, its action audited with the
// administrator's name. The session it opens does not work without the
// certificate. Refused: a host's certificate from the same CA, the
// primary's own certificate, a certificate of another CA with an admin
// marker, an expired administrator's certificate, and the administrator's
// certificate once revoked (on the connection that was logged in and on a
// new one), which the CRL then lists.
func TestConsoleLoginByAdminCertificate(t *testing.T) {
	e := newEnv(t, envOpts{console: true})
	aliceCert, alice := e.adminCert("alice")
	c := e.consoleClient(aliceCert)

	dash := fetch(c, http.MethodGet, e.consoleURL("/"), nil)
	if dash.err != nil || dash.status != http.StatusOK || !strings.Contains(dash.body, "<h1>Dashboard</h1>") || !strings.Contains(dash.body, "alice") {
		t.Fatalf("GET / with alice's certificate = %d %v, want the dashboard for alice:\n%.400s", dash.status, dash.err, dash.body)
	}
	// CSRF: a POST without the token is refused, with it it works.
	if p := fetch(c, http.MethodPost, e.consoleURL("/tokens/create"), url.Values{"name": {"no-csrf"}, "max_uses": {"1"}, "valid_for": {"1h"}}); p.status != http.StatusForbidden {
		t.Errorf("POST /tokens/create without a CSRF token, certificate login = %d %v, want 403", p.status, p.err)
	}
	tok := csrfIn(t, dash.body)
	if p := fetch(c, http.MethodPost, e.consoleURL("/tokens/create"), url.Values{"name": {"by-cert"}, "max_uses": {"1"}, "valid_for": {"1h"}, "csrf": {tok}}); p.status != http.StatusOK {
		t.Errorf("POST /tokens/create with the CSRF token = %d %v, want 200:\n%.400s", p.status, p.err, p.body)
	}
	st := e.store()
	rows, err := st.ListAuditPage(context.Background(), time.Time{}, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var loggedIn, created, refusedNoCSRF bool
	for _, r := range rows {
		switch {
		case r.Action == "console.session" && r.Outcome == "ok" && r.Actor == "console:alice" && r.Detail["via"] == "certificate" && r.Detail["serial"] == alice.Serial:
			loggedIn = true
		case r.Action == admin.CmdTokenCreate && r.TokenName == "by-cert":
			created = r.Actor == "console:alice" && r.Outcome == "ok"
		case r.Action == admin.CmdTokenCreate && r.TokenName == "no-csrf":
			refusedNoCSRF = true
		}
	}
	if !loggedIn || !created || refusedNoCSRF {
		t.Errorf("audit: login by certificate %v, token.create by console:alice %v, token created without CSRF %v; want true, true, false", loggedIn, created, refusedNoCSRF)
	}

	// The session's cookie alone, without the certificate, is no login.
	noCert := e.consoleClient(nil)
	noCert.Jar = c.Jar
	if p := fetch(noCert, http.MethodGet, e.consoleURL("/"), nil); p.status != http.StatusUnauthorized {
		t.Errorf("GET / with the certificate session's cookie but no certificate = %d %v, want 401", p.status, p.err)
	}

	// A host's certificate from the same CA, whatever its name.
	h := newHost(t, "alice.test")
	if r := e.enroll(h, e.token("h", 1, ""), "", false); r.status != http.StatusOK {
		t.Fatalf("enroll alice.test = %s", r)
	}
	if p := fetch(e.consoleClient(h.tls), http.MethodGet, e.consoleURL("/"), nil); p.err != nil || p.status != http.StatusForbidden || !strings.Contains(p.body, "not a admin certificate") {
		t.Errorf("GET / with a host's certificate = %d %v, want 403 (not an admin certificate):\n%.400s", p.status, p.err, p.body)
	}
	// The primary's own certificate (server authentication only).
	if p := fetch(e.consoleClient(e.srv.cert.Load()), http.MethodGet, e.consoleURL("/"), nil); p.err == nil && p.status == http.StatusOK {
		t.Errorf("GET / with the primary's certificate = %d, want refused", p.status)
	}
	// Another CA's certificate carrying an admin marker for alice.
	otherKey, _ := pki.GenerateKey(pki.ECDSAP256)
	otherCA := selfSignedCA(t, otherKey, &x509.Certificate{Subject: pkix.Name{CommonName: "other CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign})
	forgedKey, _ := pki.GenerateKey(pki.ECDSAP256)
	forged := issuedBy(t, otherCA, otherKey, forgedKey, "alice", pki.AdminURI("alice"))
	if p := fetch(e.consoleClient(clientCert([]*x509.Certificate{forged, otherCA}, forgedKey)), http.MethodGet, e.consoleURL("/"), nil); p.err == nil && p.status == http.StatusOK {
		t.Errorf("GET / with another CA's admin certificate = %d, want refused", p.status)
	}
	// An expired administrator's certificate of this CA, in the store.
	expired, expiredKey := e.expiredAdmin(st, "old")
	if p := fetch(e.consoleClient(clientCert([]*x509.Certificate{expired, e.issuing}, expiredKey)), http.MethodGet, e.consoleURL("/"), nil); p.err == nil && p.status == http.StatusOK {
		t.Errorf("GET / with an expired administrator certificate = %d, want refused", p.status)
	}

	// Revoked: refused at once, on the same connection and on a new one.
	var n admin.CountResult
	e.call(admin.CmdAdminRevoke, admin.AdminNameArgs{Name: "alice", Reason: "keyCompromise"}, &n)
	if n.Count != 1 {
		t.Fatalf("admin revoke alice = %d, want 1", n.Count)
	}
	if p := fetch(c, http.MethodGet, e.consoleURL("/"), nil); p.status != http.StatusForbidden || !strings.Contains(p.body, "revoked") {
		t.Errorf("GET / with alice's revoked certificate (logged-in session) = %d %v, want 403 revoked", p.status, p.err)
	}
	if p := fetch(e.consoleClient(aliceCert), http.MethodGet, e.consoleURL("/"), nil); p.status != http.StatusForbidden {
		t.Errorf("GET / with alice's revoked certificate (new client) = %d %v, want 403", p.status, p.err)
	}
	resp, der := e.get(protocol.PathCRL, nil)
	l, err := x509.ParseRevocationList(der)
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET %s = %d, %v", protocol.PathCRL, resp.StatusCode, err)
	}
	listed := false
	for _, r := range l.RevokedCertificateEntries {
		listed = listed || r.SerialNumber.Cmp(aliceCert.Leaf.SerialNumber) == 0
	}
	if !listed {
		t.Errorf("the CRL does not list alice's revoked certificate %s", alice.Serial)
	}
	// The one-time link still logs in (a client without a certificate).
	var link admin.LoginLink
	e.call(admin.CmdConsoleLogin, admin.LoginArgs{Operator: "bob", ValidFor: "5m"}, &link)
	lc := e.consoleClient(nil)
	if p := fetch(lc, http.MethodGet, e.consoleURL("/login?"+strings.SplitN(link.URL, "?", 2)[1]), nil); p.status != http.StatusSeeOther {
		t.Fatalf("GET login link = %d %v, want 303", p.status, p.err)
	}
	if p := fetch(lc, http.MethodGet, e.consoleURL("/"), nil); p.status != http.StatusOK || !strings.Contains(p.body, "bob") {
		t.Errorf("GET / after the link = %d %v, want bob's dashboard", p.status, p.err)
	}
}

func selfSignedCA(t *testing.T, key crypto.Signer, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(1)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func issuedBy(t *testing.T, parent *x509.Certificate, parentKey, key crypto.Signer, cn string, uri *url.URL) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{uri}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// expiredAdmin signs, with the fleet's issuing CA, an administrator's
// certificate that expired an hour ago and records it as admin.add would.
func (e *env) expiredAdmin(st *store.Store, name string) (*x509.Certificate, crypto.Signer) {
	e.t.Helper()
	c, err := ca.Load(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	serial, _ := ca.NewSerial()
	then := time.Now().Add(-2 * time.Hour)
	tmpl, err := ca.Template(ca.HostCertRequest{Role: pki.RoleAdmin, HostID: name, PublicKey: key.Public(), Serial: serial, Validity: time.Hour},
		c.Certificate(), then)
	if err != nil {
		e.t.Fatal(err)
	}
	cert, err := c.Sign(tmpl, key.Public())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.AddAdminCert(context.Background(), store.AdminCert{Serial: ca.SerialHex(serial), Name: name, IssuedAt: then,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw}, store.Audit{Actor: "test"}); err != nil {
		e.t.Fatal(err)
	}
	return cert, key
}
