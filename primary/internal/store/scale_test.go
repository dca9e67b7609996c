package store

import (
	"context"
	"strings"
	"testing"
)

// TestCountsReadOneIndex: the fleet-wide counts (ExpiryCounts, Inventory)
// read each host's current certificate with one ordered pass over the
// covering index certs_current — not a scan of the certificate rows (a
// gigabyte at 1,000,000 hosts), not a sort, not a probe per certificate.
// SQLite's query plan says so.
func TestCountsReadOneIndex(t *testing.T) {
	s, _ := openTemp(t)
	for _, q := range []string{
		expiryCountsSQL(sqliteDialect, 3),
		"SELECT COUNT(*) FROM " + sqliteDialect.pick(currentCerts) + " c",
	} {
		rows, err := s.rdb.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, make([]any, strings.Count(q, "?"))...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "; ")
		if !strings.Contains(all, "USING COVERING INDEX certs_current") || strings.Contains(all, "TEMP B-TREE") ||
			strings.Contains(all, "CORRELATED") || strings.Contains(all, "SEARCH") || strings.Count(all, "SCAN certs") != 1 {
			t.Errorf("plan of %q = %q, want one pass over the covering index certs_current, no sort, no per-row probe", q, all)
		}
	}
}
