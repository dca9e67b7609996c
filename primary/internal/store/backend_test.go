package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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
