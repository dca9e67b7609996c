#!/usr/bin/env bash
# make bench: every speed and memory target, measured by Go benchmarks (never
# by timed assertions in unit tests). Each benchmark reports its own figures
# with b.ReportMetric; this script runs them once each and keeps the output in
# bench.out for the record. Bounded: each benchmark bounds its own load.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench.out}
: >"$out"
run() { # run PACKAGES... ; one pass, no unit tests
  go test -run '^$' -bench . -benchtime 1x -count 1 -timeout 20m "$@" 2>&1 | tee -a "$out"
}
echo "== primary store: group-committed issuance" | tee -a "$out"
run ./primary/internal/store/
echo "== primary: enrollment against a real hostcert-primary process" | tee -a "$out"
run ./scripts/e2e/ -bench Enroll
echo "== agent footprint and fallback" | tee -a "$out"
run ./agent/...
echo "== tunnel: latency, throughput, idle tunnels" | tee -a "$out"
run ./tunnel/...
echo "figures saved in $out"
