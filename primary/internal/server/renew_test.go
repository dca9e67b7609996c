package server

import (
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// enrolled is a host enrolled at medium from 127.0.0.1 (verified).
func enrolled(t *testing.T, e *env, name string) *host {
	t.Helper()
	e.setLevel(protocol.LevelMedium)
	e.dns.Set(name, loopback)
	h := newHost(t, name)
	if r := e.enroll(h, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll %s = %v", name, r)
	}
	return h
}

// renewWithKey renews with the certificate of from, asking for key.
func (e *env) renewWithKey(from *host, key crypto.Signer) (reply, *host) {
	e.t.Helper()
	next := &host{name: from.name, key: key}
	r := e.renew(next, from.tls)
	if r.status == http.StatusOK {
		next.take(e.t, r)
	}
	return r, next
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// audits returns the API audit rows of action for name, oldest first.
func (e *env) audits(action, name string) []admin.AuditEntry {
	e.t.Helper()
	var rows []admin.AuditEntry
	e.call(admin.CmdAudit, admin.AuditArgs{}, &rows)
	var out []admin.AuditEntry
	for _, a := range rows {
		if a.Actor == "api" && a.Action == action && (name == "" || a.Name == name) {
			out = append(out, a)
		}
	}
	return out
}

// TestRenewTwiceFromTheSameCertificate: a certificate renews once; a second
// renewal from it with another key is cert_superseded, audited and counted as
// such; the same key (a retry whose answer was lost) gets the certificate
// already issued, until that one is used.
func TestRenewTwiceFromTheSameCertificate(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	p := enrolled(t, e, "twice.test")

	r1, c := e.renewWithKey(p, newKey(t))
	if r1.status != http.StatusOK {
		t.Fatalf("first renewal = %v", r1)
	}
	r2, _ := e.renewWithKey(p, newKey(t))
	if r2.status != http.StatusForbidden || r2.err.Code != protocol.CodeCertSuperseded || r2.err.Decision == nil ||
		r2.err.Decision.Granted || !strings.HasPrefix(r2.err.Decision.Reason, "refused (cert_superseded): renew") {
		t.Fatalf("second renewal from the same certificate = %v, want 403 cert_superseded with its decision", r2)
	}
	rows := e.audits("renew", "twice.test")
	if last := rows[len(rows)-1]; last.Outcome != "refused" || last.Code != string(protocol.CodeCertSuperseded) ||
		!strings.Contains(fmt.Sprint(last.Detail["reason"]), "refused (cert_superseded)") {
		t.Errorf("audit of the superseded renewal = %+v, want refused cert_superseded", last)
	}

	// The retry after a lost answer: same old certificate, the key of the
	// renewal that was issued.
	r3, again := e.renewWithKey(p, c.key)
	if r3.status != http.StatusOK || r3.cert.Serial != r1.cert.Serial || r3.cert.Certificate != r1.cert.Certificate {
		t.Fatalf("retried renewal with the issued key = %v, want the certificate %s again", r3, r1.cert.Serial)
	}
	if !again.leaf.Equal(c.leaf) {
		t.Error("the resent certificate differs from the one issued")
	}
	if res := e.audits("resend", "twice.test"); len(res) != 1 || res[0].Detail["serial"] != r1.cert.Serial || res[0].Detail["presented"] == nil {
		t.Errorf("resend audit rows = %+v, want one for %s", res, r1.cert.Serial)
	}
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{Host: "twice.test"}, &certs)
	if len(certs) != 2 || certs[1].Serial != r1.cert.Serial || certs[1].RenewedFrom != certs[0].Serial || certs[0].UsedAt == nil || certs[1].UsedAt != nil {
		t.Fatalf("certificates of twice.test = %+v, want the first and its one renewal", certs)
	}

	// Once the new certificate is used (it renewed), the old one gets nothing.
	if r, _ := e.renewWithKey(c, newKey(t)); r.status != http.StatusOK {
		t.Fatalf("renewal with the current certificate = %v", r)
	}
	if r, _ := e.renewWithKey(p, c.key); r.err.Code != protocol.CodeCertSuperseded {
		t.Errorf("retry from the first certificate after its renewal was used = %v, want cert_superseded", r)
	}

	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`hostcert_primary_decisions_total{code="cert_superseded",kind="renew",outcome="refused"} 2`,
		`hostcert_primary_decisions_total{code="",kind="resend",outcome="granted"} 1`,
		`hostcert_primary_decisions_total{code="",kind="renew",outcome="granted"} 2`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestOnlyTheLatestCertificateRenews: a host holding three valid
// certificates (issue, renew, renew) renews only with the latest.
func TestOnlyTheLatestCertificateRenews(t *testing.T) {
	e := newEnv(t, envOpts{})
	c0 := enrolled(t, e, "three.test")
	_, c1 := e.renewWithKey(c0, newKey(t))
	r, c2 := e.renewWithKey(c1, newKey(t))
	if r.status != http.StatusOK {
		t.Fatalf("second renewal = %v", r)
	}
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{Host: "three.test"}, &certs)
	if len(certs) != 3 {
		t.Fatalf("certificates of three.test = %d, want 3", len(certs))
	}
	for i, old := range []*host{c0, c1} {
		for _, key := range []crypto.Signer{old.key, newKey(t)} {
			if r, _ := e.renewWithKey(old, key); r.status != http.StatusForbidden || r.err.Code != protocol.CodeCertSuperseded {
				t.Errorf("renewal with certificate %d of 3 = %v, want cert_superseded", i+1, r)
			}
		}
	}
	if r, _ := e.renewWithKey(c2, newKey(t)); r.status != http.StatusOK {
		t.Errorf("renewal with the latest certificate = %v, want granted", r)
	}
	e.call(admin.CmdCertList, admin.CertArgs{Host: "three.test"}, &certs)
	if len(certs) != 4 {
		t.Errorf("certificates of three.test after the refusals = %d, want 4", len(certs))
	}
}

// TestRenewRefusalsNameTheirCause: a renewal with a bad CSR, a CSR for a
// name no host may have, or for another host's name, is reported, audited
// and counted as that refusal — never as "granted".
func TestRenewRefusalsNameTheirCause(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	enrolled(t, e, "taken.test")
	h := enrolled(t, e, "cause.test")
	bad := &host{name: "bad_name.test", key: h.key}
	taken := &host{name: "taken.test", key: h.key}
	for _, tc := range []struct {
		csr  string
		code protocol.Code
	}{
		{corruptSignature(t, h.csr(t)), protocol.CodeBadCSR},
		{"not a csr", protocol.CodeBadCSR},
		{bad.csr(t), protocol.CodeNameNotAllowed},
		{taken.csr(t), protocol.CodeNameConflict},
	} {
		body, _ := json.Marshal(protocol.RenewRequest{CSR: tc.csr})
		r := e.post(e.client(h.tls), protocol.PathRenew, "application/json", body)
		if r.status == http.StatusOK || r.err.Code != tc.code || r.err.Decision == nil || r.err.Decision.Granted ||
			!strings.HasPrefix(r.err.Decision.Reason, "refused ("+string(tc.code)+"): renew") {
			t.Errorf("renew with CSR %.20q = %v, want %s with a refused decision", tc.csr, r, tc.code)
		}
		rows := e.audits("renew", "cause.test")
		last := rows[len(rows)-1]
		reason := fmt.Sprint(last.Detail["reason"])
		if last.Outcome != "refused" || last.Code != string(tc.code) || strings.Contains(reason, "granted") ||
			!strings.HasPrefix(reason, "refused ("+string(tc.code)+")") {
			t.Errorf("audit of renew with CSR %.20q = %+v, want refused %s", tc.csr, last, tc.code)
		}
	}
	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`hostcert_primary_decisions_total{code="bad_csr",kind="renew",outcome="refused"} 2`,
		`hostcert_primary_decisions_total{code="name_not_allowed",kind="renew",outcome="refused"} 1`,
		`hostcert_primary_decisions_total{code="name_conflict",kind="renew",outcome="refused"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(b), `kind="renew",outcome="granted"`) {
		t.Error("/metrics counts a granted renewal, want none")
	}
}

// TestRefusalReasonQuotesDNS: what DNS answered is in the refusal's reason,
// in the response and in the audit row.
func TestRefusalReasonQuotesDNS(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("elsewhere.test", faraway)
	r := e.enroll(newHost(t, "elsewhere.test"), "", "", false)
	want := fmt.Sprintf("not verified (dns gives %s, not 127.0.0.1)", faraway)
	if r.err.Code != protocol.CodeTokenRequired || r.err.Decision == nil || !strings.Contains(r.err.Decision.Reason, want) ||
		!r.err.Decision.DNSChecked || r.err.Decision.DNS == "" {
		t.Fatalf("enroll of a name resolving elsewhere = %v, want token_required quoting %q", r, want)
	}
	rows := e.audits("issue", "elsewhere.test")
	if len(rows) != 1 || !strings.Contains(fmt.Sprint(rows[0].Detail["reason"]), want) || rows[0].Detail["verified"] != "no" ||
		!strings.Contains(fmt.Sprint(rows[0].Detail["dns"]), faraway.String()) {
		t.Errorf("audit = %+v, want the DNS answer %q", rows, want)
	}
	r = e.enroll(newHost(t, "nowhere.test"), "", "", false)
	if r.err.Decision == nil || !strings.Contains(r.err.Decision.Reason, "not verified (name does not resolve") {
		t.Errorf("enroll of a name that does not resolve = %v, want the reason to say so", r)
	}
}

// TestMadeUpNamesCostNoDNS: at high, a flood of made-up names (no token, a
// wrong token, NAT) is refused without a single DNS query; the reason and
// the audit say DNS was not checked, not that it failed. A known name is
// still looked up.
func TestMadeUpNamesCostNoDNS(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelHigh)
	before := e.dns.Queries()
	for i := range 40 {
		token := ""
		if i%4 == 1 {
			token = "hct_" + strings.Repeat("x", 40)
		}
		r := e.enroll(newHost(t, fmt.Sprintf("made-up-%d.test", i)), token, "", i%4 == 2)
		if r.status != http.StatusForbidden && r.status != http.StatusTooManyRequests {
			t.Fatalf("made-up name %d = %v, want refused", i, r)
		}
		if d := r.err.Decision; d != nil && !d.NAT && token == "" &&
			(d.DNSChecked || !strings.Contains(d.Reason, "DNS not checked (at high a name not in the registry needs a token whatever DNS says)")) {
			t.Fatalf("made-up name %d decision = %+v, want DNS not checked and why", i, d)
		}
	}
	if got := e.dns.Queries() - before; got != 0 {
		t.Errorf("DNS queries for 40 made-up names at high = %d, want 0", got)
	}
	rows := e.audits("issue", "made-up-0.test")
	if len(rows) != 1 || rows[0].Detail["verified"] != "not_checked" {
		t.Errorf("audit of a made-up name = %+v, want verified not_checked", rows)
	}

	// Control: a known name at high is looked up (and verified).
	e.dns.Set("known.test", loopback)
	e.call(admin.CmdHostAdd, admin.NamesArgs{Names: []string{"known.test"}}, nil)
	before = e.dns.Queries()
	if r := e.enroll(newHost(t, "known.test"), "", "", false); r.status != http.StatusOK || !r.cert.Decision.Verified {
		t.Fatalf("known verified name at high = %v, want granted", r)
	}
	if e.dns.Queries() == before {
		t.Error("a known name at high was not looked up")
	}
}

// TestExplainShowsDNSForExistingHosts: explain quotes DNS also for a name
// that already has a host ID (a reissue), where the decision does not need it.
func TestExplainShowsDNSForExistingHosts(t *testing.T) {
	e := newEnv(t, envOpts{})
	enrolled(t, e, "exists.test")
	var d protocol.Decision
	e.call(admin.CmdExplain, admin.ExplainArgs{Name: "exists.test", From: "127.0.0.1"}, &d)
	if d.Kind != protocol.KindReissue || !d.DNSChecked || !d.Verified || d.DNS != "dns matches 127.0.0.1" ||
		!strings.Contains(d.Reason, "verified (dns matches 127.0.0.1)") {
		t.Errorf("explain exists.test = %+v, want a reissue quoting what DNS answered", d)
	}
	e.call(admin.CmdExplain, admin.ExplainArgs{Name: "exists.test", From: "127.0.0.5"}, &d)
	if d.Verified || !strings.Contains(d.DNS, "dns gives 127.0.0.1, not 127.0.0.5") {
		t.Errorf("explain exists.test from 127.0.0.5 = %+v, want the mismatch quoted", d)
	}
}

// TestFirstUseEndsTheResend: once the renewed certificate has been
// presented to the primary (here on a CRL fetch), the certificate it renewed
// can no longer get it sent again.
func TestFirstUseEndsTheResend(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := enrolled(t, e, "used.test")
	r, c := e.renewWithKey(p, newKey(t))
	if r.status != http.StatusOK {
		t.Fatalf("renewal = %v", r)
	}
	// A CRL fetch without a client certificate, or with the old one, does
	// not count as a use of the new one.
	for _, cert := range []*host{nil, p} {
		cl := e.client(nil)
		if cert != nil {
			cl = e.client(cert.tls)
		}
		resp, err := cl.Get("https://" + e.addr + protocol.PathCRL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if r, _ := e.renewWithKey(p, c.key); r.status != http.StatusOK || r.cert.Serial != ca.SerialHex(c.leaf.SerialNumber) {
		t.Fatalf("retry before the new certificate was used = %v, want it sent again", r)
	}
	resp, err := e.client(c.tls).Get("https://" + e.addr + protocol.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{Host: "used.test"}, &certs)
	if len(certs) != 2 || certs[1].UsedAt == nil {
		t.Fatalf("certificates after the new one fetched the CRL = %+v, want it marked used", certs)
	}
	if r, _ := e.renewWithKey(p, c.key); r.err.Code != protocol.CodeCertSuperseded || !strings.Contains(r.err.Decision.Reason, "used since") {
		t.Errorf("retry after the new certificate was used = %v, want cert_superseded", r)
	}
}
