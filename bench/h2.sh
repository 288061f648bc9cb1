#!/usr/bin/env bash
# HTTP/2 clients in front of an HTTP/1.1 backend: nginx (`http2` on the same route, no
# auth) against the gateway (HS256 verified on every request), over h2c (prior knowledge)
# and TLS (ALPN h2), measured with h2load in interleaved runs.
#
#   bench/h2.sh                           REPS=3 DURATION=8, pinned
#   REPS=1 DURATION=3 bench/h2.sh         smoke run (not a measurement)
#   MODE=unpinned bench/h2.sh
#
# Configurations (ports from PORT_BASE, default 22080): backend nginx +0 (the bench's
# conf/backend.nginx.conf); nginx proxy +1 (h2c) and +2 (TLS), one worker, upstream
# keep-alive, `proxy_http_version 1.1` (as conf/proxy.nginx.conf); the gateway +3 (h2c)
# and +4 (TLS), `workers = 1`, bench/gateway.toml's route and token settings. Each run:
# h2load -c CONNS -m STREAMS -D DURATION (a second of warm-up first) with one valid HS256
# token; CPU µs per request from /proc/PID/stat (the proxy's process tree). In pinned mode
# the servers run on SERVER_CPUS and h2load on LOAD_CPUS. A run with any non-2xx answer
# fails. Self-signed certificate made with the openssl CLI.
#
# Needs nginx (with the http2 module: Debian's does), h2load (nghttp2-client), openssl,
# python3, curl. Runs GATEWAY_BIN (default target/release/gateway), so build first.
# Every process it starts is stopped by PID on exit. Results: bench/results/<ts>-h2/.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/gateway}
REPS=${REPS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-1}
MODE=${MODE:-pinned}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
PORT_BASE=${PORT_BASE:-22080}
JWT_SECRET=${JWT_SECRET:-bench-hs256-secret-0123456789abcdef}
RUN_DIR=${RUN_DIR:-$(mktemp -d -t authgw-h2.XXXXXX)}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)-h2}
BACKEND_PORT=$PORT_BASE
HZ=$(getconf CLK_TCK)

STARTED=()
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in nginx h2load openssl python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -x "$GATEWAY_BIN" ]] || die "$GATEWAY_BIN not found: cargo build --release first"
for p in $(seq "$PORT_BASE" $((PORT_BASE + 4))); do
  [[ -z "$(ss -Htln "sport = :$p")" ]] || die "port $p already in use"
done
mkdir -p "$RESULTS_DIR"
pin() { if [[ $MODE == pinned ]]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
pinned_cmd() {  # cpus cmd... -> CMD (taskset execs the command, so $! is its pid)
  if [[ $MODE == pinned ]]; then CMD=(taskset -c "$1" "${@:2}"); else CMD=("${@:2}"); fi
}

python3 "$BENCH_DIR/gen_tokens.py" "$RUN_DIR" --secret "$JWT_SECRET" >/dev/null
token=$(cat "$RUN_DIR/tokens/hs256.valid.jwt")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$RUN_DIR/tls.key" -out "$RUN_DIR/tls.crt" 2>/dev/null

sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
  "$BENCH_DIR/conf/backend.nginx.conf" >"$RUN_DIR/backend.conf"
cat >"$RUN_DIR/proxy.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $RUN_DIR/proxy.pid;
error_log $RUN_DIR/proxy.err warn;
events { worker_connections 16000; multi_accept on; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    http2_max_requests 1000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$((PORT_BASE + 1)) http2 backlog=4096;
        listen 127.0.0.1:$((PORT_BASE + 2)) ssl http2 backlog=4096;
        ssl_certificate $RUN_DIR/tls.crt;
        ssl_certificate_key $RUN_DIR/tls.key;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
EOF
# The gateway: bench/gateway.toml's settings with two listeners instead of `listen`.
sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
    -e '/^listen = /d' "$BENCH_DIR/gateway.toml" >"$RUN_DIR/gateway.toml"
cat >>"$RUN_DIR/gateway.toml" <<EOF

[[listeners]]
addr = "127.0.0.1:$((PORT_BASE + 3))"

[[listeners]]
addr = "127.0.0.1:$((PORT_BASE + 4))"
[listeners.tls]
cert = "$RUN_DIR/tls.crt"
key = "$RUN_DIR/tls.key"
EOF

start() {  # name cpus cmd...
  pinned_cmd "$2" "${@:3}"
  "${CMD[@]}" >"$RUN_DIR/$1.log" 2>&1 &
  STARTED+=("$!")
  eval "PID_$1=$!"
}
wait_http() {  # url
  local i
  for i in $(seq 100); do
    [[ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$1")" != 000 ]] && return 0
    sleep 0.1
  done
  die "nothing answers at $1"
}
start backend "$SERVER_CPUS" nginx -c "$RUN_DIR/backend.conf" -e "$RUN_DIR/backend.err" -g 'daemon off;'
wait_http "http://127.0.0.1:$BACKEND_PORT/"
start nginx "$SERVER_CPUS" nginx -c "$RUN_DIR/proxy.conf" -e "$RUN_DIR/proxy.err" -g 'daemon off;'
start gateway "$SERVER_CPUS" "$GATEWAY_BIN" run --config "$RUN_DIR/gateway.toml"
wait_http "https://127.0.0.1:$((PORT_BASE + 2))/"
wait_http "https://127.0.0.1:$((PORT_BASE + 4))/"

# Both speak HTTP/2 on both ports, and the gateway refuses a request without a token.
for url in "http://127.0.0.1:$((PORT_BASE + 1))/" "https://127.0.0.1:$((PORT_BASE + 2))/" \
           "http://127.0.0.1:$((PORT_BASE + 3))/" "https://127.0.0.1:$((PORT_BASE + 4))/"; do
  got=$(curl -sk --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' \
        -H "Authorization: Bearer $token" "$url")
  [[ $got == "2 200" ]] || die "$url: expected HTTP/2 200, got '$got'"
done
got=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((PORT_BASE + 3))/")
[[ $got == 401 ]] || die "the gateway answered $got without a token"

cpu_ticks() {  # pid -> utime+stime of it and its children (nginx workers)
  local t=0 p v
  for p in $1 $(ps -o pid= --ppid "$1" | tr -d ' '); do
    v=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12+$13}') && t=$((t + v))
  done
  echo "$t"
}

echo "config,transport,rep,requests,rps,cpu_us_per_req,mean_ms,max_ms" >"$RESULTS_DIR/runs.csv"
run() {  # config transport rep
  local pid port url
  case $1 in nginx) pid=$PID_nginx; port=$((PORT_BASE + 1)) ;; gateway) pid=$PID_gateway; port=$((PORT_BASE + 3)) ;; esac
  if [[ $2 == tls ]]; then url="https://127.0.0.1:$((port + 1))/"; else url="http://127.0.0.1:$port/"; fi
  local out=$RUN_DIR/h2load.$1.$2.$3.out t0 t1
  t0=$(cpu_ticks "$pid")
  pin "$LOAD_CPUS" h2load -t 1 -c "$CONNS" -m "$STREAMS" -D "$DURATION" --warm-up-time=1 \
    -H "Authorization: Bearer $token" "$url" >"$out" 2>&1 || die "h2load failed: $(tail -3 "$out")"
  t1=$(cpu_ticks "$pid")
  local done2xx total rps mean max
  total=$(awk '/^requests:/ {print $2}' "$out")
  done2xx=$(awk '/^status codes:/ {gsub(",", "", $3); print $3}' "$out")
  [[ "$total" -gt 0 && "$done2xx" == "$total" ]] || die "$1 $2: not every answer was 2xx: $(grep -E '^(requests|status codes):' "$out")"
  rps=$(awk '/^finished in/ {print $4}' "$out")
  mean=$(awk '/^time for request:/ {print $4}' "$out")
  max=$(awk '/^time for request:/ {print $3}' "$out")
  # CPU over the whole h2load run (warm-up included) per request measured.
  local cpu
  cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$total" -v d="$DURATION" \
        'BEGIN { printf "%.1f", t / hz * 1e6 / (n * (d + 1) / d) }')
  echo "$1,$2,$3,$total,$rps,$cpu,$mean,$max" >>"$RESULTS_DIR/runs.csv"
  log "$1 $2 rep $3: $rps req/s, $cpu µs CPU/req, mean $mean"
}
for rep in $(seq "$REPS"); do
  for transport in h2c tls; do
    # The order alternates, so neither side always runs first.
    if (( rep % 2 )); then order="nginx gateway"; else order="gateway nginx"; fi
    for c in $order; do run "$c" "$transport" "$rep"; done
  done
done

python3 - "$RESULTS_DIR/runs.csv" "$MODE" "$CONNS" "$STREAMS" <<'EOF' | tee "$RESULTS_DIR/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(c, t, k):
    return statistics.median(float(r[k]) for r in rows if r["config"] == c and r["transport"] == t)
print(f"HTTP/2 clients, {sys.argv[2]}, h2load -c {sys.argv[3]} -m {sys.argv[4]}; medians of "
      f"{len(rows) // 4} runs each\n")
print("| transport | nginx req/s | gateway req/s | gateway / nginx | nginx CPU µs/req | gateway CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|")
for t in ("h2c", "tls"):
    n, g = med("nginx", t, "rps"), med("gateway", t, "rps")
    print(f"| {t} | {n:,.0f} | {g:,.0f} | {g / n:.2f} | {med('nginx', t, 'cpu_us_per_req'):.1f} | "
          f"{med('gateway', t, 'cpu_us_per_req'):.1f} |")
EOF
