package server

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// BenchmarkEnroll: token enrollments through the real API (a new TLS
// connection each, CSRs made before the timed phase) at concurrency 1, 8 and
// 64. Client and server share this process, so the figures are a floor for
// the separate-process benchmark of scripts/e2e.
func BenchmarkEnroll(b *testing.B) {
	for _, conc := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			benchEnroll(b, conc)
		})
	}
}

func benchEnroll(b *testing.B, conc int) {
	const n = 2000
	e := newEnv(b, envOpts{})
	tok := e.token("bench", n, "")
	bodies := make([][]byte, n)
	for i := range bodies {
		h := newHost(e.t, fmt.Sprintf("b%d.bench.test", i))
		bodies[i], _ = json.Marshal(protocol.EnrollRequest{Name: h.name, CSR: h.csr(e.t), Token: tok})
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.roots, ServerName: "localhost"}, DisableKeepAlives: true,
		MaxConnsPerHost: conc,
	}}
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				resp, err := client.Post("https://"+e.addr+protocol.PathEnroll, "application/json", bytes.NewReader(bodies[i]))
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if failed.Load() != 0 {
		b.Fatalf("%d of %d enrollments failed", failed.Load(), n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(n)/el.Seconds(), "enroll/s")
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
}
