package server

import (
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// crlOf fetches the CRL of the CA with key identifier ski and checks it is
// signed by signer.
func (e *env) crlOf(signer *x509.Certificate) *x509.RevocationList {
	e.t.Helper()
	resp, der := e.get(protocol.PathCRL+"?"+protocol.CRLIssuerParam+"="+pki.KeyID(signer.SubjectKeyId), nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET CRL of %s = %d %s", signer.Subject.CommonName, resp.StatusCode, der)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil || l.CheckSignatureFrom(signer) != nil {
		e.t.Fatalf("CRL of %s does not parse or verify: %v", signer.Subject.CommonName, err)
	}
	return l
}

// verifyUnder checks that leaf chains to root through chainPEM.
func verifyUnder(t *testing.T, leaf *x509.Certificate, chainPEM string, root *x509.Certificate) error {
	t.Helper()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	if chainPEM != "" {
		certs, err := pki.ParseCerts([]byte(chainPEM))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// TestRotateIssuingCA: over the admin socket of a running primary, ca
// rotate makes a new issuing CA that signs new certificates, renewals and
// the primary's TLS certificate; ca show lists both with their state; the
// old one's certificates keep renewing; each issuing CA's CRL is served and
// lists only its own certificates.
func TestRotateIssuingCA(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	for _, n := range []string{"old.test", "new.test"} {
		e.dns.Set(n, loopback)
	}
	old := newHost(t, "old.test")
	if r := e.enroll(old, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll old.test = %v", r)
	}
	oldLeaf, oldIss := old.leaf, e.issuing

	var info admin.CAInfo
	e.call(admin.CmdCARotate, admin.RotateArgs{}, &info)
	var issuing []admin.CAEntry
	for _, c := range info.CAs {
		if c.Kind == "issuing" {
			issuing = append(issuing, c)
		}
	}
	if len(issuing) != 2 || issuing[0].State != "current" || !strings.HasPrefix(issuing[1].State, "previous") ||
		issuing[1].Fingerprint != pki.Fingerprint(oldIss) || info.Fingerprint != pki.Fingerprint(e.caCert) {
		t.Fatalf("ca show after rotate: %+v, want the new issuing CA current, the old one previous, the same root", info.CAs)
	}

	fresh := newHost(t, "new.test")
	r := e.enroll(fresh, "", "", false)
	if r.status != http.StatusOK {
		t.Fatalf("enroll new.test = %v", r)
	}
	chain, err := pki.ParseCerts([]byte(r.cert.Chain))
	if err != nil || len(chain) != 1 || chain[0].Equal(oldIss) || fresh.leaf.CheckSignatureFrom(chain[0]) != nil {
		t.Fatalf("a certificate after the rotation is not from the new issuing CA (chain %d, %v)", len(chain), err)
	}
	newIss := chain[0]
	if err := verifyUnder(t, fresh.leaf, r.cert.Chain, e.caCert); err != nil {
		t.Errorf("new certificate does not chain to the root: %v", err)
	}
	resp, _ := e.get(protocol.PathInfo, nil)
	if p := resp.TLS.PeerCertificates; p[0].CheckSignatureFrom(newIss) != nil {
		t.Error("the primary's TLS certificate is not from the new issuing CA")
	}

	// The old certificate is still valid and renews, into the new CA.
	rr := e.renew(old, old.tls)
	if rr.status != http.StatusOK {
		t.Fatalf("renew with a certificate of the previous issuing CA = %v", rr)
	}
	old.take(t, rr)
	if old.leaf.CheckSignatureFrom(newIss) != nil {
		t.Error("the renewal is not from the new issuing CA")
	}

	// Revoking the host lists each certificate on its own issuer's CRL.
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "old.test", Reason: "keyCompromise"}, nil)
	oldCRL, newCRL := e.crlOf(oldIss), e.crlOf(newIss)
	if !crlHas(oldCRL, ca.SerialHex(oldLeaf.SerialNumber)) || crlHas(newCRL, ca.SerialHex(oldLeaf.SerialNumber)) {
		t.Error("the previous issuing CA's certificate is not on its CRL alone")
	}
	if !crlHas(newCRL, ca.SerialHex(old.leaf.SerialNumber)) || crlHas(oldCRL, ca.SerialHex(old.leaf.SerialNumber)) {
		t.Error("the new issuing CA's certificate is not on its CRL alone")
	}
	// The root's CRL is served too.
	e.crlOf(e.caCert)
}

// TestRetireRootRefusedWhileHostsDependOnIt: after ca rotate --root a host
// whose current certificate comes from the old root keeps the old root
// from being retired; once it renewed into the new root, retiring works.
// A client that trusts only the old root still verifies the primary (the
// chain carries the cross certificate).
func TestRetireRootRefusedWhileHostsDependOnIt(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("a.test", loopback)
	h := newHost(t, "a.test")
	if r := e.enroll(h, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll = %v", r)
	}
	// b.test also holds a certificate from the old root, and is revoked
	// later: a revoked host depends on no root.
	e.dns.Set("b.test", loopback)
	hb := newHost(t, "b.test")
	if r := e.enroll(hb, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll b.test = %v", r)
	}
	oldRoot := e.caCert
	var info admin.CAInfo
	e.call(admin.CmdCARotate, admin.RotateArgs{Root: true}, &info)
	if info.Fingerprint == pki.Fingerprint(oldRoot) {
		t.Fatal("rotate --root kept the root")
	}
	roots := 0
	for _, c := range info.CAs {
		if c.Kind == "root" {
			roots++
		}
	}
	if roots != 2 {
		t.Fatalf("ca show after rotate --root: %d roots, want 2", roots)
	}
	// e.client trusts only the old root: the primary still verifies.
	resp, b := e.get(protocol.PathCA, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/ca = %d", resp.StatusCode)
	}
	if bundle, _ := pki.ParseCerts(b); len(pki.Roots(bundle)) != 2 {
		t.Errorf("GET /v1/ca serves %d roots, want 2", len(pki.Roots(bundle)))
	}

	err := e.admin.Call(t.Context(), admin.CmdCARetireRoot, admin.RetireArgs{Fingerprint: pki.Fingerprint(oldRoot)}, nil)
	if err == nil || !strings.Contains(err.Error(), "may trust only this root") {
		t.Fatalf("retire-root while a.test holds a certificate from it = %v, want a refusal", err)
	}
	r := e.renew(h, h.tls)
	if r.status != http.StatusOK {
		t.Fatalf("renew after rotate --root = %v", r)
	}
	h.take(t, r)
	newRoot := pki.Roots(mustCerts(t, r.cert.CABundle))[0]
	if err := verifyUnder(t, h.leaf, r.cert.Chain, newRoot); err != nil {
		t.Errorf("the renewal does not chain to the new root: %v", err)
	}
	if err := e.admin.Call(t.Context(), admin.CmdCARetireRoot, admin.RetireArgs{Fingerprint: pki.Fingerprint(oldRoot)}, nil); err == nil || !strings.Contains(err.Error(), "may trust only this root") {
		t.Fatalf("retire-root while b.test holds a certificate from it = %v, want a refusal", err)
	}
	var revoked admin.CountResult
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "b.test", Reason: "superseded"}, &revoked)
	e.call(admin.CmdCARetireRoot, admin.RetireArgs{Fingerprint: pki.Fingerprint(oldRoot)}, &info)
	for _, c := range info.CAs {
		if c.Fingerprint == pki.Fingerprint(oldRoot) {
			t.Errorf("the retired root is still listed: %+v", c)
		}
	}
}

func mustCerts(t *testing.T, pemText string) []*x509.Certificate {
	t.Helper()
	certs, err := pki.ParseCerts([]byte(pemText))
	if err != nil {
		t.Fatal(err)
	}
	return certs
}
