package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/pgtest"
)

// Pending claims own nothing (the name-squatting fix): a host that asks
// for names it does not hold cannot keep them from the hosts they belong to.

// claimRejections are the audit rows of dropped claims on name.
func claimRejections(t *testing.T, s *Store, name string) []Audit {
	t.Helper()
	rows, err := s.ListAudit(context.Background(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []Audit
	for _, r := range rows {
		if r.Action == "host.mapping.reject" && r.Name == name && r.Detail["reason"] != nil {
			out = append(out, r)
		}
	}
	return out
}

// TestPendingClaimDoesNotBlock: host a, renewing, claims b.example (the
// name of a host not enrolled yet): the claim is pending. b.example's own
// host then gets its first certificate — a first issuance, not a reissue of
// a — and the name is its approved name; a's claim is dropped, audited with
// the reason; a can then get it neither approved nor added nor by asking.
func TestPendingClaimDoesNotBlock(t *testing.T) { forEachBackend(t, testPendingClaimDoesNotBlock) }

func testPendingClaimDoesNotBlock(t *testing.T, s *Store) {
	ctx := context.Background()
	a := issued(t, s, "a.example")
	if err := renewAsking(t, s, a, []string{"a.example"}, []string{"b.example"}); err != nil {
		t.Fatal(err)
	}
	if got, want := mappingStates(t, s, a.ID), "a.example=approved b.example=pending "; got != want {
		t.Fatalf("mappings of a after its claim = %q, want %q", got, want)
	}
	if h, err := s.LookupName(ctx, "b.example"); err != nil || h.ID != "" {
		t.Errorf("LookupName(b.example, claimed by a) = %+v, %v, want no host ID (a first issuance, not a reissue of a)", h, err)
	}

	is := issuance("b.example", "")
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Fatalf("first issuance of b.example, which a claims: %v, want granted", err)
	}
	if h, err := s.LookupName(ctx, "b.example"); err != nil || h.ID != is.Host.ID {
		t.Errorf("LookupName(b.example) = %+v, %v, want the new host %s", h, err, is.Host.ID)
	}
	if ms, _ := s.MappingsFor(ctx, "", []string{"b.example"}); len(ms) != 1 || ms[0].HostID != is.Host.ID || ms[0].State != MappingApproved {
		t.Errorf("mappings of b.example = %+v, want only b's approved one", ms)
	}
	if got, want := mappingStates(t, s, a.ID), "a.example=approved "; got != want {
		t.Errorf("mappings of a after b's issuance = %q, want %q (its claim dropped)", got, want)
	}
	rej := claimRejections(t, s, "b.example")
	if len(rej) != 1 || rej[0].HostID != a.ID || rej[0].Actor != "api" || rej[0].Detail["approved_for"] != is.Host.ID {
		t.Errorf("audit of the dropped claim = %+v, want one rejection of a's claim, for b", rej)
	}

	if _, err := s.DecideMapping(ctx, "b.example", a.ID, true, t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve a's dropped claim: error = %v, want ErrNotFound", err)
	}
	if _, err := s.AddMapping(ctx, "b.example", a.ID, t0, Audit{}); !errors.Is(err, ErrNameConflict) {
		t.Errorf("AddMapping(b.example, a): error = %v, want ErrNameConflict", err)
	}
	if err := renewAsking(t, s, a, []string{"a.example"}, []string{"b.example"}); !errors.Is(err, ErrNameConflict) {
		t.Errorf("a claims b.example again: error = %v, want ErrNameConflict", err)
	}
}

// TestApprovalRechecks: approving a claim checks, in the approval's own
// transaction, that the name is approved for no other host. A claim left
// beside another host's approval (written by hand here: the store itself
// drops such claims) is never approved, and the owner keeps the name.
func TestApprovalRechecks(t *testing.T) { forEachBackend(t, testApprovalRechecks) }

func testApprovalRechecks(t *testing.T, s *Store) {
	ctx := context.Background()
	a, c := issued(t, s, "a.example"), issued(t, s, "c.example")
	if err := renewAsking(t, s, a, []string{"a.example"}, []string{"x.example"}); err != nil {
		t.Fatal(err)
	}
	if err := renewAsking(t, s, c, []string{"c.example"}, []string{"x.example"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideMapping(ctx, "x.example", a.ID, true, t0, Audit{Actor: "admin:0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideMapping(ctx, "x.example", c.ID, true, t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve c's claim after a's approval: error = %v, want ErrNotFound (dropped)", err)
	}
	if rej := claimRejections(t, s, "x.example"); len(rej) != 1 || rej[0].HostID != c.ID || rej[0].Actor != "admin:0" {
		t.Errorf("audit of the dropped claim = %+v, want one rejection of c's claim by admin:0", rej)
	}
	if err := s.write(ctx, func(tx *wtx) error {
		_, err := tx.exec("INSERT INTO host_names (name, host_id, state, asked_at) VALUES (?, ?, 'pending', ?)", "x.example", c.ID, ts(t0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, approve := range []func() error{
		func() error { _, err := s.DecideMapping(ctx, "x.example", c.ID, true, t0, Audit{}); return err },
		func() error { _, err := s.AddMapping(ctx, "x.example", c.ID, t0, Audit{}); return err },
	} {
		if err := approve(); !errors.Is(err, ErrNameConflict) {
			t.Errorf("approve c's stale claim on a's name: error = %v, want ErrNameConflict", err)
		}
	}
	if h, err := s.HostByName(ctx, "x.example"); err != nil || h.ID != a.ID {
		t.Errorf("HostByName(x.example) = %+v, %v, want a", h, err)
	}
}

// TestPendingCap: a host holds at most MaxPendingNames pending claims; an
// issuance that would leave it more is refused with ErrTooManyPending and
// writes nothing. Other hosts' claims do not count, auto-approved names are
// not pending, and a decided claim frees a place.
func TestPendingCap(t *testing.T) { forEachBackend(t, testPendingCap) }

func testPendingCap(t *testing.T, s *Store) {
	ctx := context.Background()
	a, b := issued(t, s, "a.example"), issued(t, s, "b.example")
	names := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%02d.example", prefix, i)
		}
		return out
	}
	if err := renewAsking(t, s, a, []string{"a.example"}, names("sq", MaxPendingNames)); err != nil {
		t.Fatalf("claiming %d names at once: %v", MaxPendingNames, err)
	}
	before, _ := s.ListCerts(ctx, CertFilter{HostID: a.ID, IncludeRevoked: true})
	if err := renewAsking(t, s, a, []string{"a.example"}, []string{"one-more.example"}); !errors.Is(err, ErrTooManyPending) {
		t.Errorf("claim %d: error = %v, want ErrTooManyPending", MaxPendingNames+1, err)
	}
	if after, _ := s.ListCerts(ctx, CertFilter{HostID: a.ID, IncludeRevoked: true}); len(after) != len(before) {
		t.Errorf("certificates of a after the refusal = %d, want %d", len(after), len(before))
	}
	if ms, _ := s.MappingsFor(ctx, "", []string{"one-more.example"}); len(ms) != 0 {
		t.Errorf("mappings of the refused claim = %+v, want none", ms)
	}
	// Asking again for what it already claims adds nothing and is fine.
	if err := renewAsking(t, s, a, []string{"a.example"}, nil); err != nil {
		t.Errorf("renewal of a host at the cap claiming nothing new: %v", err)
	}
	// Another host's claims are its own.
	if err := renewAsking(t, s, b, []string{"b.example"}, append(names("sq", MaxPendingNames-1), "b-other.example")); err != nil {
		t.Errorf("b claiming %d names a claims too: %v", MaxPendingNames, err)
	}
	// Auto-approved names are not pending.
	cur, _ := s.CurrentCert(ctx, a.ID)
	is := renewal(a, cur.Serial, t0.Add(2*time.Hour))
	is.Cert.Names, is.Claims, is.ClaimState = []string{"a.example", "auto.example"}, []string{"auto.example"}, MappingApproved
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Errorf("auto-approved claim of a host at the cap: %v", err)
	}
	// A decision frees a place.
	if _, err := s.DecideMapping(ctx, "sq00.example", a.ID, false, t0, Audit{}); err != nil {
		t.Fatal(err)
	}
	if err := renewAsking(t, s, a, []string{"a.example", "auto.example"}, []string{"one-more.example"}); err != nil {
		t.Errorf("claim after a rejection freed a place: %v", err)
	}
}

// TestMigrateHostNamesV7: a version-6 database's mappings, approved and
// pending, are kept by migration 7, which then lets a second host claim a
// pending name and still refuses a second approved owner — on both
// backends.
func TestMigrateHostNamesV7(t *testing.T) {
	ctx := context.Background()
	const v6 = 6
	seed := []string{
		"INSERT INTO hosts (id, name, created_at) VALUES ('h1', 'one.example', 1)",
		"INSERT INTO hosts (id, name, created_at) VALUES ('h2', 'two.example', 1)",
		"INSERT INTO host_names (name, host_id, state, asked_at, decided_at) VALUES ('one.example', 'h1', 'approved', 1, 1)",
		"INSERT INTO host_names (name, host_id, state, asked_at, decided_at) VALUES ('two.example', 'h2', 'approved', 1, 1)",
		"INSERT INTO host_names (name, host_id, state, asked_at) VALUES ('claimed.example', 'h1', 'pending', 2)",
	}
	check := func(t *testing.T, s *Store) {
		if got, want := mappingStates(t, s, "h1"), "claimed.example=pending one.example=approved "; got != want {
			t.Errorf("mappings of h1 after migration 7 = %q, want %q", got, want)
		}
		err := s.write(ctx, func(tx *wtx) error {
			_, err := tx.exec("INSERT INTO host_names (name, host_id, state, asked_at) VALUES ('claimed.example', 'h2', 'pending', 3)")
			return err
		})
		if err != nil {
			t.Errorf("a second host's claim on a pending name after migration 7: %v", err)
		}
		err = s.write(ctx, func(tx *wtx) error {
			_, err := tx.exec("INSERT INTO host_names (name, host_id, state, asked_at, decided_at) VALUES ('one.example', 'h2', 'approved', 3, 3)")
			return err
		})
		if !isConstraint(errors.Unwrap(err)) && !isConstraint(err) {
			t.Errorf("a second approved owner of one.example: error = %v, want a constraint violation", err)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		path := t.TempDir() + "/v6.db"
		db, err := sql.Open("sqlite", dsn(path, "busy_timeout(10000)", "foreign_keys(1)"))
		if err != nil {
			t.Fatal(err)
		}
		if err := migrate(ctx, db, migrations[:v6]); err != nil {
			t.Fatal(err)
		}
		for _, q := range seed {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("open a version-6 database: %v", err)
		}
		defer s.Close()
		check(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Shared(t).CreateDatabase(t, "migrate_v6")
		s, err := OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.rdb.ExecContext(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
			t.Fatal(err)
		}
		if err := migratePG(ctx, s.rdb, pgMigrations[:v6]); err != nil {
			t.Fatal(err)
		}
		for _, q := range seed {
			if _, err := s.rdb.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		if s, err = OpenPostgres(ctx, dsn); err != nil {
			t.Fatalf("open a version-6 database: %v", err)
		}
		defer s.Close()
		check(t, s)
	})
}

// TestMappingPagesWithClaims: one name claimed by several hosts is listed
// once per host, and paging by (name, host ID) walks every row once.
func TestMappingPagesWithClaims(t *testing.T) { forEachBackend(t, testMappingPagesWithClaims) }

func testMappingPagesWithClaims(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, n := range []string{"h1.example", "h2.example", "h3.example"} {
		h := issued(t, s, n)
		if err := renewAsking(t, s, h, []string{n}, []string{"same.example"}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListMappings(ctx, MappingFilter{})
	if err != nil || len(all) != 6 {
		t.Fatalf("ListMappings = %d rows, %v, want 6", len(all), err)
	}
	var paged []Mapping
	f := MappingFilter{Limit: 1}
	for range 10 {
		page, err := s.ListMappings(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		f.After, f.AfterHost = page[0].Name, page[0].HostID
	}
	if fmt.Sprint(paged) != fmt.Sprint(all) {
		t.Errorf("paged one by one = %v\nwant %v", paged, all)
	}
	if rest, _ := s.ListMappings(ctx, MappingFilter{After: "same.example"}); len(rest) != 0 {
		t.Errorf("ListMappings(after same.example, no host) = %v, want none (every row of the name skipped)", rest)
	}
}
