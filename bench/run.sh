#!/usr/bin/env bash
# Builds the release gateway and runs it against the peers (nginx, HAProxy) in one
# interleaved run; prints the tables (with our ratios) and writes a chart.
#
#   bench/run.sh                  full run (see bench/README.md for the time it takes)
#   QUICK=1 bench/run.sh          smoke run (1 rep x 3 s: not a measurement)
#   bench/run.sh check            build, start everything, run the functional checks, stop
#   REPS=3 DURATION=10 MODES=pinned bench/run.sh     a trimmed run (knobs: bench/peers.sh)
#
# Needs nginx, haproxy and wrk (Debian: apt-get install -y nginx haproxy wrk) and, for the
# distinct-token runs, python3-cryptography. Results: bench/results/<timestamp>/
# (summary.md, chart.svg, raw CSV). Loopback traffic only; every process started is
# stopped by PID on exit.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
cd "$ROOT"
# -j2: the benchmark machine is shared; keep builds polite.
cargo build --release -j"${BUILD_JOBS:-2}" --bin gateway
export GATEWAY_CMD="${GATEWAY_CMD:-$ROOT/target/release/gateway run --config {CONFIG}}"
exec "$BENCH_DIR/peers.sh" "$@"
