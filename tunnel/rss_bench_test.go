//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vmRSS reads a process's resident set size in KiB from /proc.
func vmRSS(tb testing.TB, pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return kb
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// BenchmarkIdleTunnelsRSS runs the built binary, opens 1,000 tunnels through
// it (each carries one echo round trip, then stays idle) and reports the
// process's VmRSS (target <= 64 MiB) and its peak VmHWM.
func BenchmarkIdleTunnelsRSS(b *testing.B) {
	const tunnels = 1000
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 8192 {
		rl.Cur = min(8192, rl.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	up := echoServer(b)
	p, _ := start(b, fmt.Sprintf(`allow:
  - target: primary.test:1556
    upstream: %s
limits:
  max_connections_per_source: 2000
  max_tunnels: 2000
  max_connections: 4000
  new_connections_per_second: 100000
  new_connections_burst: 100000
`, up.Addr()), "--log-level", "warn")
	conns := make([]net.Conn, 0, tunnels)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range tunnels {
		c, st := connect(b, p.addr, "primary.test:1556")
		if st != http.StatusOK {
			b.Fatalf("tunnel %d: CONNECT = %d", i, st)
		}
		echo(b, c, "hello")
		conns = append(conns, c)
	}
	time.Sleep(time.Second) // let the runtime settle (GC, freed request state)
	pid := p.cmd.Process.Pid
	var rss int
	b.ResetTimer()
	for range b.N {
		rss = vmRSS(b, pid, "VmRSS")
	}
	b.StopTimer()
	b.ReportMetric(float64(rss)/1024, "RSS-MiB")
	b.ReportMetric(float64(vmRSS(b, pid, "VmHWM"))/1024, "peak-RSS-MiB")
	b.ReportMetric(tunnels, "tunnels")
}
