package renew

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func cert(notBefore time.Time, life time.Duration) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(42), NotBefore: notBefore, NotAfter: notBefore.Add(life), Subject: pkix.Name{CommonName: "h"}}
}

func TestDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name        string
		life        time.Duration
		renewBefore time.Duration
		jitter      float64
		want        time.Time
	}{
		{"365d, 180d, no jitter", 365 * day, 180 * day, 0, t0.Add(185 * day)},
		{"365d, 180d, max jitter moves 18d earlier", 365 * day, 180 * day, 0.9999999, t0.Add(167*day + time.Duration(0.0000001*float64(18*day)))},
		{"365d, 30d, half jitter", 365 * day, 30 * day, 0.5, t0.Add(335*day - 36*time.Hour)},
		{"short cert: capped at mid-life", 10 * time.Minute, 180 * day, 0, t0.Add(5 * time.Minute)},
		{"bad jitter ignored", 365 * day, 180 * day, 7, t0.Add(185 * day)},
	} {
		got := Due(cert(t0, tc.life), tc.renewBefore, tc.jitter)
		if d := got.Sub(tc.want); d > time.Second || d < -time.Second {
			t.Errorf("Due(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := cert(t0, 100*time.Hour)
	due := t0.Add(50 * time.Hour)
	revoked := &x509.RevocationList{ThisUpdate: t0, NextUpdate: t0.Add(200 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(7)}, {SerialNumber: big.NewInt(42), RevocationTime: t0.Add(time.Hour)}}}
	clean := &x509.RevocationList{ThisUpdate: t0, NextUpdate: t0.Add(24 * time.Hour)}
	for _, tc := range []struct {
		name                       string
		crl                        *x509.RevocationList
		now                        time.Time
		revoked, expired, dueNow   bool
		crlKnown, crlStale, wantOK bool
	}{
		{"fresh, no crl", nil, t0.Add(time.Hour), false, false, false, false, false, true},
		{"fresh, clean crl", clean, t0.Add(time.Hour), false, false, false, true, false, true},
		{"due", clean, t0.Add(60 * time.Hour), false, false, true, true, true, true},
		{"expired", clean, t0.Add(100 * time.Hour), false, true, true, true, true, false},
		{"revoked", revoked, t0.Add(2 * time.Hour), true, false, false, true, false, false},
	} {
		r := Check(c, tc.crl, tc.now, due)
		if r.Revoked != tc.revoked || r.Expired != tc.expired || r.RenewalDue != tc.dueNow || r.CRLKnown != tc.crlKnown || r.CRLStale != tc.crlStale || r.OK() != tc.wantOK {
			t.Errorf("Check(%s) = %+v, want revoked=%t expired=%t due=%t crlKnown=%t crlStale=%t ok=%t",
				tc.name, r, tc.revoked, tc.expired, tc.dueNow, tc.crlKnown, tc.crlStale, tc.wantOK)
		}
	}
}
