package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommitIssuance measures durable issuances per second with many
// concurrent callers: each op inserts a host, counts a token use, inserts a
// certificate (DER of a typical P-256 host certificate's size) and an audit
// row, and returns only after its group commit is synced.
func BenchmarkCommitIssuance(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	mustToken(b, s, "bench", KindStandard, "", 1_000_000_000, time.Now().Add(24*time.Hour))
	der := make([]byte, 720)
	rand.Read(der)
	var seq atomic.Int64
	before := s.Stats()

	b.SetParallelism(32) // 32 × GOMAXPROCS callers, like a busy enrollment burst
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			is := issuance(fmt.Sprintf("bench-%d.example", seq.Add(1)), "bench")
			is.Cert.DER = der
			is.Audit.Detail = map[string]any{"level": "high", "known": true, "verified": true, "nat": false, "token_state": "valid"}
			if err := s.CommitIssuance(ctx, is); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	after := s.Stats()
	if batches := after.Batches - before.Batches; batches > 0 {
		b.ReportMetric(float64(after.Ops-before.Ops)/float64(batches), "ops/commit")
	}
}

// BenchmarkCommitIssuanceSerial is the single-caller case: one fsync per
// issuance, the floor group commit improves on.
func BenchmarkCommitIssuanceSerial(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	der := make([]byte, 720)
	rand.Read(der)
	b.ResetTimer()
	for i := range b.N {
		is := issuance(fmt.Sprintf("serial-%d.example", i), "")
		is.Cert.DER = der
		if err := s.CommitIssuance(ctx, is); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
