// Package storebench gives the scale benchmarks (make bench) a store of a
// synthetic fleet without paying for its seeding in every benchmark: the
// first caller of a run seeds a SQLite database into a cache directory
// under the system's temporary directory, and every caller gets a copy.
package storebench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// Million is the fleet of issue 10's scale targets: 1,000,000 registered
// hosts with a host ID and a certificate each, 100,000 of them revoked.
var Million = store.Fleet{Hosts: 1_000_000, Certs: 1_000_000, Revoked: 100_000}

// CacheDir is where seeded databases are kept between benchmarks
// ($HOSTCERT_BENCH_CACHE, else hostcert-bench in the temporary directory).
func CacheDir() string {
	if d := os.Getenv("HOSTCERT_BENCH_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "hostcert-bench")
}

// CopyTo writes a SQLite database holding f (f.DER is filled in when empty)
// to dst, an absent file, seeding it into the cache first when the cache
// has none. It returns how long seeding took (0 when cached).
func CopyTo(ctx context.Context, dst string, f store.Fleet) (seeded time.Duration, err error) {
	if len(f.DER) == 0 {
		if f.DER, err = HostCertDER(); err != nil {
			return 0, err
		}
	}
	dir := CacheDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("bench cache: %w", err)
	}
	// The schema version is part of the name: a cache seeded by an older
	// schema is not reused.
	cached := filepath.Join(dir, fmt.Sprintf("fleet-h%d-c%d-r%d-v%d.db", f.Hosts, f.Certs, f.Revoked, store.SchemaVersion()))
	if _, err := os.Stat(cached); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := seed(ctx, cached, f); err != nil {
			return 0, err
		}
		seeded = time.Since(start)
	}
	return seeded, copyFile(cached, dst)
}

// seed seeds f into a fresh database and renames it to path once complete.
func seed(ctx context.Context, path string, f store.Fleet) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	s, err := store.Open(ctx, tmp)
	if err != nil {
		return fmt.Errorf("bench cache: %w", err)
	}
	if err := s.Seed(ctx, f); err != nil {
		s.Close()
		return fmt.Errorf("bench cache: %w", err)
	}
	// Close checkpoints the WAL into the file: the copy is one file.
	if err := s.Close(); err != nil {
		return fmt.Errorf("bench cache: %w", err)
	}
	for _, sfx := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(tmp + sfx); err == nil {
			return fmt.Errorf("bench cache: %s%s left after close", tmp, sfx)
		}
	}
	return os.Rename(tmp, path)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy seeded store: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy seeded store: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy seeded store: %w", err)
	}
	return out.Close()
}

// HostCertDER is a real P-256 host certificate of typical size, for the
// seeded rows. It carries no authority key identifier, so that a CRL lists
// its serials whichever CA signs the CRL (as it does a certificate of an
// older single-CA primary).
func HostCertDER() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "host-0000000.fleet.example"},
		DNSNames:     []string{"host-0000000.fleet.example"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	// A parent without a subject key identifier: no AKI in the child.
	parent := &x509.Certificate{Subject: pkix.Name{CommonName: "hostcert bench issuing CA"}}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, key)
}
