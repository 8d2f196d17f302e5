#!/usr/bin/env bash
# Every row of the performance table in one run, each beside its goal
# (see scripts/bench.py for what each row measures and how).
#
#   scripts/bench.sh                          # every row (~10 minutes)
#   BENCH_ROWS="quota steady" scripts/bench.sh
#   BENCH_EVENTS=1000000 BENCH_SECS=120 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/bench.py
