//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// BenchmarkEnrollStores measures enrollments/s at concurrency 1, 8 and 64
// for each store the primary can run on (issue 10, item 9):
//
//   - sqlite: one `hostcert-primary serve` on its embedded SQLite file (WAL,
//     synchronous=FULL: each group commit is fsynced before any of its
//     callers gets an answer);
//   - postgres-1: one node on a throwaway PostgreSQL cluster (pgtest), with
//     fsync and synchronous_commit on (checked below): COMMIT returns once
//     the WAL record is flushed;
//   - postgres-2: two nodes on one database, the second made by
//     `hostcert-primary join` in its own data directory; the load generator
//     spreads its requests over both (request i goes to node i mod 2,
//     whichever worker sends it).
//
// As BenchmarkEnroll: real processes on loopback, a fresh P-256 key and CSR
// per host (made before the timed phase), a new TLS connection per
// enrollment, the primary's leaf pinned after one full verification.
// Every enrollment presents a many-use token. A fleet rolled out by several
// installers (or a deployment tool's parallel workers) holds one token per
// installer; every worker of the load generator plays one installer and has
// its own token. With a single token shared by every worker, each issuance
// of every node updates the same token row, and PostgreSQL holds that row's
// lock until COMMIT has flushed the WAL: issuances of one token commit one
// after the other, fleet-wide (TOKENS=shared measures that case, for
// comparison; docs/primary-store.md explains it).
//
// Besides the rates it reports the CPU time each enrollment cost the
// primary node(s), the database server (PostgreSQL: the postmaster and its
// backends) and the load generator itself: on a machine with few cores the
// three compete for the same CPUs, and their sum says whether the machine,
// not the store, was the limit.
//
// It prints a table: store × concurrency → enroll/s, p50, p99, CPU.
func BenchmarkEnrollStores(b *testing.B) {
	shared := os.Getenv("TOKENS") == "shared"
	dns := dnstest.New(b, nil)
	var keys []string
	rows := map[string]string{} // the last run of each case
	for _, store := range []string{"sqlite", "postgres-1", "postgres-2"} {
		b.Run("store="+store, func(b *testing.B) {
			nodes, db := benchNodes(b, store, dns.Addr())
			for _, conc := range []int{1, 8, 64} {
				b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
					n := b.N * map[int]int{1: 200, 8: 1000, 64: 3000}[conc]
					r := enrollLoad(b, nodes, db, conc, n, shared)
					b.ReportMetric(r.rate, "enroll/s")
					b.ReportMetric(ms(r.p50), "p50-ms")
					b.ReportMetric(ms(r.p99), "p99-ms")
					b.ReportMetric(r.cpu[0], "primary-cpu-ms/enroll")
					b.ReportMetric(r.cpu[1], "db-cpu-ms/enroll")
					b.ReportMetric(r.cpu[2], "client-cpu-ms/enroll")
					b.ReportMetric(0, "ns/op")
					key := store + "/" + strconv.Itoa(conc)
					if _, seen := rows[key]; !seen {
						keys = append(keys, key)
					}
					rows[key] = fmt.Sprintf("| %-10s | %11d | %8.0f | %6.1f | %6.1f | %7.2f | %6.2f | %6.2f |",
						store, conc, r.rate, ms(r.p50), ms(r.p99), r.cpu[0], r.cpu[1], r.cpu[2])
				})
			}
		})
	}
	tokens := "one token per worker"
	if shared {
		tokens = "one token shared by every worker"
	}
	fmt.Printf("enrollments: new TLS connection and fresh P-256 key each, durable before the reply, %s; CPU in ms per enrollment\n", tokens)
	fmt.Println("| store      | concurrency | enroll/s | p50 ms | p99 ms | primary |     db | client |")
	fmt.Println("|------------|-------------|----------|--------|--------|---------|--------|--------|")
	for _, k := range keys {
		fmt.Println(rows[k])
	}
}

// benchNodes starts the primary node(s) of one store and returns them with
// the process ID of the PostgreSQL server (0 for SQLite).
func benchNodes(b *testing.B, store, dnsAddr string) ([]*primaryProc, int) {
	b.Helper()
	if store == "sqlite" {
		return []*primaryProc{newPrimary(b, primaryOpts{dnsServer: dnsAddr})}, 0
	}
	f := newFleet(b, pgtest.Shared(b), "")
	db := durablePostgres(b, f.dsn)
	if store == "postgres-1" {
		f.nodes[1].p.stop(5 * time.Second)
		return f.nodes[:1], db
	}
	return f.nodes[:], db
}

// durablePostgres fails the benchmark unless PostgreSQL flushes every
// commit to disk before COMMIT returns, and returns the server's process ID
// (the parent of every backend).
func durablePostgres(b *testing.B, dsn string) int {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range []string{"fsync", "synchronous_commit"} {
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+s).Scan(&v); err != nil {
			b.Fatal(err)
		}
		if v != "on" {
			b.Fatalf("PostgreSQL runs with %s = %s: issuances would not be durable before the reply", s, v)
		}
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		b.Fatal(err)
	}
	server, err := parentPID(backend)
	if err != nil {
		b.Fatal(err)
	}
	return server
}

type loadResult struct {
	rate     float64 // enrollments/s
	p50, p99 time.Duration
	cpu      [3]float64 // ms per enrollment: primary nodes, database server, load generator
}

// enrollLoad enrolls n new hosts with conc workers spread over nodes and
// fails the benchmark if any enrollment fails. db is the PostgreSQL
// server's process ID, 0 when there is none.
func enrollLoad(b *testing.B, nodes []*primaryProc, db, conc, n int, sharedToken bool) loadResult {
	b.Helper()
	run := fmt.Sprintf("s%d-c%d", time.Now().UnixNano(), conc) // names unique per run: -count N works
	// Tokens are made on node 1; the others read them from the database.
	tokens := make([]string, conc)
	for w := range tokens {
		if sharedToken && w > 0 {
			tokens[w] = tokens[0]
			continue
		}
		// Workers take requests from one queue, so any of them may do all.
		name := fmt.Sprintf("bench-%s-w%d", run, w)
		tokens[w] = strings.TrimSpace(nodes[0].admin("token", "create", "--name", name, "--max-uses", strconv.Itoa(n), "--valid-for", "1h"))
	}
	clients := make([]*apiClient, len(nodes))
	for i, pr := range nodes {
		clients[i] = newPinnedClient(b, pr.listen, primaryName, pr.caPEM)
	}
	reqs := make([]protocol.EnrollRequest, n)
	for i := range reqs {
		name := fmt.Sprintf("h%d.%s.bench.hostcert.test", i, run)
		reqs[i] = protocol.EnrollRequest{Name: name, CSR: csrFor(b, name)}
	}
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	cpu := func() (c [3]time.Duration) {
		for _, pr := range nodes {
			t, _ := cpuTime(pr.p.cmd.Process.Pid)
			c[0] += t
		}
		if db != 0 {
			c[1], _ = treeCPUTime(db)
		}
		c[2] = selfCPUTime()
		return c
	}
	cpu0 := cpu()
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(token string) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				req := reqs[i]
				req.Token = token
				s := time.Now()
				if _, err := clients[i%len(clients)].enroll(ctx, req); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				lat[i] = time.Since(s)
			}
		}(tokens[w])
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	cpu1 := cpu()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d enrollments failed; first: %v", f, n, firstErr.Load())
	}
	slices.Sort(lat)
	r := loadResult{rate: float64(n) / elapsed.Seconds(), p50: lat[n/2], p99: lat[n*99/100]}
	for i := range r.cpu {
		r.cpu[i] = ms(cpu1[i]-cpu0[i]) / float64(n)
	}
	return r
}

// procStat returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is the first).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:]), nil
}

func parentPID(pid int) (int, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// treeCPUTime is the CPU time of a process, of its children that ended
// (reaped) and of its live children: a PostgreSQL server and its backends.
func treeCPUTime(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cf, err := procStat(child); err == nil && cf[1] == strconv.Itoa(pid) {
			u, _ := strconv.ParseInt(cf[11], 10, 64)
			s, _ := strconv.ParseInt(cf[12], 10, 64)
			ticks += u + s
		}
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / clkTck, nil
}

// selfCPUTime is the CPU time this process (the load generator) has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
