package renew

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"time"
)

// DueFor is when renewal of cert starts: Due with the certificate's own
// jitter. It is the one computation the renewal loop, status and self-check
// all use, so every process of the agent names the same time.
func DueFor(cert *x509.Certificate, renewBefore time.Duration) time.Time {
	return Due(cert, renewBefore, CertJitter(cert))
}

// CertJitter is the jitter of cert, in [0,1): drawn once per certificate
// from its signed bytes (a digest of them, so it is spread evenly across a
// fleet, since serials are random), and the same in every process.
func CertJitter(cert *x509.Certificate) float64 {
	sum := sha256.Sum256(cert.Raw)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}
