package ca

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// rootCRLOf is the root's CRL as the data directory holds it.
func rootCRLOf(t *testing.T, c *CA, root *x509.Certificate) *x509.RevocationList {
	t.Helper()
	lists, err := c.RootCRLs()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range lists {
		if s.Issuer.Equal(root) {
			l, err := x509.ParseRevocationList(s.DER)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}
	t.Fatalf("no CRL of the root %s", root.Subject.CommonName)
	return nil
}

func lists(l *x509.RevocationList, cert *x509.Certificate) (int, bool) {
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return e.ReasonCode, true
		}
	}
	return 0, false
}

// TestRevokeIssuing: an issuing CA that is no longer current is revoked
// with the root's key (offline here): the root's CRL lists it with its
// reason, the certificates it signed are recognised as revoked with it,
// and the revocation survives a reload, a re-signing of the root's CRL and
// a root rotation. The current issuing CA, an unknown one, a missing or
// wrong root key and a second revocation are refused.
func TestRevokeIssuing(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "root-key.pem")
	c, dir := newCA(t, InitOptions{RootKeyOut: keyFile})
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := pki.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	old := c.Certificate()
	oldHost := issueHost(t, c, "old.example.com", t0)

	if _, err := c.RevokeIssuing(ID(old), ReasonKeyCompromise, rootKey, t0); !errors.Is(err, ErrCurrentIssuing) {
		t.Fatalf("RevokeIssuing(the current issuing CA) = %v, want ErrCurrentIssuing", err)
	}
	if _, err := c.RotateIssuing(RotateOptions{RootKey: rootKey}, t0); err != nil {
		t.Fatal(err)
	}
	newHost := issueHost(t, c, "new.example.com", t0)
	if _, err := c.RevokeIssuing("0011223344556677", ReasonKeyCompromise, rootKey, t0); !errors.Is(err, ErrNoSuchIssuing) {
		t.Errorf("RevokeIssuing(unknown) = %v, want ErrNoSuchIssuing", err)
	}
	if _, err := c.RevokeIssuing(ID(old), ReasonKeyCompromise, nil, t0); !errors.Is(err, ErrRootKeyOffline) {
		t.Errorf("RevokeIssuing without the offline root key = %v, want ErrRootKeyOffline", err)
	}
	other, _ := pki.GenerateKey(pki.ECDSAP384)
	if _, err := c.RevokeIssuing(ID(old), ReasonKeyCompromise, other, t0); err == nil {
		t.Error("RevokeIssuing with a key that is not the root's succeeded")
	}
	if c.RevokedIssuer(oldHost) != nil {
		t.Fatal("RevokedIssuer before any revocation is not nil")
	}

	at := t0.Add(time.Hour)
	rc, err := c.RevokeIssuing(ID(old), ReasonKeyCompromise, rootKey, at)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Cert.Equal(old) || rc.Reason != ReasonKeyCompromise {
		t.Errorf("RevokeIssuing = %s reason %d, want the old issuing CA, key compromise", rc.Cert.Subject.CommonName, rc.Reason)
	}
	l := rootCRLOf(t, c, c.Root())
	if reason, ok := lists(l, old); !ok || reason != ReasonKeyCompromise {
		t.Errorf("root CRL lists the revoked issuing CA: %v, reason %d; want listed, key compromise", ok, reason)
	}
	if _, ok := lists(l, c.Certificate()); ok {
		t.Error("root CRL lists the current issuing CA")
	}
	if !l.ThisUpdate.Equal(at) || l.NextUpdate.Sub(at) != RootCRLValidity {
		t.Errorf("root CRL %s .. %s, want signed at %s for %s", l.ThisUpdate, l.NextUpdate, at, RootCRLValidity)
	}
	if r := c.RevokedIssuer(oldHost); r == nil || !r.Cert.Equal(old) {
		t.Errorf("RevokedIssuer(a certificate of the revoked issuing CA) = %v, want the old issuing CA", r)
	}
	if r := c.RevokedIssuer(newHost); r != nil {
		t.Errorf("RevokedIssuer(a certificate of the current issuing CA) = %s, want nil", r.Cert.Subject.CommonName)
	}
	if _, err := c.RevokeIssuing(ID(old), ReasonKeyCompromise, rootKey, at); !errors.Is(err, ErrAlreadyRevoked) {
		t.Errorf("RevokeIssuing twice = %v, want ErrAlreadyRevoked", err)
	}

	// A restarted primary knows the revocation.
	l2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r := l2.RevokedIssuer(oldHost); r == nil {
		t.Error("after a reload the revoked issuing CA is not known as revoked")
	}
	if got := l2.RevokedIssuing(); len(got) != 1 || !got[0].Cert.Equal(old) || !got[0].RevokedAt.Equal(at) {
		t.Errorf("RevokedIssuing after a reload = %d entries, want the old issuing CA revoked at %s", len(got), at)
	}

	// The offline root's CRL is signed again later: still listing it.
	later := t0.Add(300 * 24 * time.Hour)
	if _, err := l2.SignRootCRL(nil, later); !errors.Is(err, ErrRootKeyOffline) {
		t.Errorf("SignRootCRL without the offline key = %v, want ErrRootKeyOffline", err)
	}
	if _, err := l2.SignRootCRL(other, later); !errors.Is(err, ErrNotRootKey) {
		t.Errorf("SignRootCRL with a stranger's key = %v, want ErrNotRootKey", err)
	}
	root, err := l2.SignRootCRL(rootKey, later)
	if err != nil || !root.Equal(l2.Root()) {
		t.Fatalf("SignRootCRL = %v, want the current root", err)
	}
	l = rootCRLOf(t, l2, l2.Root())
	if _, ok := lists(l, old); !ok || !l.NextUpdate.Equal(later.Add(RootCRLValidity)) {
		t.Errorf("re-signed root CRL: lists the revoked CA %v, next update %s; want listed, %s", ok, l.NextUpdate, later.Add(RootCRLValidity))
	}

	// A root rotation signs the old root's CRL again: the entry stays.
	if _, err := l2.RotateRoot(RotateOptions{RootKey: rootKey}, later); err != nil {
		t.Fatal(err)
	}
	oldRoot := l2.Bundle()[1]
	if _, ok := lists(rootCRLOf(t, l2, oldRoot), old); !ok {
		t.Error("after rotate --root the old root's CRL no longer lists the revoked issuing CA")
	}
	if r := l2.RevokedIssuer(oldHost); r == nil {
		t.Error("after rotate --root the revoked issuing CA is no longer known as revoked")
	}
	// The new root's key is online and signs its CRL; the old root's key,
	// offline, signs the old root's.
	if root, err := l2.SignRootCRL(nil, later); err != nil || !root.Equal(l2.Root()) {
		t.Errorf("SignRootCRL of the new root with its key online = %v", err)
	}
	if root, err := l2.SignRootCRL(rootKey, later); err != nil || !root.Equal(oldRoot) {
		t.Errorf("SignRootCRL with the old root's key = %v, want the old root's CRL signed", err)
	}
}
