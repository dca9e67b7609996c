#!/usr/bin/env bash
# make bench: every speed and memory target, measured by Go benchmarks (never
# by timed assertions in unit tests). Each benchmark reports its own figures
# with b.ReportMetric; this script runs them and keeps the output in bench.out.
# Bounded: process-level benchmarks run once (-benchtime 1x) with a fixed load.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench.out}
: >"$out"
bench() { # bench TITLE PACKAGE PATTERN BENCHTIME
  echo "== $1" | tee -a "$out"
  go test -run '^$' -bench "$3" -benchtime "$4" -count 1 -timeout 20m "$2" 2>&1 | grep -E '^(Benchmark|ok|FAIL|---|panic)|\berror\b' | tee -a "$out"
}
bench "primary: enrollment against a real hostcert-primary serve process (target >= 1400/s at c=64, p99 < 100 ms, <= 0.6 ms CPU, RSS < 100 MiB)" \
  ./scripts/e2e/ 'Enroll$' 1x
bench "primary store: group-committed issuance, 64 concurrent callers" ./primary/internal/store/ 'CommitIssuance$' 20000x
bench "primary ca: signing one host certificate" ./primary/internal/ca/ 'Sign$' 1s
bench "primary ca: signing the CRL of 100,000 revoked certificates, encoded directly vs x509.CreateRevocationList (time, peak heap)" ./primary/internal/ca/ SignCRL100k 3x
bench "client side: verifying the primary's chain on each full TLS handshake, default P-384 root vs a P-256 root" ./primary/internal/ca/ ClientVerifiesServerChain 1s
bench "agent: idle RSS (<= 20 MiB) and CPU (no busy loop), direct black-holed -> enrolled via tunnel (<= 5 s)" ./agent/ . 1x
bench "tunnel: enrollment latency, direct vs through hostcert-tunnel (p50 ratio <= 1.2)" ./scripts/e2e/ EnrollDirectVsTunnel 1x
bench "tunnel: bulk bytes/s and TLS latency, tunnel vs direct (ratios >= 0.7, <= 1.2)" ./tunnel/internal/connect/ . 1s
bench "tunnel: RSS with 1,000 idle tunnels (<= 64 MiB)" ./tunnel/ . 1x
# hostcert-only workloads (step-ca has no equivalent in the side-by-side script).
bench "hostcert only: a fleet renewing over mutual TLS, a new connection each, full handshake vs TLS resumption (renew/s, p99, primary CPU per renewal at c1/8/64)" \
  ./scripts/e2e/ 'FleetRenew$' 1x
bench "hostcert only: CRL fetches by a fleet at c64, unconditional (200) vs conditional GET (304) (fetch/s, primary CPU per fetch)" \
  ./scripts/e2e/ 'FleetCRL$' 1x
# Issue 10 item 10: a store of 1,000,000 hosts and 100,000 revoked
# certificates (seeded once per run into $HOSTCERT_BENCH_CACHE, default
# $TMPDIR/hostcert-bench; about 1.4 GB; docs/primary-store.md#a-million-hosts).
bench "primary at 1M hosts: CRL of 100,000 entries built from the store and signed (target <= 1 s)" \
  ./primary/internal/crl/ 'Regenerate100k$' 3x
bench "primary at 1M hosts: the store's share of an enrollment, empty vs 1M-host store (target ratio >= 0.9)" \
  ./primary/internal/store/storebench/ 'IssuanceAtScale$' 1x
bench "primary at 1M hosts: fleet-wide counts (metrics' expiry counts, inventory/dashboard), seconds per query" \
  ./primary/internal/store/storebench/ 'CountsAtScale$' 1x
bench "primary at 1M hosts on PostgreSQL (seeded into a throwaway cluster each run): the store's share of an enrollment, empty vs 1M (target ratio >= 0.9); fleet-wide counts" \
  ./primary/internal/store/storebench/ 'AtScalePostgres$' 1x
bench "primary at 1M hosts: host import of 100,000 names through the CLI (target <= 10 s)" \
  ./primary/internal/cli/ 'HostImport100k$' 1x
bench "primary at 1M hosts: real serve processes, enrollments/s empty vs 1M (target ratio >= 0.9), peak RSS (VmHWM, target <= 150 MiB)" \
  ./primary/ 'Scale$' 1x
# Issue 10 item 9: the same enrollment load on each store, every issuance
# durable before the reply; the benchmark prints its own table.
echo "== primary: enrollments/s by store: SQLite, PostgreSQL one node, two nodes on one database, at concurrency 1, 8, 64 (one token per client worker; TOKENS=shared: one for all)" | tee -a "$out"
go test -run '^$' -bench 'EnrollStores$' -benchtime 1x -count 1 -timeout 20m ./scripts/e2e/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|---|panic|enrollments:|\|)|\berror\b' | tee -a "$out"
echo "figures saved in $out"
