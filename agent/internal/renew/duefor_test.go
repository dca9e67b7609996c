package renew

import (
	"crypto/x509"
	"testing"
	"time"
)

// DueFor's jitter is drawn once per certificate: the same certificate gives
// the same time in every process, different certificates spread out.
func TestDueFor(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	seen := map[time.Time]bool{}
	for i := 0; i < 50; i++ {
		c := cert(t0, 365*day)
		c.Raw = []byte{byte(i), byte(i >> 8), 7}
		j := CertJitter(c)
		if j < 0 || j >= 1 {
			t.Fatalf("CertJitter = %v, want [0,1)", j)
		}
		got := DueFor(c, 180*day)
		if again := DueFor(&x509.Certificate{Raw: c.Raw, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, 180*day); !again.Equal(got) {
			t.Fatalf("DueFor of the same certificate = %v then %v, want one time", got, again)
		}
		if want := Due(c, 180*day, j); !got.Equal(want) {
			t.Fatalf("DueFor = %v, want Due(cert, 180d, CertJitter) = %v", got, want)
		}
		if got.Before(t0.Add(167*day)) || got.After(t0.Add(185*day)) {
			t.Fatalf("DueFor = %v, want within 18 days before %v", got, t0.Add(185*day))
		}
		seen[got] = true
	}
	if len(seen) < 45 {
		t.Errorf("50 certificates got %d distinct renewal times, want them spread", len(seen))
	}
}
