#!/usr/bin/env bash
# Runs every Go native fuzz target of the module for a bounded time each
# (default 20s; `make fuzz FUZZTIME=2m` for longer) and prints one line per
# target with its executions. Targets are found, not listed: a new
# `func FuzzX(f *testing.F)` in any *_test.go is picked up by itself.
# A crash fails the run; the input that caused it is left in the package's
# testdata/fuzz/ directory, where it becomes part of the seed corpus that
# every `go test` runs (commit it with the fix).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-20s}"
GO="${GO:-go}"
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

mapfile -t targets < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . \
  | while read -r file; do
      dir="$(dirname "$file")"
      grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //' | while read -r name; do echo "$dir $name"; done
    done | sort)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${fuzztime} each"
failed=0
for t in "${targets[@]}"; do
  read -r dir name <<<"$t"
  out="$log/$(echo "$dir-$name" | tr '/.' '__').txt"
  if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 2 "$dir" >"$out" 2>&1; then
    result=ok
  else
    result=FAIL
    failed=$((failed + 1))
  fi
  execs="$(grep -oE 'execs: [0-9]+' "$out" | tail -1 | awk '{print $2}')"
  printf 'fuzz: %-4s %-45s %-28s %10s execs\n' "$result" "${dir#./}" "$name" "${execs:-?}"
  if [ "$result" = FAIL ]; then
    sed 's/^/    /' "$out" | tail -40
  fi
done
if [ "$failed" -gt 0 ]; then
  echo "fuzz: $failed target(s) failed" >&2
  exit 1
fi
