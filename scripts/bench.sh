#!/usr/bin/env bash
# Runs Slipway's benchmarks. Every figure is reported next to a baseline measured in the same
# run (a ratio), never against a fixed wall-clock number. Output: bench.out (raw) and a summary.
# BENCHTIME (default 1x) sets -benchtime; BENCH (default .) selects benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-docker.sh
examples/demo-service/build-images.sh >/dev/null

pkgs=$(grep -l '^func Benchmark' $(git ls-files '*_test.go') | xargs -n1 dirname | sort -u | sed 's|^|./|')
echo "== benchmarks in: $(echo $pkgs)"
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1x}" -timeout 60m $pkgs | tee bench.out
echo
echo "== summary (see BENCHMARKS.md for what each figure means)"
grep -E '^Benchmark' bench.out || true
