#!/usr/bin/env bash
# run.sh runs edgeloop's benchmarks and prints them through benchstat. Targets are ratios between
# benchmarks run side by side in one process (see docs/benchmarks.md), so a noisy shared machine
# moves both sides together.
#
#   bench/run.sh [go test -bench regexp]    default: every benchmark
# COUNT (default 6) sets -count; results land in bench/out/<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
count=${COUNT:-6}
mkdir -p bench/out
out=bench/out/$(date -u +%Y%m%dT%H%M%SZ).txt
echo "bench: go test -run '^\$' -bench '$pattern' -benchmem -count $count ./... > $out" >&2
go test -run '^$' -bench "$pattern" -benchmem -count "$count" ./... | tee "$out"
"$(scripts/tools.sh path benchstat)" "$out"
