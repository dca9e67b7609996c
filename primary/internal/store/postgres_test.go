package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/pgtest"
)

// TestMigrationsMatch: every migration exists in both dialects.
func TestMigrationsMatch(t *testing.T) {
	if len(migrations) != len(pgMigrations) {
		t.Fatalf("len(migrations) = %d, len(pgMigrations) = %d, want equal: mirror every schema change in migrate_postgres.go",
			len(migrations), len(pgMigrations))
	}
}

// TestSchemasMatch: from an empty database, both backends end with the same
// tables and columns, so that the shared SQL means the same on both.
func TestSchemasMatch(t *testing.T) {
	ctx := context.Background()
	lite, _ := openTemp(t)
	pg := openPG(t)

	columns := func(q string, db *Store) map[string][]string {
		t.Helper()
		rows, err := db.rdb.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string][]string{}
		for rows.Next() {
			var table, col string
			if err := rows.Scan(&table, &col); err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], col)
		}
		for k := range out {
			slices.Sort(out[k])
		}
		return out
	}
	got := columns(`SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'`, pg)
	want := columns(`SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`, lite)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("PostgreSQL schema = %v\nwant (SQLite's) %v", got, want)
	}
}

// TestMigratePostgres: an empty database is migrated to the current
// version; reopening applies nothing; nodes starting together migrate once;
// a database newer than the program is refused.
func TestMigratePostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Shared(t).CreateDatabase(t, "migrate_pg")

	// Three nodes open the empty database at once.
	var wg sync.WaitGroup
	stores := make([]*Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Add(1)
		go func() { defer wg.Done(); stores[i], errs[i] = OpenPostgres(ctx, dsn) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("OpenPostgres #%d: %v", i, err)
		}
		defer stores[i].Close()
	}
	s := stores[0]
	var n, v int
	if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_version").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(pgMigrations) || v != len(pgMigrations) {
		t.Errorf("schema_version rows, max = %d, %d, want %d, %d", n, v, len(pgMigrations), len(pgMigrations))
	}
	if err := s.CommitIssuance(ctx, issuance("kept.example", "")); err != nil {
		t.Fatal(err)
	}

	// A newer migration list applies only what is new, once.
	next := append(slices.Clone(pgMigrations), "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (42);")
	for range 2 {
		if err := migratePG(ctx, s.rdb, next); err != nil {
			t.Fatalf("migrate to %d: %v", len(next), err)
		}
	}
	var rows int
	if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM extra").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("extra rows = %d, %v, want 1 (applied once)", rows, err)
	}
	if _, err := s.HostByName(ctx, "kept.example"); err != nil {
		t.Errorf("HostByName after migration: %v", err)
	}
	// A failing migration leaves the version where it was.
	if err := migratePG(ctx, s.rdb, append(slices.Clone(next), "CREATE TABLE broken (;")); err == nil {
		t.Error("broken migration succeeded, want an error")
	}
	if err := s.rdb.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_version").Scan(&v); err != nil || v != len(next) {
		t.Errorf("version after a failed migration = %d, %v, want %d", v, err, len(next))
	}
	// This program refuses the newer database.
	if s2, err := OpenPostgres(ctx, dsn); err == nil {
		s2.Close()
		t.Error("OpenPostgres of a newer schema succeeded, want an error")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("OpenPostgres of a newer schema error = %v, want one saying it is newer", err)
	}
}

// TestOpenPostgresUnreachable: a server that is not there is one clear
// line, ErrUnavailable, without the password.
func TestOpenPostgresUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dsn := fmt.Sprintf("postgres://hostcert:s3cret-pw@%s/hostcert?sslmode=disable", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenTarget(ctx, dsn)
	if err == nil {
		s.Close()
		t.Fatal("OpenTarget of a closed port succeeded")
	}
	want := "store: cannot reach postgres at " + addr + " (connection refused)"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("errors.Is(%v, ErrUnavailable) = false, want true", err)
	}

	// A malformed DSN: the message never shows the password.
	_, err = OpenTarget(ctx, "postgres://hostcert:s3cret-pw@127.0.0.1:notaport/x")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error for a malformed DSN = %v, want an error without the password", err)
	}
}

func TestRedactDSN(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:pw@db.example:5432/hc?sslmode=verify-full", "postgres://u:xxxxx@db.example:5432/hc?sslmode=verify-full"},
		{"postgresql://u@db/hc", "postgresql://u@db/hc"},
		{"postgres://u@db/hc?password=pw&sslmode=require", "postgres://u@db/hc?password=xxxxx&sslmode=require"},
		{"host=db user=u password=pw dbname=hc", "host=db user=u password=xxxxx dbname=hc"},
		{"host=db password='p w' dbname=hc", "host=db password=xxxxx dbname=hc"},
		{"/var/lib/hostcert/primary/primary.db", "/var/lib/hostcert/primary/primary.db"},
	} {
		if got := RedactDSN(c.in); got != c.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIsPostgres(t *testing.T) {
	for in, want := range map[string]bool{
		"postgres://u@h/db": true, "postgresql://u@h/db": true, "POSTGRES://u@h/db": true,
		"/var/lib/x/primary.db": false, "primary.db": false, "postgres.db": false,
	} {
		if got := IsPostgres(in); got != want {
			t.Errorf("IsPostgres(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestPostgresOutage: with the server stopped, reads, writes and Ping fail
// with ErrUnavailable and write nothing; after a restart the same Store
// works again without being reopened.
func TestPostgresOutage(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	s, err := OpenPostgres(ctx, c.CreateDatabase(t, "outage"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CommitIssuance(ctx, issuance("before.example", "")); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)

	during := issuance("during.example", "")
	if err := s.CommitIssuance(ctx, during); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CommitIssuance with the server down = %v, want ErrUnavailable", err)
	}
	if _, err := s.HostByName(ctx, "before.example"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("HostByName with the server down = %v, want ErrUnavailable", err)
	}
	if _, err := s.ListCerts(ctx, CertFilter{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ListCerts with the server down = %v, want ErrUnavailable", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := s.Ping(pctx); err == nil {
		t.Error("Ping with the server down = nil, want an error")
	}
	cancel()

	c.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := s.HostByName(ctx, "during.example"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByName(during) after restart = %v, want ErrNotFound (nothing half-written)", err)
	}
	after := issuance("after.example", "")
	if err := s.CommitIssuance(ctx, after); err != nil {
		t.Fatalf("CommitIssuance after restart: %v", err)
	}
	if _, err := s.HostByName(ctx, "before.example"); err != nil {
		t.Errorf("HostByName(before) after restart: %v", err)
	}
}

// TestPostgresTwoHandles: two Stores on one database — two primary nodes —
// share one truth: 50 concurrent redeemers of a max-5 token split over both
// get exactly 5 certificates (20 rounds), serials stay unique, and CRL
// numbers taken alternately only grow.
func TestPostgresTwoHandles(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Shared(t).CreateDatabase(t, "two_nodes")
	var nodes [2]*Store
	for i := range nodes {
		s, err := OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		nodes[i] = s
	}
	const rounds, n, maxUses = 20, 50, 5
	for r := range rounds {
		tok := fmt.Sprintf("race-%d", r)
		mustToken(t, nodes[r%2], tok, KindStandard, "", maxUses, t0.Add(24*time.Hour))
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = nodes[i%2].CommitIssuance(ctx, issuance(fmt.Sprintf("r%d-%d.example", r, i), tok))
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrTokenUsedUp):
				t.Fatalf("round %d: CommitIssuance error = %v, want nil or ErrTokenUsedUp", r, err)
			}
		}
		certs, err := nodes[(r+1)%2].ListCerts(ctx, CertFilter{TokenName: tok})
		if ok != maxUses || err != nil || len(certs) != maxUses {
			t.Fatalf("round %d: granted %d, certificates %d (%v), want %d and %d", r, ok, len(certs), err, maxUses, maxUses)
		}
		if got, err := nodes[0].TokenByName(ctx, tok); err != nil || got.Uses != maxUses {
			t.Fatalf("round %d: token uses = %d, %v, want %d", r, got.Uses, err, maxUses)
		}
	}
	var last int64
	for i := range 10 {
		num, err := nodes[i%2].NextCRLNumber(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if num.Int64() <= last {
			t.Fatalf("CRL number #%d from node %d = %d, want > %d", i, i%2, num.Int64(), last)
		}
		last = num.Int64()
	}
}

// TestMigratePostgresFromPrevious: a database at an earlier schema version
// (3: before inventory and host name mappings), with data, is brought to the
// current one and keeps its rows.
func TestMigratePostgresFromPrevious(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Shared(t).CreateDatabase(t, "migrate_prev")
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	prev := 3
	// Rebuild the database at the previous version.
	if _, err := s.rdb.ExecContext(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	if err := migratePG(ctx, s.rdb, pgMigrations[:prev]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.rdb.ExecContext(ctx, "INSERT INTO known_names (name, added_at) VALUES ('old.example', 1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.rdb.ExecContext(ctx, "INSERT INTO hosts (id, name, created_at) VALUES ('h1', 'old.example', 1)"); err != nil {
		t.Fatal(err)
	}
	// Inserted out of issuance order: the latest issued is 0B (seq 3),
	// first used at 7.
	for _, c := range []struct {
		serial      string
		issued, seq int64
		used        any
	}{{"0C", 3, 2, nil}, {"0B", 5, 3, int64(7)}, {"0A", 1, 1, nil}} {
		if _, err := s.rdb.ExecContext(ctx, `INSERT INTO certs (serial, host_id, names, kind, issued_at, not_before, not_after, der, seq, used_at)
			VALUES ($1, 'h1', '["old.example"]', 'renew', $2, 0, 1, $3, $4, $5)`, c.serial, c.issued, []byte{0}, c.seq, c.used); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s, err = OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenPostgres of a version-%d database: %v", prev, err)
	}
	defer s.Close()
	var v int
	if err := s.rdb.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_version").Scan(&v); err != nil || v != len(pgMigrations) {
		t.Errorf("version after opening = %d, %v, want %d", v, err, len(pgMigrations))
	}
	if known, err := s.IsKnown(ctx, "old.example"); err != nil || !known {
		t.Errorf("IsKnown(old.example) after the migration = %v, %v, want true", known, err)
	}
	if c, err := s.CurrentCert(ctx, "h1"); err != nil || c.Serial != "0B" || c.KeyAlg != "unknown" || c.Route != "" {
		t.Errorf("CurrentCert after the migration = %+v, %v, want 0B, key algorithm filled in (unknown: not a certificate), no route", c, err)
	}
	if h, err := s.HostByID(ctx, "h1"); err != nil || !h.SeenAt.Equal(fromTS(7)) {
		t.Errorf("host after the migration = %+v, %v, want last seen at its latest first use (7)", h, err)
	}
	// Migration 5: the host's name is its first approved mapping.
	if h, err := s.HostByName(ctx, "old.example"); err != nil || h.ID != "h1" || !h.Known {
		t.Errorf("HostByName(old.example) after the migration = %+v, %v, want h1, known", h, err)
	}
	if m, err := s.ListMappings(ctx, MappingFilter{HostID: "h1"}); err != nil || len(m) != 1 || m[0].Name != "old.example" || m[0].State != MappingApproved {
		t.Errorf("mappings of h1 after the migration = %+v, %v, want old.example approved", m, err)
	}
	// The store works at the new version.
	mustToken(t, s, "after-migration", KindStandard, "", 1, t0.Add(time.Hour))
	if err := s.CommitIssuance(ctx, issuance("new.example", "after-migration")); err != nil {
		t.Fatal(err)
	}
}
