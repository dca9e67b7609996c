package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/pki"
)

// issueHost signs a host certificate with c's current issuing CA.
func issueHost(t testing.TB, c *CA, name string, now time.Time) *x509.Certificate {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	serial, _ := NewSerial()
	tmpl, err := Template(HostCertRequest{HostID: uuid.NewString(), Names: []string{name}, PublicKey: key.Public(), Serial: serial}, c.Certificate(), now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.Sign(tmpl, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// verifies reports whether leaf chains to roots through the CA's issuing CAs.
func verifies(leaf *x509.Certificate, roots []*x509.Certificate, inter []*x509.Certificate, at time.Time) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, i := range inter {
		ip.AddCert(i)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// TestOfflineRoot: with RootKeyOut the root's key is written there and not
// into the data directory; the loaded CA still issues; an operation that
// needs the root's key refuses without it and works with it given.
func TestOfflineRoot(t *testing.T) {
	out := filepath.Join(t.TempDir(), "offline-root-key.pem")
	c, dir := newCA(t, InitOptions{RootKeyOut: out})
	if _, err := os.Stat(RootKeyPath(dir, ID(c.Root()))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("root key in the data directory: %v, want none", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := pki.ParseKey(b)
	if err != nil || !samePublicKey(c.Root().PublicKey, rootKey.Public()) {
		t.Fatalf("offline key is not the root's: %v", err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.RootKeyOnline() {
		t.Error("RootKeyOnline() = true with the key offline")
	}
	host := issueHost(t, l, "web1.example.com", t0)
	if err := verifies(host, l.Bundle(), l.Issuing(), t0); err != nil {
		t.Errorf("host certificate from a CA whose root is offline does not verify: %v", err)
	}
	if _, err := l.RotateIssuing(RotateOptions{}, t0); !errors.Is(err, ErrRootKeyOffline) {
		t.Errorf("RotateIssuing without the root key = %v, want ErrRootKeyOffline", err)
	}
	other, _ := pki.GenerateKey(pki.ECDSAP384)
	if _, err := l.RotateIssuing(RotateOptions{RootKey: other}, t0); err == nil {
		t.Error("RotateIssuing with another key succeeded")
	}
	if _, err := l.RotateIssuing(RotateOptions{RootKey: rootKey}, t0); err != nil {
		t.Errorf("RotateIssuing with the offline key given: %v", err)
	}
	if _, err := os.Stat(RootKeyPath(dir, ID(c.Root()))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the root key given for a rotation was written into the data directory (%v)", err)
	}
}

// TestSingleCA: a data directory made by the single-CA init of older
// versions loads as a root that also issues; rotating an issuing CA under
// it is refused (path length 0), rotating the root creates the hierarchy
// and keeps the single CA's certificates valid with their CRL.
func TestSingleCA(t *testing.T) {
	c, dir := newSingleCA(t)
	if !c.Single() || !c.Root().Equal(c.Certificate()) {
		t.Fatal("a single CA does not load as a root that issues")
	}
	if got, err := pki.ParseCerts(c.BundlePEM()); err != nil || len(got) != 1 {
		t.Errorf("single CA BundlePEM = %d certificates, want 1", len(got))
	}
	single := c.Root()
	old := issueHost(t, c, "old.example.com", t0)
	if err := verifies(old, c.Bundle(), nil, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateIssuing(RotateOptions{}, t0); !errors.Is(err, ErrSingleCA) {
		t.Errorf("RotateIssuing on a single CA = %v, want ErrSingleCA", err)
	}
	now := t0.Add(time.Hour)
	newRoot, err := c.RotateRoot(RotateOptions{}, now)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Single() || !l.Root().Equal(newRoot) || len(l.Bundle()) != 2 || len(l.Issuing()) != 2 {
		t.Fatalf("after rotate --root: single %v, %d roots, %d issuing CAs", l.Single(), len(l.Bundle()), len(l.Issuing()))
	}
	if err := verifies(old, l.Bundle(), l.Issuing(), now); err != nil {
		t.Errorf("the single CA's certificate no longer verifies: %v", err)
	}
	// Hosts trusting only the single CA (path length 0: no chain through a
	// cross certificate) keep verifying the primary until it is retired.
	for name, x := range map[string]*CA{"rotated": c, "loaded": l} {
		leaf := x.ServerTLS().Leaf
		rp := x509.NewCertPool()
		rp.AddCert(single)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: rp, DNSName: "primary.example.com", CurrentTime: now}); err != nil {
			t.Errorf("%s: the primary's TLS certificate does not verify for a host trusting only the single CA: %v", name, err)
		}
	}
	crls, err := l.CRLs([]RevokedEntry{{Serial: old.SerialNumber, RevokedAt: now, Issuer: old.AuthorityKeyId}}, big.NewInt(9), now, 0)
	if err != nil || len(crls) != 2 {
		t.Fatalf("CRLs = %d, %v, want 2", len(crls), err)
	}
	for _, s := range crls {
		l, _ := x509.ParseRevocationList(s.DER)
		listed := len(l.RevokedCertificateEntries) == 1
		if want := s.Issuer.Equal(single); listed != want {
			t.Errorf("CRL of %s lists the single CA's certificate: %v, want %v", s.Issuer.Subject, listed, want)
		}
	}
	if _, err := l.RetireRoot(pki.Fingerprint(single)); err != nil {
		t.Fatal(err)
	}
	if err := l.ServerTLS().Leaf.CheckSignatureFrom(l.Certificate()); err != nil {
		t.Errorf("after retiring the single CA the primary's certificate is not from the current issuing CA: %v", err)
	}
}

// TestRotateIssuing: a new issuing CA under the same root signs from now
// on; the old one's certificates stay valid, both CRLs are signed, each
// listing only its own certificates; the primary's TLS certificate comes
// from the new CA; Load sees the same order.
func TestRotateIssuing(t *testing.T) {
	c, dir := newCA(t, InitOptions{})
	oldIss := c.Certificate()
	old := issueHost(t, c, "old.example.com", t0)
	now := t0.Add(24 * time.Hour)
	newIss, err := c.RotateIssuing(RotateOptions{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Certificate().Equal(newIss) || newIss.Equal(oldIss) || newIss.CheckSignatureFrom(c.Root()) != nil {
		t.Fatal("the new issuing CA is not current or not under the root")
	}
	if err := c.ServerTLS().Leaf.CheckSignatureFrom(newIss); err != nil {
		t.Errorf("the primary's TLS certificate is not from the new issuing CA: %v", err)
	}
	fresh := issueHost(t, c, "new.example.com", now)
	if err := fresh.CheckSignatureFrom(newIss); err != nil {
		t.Errorf("a new certificate is not signed by the new issuing CA: %v", err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if iss := l.Issuing(); len(iss) != 2 || !iss[0].Equal(newIss) || !iss[1].Equal(oldIss) {
		t.Fatalf("Load after rotate: %d issuing CAs, want new then old", len(iss))
	}
	for _, h := range []*x509.Certificate{old, fresh} {
		if err := verifies(h, l.Bundle(), l.Issuing(), now); err != nil {
			t.Errorf("%s does not verify after the rotation: %v", h.DNSNames, err)
		}
	}
	entries := []RevokedEntry{
		{Serial: old.SerialNumber, RevokedAt: now, Issuer: old.AuthorityKeyId},
		{Serial: fresh.SerialNumber, RevokedAt: now, Issuer: fresh.AuthorityKeyId},
	}
	crls, err := l.CRLs(entries, big.NewInt(2), now, 0)
	if err != nil || len(crls) != 2 {
		t.Fatalf("CRLs = %d, %v", len(crls), err)
	}
	for i, want := range []*x509.Certificate{fresh, old} {
		list, _ := x509.ParseRevocationList(crls[i].DER)
		if list.CheckSignatureFrom(crls[i].Issuer) != nil || len(list.RevokedCertificateEntries) != 1 ||
			list.RevokedCertificateEntries[0].SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Errorf("CRL %d (%s) does not list exactly its own certificate", i, crls[i].Issuer.Subject)
		}
	}
	// Once the old issuing CA has expired, its CRL is no longer signed.
	if crls, _ := l.CRLs(nil, big.NewInt(3), oldIss.NotAfter.Add(time.Hour), 0); len(crls) != 1 {
		t.Errorf("CRLs after the old issuing CA expired = %d, want 1", len(crls))
	}
}

// TestRotateRoot: a new root cross-signed by the old one, a new issuing CA
// under it; both roots trusted and served; the old root's certificates
// still verify; RetireRoot refuses the current root and drops the old one.
func TestRotateRoot(t *testing.T) {
	c, dir := newCA(t, InitOptions{})
	oldRoot := c.Root()
	old := issueHost(t, c, "old.example.com", t0)
	now := t0.Add(24 * time.Hour)
	newRoot, err := c.RotateRoot(RotateOptions{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fingerprint() != pki.Fingerprint(newRoot) {
		t.Error("Fingerprint() is not the new root's")
	}
	cross := c.Cross()
	if len(cross) != 1 || cross[0].CheckSignatureFrom(oldRoot) != nil || !samePublicKey(cross[0].PublicKey, newRoot.PublicKey) ||
		cross[0].Subject.String() != newRoot.Subject.String() {
		t.Fatal("no cross certificate of the new root signed by the old one")
	}
	fresh := issueHost(t, c, "new.example.com", now)
	// A host trusting only the old root verifies the new chain through the cross certificate.
	if err := verifies(fresh, []*x509.Certificate{oldRoot}, append(c.Issuing(), cross...), now); err != nil {
		t.Errorf("new certificate does not verify for a host trusting the old root, through the cross certificate: %v", err)
	}
	if err := verifies(fresh, []*x509.Certificate{newRoot}, c.Issuing(), now); err != nil {
		t.Errorf("new certificate does not verify under the new root: %v", err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b := l.Bundle(); len(b) != 2 || !b[0].Equal(newRoot) || !b[1].Equal(oldRoot) || !l.RootKeyOnline() {
		t.Fatalf("Load after rotate --root: %d roots, want new then old, key online", len(b))
	}
	if rc, err := l.RootCRLs(); err != nil || len(rc) != 2 {
		t.Errorf("RootCRLs after rotate --root = %d, %v, want one per root", len(rc), err)
	}
	if !l.UnderRoot(old, oldRoot) || l.UnderRoot(old, newRoot) || !l.UnderRoot(fresh, newRoot) || l.UnderRoot(fresh, oldRoot) {
		t.Error("UnderRoot does not tell the two hierarchies apart")
	}
	if _, err := l.RetireRoot(pki.Fingerprint(newRoot)); !errors.Is(err, ErrCurrentRoot) {
		t.Errorf("RetireRoot(current) = %v, want ErrCurrentRoot", err)
	}
	if _, err := l.RetireRoot(pki.Fingerprint(oldRoot)); err != nil {
		t.Fatal(err)
	}
	l2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b := l2.Bundle(); len(b) != 1 || !b[0].Equal(newRoot) || len(l2.Issuing()) != 1 {
		t.Errorf("after RetireRoot: %d roots, %d issuing CAs, want 1 and 1", len(b), len(l2.Issuing()))
	}
	if _, err := os.Stat(RootKeyPath(dir, ID(oldRoot))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the retired root's key is still in the data directory (%v)", err)
	}
}

// TestBundleFile: ca/ca.pem is what GET /v1/ca serves, the root first,
// after init, after each rotation and at every load; a directory made by an
// older init keeps its single CA in ca.pem until its root is retired.
func TestBundleFile(t *testing.T) {
	check := func(c *CA, dir, when string) {
		t.Helper()
		b, err := os.ReadFile(CertPath(dir))
		if err != nil || !bytes.Equal(b, c.BundlePEM()) {
			t.Fatalf("%s: ca/ca.pem = %d bytes (%v), want the %d-byte bundle", when, len(b), err, len(c.BundlePEM()))
		}
		certs, err := pki.ParseCerts(b)
		if err != nil || !certs[0].Equal(c.Root()) {
			t.Fatalf("%s: first certificate of ca/ca.pem is not the current root (%v)", when, err)
		}
	}
	c, dir := newCA(t, InitOptions{})
	check(c, dir, "after init")
	now := t0.Add(time.Hour)
	if _, err := c.RotateIssuing(RotateOptions{}, now); err != nil {
		t.Fatal(err)
	}
	check(c, dir, "after ca rotate")
	if _, err := c.RotateRoot(RotateOptions{}, now); err != nil {
		t.Fatal(err)
	}
	check(c, dir, "after ca rotate --root")
	if err := os.Remove(CertPath(dir)); err != nil {
		t.Fatal(err)
	}
	c2, err := Load(dir)
	if err != nil {
		t.Fatalf("Load without ca/ca.pem: %v", err)
	}
	check(c2, dir, "after Load without it")

	s, sdir := newSingleCA(t)
	single, _ := os.ReadFile(CertPath(sdir))
	if _, err := s.RotateRoot(RotateOptions{}, now); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(CertPath(sdir)); !bytes.Equal(b, single) {
		t.Fatal("ca rotate --root of a single CA rewrote its ca/ca.pem")
	}
	if _, err := Load(sdir); err != nil {
		t.Fatalf("Load of a single CA after ca rotate --root: %v", err)
	}
	if _, err := s.RetireRoot(pki.Fingerprint(s.Bundle()[1])); err != nil {
		t.Fatalf("retire the single CA's root: %v", err)
	}
	check(s, sdir, "after retiring the single CA")
	if _, err := Load(sdir); err != nil {
		t.Fatalf("Load after retiring the single CA: %v", err)
	}
}
