package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/internal/nettest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// Footprint benchmarks: they build hostcert-agent, run it as a separate
// process against the real primary (in-process, primary/primarytest) on loopback and report what they measure with
// b.ReportMetric. Bounded: one idle window of idleWindow, one enrollment per
// iteration.

const idleWindow = 15 * time.Second

func buildAgent(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "hostcert-agent")
	out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startServer(b *testing.B) *primarytest.Primary {
	b.Helper()
	return primarytest.Start(b, primarytest.Options{})
}

func agentArgs(srv *primarytest.Primary, data, dial string, args ...string) []string {
	return append(args, "--config", filepath.Join(data, "none.yaml"), "--data", data,
		"--primary", "primary.test:"+srv.Port(), "--primary-dial", dial, "--log-format", "json")
}

func mustRun(b *testing.B, bin string, args ...string) {
	b.Helper()
	cmd := exec.Command(bin, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func writeEmptyConfig(b *testing.B, data string) {
	b.Helper()
	if err := os.MkdirAll(data, 0o700); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "none.yaml"), []byte("log_level: info\n"), 0o644)
}

// BenchmarkIdle reports the resident memory of `hostcert-agent run` waiting
// (target <= 20 MiB) and its CPU use over an idle window (target: no busy loop).
func BenchmarkIdle(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	bin := buildAgent(b)
	srv := startServer(b)
	data := filepath.Join(b.TempDir(), "data")
	writeEmptyConfig(b, data)
	mustRun(b, bin, agentArgs(srv, data, srv.Addr(), "get-ca-cert", "--fingerprint", srv.Fingerprint())...)
	srv.AddHost("idle.example.com")
	mustRun(b, bin, agentArgs(srv, data, srv.Addr(), "get-cert", "--name", "idle.example.com")...)
	for i := 0; i < b.N; i++ {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, agentArgs(srv, data, srv.Addr(), "run")...)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pid := cmd.Process.Pid
		time.Sleep(2 * time.Second) // start-up: config, CRL check, first wake
		rss, err := vmRSS(pid)
		if err != nil {
			cmd.Process.Kill()
			b.Fatal(err)
		}
		t0, err := cpuTicks(pid)
		if err != nil {
			cmd.Process.Kill()
			b.Fatal(err)
		}
		time.Sleep(idleWindow)
		t1, err := cpuTicks(pid)
		rss2, _ := vmRSS(pid)
		cmd.Process.Signal(os.Interrupt)
		werr := cmd.Wait()
		if err != nil {
			b.Fatal(err)
		}
		if werr != nil {
			b.Fatalf("run exited with %v after SIGINT\n%s", werr, stderr.String())
		}
		if rss2 > rss {
			rss = rss2
		}
		const clkTck = 100 // USER_HZ on Linux
		cpu := float64(t1-t0) / clkTck / idleWindow.Seconds() * 100
		b.ReportMetric(float64(rss)/1024, "RSS-MiB")
		b.ReportMetric(cpu, "%CPU-idle")
	}
}

// BenchmarkFallbackToTunnel reports the time from "direct path black-holed"
// to "enrolled through the tunnel" with default timeouts (target <= 5 s):
// one get-cert process per iteration, direct through a black-holing
// toxiproxy, one CONNECT tunnel configured.
func BenchmarkFallbackToTunnel(b *testing.B) {
	bin := buildAgent(b)
	srv := startServer(b)
	toxi, err := nettest.NewToxi(srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(toxi.Close)
	relay, err := nettest.NewRelay("primary.test:"+srv.Port(), srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { relay.Close() })
	seed := filepath.Join(b.TempDir(), "seed")
	writeEmptyConfig(b, seed)
	mustRun(b, bin, agentArgs(srv, seed, srv.Addr(), "get-ca-cert", "--fingerprint", srv.Fingerprint())...)
	ca, _ := os.ReadFile(filepath.Join(seed, certstore.CAFile))
	if err := toxi.BlackHole(); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data := filepath.Join(b.TempDir(), fmt.Sprintf("d%d", i))
		writeEmptyConfig(b, data)
		os.WriteFile(filepath.Join(data, certstore.CAFile), ca, 0o644)
		name := fmt.Sprintf("dmz%d.example.com", i)
		srv.AddHost(name)
		start := time.Now()
		mustRun(b, bin, agentArgs(srv, data, toxi.Addr(), "get-cert", "--name", name, "--tunnel", relay.Addr())...)
		total += time.Since(start)
		st, _ := os.ReadFile(filepath.Join(data, certstore.StateFile))
		if !strings.Contains(string(st), "tunnel "+relay.Addr()) {
			b.Fatalf("enrolled, but not through the tunnel: %s", st)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/fallback-enroll")
}

func vmRSS(pid int) (kib int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// cpuTicks is utime+stime of pid in clock ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields after "pid (comm)"; index 0 is field 3
	u, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return u + st, nil
}
