package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/server"
	"github.com/hostcert/hostcert/primary/internal/store/storebench"
)

// BenchmarkHostImport100k: `hostcert-primary host import FILE` of 100,000
// new names — the command line's own import (every name checked, then
// streamed in batches over the admin socket) into a real server whose
// SQLite store already holds 1,000,000 hosts (storebench.Million, seeded
// once per run into a cache). Target: <= 10 s per import.
func BenchmarkHostImport100k(b *testing.B) {
	const names = 100_000
	ctx := context.Background()
	base, err := os.MkdirTemp("", "hcb") // short: the admin socket path must fit
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	if took, err := storebench.CopyTo(ctx, filepath.Join(dir, server.DBName), storebench.Million); err != nil {
		b.Fatal(err)
	} else if took > 0 {
		b.Logf("seeded %d hosts in %v (cached in %s)", storebench.Million.Hosts, took, storebench.CacheDir())
	}
	main := func(args ...string) string {
		b.Helper()
		var out, errb bytes.Buffer
		if code := Main(ctx, append(args, "--data", dir), &out, &errb); code != 0 {
			b.Fatalf("%v = exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	main("init", "--name", "localhost", "--key-alg", "ecdsa-p256")
	sctx, cancel := context.WithCancel(ctx)
	srv, err := server.New(sctx, server.Config{DataDir: dir, Listen: "127.0.0.1:0", Console: "", Log: zerolog.Nop()})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() { cancel(); <-done }()

	b.ResetTimer()
	var total time.Duration
	for i := range b.N {
		b.StopTimer()
		list := filepath.Join(base, fmt.Sprintf("import-%d.txt", i))
		var sb strings.Builder
		for j := range names {
			fmt.Fprintf(&sb, "import%d-%06d.fleet.example\n", i, j)
		}
		if err := os.WriteFile(list, []byte(sb.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		out := main("host", "import", list)
		total += time.Since(start)
		if want := fmt.Sprintf("added %d of %d names", names, names); !strings.Contains(out, want) {
			b.Fatalf("host import = %q, want %q", out, want)
		}
	}
	b.StopTimer()
	b.ReportMetric(total.Seconds()/float64(b.N), "s/import")
	b.ReportMetric(float64(names*b.N)/total.Seconds(), "names/s")
}
