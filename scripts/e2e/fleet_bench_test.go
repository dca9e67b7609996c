//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
)

// The fleet benchmarks (issue 11 item 9) measure two hostcert-only
// workloads against a real `hostcert-primary serve` process on loopback:
// a fleet renewing over mutual TLS, and a fleet fetching the CRL. step-ca
// has no equivalent of either in the side-by-side script.

// fleetHost is one enrolled host of a benchmark fleet.
type fleetHost struct {
	name string
	cert tls.Certificate
	// key and csr are those of the next renewal, made before a timed phase.
	key crypto.Signer
	csr string
}

// take makes the certificate of a granted answer (and its chain) the
// host's, with key.
func (h *fleetHost) take(cr *protocol.CertResponse, key crypto.Signer) error {
	certs, err := pki.ParseCerts([]byte(cr.Certificate + cr.Chain))
	if err != nil {
		return fmt.Errorf("certificate of %s: %w", h.name, err)
	}
	h.cert = tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		h.cert.Certificate = append(h.cert.Certificate, c.Raw)
	}
	return nil
}

// prepare makes the key and CSR of the host's next renewal.
func (h *fleetHost) prepare(t testing.TB) {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, h.name)
	if err != nil {
		t.Fatal(err)
	}
	h.key, h.csr = key, string(csr)
}

// client is what one host process would use: a new connection per request,
// its certificate when asked for one and, with resume, a session cache of
// its own (a new one for each certificate, as the agent does).
func (h *fleetHost) client(pinned *tls.Config, resume bool) *http.Client {
	cfg := pinned.Clone()
	cfg.Certificates = []tls.Certificate{h.cert}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true, Proxy: nil}}
}

// pinnedTLS is the TLS configuration of the load generator: the primary's
// chain verified once, its certificate pinned (see newPinnedClient).
func pinnedTLS(t testing.TB, pr *primaryProc) *tls.Config {
	t.Helper()
	return newPinnedClient(t, pr.listen, primaryName, pr.caPEM).http.Transport.(*http.Transport).TLSClientConfig
}

// load runs n calls of do at concurrency conc (worker w, call i) and returns
// each call's latency and the elapsed time. Any error fails t.
func load(t testing.TB, conc, n int, do func(ctx context.Context, w, i int) error) ([]time.Duration, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
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
				if err := do(ctx, w, i); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				lat[i] = time.Since(s)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d calls failed; first: %v", f, n, firstErr.Load())
	}
	slices.Sort(lat)
	return lat, elapsed
}

// enrollFleet enrolls n hosts and returns them with the name of the token
// that authorised them.
func enrollFleet(t testing.TB, pr *primaryProc, tag string, n int) ([]*fleetHost, string) {
	t.Helper()
	tok := fmt.Sprintf("%s-%d", tag, time.Now().UnixNano())
	value := strings.TrimSpace(pr.admin("token", "create", "--name", tok, "--max-uses", strconv.Itoa(n), "--valid-for", "1h"))
	c := newPinnedClient(t, pr.listen, primaryName, pr.caPEM)
	hosts := make([]*fleetHost, n)
	for i := range hosts {
		hosts[i] = &fleetHost{name: fmt.Sprintf("h%d.%s.fleet.hostcert.test", i, tok)}
		hosts[i].prepare(t)
	}
	load(t, 8, n, func(ctx context.Context, _, i int) error {
		h := hosts[i]
		cr, err := c.enroll(ctx, protocol.EnrollRequest{Name: h.name, CSR: h.csr, Token: value})
		if err != nil {
			return err
		}
		return h.take(cr, h.key)
	})
	return hosts, tok
}

// call sends one request and returns the status, the body and whether the
// connection resumed a TLS session.
func call(ctx context.Context, c *http.Client, method, url string, body []byte, hdr http.Header) (int, []byte, bool, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, false, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, false, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, data, resp.TLS != nil && resp.TLS.DidResume, err
}

// BenchmarkFleetRenew: a fleet of enrolled hosts renews over mutual TLS, a
// new connection per renewal (each host renews once per round, with a
// fresh P-256 key made before the timed phase), at concurrency 1, 8 and
// 64, with full handshakes and with TLS resumption — each host holding a
// session from one earlier connection with its certificate (the agent's
// CRL refresh), as a running agent does. It reports renewals/s, p50/p99,
// the primary's CPU time per renewal and the share of resumed handshakes.
func BenchmarkFleetRenew(b *testing.B) {
	const fleetSize = 400
	dns := dnstest.New(b, nil)
	pr := newPrimary(b, primaryOpts{dnsServer: dns.Addr()})
	pid := pr.p.cmd.Process.Pid
	fleet, _ := enrollFleet(b, pr, "renew", fleetSize)
	pinned := pinnedTLS(b, pr)
	base := "https://" + pr.listen
	for _, mode := range []string{"full", "resumed"} {
		for _, conc := range []int{1, 8, 64} {
			b.Run("handshake="+mode+"/concurrency="+strconv.Itoa(conc), func(b *testing.B) {
				n := min(fleetSize, map[int]int{1: 150, 8: 400, 64: 400}[conc]*b.N)
				hosts := fleet[:n]
				clients := make([]*http.Client, n)
				for i, h := range hosts {
					h.prepare(b)
					clients[i] = h.client(pinned, mode == "resumed")
				}
				if mode == "resumed" {
					load(b, 8, n, func(ctx context.Context, _, i int) error {
						st, body, _, err := call(ctx, clients[i], http.MethodGet, base+protocol.PathInfo, nil, nil)
						if err == nil && st != http.StatusOK {
							err = fmt.Errorf("GET /v1/info = %d %s", st, body)
						}
						return err
					})
				}
				var resumed atomic.Int64
				cpu0, _ := cpuTime(pid)
				b.ResetTimer()
				lat, elapsed := load(b, conc, n, func(ctx context.Context, _, i int) error {
					h := hosts[i]
					body, _ := json.Marshal(protocol.RenewRequest{CSR: h.csr})
					st, data, res, err := call(ctx, clients[i], http.MethodPost, base+protocol.PathRenew, body, nil)
					if err != nil {
						return err
					}
					if st != http.StatusOK {
						return fmt.Errorf("renew %s = %d %s", h.name, st, data)
					}
					if res {
						resumed.Add(1)
					}
					var cr protocol.CertResponse
					if err := json.Unmarshal(data, &cr); err != nil {
						return err
					}
					return h.take(&cr, h.key)
				})
				b.StopTimer()
				cpu1, _ := cpuTime(pid)
				if want := map[string]int64{"full": 0, "resumed": int64(n)}[mode]; resumed.Load() != want {
					b.Fatalf("%d of %d renewals resumed a TLS session, want %d", resumed.Load(), n, want)
				}
				b.ReportMetric(float64(n)/elapsed.Seconds(), "renew/s")
				b.ReportMetric(ms(lat[n/2]), "p50-ms")
				b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
				b.ReportMetric(ms(cpu1-cpu0)/float64(n), "primary-cpu-ms/renew")
				b.ReportMetric(float64(resumed.Load())/float64(n), "resumed-share")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkFleetCRL: a fleet fetches the CRL (of a fleet with revoked
// certificates, crlEntries of them) at concurrency 64, a new connection
// per fetch resuming a TLS session (as agents do), unconditionally (200
// with the CRL) and conditionally with the ETag of the CRL held (304, no
// body). It reports fetches/s, p99, the primary's CPU time per fetch and
// the response body bytes per fetch.
func BenchmarkFleetCRL(b *testing.B) {
	const (
		crlEntries = 500
		conc       = 64
	)
	dns := dnstest.New(b, nil)
	pr := newPrimary(b, primaryOpts{dnsServer: dns.Addr()})
	pid := pr.p.cmd.Process.Pid
	_, tok := enrollFleet(b, pr, "crl", crlEntries)
	// Returns once the CRL served lists them.
	pr.admin("cert", "revoke", "--token", tok, "--reason", "keyCompromise")
	pinned := pinnedTLS(b, pr)
	url := "https://" + pr.listen + protocol.PathCRL
	probe := (&fleetHost{}).client(pinned, false)
	st, der, _, err := call(context.Background(), probe, http.MethodGet, url, nil, nil)
	if err != nil || st != http.StatusOK {
		b.Fatalf("GET /v1/crl = %d, %v", st, err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		b.Fatal(err)
	}
	if len(l.RevokedCertificateEntries) != crlEntries {
		b.Fatalf("the CRL served lists %d entries, want %d", len(l.RevokedCertificateEntries), crlEntries)
	}
	etag := protocol.CRLETag(der)
	for _, mode := range []string{"unconditional", "conditional"} {
		b.Run("fetch="+mode+"/concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			n := 3000 * b.N
			want, hdr := http.StatusOK, http.Header(nil)
			if mode == "conditional" {
				want, hdr = http.StatusNotModified, http.Header{"If-None-Match": {etag}}
			}
			// One client (session cache) per worker, each warmed up.
			clients := make([]*http.Client, conc)
			for w := range clients {
				clients[w] = (&fleetHost{}).client(pinned, true)
				if _, _, _, err := call(context.Background(), clients[w], http.MethodGet, url, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			var bytesIn, resumed atomic.Int64
			cpu0, _ := cpuTime(pid)
			b.ResetTimer()
			lat, elapsed := load(b, conc, n, func(ctx context.Context, w, _ int) error {
				st, body, res, err := call(ctx, clients[w], http.MethodGet, url, nil, hdr)
				if err != nil {
					return err
				}
				if st != want {
					return fmt.Errorf("GET /v1/crl (%s) = %d, want %d", mode, st, want)
				}
				if res {
					resumed.Add(1)
				}
				bytesIn.Add(int64(len(body)))
				return nil
			})
			b.StopTimer()
			cpu1, _ := cpuTime(pid)
			if resumed.Load() != int64(n) {
				b.Fatalf("%d of %d fetches resumed a TLS session, want all", resumed.Load(), n)
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "fetch/s")
			b.ReportMetric(ms(lat[n/2]), "p50-ms")
			b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
			b.ReportMetric(ms(cpu1-cpu0)*1000/float64(n), "primary-cpu-us/fetch")
			b.ReportMetric(float64(bytesIn.Load())/float64(n), "body-bytes/fetch")
			b.ReportMetric(0, "ns/op")
		})
	}
}
