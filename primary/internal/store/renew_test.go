package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// renewal builds a renewal of h from the certificate with serial from.
func renewal(h Host, from string, now time.Time) Issuance {
	is := reissuance(h, "", now)
	is.Kind, is.RenewedFrom = protocol.KindRenew, from
	return is
}

// Only the host's current (latest issued) certificate renews; each renewal
// records the serial it renewed and marks the presented certificate used.
func TestRenewOnlyFromCurrent(t *testing.T) { forEachBackend(t, testRenewOnlyFromCurrent) }

func testRenewOnlyFromCurrent(t *testing.T, s *Store) {
	ctx := context.Background()
	first := issuance("cur.example", "")
	if err := s.CommitIssuance(ctx, first); err != nil {
		t.Fatal(err)
	}
	host, _ := s.HostByID(ctx, first.Host.ID)
	if c, err := s.CurrentCert(ctx, host.ID); err != nil || c.Serial != first.Cert.Serial || c.UsedAt != nil || c.RenewedFrom != "" {
		t.Fatalf("CurrentCert after issue = %+v, %v, want %s unused", c, err, first.Cert.Serial)
	}

	r1 := renewal(host, first.Cert.Serial, t0.Add(time.Hour))
	if err := s.CommitIssuance(ctx, r1); err != nil {
		t.Fatalf("renew from the current certificate: %v", err)
	}
	cur, err := s.CurrentCert(ctx, host.ID)
	if err != nil || cur.Serial != r1.Cert.Serial || cur.RenewedFrom != first.Cert.Serial || cur.UsedAt != nil {
		t.Fatalf("CurrentCert after renew = %+v, %v, want %s renewed from %s, unused", cur, err, r1.Cert.Serial, first.Cert.Serial)
	}
	old, _ := s.CertBySerial(ctx, first.Cert.Serial)
	if old.UsedAt == nil || !old.UsedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("presented certificate used_at = %v, want %v", old.UsedAt, t0.Add(time.Hour))
	}

	// The superseded certificate cannot renew again, and nothing is written.
	before := auditCount(t, s)
	again := renewal(host, first.Cert.Serial, t0.Add(2*time.Hour))
	if err := s.CommitIssuance(ctx, again); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("second renew from the superseded certificate error = %v, want ErrSuperseded", err)
	}
	if _, err := s.CertBySerial(ctx, again.Cert.Serial); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused renewal stored its certificate: %v", err)
	}
	if got := auditCount(t, s); got != before {
		t.Errorf("audit rows after a refused renewal = %d, want %d", got, before)
	}

	// MarkUsed records the first presentation only.
	if err := s.MarkUsed(ctx, r1.Cert.Serial, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkUsed(ctx, r1.Cert.Serial, t0.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.CertBySerial(ctx, r1.Cert.Serial); c.UsedAt == nil || !c.UsedAt.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("used_at after two MarkUsed = %v, want %v", c.UsedAt, t0.Add(3*time.Hour))
	}

	// A reissue makes its certificate the current one: the renewed one
	// can no longer renew.
	re := reissuance(host, "", t0.Add(5*time.Hour))
	if err := s.CommitIssuance(ctx, re); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitIssuance(ctx, renewal(host, r1.Cert.Serial, t0.Add(6*time.Hour))); !errors.Is(err, ErrSuperseded) {
		t.Errorf("renew from a certificate a reissue superseded error = %v, want ErrSuperseded", err)
	}
	if c, _ := s.CurrentCert(ctx, host.ID); c.Serial != re.Cert.Serial {
		t.Errorf("CurrentCert after reissue = %s, want %s", c.Serial, re.Cert.Serial)
	}
	if _, err := s.CurrentCert(ctx, "no-such-host"); !errors.Is(err, ErrNotFound) {
		t.Errorf("CurrentCert of an unknown host error = %v, want ErrNotFound", err)
	}
	if err := s.CommitIssuance(ctx, renewal(host, "", t0.Add(7*time.Hour))); err == nil {
		t.Error("renewal without the presented serial succeeded, want an error")
	}
}

// Concurrent renewals from the same certificate: exactly one wins.
func TestRenewRaceOneWinner(t *testing.T) { forEachBackend(t, testRenewRaceOneWinner) }

func testRenewRaceOneWinner(t *testing.T, s *Store) {
	ctx := context.Background()
	first := issuance("race.example", "")
	if err := s.CommitIssuance(ctx, first); err != nil {
		t.Fatal(err)
	}
	host, _ := s.HostByID(ctx, first.Host.ID)
	const n = 8
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		won, super int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.CommitIssuance(ctx, renewal(host, first.Cert.Serial, t0.Add(time.Duration(i+1)*time.Second)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrSuperseded):
				super++
			default:
				t.Errorf("concurrent renew: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || super != n-1 {
		t.Errorf("concurrent renewals from one certificate: %d won, %d superseded, want 1 and %d", won, super, n-1)
	}
}

// Migration 3 numbers the certificates of a version-2 database in issuance
// order, so that the latest one becomes the current one.
func TestMigrateRenewalBookkeeping(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/v1.db"
	db, err := sql.Open("sqlite", dsn(path, "busy_timeout(10000)"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrate(ctx, db, migrations[:2]); err != nil { // the schema before renewal bookkeeping
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO hosts (id, name, created_at) VALUES ('h1', 'old.example', 1)"); err != nil {
		t.Fatal(err)
	}
	// Inserted out of issuance order: the latest issued is B.
	for _, c := range []struct {
		serial string
		issued int64
	}{{"0C", 3}, {"0B", 5}, {"0A", 1}} {
		if _, err := db.ExecContext(ctx, `INSERT INTO certs (serial, host_id, names, kind, issued_at, not_before, not_after, der)
			VALUES (?, 'h1', '["old.example"]', 'renew', ?, 0, 1, x'00')`, c.serial, c.issued); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open a version-2 database: %v", err)
	}
	defer s.Close()
	if c, err := s.CurrentCert(ctx, "h1"); err != nil || c.Serial != "0B" || c.RenewedFrom != "" || c.UsedAt != nil {
		t.Errorf("CurrentCert after migration = %+v, %v, want 0B", c, err)
	}
	// Migration 5: the host's name is its first approved mapping.
	if m, err := s.ListMappings(ctx, MappingFilter{HostID: "h1"}); err != nil || len(m) != 1 || m[0].Name != "old.example" || m[0].State != MappingApproved {
		t.Errorf("mappings of h1 after the migration = %+v, %v, want old.example approved", m, err)
	}
	h, _ := s.HostByID(ctx, "h1")
	if err := s.CommitIssuance(ctx, renewal(h, "0B", t0)); err != nil {
		t.Errorf("renew from the migrated current certificate: %v", err)
	}
	if err := s.CommitIssuance(ctx, renewal(h, "0C", t0)); !errors.Is(err, ErrSuperseded) {
		t.Errorf("renew from an older migrated certificate error = %v, want ErrSuperseded", err)
	}
}
