//go:build linux

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
)

// BenchmarkEnroll measures enrollment against a real `hostcert-primary serve`
// process on loopback (issue 2): hosts with a fresh P-256 key and CSR each
// (made before the timed phase), a new TLS connection per enrollment, a token
// authorising every issuance, at concurrency 1, 8 and 64. It reports
// enrollments/s, p50/p99 latency, the primary's CPU time per enrollment and
// its peak RSS. Every issuance is durable before its response (the store
// group-commits concurrent issuances). The load generator verifies the
// primary's chain once and pins its certificate (see newPinnedClient).
func BenchmarkEnroll(b *testing.B) {
	dns := dnstest.New(b, nil)
	pr := newPrimary(b, primaryOpts{dnsServer: dns.Addr()})
	pid := pr.p.cmd.Process.Pid
	for _, conc := range []int{1, 8, 64} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			n := b.N * map[int]int{1: 300, 8: 1500, 64: 4000}[conc]
			tok := fmt.Sprintf("bench-c%d-%d", conc, time.Now().UnixNano())
			value := strings.TrimSpace(pr.admin("token", "create", "--name", tok, "--max-uses", strconv.Itoa(n), "--valid-for", "1h"))
			reqs := make([]protocol.EnrollRequest, n)
			for i := range reqs {
				name := fmt.Sprintf("h%d.%s.bench.hostcert.test", i, tok) // unique per run: -count N works
				reqs[i] = protocol.EnrollRequest{Name: name, CSR: csrFor(b, name), Token: value}
			}
			client := newPinnedClient(b, pr.listen, primaryName, pr.caPEM)
			lat := make([]time.Duration, n)
			var next atomic.Int64
			var failed atomic.Int64
			var firstErr atomic.Value
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()

			cpu0, _ := cpuTime(pid)
			b.ResetTimer()
			t0 := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= n || ctx.Err() != nil {
							return
						}
						s := time.Now()
						if _, err := client.enroll(ctx, reqs[i]); err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
						lat[i] = time.Since(s)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(t0)
			b.StopTimer()
			cpu1, _ := cpuTime(pid)
			_, peak, _ := rss(pid)
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d of %d enrollments failed; first: %v", f, n, firstErr.Load())
			}
			slices.Sort(lat)
			b.ReportMetric(float64(n)/elapsed.Seconds(), "enroll/s")
			b.ReportMetric(ms(lat[n/2]), "p50-ms")
			b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
			b.ReportMetric(ms(cpu1-cpu0)/float64(n), "primary-cpu-ms/enroll")
			b.ReportMetric(float64(peak)/(1<<20), "primary-peak-RSS-MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
