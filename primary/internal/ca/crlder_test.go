package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"runtime"
	"testing"
	"time"
)

// x509CRL is what x509.CreateRevocationList makes of the same input.
func x509CRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, entries []RevokedEntry, number *big.Int, this, next time.Time) []byte {
	t.Helper()
	list := make([]x509.RevocationListEntry, 0, len(entries))
	for _, e := range entries {
		list = append(list, x509.RevocationListEntry{SerialNumber: e.Serial, RevocationTime: e.RevokedAt, ReasonCode: e.Reason})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: number, ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: list}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crlEntries are n entries with every reason, serials of every length up
// to 20 bytes (the top bit set too) and times with sub-seconds, in another
// zone, and on both sides of 2050 (UTCTime / GeneralizedTime).
func crlEntries(n int) []RevokedEntry {
	zone := time.FixedZone("x", 5*3600+1800)
	times := []time.Time{t0, t0.Add(123456789 * time.Nanosecond).In(zone), time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)}
	reasons := []int{0, 1, 2, 3, 4, 5, 6, 8, 9, 10}
	out := make([]RevokedEntry, n)
	for i := range out {
		serial := new(big.Int).Lsh(big.NewInt(int64(i+1)), uint(i%152))
		out[i] = RevokedEntry{Serial: serial, RevokedAt: times[i%len(times)], Reason: reasons[i%len(reasons)]}
	}
	return out
}

// TestCRLEncodingMatchesX509: the TBSCertList the primary encodes is
// byte for byte x509.CreateRevocationList's, for the issuing CA (P-256) and
// the root (P-384), with no entries and with many kinds of entry; the CRL
// parses and its signature verifies.
func TestCRLEncodingMatchesX509(t *testing.T) {
	c, _ := newCA(t, InitOptions{})
	signers := map[string]struct {
		cert *x509.Certificate
		key  *ecdsa.PrivateKey
	}{
		"issuing P-256": {c.Certificate(), c.signerKey().(*ecdsa.PrivateKey)},
		"root P-384":    {c.Root(), c.rootKey.(*ecdsa.PrivateKey)},
	}
	numbers := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(1796535317072), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))}
	for name, s := range signers {
		for _, n := range []int{0, 1, 7, 300} {
			for _, number := range numbers {
				entries := crlEntries(n)
				this, next := t0.Add(1500*time.Millisecond), t0.Add(7*24*time.Hour)
				got, err := signCRLECDSA(s.cert, s.key, entries, number, this, next)
				if err != nil {
					t.Fatalf("%s, %d entries, number %s: %v", name, n, number, err)
				}
				want := x509CRL(t, s.cert, s.key, entries, number, this, next)
				gotCRL, err := x509.ParseRevocationList(got)
				if err != nil {
					t.Fatalf("%s, %d entries: ParseRevocationList: %v", name, n, err)
				}
				wantCRL, _ := x509.ParseRevocationList(want)
				if !bytes.Equal(gotCRL.RawTBSRevocationList, wantCRL.RawTBSRevocationList) {
					t.Errorf("%s, %d entries, number %s: TBSCertList differs from x509's", name, n, number)
				}
				if err := gotCRL.CheckSignatureFrom(s.cert); err != nil {
					t.Errorf("%s, %d entries: signature: %v", name, n, err)
				}
				if len(gotCRL.RevokedCertificateEntries) != n || gotCRL.Number.Cmp(number) != 0 {
					t.Errorf("%s: %d entries, number %s; want %d, %s", name, len(gotCRL.RevokedCertificateEntries), gotCRL.Number, n, number)
				}
			}
		}
	}
	if _, err := signCRLECDSA(c.Certificate(), c.signerKey().(*ecdsa.PrivateKey), nil, new(big.Int).Lsh(big.NewInt(1), 160), t0, t0.Add(time.Hour)); err == nil {
		t.Error("a CRL number of 21 octets was accepted")
	}
	if _, err := signCRLECDSA(c.Certificate(), c.signerKey().(*ecdsa.PrivateKey), nil, big.NewInt(1), t0, t0.Add(-time.Hour)); err == nil {
		t.Error("next update before this update was accepted")
	}
}

// BenchmarkSignCRL100k: the CRL of 100,000 revoked certificates, signed by
// the issuing CA, directly and through x509.CreateRevocationList; peak_MB
// is the most heap in use while it is signed.
func BenchmarkSignCRL100k(b *testing.B) {
	c, _ := newCA(b, InitOptions{})
	key := c.signerKey().(*ecdsa.PrivateKey)
	entries := make([]RevokedEntry, 100_000)
	for i := range entries {
		s, _ := NewSerial()
		entries[i] = RevokedEntry{Serial: s, RevokedAt: t0.Add(time.Duration(i) * time.Second), Reason: i % 6}
	}
	number := big.NewInt(42)
	for _, way := range []string{"direct", "x509"} {
		b.Run(way, func(b *testing.B) {
			var peak uint64
			for range b.N {
				done := make(chan struct{})
				sampled := make(chan uint64)
				go func() { // sample the heap while the CRL is signed
					var ms runtime.MemStats
					var most uint64
					tick := time.NewTicker(2 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-done:
							sampled <- most
							return
						case <-tick.C:
							runtime.ReadMemStats(&ms)
							most = max(most, ms.HeapAlloc)
						}
					}
				}()
				runtime.GC()
				var err error
				if way == "direct" {
					_, err = signCRLECDSA(c.Certificate(), key, entries, number, t0, t0.Add(time.Hour))
				} else {
					_ = x509CRL(b, c.Certificate(), key, entries, number, t0, t0.Add(time.Hour))
				}
				close(done)
				peak = max(peak, <-sampled)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak_MB")
		})
	}
}

// FuzzCRLEncoding: for any serial, revocation time and reason the direct
// encoder's TBSCertList is x509.CreateRevocationList's.
func FuzzCRLEncoding(f *testing.F) {
	f.Add([]byte{1}, int64(0), uint8(1), uint64(7))
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, int64(2524608000), uint8(10), uint64(1<<63))
	f.Add([]byte{0xff}, int64(-631152000), uint8(0), uint64(0))
	c, _ := newCA(f, InitOptions{})
	key := c.signerKey().(*ecdsa.PrivateKey)
	f.Fuzz(func(t *testing.T, serial []byte, unix int64, reason uint8, number uint64) {
		s := new(big.Int).SetBytes(serial)
		if s.Sign() == 0 || len(serial) > 40 {
			return
		}
		at := time.Unix(unix%(400*365*86400), int64(reason)*1e6)
		if at.Year() < 1 || at.Year() > 9999 {
			return
		}
		r := int(reason % 11)
		if r == 7 {
			r = 0
		}
		entries := []RevokedEntry{{Serial: s, RevokedAt: at, Reason: r}, {Serial: big.NewInt(1), RevokedAt: t0, Reason: 1}}
		n := new(big.Int).SetUint64(number)
		got, err := signCRLECDSA(c.Certificate(), key, entries, n, t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatalf("signCRLECDSA(serial %x, %v, reason %d, number %d): %v", serial, at, r, number, err)
		}
		want := x509CRL(t, c.Certificate(), key, entries, n, t0, t0.Add(time.Hour))
		g, err := x509.ParseRevocationList(got)
		if err != nil {
			t.Fatalf("ParseRevocationList of the direct CRL: %v", err)
		}
		w, _ := x509.ParseRevocationList(want)
		if !bytes.Equal(g.RawTBSRevocationList, w.RawTBSRevocationList) {
			t.Fatalf("serial %x, %v, reason %d, number %d: TBSCertList differs from x509's", serial, at, r, number)
		}
	})
}
