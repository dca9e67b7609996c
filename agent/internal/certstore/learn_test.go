package certstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/internal/pkitest"
)

// hostUnder is a host identity signed by ca.
func hostUnder(t *testing.T, ca *pkitest.CA) *Identity {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	c := ca.Sign(t, &x509.Certificate{SerialNumber: pkitest.Serial(t), Subject: pkix.Name{CommonName: "h"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key.Public())
	id, err := NewIdentity(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func fingerprints(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, pki.Fingerprint(c))
	}
	return out
}

// TestLearnDropsRetiredRoots: Learn adds a root a trusted root vouches
// for, and drops a root the primary's bundle no longer lists — but never
// the root this host's certificate chains to, and never the last root.
func TestLearnDropsRetiredRoots(t *testing.T) {
	r1, r2, stranger := pkitest.NewCA(t, "root 1"), pkitest.NewCA(t, "root 2"), pkitest.NewCA(t, "stranger")
	now := time.Now()
	cross := r1.Sign(t, &x509.Certificate{SerialNumber: pkitest.Serial(t), Subject: r2.Cert.Subject,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, r2.Cert.PublicKey)
	s, err := Open(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteCA([]*x509.Certificate{r1.Cert}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteIdentity(hostUnder(t, r1)); err != nil {
		t.Fatal(err)
	}
	want := func(step string, changed []*x509.Certificate, wantChanged bool, roots ...*pkitest.CA) {
		t.Helper()
		got, err := s.CA()
		if err != nil {
			t.Fatal(err)
		}
		var w []*x509.Certificate
		for _, r := range roots {
			w = append(w, r.Cert)
		}
		if g, ws := fingerprints(got), fingerprints(w); len(g) != len(ws) || (len(g) > 0 && g[0] != ws[0]) || (len(g) > 1 && g[1] != ws[1]) {
			t.Errorf("%s: trust store = %v, want %v", step, g, ws)
		}
		if (changed != nil) != wantChanged {
			t.Errorf("%s: Learn reported a change %v, want %v", step, changed != nil, wantChanged)
		}
	}
	learn := func(offered ...*x509.Certificate) []*x509.Certificate {
		t.Helper()
		all, err := s.Learn(offered, now)
		if err != nil {
			t.Fatal(err)
		}
		return all
	}

	want("rotated: r1 vouches for r2", learn(r2.Cert, r1.Cert, cross), true, r2, r1)
	want("same bundle again", learn(r2.Cert, r1.Cert, cross), false, r2, r1)
	want("r1 retired, but this host's certificate chains to r1", learn(r2.Cert, cross), false, r2, r1)
	if err := s.WriteIdentity(hostUnder(t, r2)); err != nil {
		t.Fatal(err)
	}
	want("r1 retired, the certificate is under r2", learn(r2.Cert, cross), true, r2)
	want("a bundle listing no trusted root drops nothing", learn(stranger.Cert), false, r2)
	want("an empty bundle drops nothing", learn(), false, r2)
}
