#!/usr/bin/env bash
# The seed app as the article runs it (Flask-JWT under gunicorn) against the gateway in front
# of the Flask example without Flask-JWT (examples/backends/flask, same gunicorn), on the
# same route, in one interleaved wrk run. Prints req/s, p99 and CPU per request, with ratios.
#
#   bench/flask-jwt.sh                        full run (REPS=5 x DURATION=10 s per side)
#   REPS=1 DURATION=3 bench/flask-jwt.sh      smoke run (not a measurement)
#
# Both apps run from one venv with the seed's pinned stack (bench/seed/requirements.txt:
# Flask-JWT 0.3.2 and the old Flask it needs), so the same Flask, Werkzeug and gunicorn serve
# both sides and the only difference is where JWT is handled.
#
# Knobs: REPS, DURATION (s), CONNS (wrk connections, default 32), WORKERS (gunicorn sync
# workers per app, default 2 x cores + 1, gunicorn's advice), PORT_BASE (default 19180;
# three ports from it), VENV_DIR (default bench/.venv/seed). Needs wrk, python3 with venv,
# and the Python package registry on the first run, which creates the venv.
# Results: bench/results/flask-jwt-<timestamp>/ (runs.csv, summary.md). Loopback only;
# every process started is stopped by PID on exit.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
cd "$ROOT"

REPS=${REPS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
CORES=$(nproc)
WORKERS=${WORKERS:-$((2 * CORES + 1))}
PORT_BASE=${PORT_BASE:-19180}
VENV_DIR=${VENV_DIR:-$BENCH_DIR/.venv/seed}
SEED_PORT=$PORT_BASE
GATEWAY_PORT=$((PORT_BASE + 1))
EXAMPLE_PORT=$((PORT_BASE + 2))
# The seed's SECRET_KEY, which the gateway keeps (docs/migrating-from-flask-jwt.md).
SECRET=super-secret
RESULTS=$BENCH_DIR/results/flask-jwt-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk is needed (Debian: apt-get install -y wrk)"
for port in $SEED_PORT $GATEWAY_PORT $EXAMPLE_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (set PORT_BASE)"; fi
done

# ---------------------------------------------------------------- setup
if [[ ! -x $VENV_DIR/bin/gunicorn ]]; then
  log "creating $VENV_DIR"
  python3 -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install -q -r "$BENCH_DIR/seed/requirements.txt"
  # Flask-JWT pins PyJWT<1.5, which no longer imports on this Python (requirements.txt).
  "$VENV_DIR/bin/pip" install -q --no-deps Flask-JWT==0.3.2
fi
cargo build --release -j"${BUILD_JOBS:-2}" --bin gateway
GATEWAY_BIN=$ROOT/target/release/gateway

# The guide's config, pointed at the example, without the access log (gunicorn logs no
# requests by default either).
sed -e "s|listen = \"127.0.0.1:8080\"|listen = \"127.0.0.1:$GATEWAY_PORT\"|" \
    -e "s|upstream = \"http://127.0.0.1:5000\"|upstream = \"http://127.0.0.1:$EXAMPLE_PORT\"|" \
    examples/backends/gateway.toml >"$RESULTS/gateway.toml"
printf '\n[logging]\naccess = false\n' >>"$RESULTS/gateway.toml"
grep -q "127.0.0.1:$EXAMPLE_PORT" "$RESULTS/gateway.toml" || die "the example config changed: update the sed above"

declare -A PID
cleanup() {
  local p
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

gunicorn_start() {  # NAME DIR PORT
  (cd "$2" && exec "$VENV_DIR/bin/gunicorn" -w "$WORKERS" -b "127.0.0.1:$3" app:app) \
    >"$RESULTS/$1.log" 2>&1 &
  PID[$1]=$!
}
gunicorn_start seed "$BENCH_DIR/seed" "$SEED_PORT"
gunicorn_start example "$ROOT/examples/backends/flask" "$EXAMPLE_PORT"
GATEWAY_SECRET=$SECRET "$GATEWAY_BIN" run --config "$RESULTS/gateway.toml" >"$RESULTS/gateway.log" 2>&1 &
PID[gateway]=$!

wait_port() {
  local i
  for i in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on $1 (logs in $RESULTS)"
}
for port in $SEED_PORT $GATEWAY_PORT $EXAMPLE_PORT; do wait_port "$port"; done

login() {  # PORT -> access token (POST /auth, as a Flask-JWT client does)
  curl -sf "http://127.0.0.1:$1/auth" -H 'Content-Type: application/json' \
    -d '{"username":"user1","password":"abcxyz"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# Both sides must give the seed's answers before they are measured.
for side in seed:$SEED_PORT gateway:$GATEWAY_PORT; do
  name=${side%%:*} port=${side#*:}
  token=$(login "$port")
  body=$(curl -sf "http://127.0.0.1:$port/protected" -H "Authorization: JWT $token")
  [[ $body == "User(id='1')" ]] || die "$name answered '$body' to a valid token"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/protected")
  [[ $code == 401 ]] || die "$name answered $code without a token"
  log "$name gives the seed's answers"
done

# ---------------------------------------------------------------- measurement
tree_pids() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }
cpu_ticks() {  # summed utime+stime of the named processes and their children
  local t=0 name p v
  for name in "$@"; do
    for p in $(tree_pids "${PID[$name]}"); do
      v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}') && t=$((t + ${v:-0}))
    done
  done
  echo "$t"
}
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
HZ=$(getconf CLK_TCK)

measure() {  # SIDE REP: one warm-up, then one measured wrk run; appends to runs.csv
  local side=$1 rep=$2 port procs token out
  if [[ $side == seed ]]; then port=$SEED_PORT procs="seed"; else port=$GATEWAY_PORT procs="gateway example"; fi
  # Tokens live 300 s: a fresh one per run, as a client would log in again.
  token=$(login "$port")
  BENCH_TOKEN=$token BENCH_SCHEME=JWT BENCH_PATH=/protected \
    wrk -t1 -c"$CONNS" -d1s -s "$BENCH_DIR/lua/auth.lua" "http://127.0.0.1:$port" >/dev/null
  local c0 g0 b0 c1 g1 b1
  local t0 t1
  t0=$(date +%s%N) c0=$(cpu_ticks $procs) g0=$(cpu_ticks gateway) b0=$(busy_ticks)
  out=$(BENCH_TOKEN=$token BENCH_SCHEME=JWT BENCH_PATH=/protected \
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency -s "$BENCH_DIR/lua/auth.lua" \
    "http://127.0.0.1:$port")
  c1=$(cpu_ticks $procs) g1=$(cpu_ticks gateway) b1=$(busy_ticks) t1=$(date +%s%N)
  local line
  line=$(grep '^BENCH_RESULT' <<<"$out") || die "wrk printed no result: $out"
  # shellcheck disable=SC2086
  local $(sed 's/^BENCH_RESULT //' <<<"$line")
  local gw_ticks=0
  [[ $side == gateway ]] && gw_ticks=$((g1 - g0))
  echo "$side,$rep,$requests,$duration_s,$rps,$p50_us,$p99_us,$non2xx,$((err_connect + err_read + err_write + err_timeout)),$((c1 - c0)),$gw_ticks,$((b1 - b0)),$(( (t1 - t0) / 1000000 )),$HZ" >>"$RESULTS/runs.csv"
  log "$(printf '%-7s rep %s: %8.0f req/s  p99 %6.2f ms  cpu %s ticks  non2xx %s' "$side" "$rep" "$rps" "$(awk "BEGIN{print $p99_us/1000}")" "$((c1 - c0))" "$non2xx")"
}

echo "side,rep,requests,duration_s,rps,p50_us,p99_us,non2xx,socket_errors,cpu_ticks,gateway_cpu_ticks,machine_busy_ticks,wall_ms,hz" >"$RESULTS/runs.csv"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}') x $CORES"
  echo "kernel: $(uname -r)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "python: $("$VENV_DIR/bin/python" --version)"
  echo "both apps: $("$VENV_DIR/bin/pip" freeze | grep -iE '^(flask|flask-jwt|pyjwt|werkzeug|gunicorn)==' | tr '\n' ' ')"
  echo "gunicorn workers per app: $WORKERS (sync); wrk: -t1 -c$CONNS -d${DURATION}s; reps: $REPS"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/machine.txt"

for rep in $(seq 1 "$REPS"); do
  # Interleaved, the order swapped every repetition so neither side always goes first.
  if (( rep % 2 )); then order="seed gateway"; else order="gateway seed"; fi
  for side in $order; do measure "$side" "$rep"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/machine.txt"

python3 "$BENCH_DIR/flask_jwt_report.py" "$RESULTS" | tee "$RESULTS/summary.md"
