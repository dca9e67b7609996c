package certstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

func selfSigned(t *testing.T) *Identity {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "h"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	id, err := NewIdentity(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentityRoundTrip(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Identity(); err != ErrNoIdentity {
		t.Fatalf("Identity() on an empty store = %v, want ErrNoIdentity", err)
	}
	a, b := selfSigned(t), selfSigned(t)
	for _, id := range []*Identity{a, b} {
		if err := s.WriteIdentity(id); err != nil {
			t.Fatal(err)
		}
		got, err := s.Identity()
		if err != nil || !got.Cert.Equal(id.Cert) {
			t.Fatalf("Identity() = %v, %v, want the written certificate", got, err)
		}
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(s.Path(IdentityFile))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode of %s = %v, want 0600", IdentityFile, fi.Mode().Perm())
		}
		di, _ := os.Stat(s.Dir())
		if di.Mode().Perm() != 0o700 {
			t.Errorf("mode of the data directory = %v, want 0700", di.Mode().Perm())
		}
	}
	// A crash mid-write leaves a temp file next to host.pem: the identity stays the last complete one.
	os.WriteFile(filepath.Join(s.Dir(), "."+IdentityFile+".tmp-123"), []byte("-----BEGIN CERT"), 0o600)
	if got, err := s.Identity(); err != nil || !got.Cert.Equal(b.Cert) {
		t.Errorf("Identity() with a torn temp file = %v, want the last written", err)
	}
}

func TestNewIdentityMismatch(t *testing.T) {
	a, b := selfSigned(t), selfSigned(t)
	if _, err := NewIdentity(a.Cert, b.Key); err == nil {
		t.Errorf("NewIdentity(cert A, key B) = nil error, want a mismatch")
	}
}

func TestCAAndState(t *testing.T) {
	s, _ := Open(t.TempDir())
	if _, err := s.CA(); err != ErrNoTrust {
		t.Errorf("CA() on an empty store = %v, want ErrNoTrust", err)
	}
	id := selfSigned(t)
	if err := s.WriteCA([]*x509.Certificate{id.Cert}); err != nil {
		t.Fatal(err)
	}
	cas, err := s.CA()
	if err != nil || pki.Fingerprint(cas[0]) != pki.Fingerprint(id.Cert) {
		t.Errorf("CA() = %v, %v, want the written CA", cas, err)
	}
	st, err := s.UpdateState(func(st *State) { st.HostID = "abc"; st.CRLRefreshSeconds = 60 })
	if err != nil || st.CRLInterval() != time.Minute {
		t.Fatalf("UpdateState = %+v, %v", st, err)
	}
	got, _ := s.State()
	if got.HostID != "abc" {
		t.Errorf("State().HostID = %q, want abc", got.HostID)
	}
	if (State{}).CRLInterval() != 4*time.Hour {
		t.Errorf("zero State.CRLInterval() = %v, want the default level's 4h", (State{}).CRLInterval())
	}
}
