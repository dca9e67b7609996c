package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/pgtest"
)

// testCA is a throwaway CA for the PostgreSQL server's TLS certificate.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pg test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a server certificate and key (PEM) for dns names and IPs.
func (ca testCA) issue(t *testing.T, dns []string, ips []net.IP) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "postgres"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestPostgresVerifyFull: sslmode=verify-full in the DSN reaches pgx: the
// store connects over TLS to a server whose certificate the given root
// signed for the dialled name, and refuses a server it cannot verify (a
// foreign root, or a certificate for another name).
func TestPostgresVerifyFull(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	plain := c.CreateDatabase(t, "tls")
	ca := newTestCA(t)
	crt, key := ca.issue(t, []string{"db.hostcert.test"}, []net.IP{net.ParseIP("127.0.0.1")})
	c.EnableTLS(t, crt, key)

	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(other, newTestCA(t).pem, 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := func(host, rootFile string) string {
		d := strings.Replace(plain, "sslmode=disable", "sslmode=verify-full&sslrootcert="+rootFile, 1)
		return strings.Replace(d, "@127.0.0.1:", "@"+host+":", 1)
	}

	s, err := OpenPostgres(ctx, dsn("127.0.0.1", root))
	if err != nil {
		t.Fatalf("OpenPostgres with verify-full and the right root: %v", err)
	}
	defer s.Close()
	var ssl bool
	if err := s.rdb.QueryRowContext(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("connection uses TLS = %v, %v, want true", ssl, err)
	}
	if err := s.AppendAudit(ctx, Audit{Action: "tls"}); err != nil {
		t.Errorf("write over TLS: %v", err)
	}

	if s, err := OpenPostgres(ctx, dsn("127.0.0.1", other)); err == nil {
		s.Close()
		t.Error("OpenPostgres with verify-full and a foreign root succeeded, want a refusal")
	} else if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("OpenPostgres with a foreign root error = %v, want ErrUnavailable (not reached)", err)
	}
	// "localhost" resolves to the server but is not a name in its certificate.
	if s, err := OpenPostgres(ctx, dsn("localhost", root)); err == nil {
		s.Close()
		t.Error("OpenPostgres with verify-full to a name the certificate lacks succeeded, want a refusal")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("OpenPostgres to a name the certificate lacks error = %v, want a certificate refusal", err)
	}
}
