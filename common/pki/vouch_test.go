package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

var vt0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

type vouchCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func vouchRoot(t *testing.T, cn string) vouchCA {
	t.Helper()
	key, _ := GenerateKey(ECDSAP256)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: vt0.Add(-time.Hour), NotAfter: vt0.Add(24 * 365 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return vouchCA{c, key}
}

// cross is subject's root certificate re-signed by signer.
func (signer vouchCA) cross(t *testing.T, subject vouchCA, isCA bool, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: subject.cert.Subject,
		NotBefore: vt0.Add(-time.Hour), NotAfter: notAfter,
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, subject.cert.PublicKey, signer.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestVouched(t *testing.T) {
	old, next, third, stranger := vouchRoot(t, "old"), vouchRoot(t, "next"), vouchRoot(t, "third"), vouchRoot(t, "stranger")
	year := vt0.Add(24 * 365 * time.Hour)
	oldSignsNext := old.cross(t, next, true, year)
	nextSignsThird := next.cross(t, third, true, year)
	strangerSignsNext := stranger.cross(t, next, true, year)
	notCA := old.cross(t, next, false, year)
	expired := old.cross(t, next, true, vt0.Add(-time.Minute))
	// A cross certificate of next's subject on another key (a forgery
	// attempt: the name matches, the key does not).
	impostor := vouchRoot(t, "next")
	oldSignsImpostorKey := old.cross(t, impostor, true, year)

	trusted := []*x509.Certificate{old.cert}
	for _, tc := range []struct {
		name    string
		offered []*x509.Certificate
		want    []*x509.Certificate
	}{
		{"vouched by the trusted root", []*x509.Certificate{next.cert, oldSignsNext}, []*x509.Certificate{next.cert}},
		{"no cross certificate", []*x509.Certificate{next.cert}, nil},
		{"cross certificate alone, no root", []*x509.Certificate{oldSignsNext}, nil},
		{"signed by an untrusted root", []*x509.Certificate{next.cert, strangerSignsNext, stranger.cert}, nil},
		{"cross certificate not a CA", []*x509.Certificate{next.cert, notCA}, nil},
		{"cross certificate expired", []*x509.Certificate{next.cert, expired}, nil},
		{"same name, other key", []*x509.Certificate{next.cert, oldSignsImpostorKey}, nil},
		{"a chain of rotations", []*x509.Certificate{third.cert, nextSignsThird, next.cert, oldSignsNext}, []*x509.Certificate{next.cert, third.cert}},
		{"already trusted", []*x509.Certificate{old.cert}, nil},
	} {
		got := Vouched(trusted, tc.offered, vt0)
		if len(got) != len(tc.want) {
			t.Errorf("Vouched(%s) = %d roots, want %d", tc.name, len(got), len(tc.want))
			continue
		}
		for _, w := range tc.want {
			found := false
			for _, g := range got {
				found = found || g.Equal(w)
			}
			if !found {
				t.Errorf("Vouched(%s) lacks %s", tc.name, w.Subject.CommonName)
			}
		}
	}
}

func TestKept(t *testing.T) {
	old, next, third := vouchRoot(t, "old"), vouchRoot(t, "next"), vouchRoot(t, "third")
	year := vt0.Add(24 * 365 * time.Hour)
	oldSignsNext := old.cross(t, next, true, year)
	issuing := next.cross(t, third, true, year) // any CA certificate that is not a root
	names := func(certs []*x509.Certificate) []string {
		var out []string
		for _, c := range certs {
			out = append(out, c.Subject.CommonName)
		}
		return out
	}
	o, n, th := old.cert, next.cert, third.cert
	for _, tc := range []struct {
		name                      string
		trusted, offered, anchors []*x509.Certificate
		want                      []string
	}{
		{"all listed", []*x509.Certificate{n, o}, []*x509.Certificate{n, o, oldSignsNext}, nil, []string{"next", "old"}},
		{"old retired", []*x509.Certificate{n, o}, []*x509.Certificate{n, oldSignsNext, issuing}, nil, []string{"next"}},
		{"old retired, order kept", []*x509.Certificate{o, th, n}, []*x509.Certificate{n, th}, nil, []string{"third", "next"}},
		{"old retired but the certificate chains to it", []*x509.Certificate{n, o}, []*x509.Certificate{n}, []*x509.Certificate{o}, []string{"next", "old"}},
		{"anchor not trusted changes nothing", []*x509.Certificate{n, o}, []*x509.Certificate{n}, []*x509.Certificate{th}, []string{"next"}},
		{"none of trusted listed: the last root stays", []*x509.Certificate{o}, []*x509.Certificate{n, oldSignsNext}, nil, []string{"old"}},
		{"none listed, several trusted: all stay", []*x509.Certificate{n, o}, []*x509.Certificate{th}, nil, []string{"next", "old"}},
		{"no root offered", []*x509.Certificate{n, o}, []*x509.Certificate{oldSignsNext, issuing}, nil, []string{"next", "old"}},
		{"nothing offered", []*x509.Certificate{n, o}, nil, nil, []string{"next", "old"}},
		{"a cross certificate of old is not old", []*x509.Certificate{n, th}, []*x509.Certificate{n, next.cross(t, third, true, year)}, nil, []string{"next"}},
	} {
		got := names(Kept(tc.trusted, tc.offered, tc.anchors))
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: Kept = %v, want %v", tc.name, got, tc.want)
		}
	}
}
