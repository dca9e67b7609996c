package cli

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/agent/internal/health"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// TestRevokedIssuingCA: ca revoke-issuing on a real primary whose root is
// offline. The current issuing CA is refused (rotate first). Once the old
// one is revoked, an agent whose certificate it signed sees it revoked
// with it after its next CRL refresh (self-check exit 2, not good) and its
// renewal is refused (host_revoked), and a reissue token brings it back
// under the current issuing CA; an agent under the current issuing CA is
// not affected. The revocation is audited.
func TestRevokedIssuingCA(t *testing.T) {
	srv := newServer(t, primarytest.Options{OfflineRoot: true})
	old, fresh := newHarness(t, srv), newHarness(t, srv)
	old.enroll("old.example.com")
	oldIssuing := old.identity().Chain[0]

	err := srv.TryRevokeIssuing(pki.KeyID(oldIssuing.SubjectKeyId), "keyCompromise", true)
	if err == nil || !strings.Contains(err.Error(), "ca rotate") {
		t.Fatalf("revoke-issuing of the current issuing CA = %v, want a refusal naming ca rotate", err)
	}
	srv.RotateCA(false)
	fresh.enroll("fresh.example.com")
	if fresh.identity().Chain[0].Equal(oldIssuing) {
		t.Fatal("after ca rotate the new host's certificate is still from the old issuing CA")
	}
	if err := srv.TryRevokeIssuing(pki.KeyID(oldIssuing.SubjectKeyId), "keyCompromise", false); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Fatalf("revoke-issuing without the offline root key = %v, want a refusal (key offline)", err)
	}
	// Before: healthy.
	old.must("get-crl")
	if r := old.run("self-check"); r.code != 0 {
		t.Fatalf("self-check before the revocation = exit %d, %s", r.code, r.err)
	}

	got := srv.RevokeIssuing(pki.Fingerprint(oldIssuing), "keyCompromise")
	if got.Hosts != 1 || len(got.Sample) != 1 || got.Sample[0] != "old.example.com" || got.Issuing.State != "revoked" {
		t.Errorf("revoke-issuing answered hosts %d %v, state %q; want 1 [old.example.com], revoked", got.Hosts, got.Sample, got.Issuing.State)
	}
	var audited bool
	for _, a := range srv.Audit() {
		if a.Action == "ca.revoke-issuing" && a.Outcome != "error" {
			audited = a.Detail["reason"] == "keyCompromise" && a.Detail["fingerprint"] == pki.Fingerprint(oldIssuing)
		}
	}
	if !audited {
		t.Errorf("no audit row of ca.revoke-issuing with its reason and fingerprint: %+v", srv.Audit())
	}

	old.must("get-crl")
	if st := old.status(); st.Health.Verdict != health.Bad || !st.Health.IssuingCARevoked {
		t.Errorf("status after its issuing CA was revoked: %s, issuing CA revoked %v (%s); want bad, true", st.Health.Verdict, st.Health.IssuingCARevoked, st.Health.Reason)
	}
	if r := old.run("self-check"); r.code != 2 {
		t.Errorf("self-check after its issuing CA was revoked = exit %d, want 2", r.code)
	}
	if r := old.run("renew"); r.code == 0 || !strings.Contains(r.err, "host_revoked") {
		t.Errorf("renew with a certificate of a revoked issuing CA = exit %d, %q; want refused (host_revoked)", r.code, r.err)
	}

	fresh.must("get-crl")
	if r := fresh.run("self-check"); r.code != 0 {
		t.Errorf("self-check of a host under the current issuing CA = exit %d, %s", r.code, r.err)
	}
	fresh.must("renew")

	// The fleet's way back: a reissue.
	old.must("get-cert", "--name", "old.example.com", "--token", srv.ReissueToken("old-back", "old.example.com"))
	if old.identity().Chain[0].Equal(oldIssuing) {
		t.Error("the reissued certificate is from the revoked issuing CA")
	}
	old.must("get-crl")
	if r := old.run("self-check"); r.code != 0 {
		t.Errorf("self-check after the reissue = exit %d, %s", r.code, r.err)
	}
}

// TestOfflineRootCRL: the root's key is offline and its CRL has passed its
// next update (nobody signed it again for a year). The primary warns and
// exports its next update; an agent under an issuing CA cannot tell its
// certificate's state (self-check exit 1, never a false good) until the
// operator signs the root's CRL again with the offline key
// (ca sign-root-crl --root-key FILE).
func TestOfflineRootCRL(t *testing.T) {
	var keyFile string
	srv := newServer(t, primarytest.Options{OfflineRoot: true, BeforeServe: func(dir string) {
		keyFile = filepath.Join(filepath.Dir(dir), "offline-root-key.pem")
		writeStaleRootCRL(t, dir, keyFile)
	}})
	h := newHarness(t, srv)
	h.enroll("web01.example.com")
	h.must("get-crl")
	if st := h.status(); st.Health.Verdict != health.Unknown || !strings.Contains(st.Health.Reason, "CRL of the root") {
		t.Errorf("status with the root's CRL past its next update: %s (%s), want cannot tell", st.Health.Verdict, st.Health.Reason)
	}
	if r := h.run("self-check"); r.code != 1 {
		t.Errorf("self-check with the root's CRL past its next update = exit %d, want 1", r.code)
	}
	if !strings.Contains(srv.Log(), "root crl") || !strings.Contains(srv.Log(), "sign-root-crl") {
		t.Errorf("the primary did not warn about the expired root CRL; log:\n%s", srv.Log())
	}

	info := srv.SignRootCRL()
	if d := time.Until(info.NextUpdate); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("sign-root-crl: next update in %s, want a year", d)
	}
	h.must("get-crl")
	if r := h.run("self-check"); r.code != 0 {
		t.Errorf("self-check after sign-root-crl = exit %d, %s", r.code, r.err)
	}
}

// writeStaleRootCRL replaces the root's CRL in the data directory dir by
// one signed a year and a month ago with the offline key, valid a year.
func writeStaleRootCRL(t *testing.T, dir, keyFile string) {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := os.ReadFile(filepath.Join(dir, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.ParseCerts(rb)
	if err != nil {
		t.Fatal(err)
	}
	then := time.Now().Add(-395 * 24 * time.Hour)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(then.UnixMilli()), ThisUpdate: then, NextUpdate: then.Add(365 * 24 * time.Hour),
	}, roots[0], key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca", "root-crl.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
