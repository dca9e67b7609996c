//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// TestPostgresStore: `hostcert-primary init --store postgres://…` and
// `serve --store-file` (the DSN kept out of the process list) as real
// processes on a real PostgreSQL; an agent enrolls with a token, the
// certificate is a row in PostgreSQL, and /readyz answers 200.
func TestPostgresStore(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	c := pgtest.Start(t)
	dsn := c.CreateDatabase(t, "hostcert")
	dsnFile := filepath.Join(t.TempDir(), "store.dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dns := dnstest.New(t, nil)
	pr := newPrimary(t, primaryOpts{
		dnsServer: dns.Addr(),
		initExtra: []string{"--store", dsn},
		extra:     []string{"--store-file", dsnFile},
	})
	if out := pr.p.output(); !strings.Contains(out, `"store":"postgres"`) {
		t.Fatalf("serve does not say it serves from PostgreSQL:\n%s", out)
	}
	tok := strings.TrimSpace(pr.admin("token", "create", "--name", "pg-e2e"))
	_, port, _ := net.SplitHostPort(pr.listen)
	a := newAgentHost(t, "pg.e2e.test", primaryName+":"+port, "primary_dial: "+pr.listen)
	a.must("get-ca-cert", "--fingerprint", pr.fingerprint)
	a.must("get-cert", "--token", tok)
	st := a.status()
	if !st.Enrolled || st.HostID == "" {
		t.Fatalf("status after get-cert = %+v, want enrolled", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var certs int
	if err := conn.QueryRow(ctx, "SELECT COUNT(*) FROM certs WHERE host_id = $1 AND token_name = 'pg-e2e'", st.HostID).Scan(&certs); err != nil || certs != 1 {
		t.Errorf("certificates of %s in PostgreSQL = %d, %v, want 1", st.HostID, certs, err)
	}
	if _, err := os.Stat(filepath.Join(pr.data, "primary.db")); err == nil {
		t.Error("a SQLite database was created in the data directory although the store is PostgreSQL")
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pr.caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: primaryName},
	}}
	resp, err := client.Get("https://" + pr.listen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", resp.StatusCode)
	}
}
