package server

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

var (
	loopback = netip.MustParseAddr("127.0.0.1")
	faraway  = netip.MustParseAddr("192.0.2.99")
)

// TestEnrollAtEveryLevel walks the SPEC §4 issue rows through the HTTP API
// at every level: known+verified, verified but unknown, DNS mismatch, NAT,
// each with and without a token.
func TestEnrollAtEveryLevel(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.token("fleet", 1000, "")
	type row struct {
		level    protocol.Level
		known    bool
		resolves netip.Addr
		nat      bool
		token    bool
		want     protocol.Code // "" = granted
		verified bool
	}
	rows := []row{
		// DNS is not consulted where it cannot change the outcome: not verified.
		{protocol.LevelVeryHigh, true, loopback, false, false, protocol.CodeTokenRequired, false},
		{protocol.LevelVeryHigh, true, loopback, false, true, "", false},
		{protocol.LevelVeryHigh, false, faraway, true, true, "", false},
		{protocol.LevelHigh, true, loopback, false, false, "", true},
		{protocol.LevelHigh, false, loopback, false, false, protocol.CodeTokenRequired, false},
		{protocol.LevelHigh, false, loopback, false, true, "", false},
		{protocol.LevelHigh, true, faraway, false, false, protocol.CodeTokenRequired, false},
		{protocol.LevelHigh, true, loopback, true, false, protocol.CodeTokenRequired, false},
		{protocol.LevelHigh, true, faraway, false, true, "", false},
		{protocol.LevelMedium, false, loopback, false, false, "", true},
		{protocol.LevelMedium, true, loopback, false, false, "", true},
		{protocol.LevelMedium, false, faraway, false, false, protocol.CodeTokenRequired, false},
		{protocol.LevelMedium, false, loopback, true, false, protocol.CodeTokenRequired, false},
		{protocol.LevelMedium, false, faraway, true, true, "", false},
	}
	for i, r := range rows {
		name := fmt.Sprintf("h%d.fleet.test", i)
		e.dns.Set(name, r.resolves)
		if r.known {
			e.call(admin.CmdHostAdd, admin.NamesArgs{Names: []string{name}}, nil)
		}
		e.setLevel(r.level)
		token := ""
		if r.token {
			token = tok
		}
		h := newHost(t, name)
		got := e.enroll(h, token, "", r.nat)
		desc := fmt.Sprintf("enroll(%s, level %s, known %v, resolves %v, nat %v, token %v)", name, r.level, r.known, r.resolves, r.nat, r.token)
		if r.want == "" {
			if got.status != http.StatusOK {
				t.Errorf("%s = %v, want granted", desc, got)
				continue
			}
			d := got.cert.Decision
			if !d.Granted || d.Kind != protocol.KindIssue || d.Level != r.level || d.Known != r.known || d.NAT != r.nat || d.Verified != r.verified {
				t.Errorf("%s decision = %+v, want granted issue at %s known=%v nat=%v verified=%v", desc, d, r.level, r.known, r.nat, r.verified)
			}
			checkHostCert(t, e, h, got.cert)
			if got.cert.Level != r.level || got.cert.CRLRefreshSeconds != int64(r.level.CRLRefresh()/time.Second) {
				t.Errorf("%s level/refresh = %s/%d, want %s/%d", desc, got.cert.Level, got.cert.CRLRefreshSeconds, r.level, int64(r.level.CRLRefresh()/time.Second))
			}
			// The same name again is a reissue: it needs a reissue token at every level.
			again := e.enroll(newHost(t, name), "", "", r.nat)
			if again.status != http.StatusForbidden || again.err.Code != protocol.CodeReissueTokenRequired {
				t.Errorf("second %s = %v, want 403 reissue_token_required", desc, again)
			}
			continue
		}
		if got.status != http.StatusForbidden || got.err.Code != r.want || got.err.Decision == nil || got.err.Decision.Granted {
			t.Errorf("%s = %v, want 403 %s with a decision", desc, got, r.want)
			continue
		}
		if got.err.Decision.Verified != r.verified || got.err.Message == "" || got.err.Decision.Reason == "" {
			t.Errorf("%s refusal = %+v, want verified=%v, a message and a reason", desc, got.err, r.verified)
		}
	}

	// Every decision is in the audit log, none holds the token value.
	var rows2 []admin.AuditEntry
	e.call(admin.CmdAudit, admin.AuditArgs{}, &rows2)
	granted, refused := 0, 0
	for _, a := range rows2 {
		if a.Actor != "api" {
			continue
		}
		switch a.Outcome {
		case "granted":
			granted++
		case "refused":
			refused++
			if a.Source != "127.0.0.1" || a.Code == "" || a.Detail["reason"] == nil {
				t.Errorf("refusal audit row %+v: want source 127.0.0.1, a code and a reason", a)
			}
		}
	}
	if granted != 8 || refused != 6+8 {
		t.Errorf("audit: %d granted, %d refused, want 8 and 14", granted, refused)
	}
	raw, _ := json.Marshal(rows2)
	if strings.Contains(string(raw), tok) || strings.Contains(e.log.String(), tok) {
		t.Errorf("the token value appears in the audit log or the server log")
	}
}

// checkHostCert checks an issued certificate against SPEC §2.
func checkHostCert(t *testing.T, e *env, h *host, r protocol.CertResponse) {
	t.Helper()
	c := h.leaf
	if c.Subject.CommonName != r.HostID || pki.HostIDFromCert(c) != r.HostID || r.HostID == "" {
		t.Errorf("certificate CN %q, URI host ID %q, response host ID %q: want all equal", c.Subject.CommonName, pki.HostIDFromCert(c), r.HostID)
	}
	if len(c.DNSNames) != 1 || c.DNSNames[0] != h.name || len(r.Names) != 1 || r.Names[0] != h.name {
		t.Errorf("certificate DNS names %v, response names %v, want [%s]", c.DNSNames, r.Names, h.name)
	}
	if _, err := c.Verify(x509VerifyOpts(e)); err != nil {
		t.Errorf("issued certificate does not verify against the CA: %v", err)
	}
	if ca.SerialHex(c.SerialNumber) != r.Serial {
		t.Errorf("serial %s in the response, %s in the certificate", r.Serial, ca.SerialHex(c.SerialNumber))
	}
	if r.CABundle != string(e.bundle) || r.Chain != string(pki.EncodeCert(e.issuing)) {
		t.Errorf("response CA bundle is not the CA certificate")
	}
}

// TestTokenMaxUsesUnderConcurrency: 60 hosts race for a max-uses-5 token;
// exactly 5 certificates are issued and recorded with the token.
func TestTokenMaxUsesUnderConcurrency(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.token("five", 5, "")
	const n = 60
	hosts := make([]*host, n)
	for i := range hosts {
		hosts[i] = newHost(t, fmt.Sprintf("race%d.test", i))
		hosts[i].csr(t)
	}
	replies := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = e.enroll(hosts[i], tok, "", false)
		}()
	}
	close(start)
	wg.Wait()
	granted, serials := 0, map[string]bool{}
	for i, r := range replies {
		switch {
		case r.status == http.StatusOK:
			granted++
			serials[r.cert.Serial] = true
		case r.status == http.StatusForbidden && r.err.Code == protocol.CodeTokenInvalid:
		case r.status == http.StatusTooManyRequests && r.err.Code == protocol.CodeRateLimited:
		default:
			t.Errorf("enroll %d = %v, want 200, 403 token_invalid or 429 rate_limited", i, r)
		}
	}
	if granted != 5 || len(serials) != 5 {
		t.Errorf("%d granted (%d distinct serials), want exactly 5", granted, len(serials))
	}
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{Token: "five"}, &certs)
	var toks []admin.Token
	e.call(admin.CmdTokenList, nil, &toks)
	if len(certs) != 5 || len(toks) != 1 || toks[0].Uses != 5 || toks[0].State != "used_up" {
		t.Errorf("store: %d certificates of token five, token %+v; want 5 and uses 5 used_up", len(certs), toks)
	}
	for _, c := range certs {
		if !serials[c.Serial] {
			t.Errorf("stored certificate %s was never returned to a client", c.Serial)
		}
	}

	// Everything the token issued can be revoked at once, and the CRL has it.
	var n2 admin.CountResult
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Token: "five", Reason: "keyCompromise"}, &n2)
	if n2.Count != 5 {
		t.Errorf("revoke --token five = %d, want 5", n2.Count)
	}
	for s := range serials {
		e.waitCRL(s, true)
	}
}

// TestReissueAndWindow: a reissue keeps the host ID, needs a reissue token
// for that host (a standard token or another host's is refused), revokes
// the old certificate (it appears in the CRL); an auto-reissue window lets
// the host reissue once without a token.
func TestReissueAndWindow(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("re.test", loopback)
	e.dns.Set("other.test", loopback)
	first := newHost(t, "re.test")
	r := e.enroll(first, "", "", false)
	if r.status != http.StatusOK {
		t.Fatalf("first enroll = %v", r)
	}
	hostID, oldSerial := r.cert.HostID, r.cert.Serial
	other := newHost(t, "other.test")
	if r := e.enroll(other, "", "", false); r.status != http.StatusOK {
		t.Fatalf("other enroll = %v", r)
	}
	if l := e.crl(); crlHas(l, oldSerial) {
		t.Fatalf("CRL lists %s before any revocation", oldSerial)
	}

	std := e.token("std", 3, "")
	if r := e.enroll(newHost(t, "re.test"), std, "", false); r.err.Code != protocol.CodeReissueTokenRequired {
		t.Errorf("reissue with a standard token = %v, want reissue_token_required", r)
	}
	otherTok := e.token("for-other", 1, "other.test")
	if r := e.enroll(newHost(t, "re.test"), otherTok, "", false); r.err.Code != protocol.CodeTokenInvalid {
		t.Errorf("reissue with another host's reissue token = %v, want token_invalid", r)
	}
	reTok := e.token("for-re", 0, hostID)
	second := newHost(t, "re.test")
	r = e.enroll(second, reTok, hostID, false)
	if r.status != http.StatusOK || r.cert.HostID != hostID || r.cert.Decision.Kind != protocol.KindReissue {
		t.Fatalf("reissue with its reissue token = %v, want granted reissue keeping host ID %s", r, hostID)
	}
	e.waitCRL(oldSerial, true)
	if r := e.enroll(newHost(t, "re.test"), reTok, "", false); r.err.Code != protocol.CodeTokenInvalid {
		t.Errorf("replayed reissue token = %v, want token_invalid", r)
	}

	var win admin.WindowResult
	e.call(admin.CmdHostReissue, admin.WindowArgs{Host: "re.test", For: "1h"}, &win)
	third := newHost(t, "re.test")
	r = e.enroll(third, "", "", false)
	if r.status != http.StatusOK || r.cert.HostID != hostID || !r.cert.Decision.Window {
		t.Fatalf("reissue inside the window = %v, want granted with the window", r)
	}
	e.waitCRL(ca.SerialHex(second.leaf.SerialNumber), true)
	// The window closes with its reissue.
	if r := e.enroll(newHost(t, "re.test"), "", "", false); r.err.Code != protocol.CodeReissueTokenRequired {
		t.Errorf("second reissue after the window was used = %v, want reissue_token_required", r)
	}
	// The old certificate can no longer renew; the current one can.
	if r := e.renew(first, first.tls); r.err.Code != protocol.CodeCertSuperseded {
		t.Errorf("renew with the superseded certificate = %v, want cert_superseded", r)
	}
	if r := e.renew(third, third.tls); r.status != http.StatusOK {
		t.Errorf("renew with the current certificate = %v, want granted", r)
	}
	var hd admin.HostDetail
	e.call(admin.CmdHostShow, admin.HostArgs{Host: hostID}, &hd)
	if hd.Name != "re.test" || len(hd.Certificates) != 4 {
		t.Errorf("host show = %s with %d certificates, want re.test with 4", hd.Name, len(hd.Certificates))
	}
}

// TestRenew: mutual TLS with the current certificate renews, keeping the host
// ID and names, no token at any level; no certificate, a foreign one, a
// revoked host and an expired certificate get their codes.
func TestRenew(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("renew.test", loopback)
	h := newHost(t, "renew.test")
	r := e.enroll(h, "", "", false)
	if r.status != http.StatusOK {
		t.Fatalf("enroll = %v", r)
	}
	e.setLevel(protocol.LevelVeryHigh)
	old := h.tls
	rn := e.renew(h, old)
	if rn.status != http.StatusOK || rn.cert.HostID != r.cert.HostID || rn.cert.Names[0] != "renew.test" ||
		rn.cert.Decision.Kind != protocol.KindRenew || rn.cert.Serial == r.cert.Serial {
		t.Fatalf("renew = %v, want a new certificate for host %s", rn, r.cert.HostID)
	}
	h.take(t, rn)
	// A name the host does not hold is asked for, not granted: it becomes
	// a pending mapping and the certificate keeps the host's name.
	wrong := newHost(t, "someone-else.test")
	wrong.tls = h.tls
	if r := e.renew(wrong, h.tls); r.status != http.StatusOK || fmt.Sprint(r.cert.Names) != "[renew.test]" ||
		fmt.Sprint(r.cert.PendingNames) != "[someone-else.test]" {
		t.Errorf("renew with a CSR for another name = %v, want renew.test only, someone-else.test pending", r)
	}
	if r := e.renew(h, nil); r.status != http.StatusUnauthorized || r.err.Code != protocol.CodeClientCertRequired {
		t.Errorf("renew without a client certificate = %v, want 401 client_cert_required", r)
	}
	foreign := selfSigned(t, "renew.test")
	if r := e.renew(h, foreign); r.err.Code != protocol.CodeClientCertRequired {
		t.Errorf("renew with a foreign certificate = %v, want client_cert_required", r)
	}

	var n admin.CountResult
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "renew.test", Reason: "cessationOfOperation"}, &n)
	if n.Count != 3 {
		t.Errorf("revoke renew.test = %d certificates, want 3", n.Count)
	}
	if r := e.renew(h, h.tls); r.status != http.StatusForbidden || r.err.Code != protocol.CodeHostRevoked {
		t.Errorf("renew of a revoked host = %v, want 403 host_revoked", r)
	}
	e.waitCRL(ca.SerialHex(h.leaf.SerialNumber), true)
}

// TestRenewExpired: an expired certificate cannot renew (cert_expired).
func TestRenewExpired(t *testing.T) {
	e := newEnv(t, envOpts{validity: 1500 * time.Millisecond})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("short.test", loopback)
	h := newHost(t, "short.test")
	if r := e.enroll(h, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll = %v", r)
	}
	time.Sleep(time.Until(h.leaf.NotAfter) + 1100*time.Millisecond)
	if r := e.renew(h, h.tls); r.status != http.StatusForbidden || r.err.Code != protocol.CodeCertExpired {
		t.Errorf("renew with an expired certificate = %v, want 403 cert_expired", r)
	}
}

// TestBadInput: malformed and hostile requests get a 4xx with a code and
// change nothing (no host, no certificate, no token use).
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("bad.test", loopback)
	tok := e.token("bad", 5, "")
	h := newHost(t, "bad.test")
	goodCSR := h.csr(t)
	otherCSR := newHost(t, "victim.test").csr(t)
	badSig := corruptSignature(t, goodCSR)
	body := func(v any) []byte { b, _ := json.Marshal(v); return b }
	huge := append([]byte(`{"name":"bad.test","csr":"`), make([]byte, protocol.MaxBodyBytes+10)...)
	for i := range huge[26:] {
		huge[26+i] = 'A'
	}
	cases := []struct {
		name   string
		ctype  string
		body   []byte
		status int
		code   protocol.Code
	}{
		{"malformed JSON", "application/json", []byte(`{"name": "bad.test", "csr": `), 400, protocol.CodeBadRequest},
		{"not JSON", "application/json", []byte("hello"), 400, protocol.CodeBadRequest},
		{"two objects", "application/json", []byte(`{"name":"bad.test"} {"name":"x"}`), 400, protocol.CodeBadRequest},
		{"wrong content type", "text/plain", body(protocol.EnrollRequest{Name: "bad.test", CSR: goodCSR, Token: tok}), 400, protocol.CodeBadRequest},
		{"unknown field", "application/json", []byte(`{"name":"bad.test","csr":"x","admin":true}`), 400, protocol.CodeBadRequest},
		{"wrong type", "application/json", []byte(`{"name":42}`), 400, protocol.CodeBadRequest},
		{"body over 1 MiB", "application/json", huge, 413, protocol.CodeBodyTooLarge},
		{"garbage PEM", "application/json", body(protocol.EnrollRequest{Name: "bad.test", CSR: "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n", Token: tok}), 400, protocol.CodeBadCSR},
		{"no PEM", "application/json", body(protocol.EnrollRequest{Name: "bad.test", CSR: "hello", Token: tok}), 400, protocol.CodeBadCSR},
		{"CSR bad signature", "application/json", body(protocol.EnrollRequest{Name: "bad.test", CSR: badSig, Token: tok}), 400, protocol.CodeBadCSR},
		{"CSR for another name", "application/json", body(protocol.EnrollRequest{Name: "bad.test", CSR: otherCSR, Token: tok}), 403, protocol.CodeNameNotAllowed},
		{"bad host name", "application/json", body(protocol.EnrollRequest{Name: "bad_host!", CSR: goodCSR, Token: tok}), 400, protocol.CodeBadRequest},
		{"unknown host ID", "application/json", body(protocol.EnrollRequest{Name: "bad.test", HostID: "00000000-0000-4000-8000-000000000000", CSR: goodCSR}), 404, protocol.CodeNotFound},
		{"garbage token", "application/json", body(protocol.EnrollRequest{Name: "bad.test", CSR: goodCSR, Token: "hct_nope"}), 403, protocol.CodeTokenInvalid},
	}
	for _, c := range cases {
		r := e.post(e.client(nil), protocol.PathEnroll, c.ctype, c.body)
		if r.status != c.status || r.err.Code != c.code || r.err.Message == "" {
			t.Errorf("%s: POST /v1/enroll = %v, want %d %s with a message", c.name, r, c.status, c.code)
		}
	}
	// Wrong methods and paths answer JSON too.
	resp, b := e.get(protocol.PathEnroll, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(b), `"method_not_allowed"`) {
		t.Errorf("GET /v1/enroll = %d %s, want 405 method_not_allowed", resp.StatusCode, b)
	}
	resp, b = e.get("/v1/nope", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `"not_found"`) {
		t.Errorf("GET /v1/nope = %d %s, want 404 not_found", resp.StatusCode, b)
	}

	st := e.store()
	ctx := context.Background()
	certs, err := st.ListCerts(ctx, store.CertFilter{IncludeRevoked: true})
	if err != nil || len(certs) != 0 {
		t.Errorf("certificates after bad input: %d (%v), want 0", len(certs), err)
	}
	if _, err := st.HostByName(ctx, "bad.test"); err == nil {
		t.Errorf("bad.test got a host ID from bad input")
	}
	if tk, err := st.TokenByName(ctx, "bad"); err != nil || tk.Uses != 0 {
		t.Errorf("token uses after bad input = %d (%v), want 0", tk.Uses, err)
	}
	// Security-relevant refusals are audited.
	rows, err := st.ListAudit(ctx, time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for _, a := range rows {
		if a.Outcome == "refused" {
			codes[a.Code]++
		}
	}
	for _, c := range []protocol.Code{protocol.CodeBadCSR, protocol.CodeNameNotAllowed, protocol.CodeTokenInvalid, protocol.CodeBodyTooLarge, protocol.CodeBadRequest} {
		if codes[string(c)] == 0 {
			t.Errorf("no audited refusal with code %s (have %v)", c, codes)
		}
	}
	// The good request still works afterwards.
	if r := e.enroll(h, "", "", false); r.status != http.StatusOK {
		t.Errorf("good enroll after bad input = %v", r)
	}
}

// TestWrongTokensRateLimited: after a burst of wrong tokens from one address
// the primary answers rate_limited before looking tokens up.
func TestWrongTokensRateLimited(t *testing.T) {
	e := newEnv(t, envOpts{})
	good := e.token("good", 1, "")
	h := newHost(t, "guess.test")
	var last reply
	for i := 0; i < 10; i++ {
		last = e.enroll(h, "hct_"+strings.Repeat("a", 52), "", false)
		if last.status == http.StatusTooManyRequests {
			break
		}
		if last.err.Code != protocol.CodeTokenInvalid {
			t.Fatalf("wrong token %d = %v, want token_invalid", i, last)
		}
	}
	if last.status != http.StatusTooManyRequests || last.err.Code != protocol.CodeRateLimited {
		t.Fatalf("after 10 wrong tokens: %v, want 429 rate_limited", last)
	}
	if r := e.enroll(h, good, "", false); r.err.Code != protocol.CodeRateLimited {
		t.Errorf("even a good token while limited = %v, want rate_limited", r)
	}
}

// TestPublicEndpoints: CA bundle, CRL in DER and PEM, info.
func TestPublicEndpoints(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	resp, b := e.get(protocol.PathCA, nil)
	if resp.StatusCode != 200 || string(b) != string(e.bundle) {
		t.Errorf("GET /v1/ca = %d %q, want the CA PEM", resp.StatusCode, b)
	}
	e.crl()
	for _, hdr := range []http.Header{{"Accept": {"application/x-pem-file"}}, nil} {
		path := protocol.PathCRL
		if hdr == nil {
			path += "?format=pem"
		}
		resp, b = e.get(path, hdr)
		blk, _ := pem.Decode(b)
		if resp.StatusCode != 200 || blk == nil || blk.Type != "X509 CRL" {
			t.Errorf("GET %s %v = %d %q, want a PEM CRL", path, hdr, resp.StatusCode, b)
		}
	}
	resp, b = e.get(protocol.PathInfo, nil)
	var info protocol.Info
	if err := json.Unmarshal(b, &info); err != nil || info.Level != protocol.LevelHigh || info.CRLRefreshSeconds != 4*3600 ||
		len(info.CAFingerprints) != 1 || info.CAFingerprints[0] != pki.Fingerprint(e.caCert) {
		t.Errorf("GET /v1/info = %d %s, want level high, 14400 s and the fingerprint", resp.StatusCode, b)
	}
	l := e.crl()
	if l.NextUpdate.Sub(l.ThisUpdate) != 7*24*time.Hour {
		t.Errorf("CRL validity %v, want 7 days", l.NextUpdate.Sub(l.ThisUpdate))
	}
}

// TestMetrics: decisions are counted by kind, outcome and code.
func TestMetrics(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	e.dns.Set("m.test", loopback)
	e.enroll(newHost(t, "m.test"), "", "", false) // unknown at high: token_required
	e.setLevel(protocol.LevelMedium)
	e.enroll(newHost(t, "m.test"), "", "", false) // verified at medium: granted
	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`hostcert_primary_decisions_total{code="token_required",kind="issue",outcome="refused"} 1`,
		`hostcert_primary_decisions_total{code="",kind="issue",outcome="granted"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, b)
		}
	}
}

// TestVerifiedOverIPv6: a client on ::1 whose name has the AAAA record ::1
// is verified (medium: no token needed); one whose name only has an A record
// is not.
func TestVerifiedOverIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	e := newEnv(t, envOpts{listen: "[::1]:0"})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("six.test", netip.MustParseAddr("::1"), faraway)
	e.dns.Set("four.test", loopback)
	if r := e.enroll(newHost(t, "six.test"), "", "", false); r.status != http.StatusOK || !r.cert.Decision.Verified {
		t.Errorf("enroll six.test from ::1 = %v, want granted and verified", r)
	}
	if r := e.enroll(newHost(t, "four.test"), "", "", false); r.err.Code != protocol.CodeTokenRequired || r.err.Decision.Verified {
		t.Errorf("enroll four.test from ::1 = %v, want token_required, not verified", r)
	}
}
