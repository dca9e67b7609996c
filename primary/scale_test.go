//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/primary/internal/store/storebench"
)

// Scale benchmark (issue 10, item 10): two real `hostcert-primary serve`
// processes, one on an empty store and one on a store of 1,000,000 hosts
// with 100,000 revoked certificates (storebench.Million, seeded once per
// run into a cache and copied), serve the same bursts of enrollments (a
// fresh P-256 CSR and a new TLS connection each, a token authorising every
// issuance, every issuance durable before its reply), alternately, so that
// load from elsewhere on the machine falls on both. It reports both rates
// and their ratio (target: >= 0.9), the 1M primary's peak RSS (VmHWM, after
// its start-up CRL of 100,000 entries, the bursts and a CRL fetch; target:
// <= 150 MiB), its start-up time and the CRL fetch.
const (
	scaleRounds = 3   // bursts per primary, alternating
	scaleBurst  = 600 // enrollments per burst
	scaleConc   = 16  // concurrent clients
)

func BenchmarkScale(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds a million hosts")
	}
	bin := filepath.Join(b.TempDir(), "hostcert-primary")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	dns := dnstest.New(b, nil)
	for range b.N {
		empty := startScalePrimary(b, bin, dns.Addr(), false)
		full := startScalePrimary(b, bin, dns.Addr(), true)
		var bestEmpty, bestFull float64
		for r := range scaleRounds {
			bestEmpty = max(bestEmpty, empty.burst(b, fmt.Sprintf("r%d", r)))
			bestFull = max(bestFull, full.burst(b, fmt.Sprintf("r%d", r)))
		}
		start := time.Now()
		crl := full.get(b, protocol.PathCRL)
		fetch := time.Since(start)
		list, err := x509.ParseRevocationList(crl)
		if err != nil {
			b.Fatalf("parse the served CRL: %v", err)
		}
		if got, want := len(list.RevokedCertificateEntries), storebench.Million.Revoked; got != want {
			b.Fatalf("served CRL lists %d entries, want %d", got, want)
		}
		hwm := full.peakRSS(b)
		b.ReportMetric(bestEmpty, "enroll/s-empty")
		b.ReportMetric(bestFull, "enroll/s-1M")
		b.ReportMetric(bestFull/bestEmpty, "ratio-1M/empty")
		b.ReportMetric(float64(hwm)/(1<<20), "1M-VmHWM-MiB")
		b.ReportMetric(full.startup.Seconds(), "1M-start-s")
		b.ReportMetric(float64(fetch.Microseconds())/1000, "crl-fetch-ms")
		b.ReportMetric(float64(len(crl))/(1<<20), "crl-MiB")
		empty.stop(b)
		full.stop(b)
	}
	b.ReportMetric(0, "ns/op")
}

// scalePrimary is one serve process and a client for it.
type scalePrimary struct {
	bin, dir, addr string
	cmd            *exec.Cmd
	startup        time.Duration
	client         *http.Client
	logs           chan struct{} // closed when serve's stderr is drained
}

// startScalePrimary runs init (over the seeded store when seeded) and
// serve, and waits until it serves.
func startScalePrimary(b *testing.B, bin, dnsAddr string, seeded bool) *scalePrimary {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	if seeded {
		took, err := storebench.CopyTo(context.Background(), filepath.Join(dir, "primary.db"), storebench.Million)
		if err != nil {
			b.Fatal(err)
		}
		if took > 0 {
			b.Logf("seeded %d hosts in %v (cached in %s)", storebench.Million.Hosts, took, storebench.CacheDir())
		}
	}
	if out, err := exec.Command(bin, "init", "--data", dir, "--name", "localhost", "--key-alg", "ecdsa-p256").CombinedOutput(); err != nil {
		b.Fatalf("init: %v\n%s", err, out)
	}
	p := &scalePrimary{bin: bin, dir: dir, logs: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--data", dir, "--listen", "127.0.0.1:0", "--console", "", "--dns-server", dnsAddr, "--log-format", "json")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		defer close(p.logs)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m struct{ Message, Addr string }
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Message == "serving" && m.Addr != "" {
				select {
				case addr <- m.Addr:
				default:
				}
			}
		}
	}()
	select {
	case p.addr = <-addr:
	case <-p.logs:
		b.Fatal("serve exited before serving")
	case <-time.After(2 * time.Minute):
		b.Fatal("serve did not serve within 2 minutes")
	}
	p.startup = time.Since(start)
	root, err := os.ReadFile(filepath.Join(dir, "ca", "root.pem"))
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(root)
	p.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, DisableKeepAlives: true, Proxy: nil,
	}}
	return p
}

// burst enrolls scaleBurst new hosts at scaleConc and returns enrollments/s.
func (p *scalePrimary) burst(b *testing.B, tag string) float64 {
	b.Helper()
	name := "scale-" + tag
	out, err := exec.Command(p.bin, "token", "create", "--name", name, "--max-uses", strconv.Itoa(scaleBurst), "--valid-for", "1h", "--data", p.dir).Output()
	if err != nil {
		b.Fatalf("token create: %v", err)
	}
	token := strings.TrimSpace(string(out))
	bodies := make([][]byte, scaleBurst)
	for i := range bodies {
		host := fmt.Sprintf("h%d.%s.bench.test", i, tag)
		key, err := pki.GenerateKey(pki.ECDSAP256)
		if err != nil {
			b.Fatal(err)
		}
		csr, err := pki.CreateCSR(key, host)
		if err != nil {
			b.Fatal(err)
		}
		bodies[i], _ = json.Marshal(protocol.EnrollRequest{Name: host, CSR: string(csr), Token: token})
	}
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range scaleConc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= scaleBurst {
					return
				}
				resp, err := p.client.Post("https://"+p.addr+protocol.PathEnroll, "application/json", bytes.NewReader(bodies[i]))
				if err == nil {
					if resp.StatusCode != http.StatusOK {
						body, _ := io.ReadAll(resp.Body)
						err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
					}
					resp.Body.Close()
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d enrollments failed; first: %v", f, scaleBurst, firstErr.Load())
	}
	return scaleBurst / took.Seconds()
}

func (p *scalePrimary) get(b *testing.B, path string) []byte {
	b.Helper()
	resp, err := p.client.Get("https://" + p.addr + path)
	if err != nil {
		b.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s = %d, %v", path, resp.StatusCode, err)
	}
	return body
}

// peakRSS is serve's VmHWM: the most resident memory it has had.
func (p *scalePrimary) peakRSS(b *testing.B) int64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

func (p *scalePrimary) stop(b *testing.B) {
	b.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.logs
	if err := p.cmd.Wait(); err != nil {
		b.Errorf("serve after SIGTERM: %v", err)
	}
}
