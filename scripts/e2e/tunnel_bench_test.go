//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
)

// BenchmarkEnrollDirectVsTunnel measures enrollment latency (one at a time,
// a new TLS connection each, real primary and tunnel processes) directly and
// through hostcert-tunnel, interleaved so machine load hits both alike, and
// reports the p50 ratio tunnel/direct (issue 4: target <= 1.2).
func BenchmarkEnrollDirectVsTunnel(b *testing.B) {
	dns := dnstest.New(b, nil)
	pr := newPrimary(b, primaryOpts{dnsServer: dns.Addr()})
	_, port, _ := net.SplitHostPort(pr.listen)
	target := primaryName + ":" + port
	tunnel := freePort(b, "127.0.0.1")
	// One load generator stands in for many DMZ hosts: lift the per-source
	// new-connection rate (default 20/s) that would otherwise pace it.
	cfg := filepath.Join(b.TempDir(), "tunnel.yaml")
	yaml := fmt.Sprintf("listen: %q\nallow:\n  - target: %q\n    upstream: %q\nlimits:\n  new_connections_per_second: 100000\n  new_connections_burst: 100000\n", tunnel, target, pr.listen)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	tp := start(b, "tunnel", "", bins.tunnel, "run", "--config", cfg, "--log-format", "json")
	tp.waitFor(b, "listening", 20*time.Second)

	n := 300 * b.N
	tok := fmt.Sprintf("lat-%d", time.Now().UnixNano())
	value := strings.TrimSpace(pr.admin("token", "create", "--name", tok, "--max-uses", strconv.Itoa(2*n), "--valid-for", "1h"))
	direct := newPinnedClient(b, pr.listen, primaryName, pr.caPEM)
	via := newPinnedClient(b, pr.listen, primaryName, pr.caPEM)
	tr := via.http.Transport.(*http.Transport)
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: tunnel})
	via.base = "https://" + target // the name the tunnel admits; it dials the primary itself

	reqs := func(kind string) []protocol.EnrollRequest {
		out := make([]protocol.EnrollRequest, n)
		for i := range out {
			name := fmt.Sprintf("%s%d.%s.lat.hostcert.test", kind, i, tok)
			out[i] = protocol.EnrollRequest{Name: name, CSR: csrFor(b, name), Token: value}
		}
		return out
	}
	dreqs, treqs := reqs("d"), reqs("t")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var dl, tl []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		for _, c := range []struct {
			client *apiClient
			req    protocol.EnrollRequest
			lat    *[]time.Duration
		}{{direct, dreqs[i], &dl}, {via, treqs[i], &tl}} {
			s := time.Now()
			if _, err := c.client.enroll(ctx, c.req); err != nil {
				b.Fatalf("enroll %s: %v", c.req.Name, err)
			}
			*c.lat = append(*c.lat, time.Since(s))
		}
	}
	b.StopTimer()
	slices.Sort(dl)
	slices.Sort(tl)
	b.ReportMetric(float64(dl[n/2].Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64(tl[n/2].Microseconds()), "tunnel-p50-µs")
	b.ReportMetric(float64(tl[n/2])/float64(dl[n/2]), "p50-ratio")
	b.ReportMetric(0, "ns/op")
}
