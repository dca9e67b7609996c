package health

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) issue(t *testing.T, serial int64, notBefore time.Time, life time.Duration) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "host"},
		NotBefore: notBefore, NotAfter: notBefore.Add(life), DNSNames: []string{"web01.example.com"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func (ca testCA) crl(t *testing.T, next time.Time, revoked ...int64) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: t0.Add(-time.Hour), NextUpdate: next}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: t0.Add(-30 * time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := x509.ParseRevocationList(der)
	return l
}

func TestCheck(t *testing.T) {
	day := 24 * time.Hour
	ca, other := newCA(t, "trusted CA"), newCA(t, "other CA")
	trusted := []*x509.Certificate{ca.cert}
	cert := ca.issue(t, 42, t0.Add(-day), 365*day)
	foreign := other.issue(t, 42, t0.Add(-day), 365*day)
	old := ca.issue(t, 42, t0.Add(-300*day), 365*day) // renewal due (180d before expiry)
	expired := ca.issue(t, 42, t0.Add(-400*day), 365*day)
	future := ca.issue(t, 42, t0.Add(2*day), 365*day)
	fresh := ca.crl(t, t0.Add(7*day))
	listed := ca.crl(t, t0.Add(7*day), 7, 42)
	stale := ca.crl(t, t0.Add(-time.Minute))
	staleListed := ca.crl(t, t0.Add(-time.Minute), 42)
	otherCRL := other.crl(t, t0.Add(7*day), 42)

	for _, tc := range []struct {
		name       string
		in         Input
		want       Verdict
		reasonHas  string
		revoked    bool
		renewalDue bool
	}{
		{"good", Input{Cert: cert, CAs: trusted, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Good, "ok", false, false},
		{"good, renewal due", Input{Cert: old, CAs: trusted, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Good, "renewal due", false, true},
		{"no certificate", Input{Cert: nil, CAs: trusted, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Unknown, "run get-cert", false, false},
		{"no CRL", Input{Cert: cert, CAs: trusted, CRL: nil, Now: t0, RenewBefore: 180 * day}, Unknown, "no CRL", false, false},
		{"CRL past its next update", Input{Cert: cert, CAs: trusted, CRL: stale, Now: t0, RenewBefore: 180 * day}, Unknown, "past its next update", false, false},
		{"CRL not signed by the trusted CA", Input{Cert: cert, CAs: trusted, CRL: otherCRL, Now: t0, RenewBefore: 180 * day}, Unknown, "not signed by the trusted CA", false, false},
		{"no trust store", Input{Cert: cert, CAs: nil, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Unknown, "get-ca-cert", false, false},
		{"revoked", Input{Cert: cert, CAs: trusted, CRL: listed, Now: t0, RenewBefore: 180 * day}, Bad, "REVOKED", true, false},
		{"revoked on a stale CRL", Input{Cert: cert, CAs: trusted, CRL: staleListed, Now: t0, RenewBefore: 180 * day}, Bad, "REVOKED", true, false},
		{"expired", Input{Cert: expired, CAs: trusted, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Bad, "expired", false, true},
		{"expired, no CRL", Input{Cert: expired, CAs: trusted, CRL: nil, Now: t0, RenewBefore: 180 * day}, Bad, "expired", false, true},
		{"not yet valid", Input{Cert: future, CAs: trusted, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Bad, "clock", false, false},
		{"does not chain to the trusted CA", Input{Cert: foreign, CAs: trusted, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Bad, "does not chain to the trusted CA", false, false},
		{"does not chain, no CRL", Input{Cert: foreign, CAs: trusted, CRL: nil, Now: t0, RenewBefore: 180 * day}, Bad, "does not chain", false, false},
		{"issued by the second CA of the trust store", Input{Cert: foreign, CAs: []*x509.Certificate{ca.cert, other.cert}, CRL: fresh, Now: t0, RenewBefore: 180 * day}, Good, "ok", false, false},
	} {
		r := Check(tc.in)
		if r.Verdict != tc.want || r.ExitCode != tc.want.ExitCode() || !strings.Contains(r.Reason, tc.reasonHas) ||
			r.Revoked != tc.revoked || (tc.in.Cert != nil && r.RenewalDue != tc.renewalDue) {
			t.Errorf("Check(%s) = %s (exit %d, %q, revoked %t, renewal due %t), want %s (exit %d, reason with %q, revoked %t, renewal due %t)",
				tc.name, r.Verdict, r.ExitCode, r.Reason, r.Revoked, r.RenewalDue, tc.want, tc.want.ExitCode(), tc.reasonHas, tc.revoked, tc.renewalDue)
		}
		if strings.Contains(r.Reason, "\n") {
			t.Errorf("Check(%s).Reason = %q, want one line", tc.name, r.Reason)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for v, want := range map[Verdict]int{Good: 0, Unknown: 1, Bad: 2} {
		if got := v.ExitCode(); got != want {
			t.Errorf("%q.ExitCode() = %d, want %d", v, got, want)
		}
	}
}

// subCA is an issuing CA (serial 9) signed by root.
func (ca testCA) subCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: cn},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

// TestCheckHierarchy: a certificate from an issuing CA under the trusted
// root is good only with the issuing CA stored beside it, the issuing CA's
// CRL, and a current root CRL that does not list the issuing CA.
func TestCheckHierarchy(t *testing.T) {
	day := 24 * time.Hour
	root, other := newCA(t, "root"), newCA(t, "other root")
	iss := root.subCA(t, "issuing")
	foreignIss := other.subCA(t, "foreign issuing")
	roots := []*x509.Certificate{root.cert}
	chain := []*x509.Certificate{iss.cert}
	cert := iss.issue(t, 42, t0.Add(-day), 365*day)
	issCRL := iss.crl(t, t0.Add(7*day))
	issListed := iss.crl(t, t0.Add(7*day), 42)
	rootCRL := root.crl(t, t0.Add(300*day))
	rootListed := root.crl(t, t0.Add(300*day), 9)
	rootStale := root.crl(t, t0.Add(-time.Minute))
	foreignCRL := foreignIss.crl(t, t0.Add(7*day))
	in := func(f func(*Input)) Input {
		i := Input{Cert: cert, Chain: chain, CAs: roots, CRL: issCRL, RootCRL: rootCRL, Now: t0, RenewBefore: 180 * day}
		f(&i)
		return i
	}
	for _, tc := range []struct {
		name      string
		in        Input
		want      Verdict
		reasonHas string
	}{
		{"good", in(func(*Input) {}), Good, "ok"},
		{"no issuing CA stored", in(func(i *Input) { i.Chain = nil }), Bad, "does not chain"},
		{"issuing CA under another root", in(func(i *Input) { i.Chain = []*x509.Certificate{foreignIss.cert} }), Bad, "does not chain"},
		{"revoked on the issuing CA's CRL", in(func(i *Input) { i.CRL = issListed }), Bad, "REVOKED"},
		{"CRL signed by an issuing CA under another root", in(func(i *Input) { i.CRL = foreignCRL }), Unknown, "not signed by the trusted CA"},
		{"issuing CA revoked by the root", in(func(i *Input) { i.RootCRL = rootListed }), Bad, "issuing CA"},
		{"no root CRL", in(func(i *Input) { i.RootCRL = nil }), Unknown, "CRL of the root"},
		{"root CRL past its next update", in(func(i *Input) { i.RootCRL = rootStale }), Unknown, "CRL of the root"},
		{"root CRL from another root", in(func(i *Input) { i.RootCRL = other.crl(t, t0.Add(300*day)) }), Unknown, "CRL of the root"},
	} {
		r := Check(tc.in)
		if r.Verdict != tc.want || !strings.Contains(r.Reason, tc.reasonHas) {
			t.Errorf("Check(%s) = %s (%q), want %s (reason with %q)", tc.name, r.Verdict, r.Reason, tc.want, tc.reasonHas)
		}
	}
}
