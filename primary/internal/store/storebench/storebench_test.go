package storebench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pgtest"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// BenchmarkIssuanceAtScale: the store's share of an enrollment — look the
// name up, find the token, commit the issuance (host, token use,
// certificate, audit; durable) — by 64 concurrent callers, on an empty
// store and on one of 1,000,000 hosts with 100,000 revoked certificates
// (storebench.Million), in alternating rounds of equal work. It reports
// both rates and their ratio (target: >= 0.9: the fleet's size costs an
// enrollment no more than 10 %).
func BenchmarkIssuanceAtScale(b *testing.B) {
	ctx := context.Background()
	empty, err := store.Open(ctx, filepath.Join(b.TempDir(), "empty.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	full := openSQLite(b)
	defer full.Close()
	issuanceAtScale(b, empty, full)
}

// BenchmarkIssuanceAtScalePostgres is BenchmarkIssuanceAtScale on
// PostgreSQL (a throwaway cluster, internal/pgtest; the 1M fleet is seeded
// into it by Store.Seed at every run).
func BenchmarkIssuanceAtScalePostgres(b *testing.B) {
	empty, full := openPostgres(b)
	issuanceAtScale(b, empty, full)
}

// openSQLite opens a copy of the cached 1M SQLite store.
func openSQLite(b *testing.B) *store.Store {
	b.Helper()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "fleet.db")
	if took, err := CopyTo(ctx, path, Million); err != nil {
		b.Fatal(err)
	} else if took > 0 {
		b.Logf("seeded %d hosts in %v (cached in %s)", Million.Hosts, took, CacheDir())
	}
	s, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// openPostgres opens an empty store and one seeded with the 1M fleet, each
// a database of one throwaway cluster.
func openPostgres(b *testing.B) (empty, full *store.Store) {
	b.Helper()
	ctx := context.Background()
	c := pgtest.Start(b)
	var err error
	if empty, err = store.OpenPostgres(ctx, c.CreateDatabase(b, "empty")); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { empty.Close() })
	if full, err = store.OpenPostgres(ctx, c.CreateDatabase(b, "fleet")); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { full.Close() })
	f := Million
	if f.DER, err = HostCertDER(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := full.Seed(ctx, f); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d hosts into PostgreSQL in %v", f.Hosts, time.Since(start))
	return empty, full
}

// issuanceAtScale measures the rounds of BenchmarkIssuanceAtScale.
func issuanceAtScale(b *testing.B, empty, full *store.Store) {
	const rounds, perRound = 3, 3000
	ctx := context.Background()
	der, err := HostCertDER()
	if err != nil {
		b.Fatal(err)
	}
	value := sha256.Sum256([]byte("bench token"))
	now := time.Now()
	for _, s := range []*store.Store{empty, full} {
		err := s.CreateToken(ctx, store.Token{Name: "bench", Kind: store.KindStandard, Hash: value[:], MaxUses: 1_000_000_000,
			CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}, store.Audit{Actor: "admin:0"})
		if err != nil {
			b.Fatal(err)
		}
	}
	round := func(s *store.Store, tag string) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 64 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > perRound {
						return
					}
					name := fmt.Sprintf("new-%s-%d.fleet.example", tag, i)
					if h, err := s.LookupName(ctx, name); err != nil || h.ID != "" {
						b.Errorf("LookupName(%s) = %+v, %v, want no host", name, h, err)
						return
					}
					if _, err := s.TokenByHash(ctx, value[:]); err != nil {
						b.Error(err)
						return
					}
					id := uuid.NewString()
					serial := make([]byte, 16)
					rand.Read(serial)
					is := store.Issuance{
						Kind: protocol.KindIssue, Host: store.Host{ID: id, Name: name},
						Cert: store.Cert{Serial: fmt.Sprintf("%X", serial), HostID: id, Names: []string{name},
							NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), DER: der, KeyAlg: "ecdsa-p256", Route: "direct"},
						TokenName: "bench", TokenHash: value[:], Now: time.Now(),
						Audit: store.Audit{Actor: "api", Source: "192.0.2.1", Outcome: "granted",
							Detail: map[string]any{"level": "high", "known": false, "verified": false, "token_state": "valid"}},
					}
					if err := s.CommitIssuance(ctx, is); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return perRound / time.Since(start).Seconds()
	}
	b.ResetTimer()
	var bestEmpty, bestFull float64
	for n := range b.N * rounds {
		bestEmpty = max(bestEmpty, round(empty, fmt.Sprintf("e%d", n)))
		bestFull = max(bestFull, round(full, fmt.Sprintf("f%d", n)))
	}
	b.StopTimer()
	b.ReportMetric(bestEmpty, "issue/s-empty")
	b.ReportMetric(bestFull, "issue/s-1M")
	b.ReportMetric(bestFull/bestEmpty, "ratio-1M/empty")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkCountsAtScale: the fleet-wide counts over the 1M store — the
// metrics' ExpiryCounts (recomputed at most every minute, under a 10 s
// timeout) and the inventory the console's dashboard and `inventory` show.
func BenchmarkCountsAtScale(b *testing.B) {
	s := openSQLite(b)
	defer s.Close()
	countsAtScale(b, s)
}

// BenchmarkCountsAtScalePostgres is BenchmarkCountsAtScale on PostgreSQL.
func BenchmarkCountsAtScalePostgres(b *testing.B) {
	_, full := openPostgres(b)
	countsAtScale(b, full)
}

func countsAtScale(b *testing.B, s *store.Store) {
	ctx := context.Background()
	var expiry, inventory time.Duration
	for b.Loop() {
		now := time.Now()
		start := time.Now()
		counts, err := s.ExpiryCounts(ctx, now, []time.Duration{24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		expiry += time.Since(start)
		start = time.Now()
		inv, err := s.Inventory(ctx, now, now.Add(30*24*time.Hour), now.Add(-7*24*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		inventory += time.Since(start)
		if inv.Hosts != Million.Hosts || inv.Revoked != Million.Revoked || counts.Within[len(counts.Within)-1] != int64(Million.Certs-Million.Revoked) {
			b.Fatalf("inventory %+v, expiry counts %+v: want %d hosts, %d revoked", inv, counts, Million.Hosts, Million.Revoked)
		}
	}
	b.ReportMetric(expiry.Seconds()/float64(b.N), "expiry-counts-s")
	b.ReportMetric(inventory.Seconds()/float64(b.N), "inventory-s")
	b.ReportMetric(0, "ns/op")
}
