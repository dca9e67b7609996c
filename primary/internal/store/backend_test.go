package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/pgtest"
)

// The conformance suite: every test written as func(t, s *Store) runs once
// per backend through forEachBackend, against SQLite and against a real
// PostgreSQL server (pgtest; one cluster for the package, one database per
// test). Backend-specific behaviour (SQLite's group commit, file modes,
// backups) keeps its own SQLite-only tests.

// forEachBackend runs test on a fresh, empty store of each backend.
func forEachBackend(t *testing.T, test func(t *testing.T, s *Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		s, _ := openTemp(t)
		test(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		test(t, openPG(t))
	})
}

var pgDatabases atomic.Int64

// openPG opens a store on a new database of the shared cluster.
func openPG(t testing.TB) *Store {
	t.Helper()
	dsn := pgtest.Shared(t).CreateDatabase(t, fmt.Sprintf("store_%d", pgDatabases.Add(1)))
	s, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres(%s): %v", dsn, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestAuditPages: ListAuditPage walks the whole log in ID order, page by
// page, honours since, and ListAudit's newest-N agrees with it.
func TestAuditPages(t *testing.T) { forEachBackend(t, testAuditPages) }

func testAuditPages(t *testing.T, s *Store) {
	ctx := context.Background()
	for i := range 7 {
		if err := s.AppendAudit(ctx, Audit{At: t0.Add(time.Duration(i) * time.Minute), Action: fmt.Sprintf("a%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var after int64
	for pages := 0; ; pages++ {
		page, err := s.ListAuditPage(ctx, time.Time{}, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			if pages != 3 {
				t.Errorf("pages of 3 over 7 rows = %d, want 3", pages)
			}
			break
		}
		for _, a := range page {
			if a.ID <= after {
				t.Fatalf("row ID %d after %d, want ascending", a.ID, after)
			}
			after = a.ID
			got = append(got, a.Action)
		}
	}
	if want := "[a0 a1 a2 a3 a4 a5 a6]"; fmt.Sprint(got) != want {
		t.Errorf("paged actions = %v, want %s", got, want)
	}
	since, err := s.ListAuditPage(ctx, t0.Add(5*time.Minute), 0, 10)
	if err != nil || len(since) != 2 || since[0].Action != "a5" {
		t.Errorf("ListAuditPage(since a5) = %+v, %v, want a5, a6", since, err)
	}
	newest, err := s.ListAudit(ctx, time.Time{}, 2)
	if err != nil || len(newest) != 2 || newest[0].Action != "a5" || newest[1].Action != "a6" {
		t.Errorf("ListAudit(newest 2) = %+v, %v, want a5, a6", newest, err)
	}
}
