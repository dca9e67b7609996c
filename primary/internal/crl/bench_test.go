package crl

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
	"github.com/hostcert/hostcert/primary/internal/store/storebench"
)

// BenchmarkRegenerate100k: one regeneration of the CRL — read the revoked
// certificates from the store, sign, publish — over a SQLite store of
// 1,000,000 hosts of which 100,000 are revoked (storebench.Million; seeded
// once per run into a cache). Target: <= 1 s per build.
func BenchmarkRegenerate100k(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "primary.db")
	seeded, err := storebench.CopyTo(ctx, path, storebench.Million)
	if err != nil {
		b.Fatal(err)
	}
	if seeded > 0 {
		b.Logf("seeded %+v in %v (cached in %s)", storebench.Million.Hosts, seeded, storebench.CacheDir())
	}
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, err := ca.Init(b.TempDir(), ca.InitOptions{Names: []string{"p.test"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	p := New(st, c, zerolog.Nop(), 0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.Refresh(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got, want := p.Current().Entries, storebench.Million.Revoked; got != want {
		b.Fatalf("CRL lists %d entries, want %d", got, want)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/build")
	b.ReportMetric(float64(len(p.Current().DER))/(1<<20), "crl-MiB")
}
