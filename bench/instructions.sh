#!/usr/bin/env bash
# Instructions per request of the release gateway, counted by valgrind's callgrind: the
# figure that decides whether a change to the request path pays, on a machine too busy or
# too noisy for wall-clock runs (it counts the same on a loaded machine as on a quiet one).
#
#   bench/instructions.sh                     HS256, valid token, HTTP/1.1, one keep-alive connection
#   TOKEN=badsig bench/instructions.sh        the 401 path (bad signature)
#   PROTO=h2c bench/instructions.sh           HTTP/2 (prior knowledge) to the gateway, HTTP/1.1 upstream
#   CONNS=16 REQUESTS=8000 bench/instructions.sh
#
# Starts the backend nginx (conf/backend.nginx.conf) and the gateway (gateway.toml, one
# worker) under `valgrind --tool=callgrind` on loopback, sends WARM requests with h2load,
# zeroes the counters (`callgrind_control -z`), sends REQUESTS more over CONNS keep-alive
# connections, dumps the counters (`callgrind_control -d`) and prints the instructions
# counted in the gateway's process (all threads) divided by REQUESTS. Every response must
# have the expected status (200 for a valid token, 401 otherwise), or the run fails.
# The dump stays in the run directory (printed) for `callgrind_annotate`.
#
# Valgrind runs SHA-256 without SHA-NI: a token's HMAC costs ~8.5k instructions here and a
# small fraction of that on the CPU. The verified-token cache skips it on a repeated token.
#
# Needs valgrind, nginx, h2load (Debian: nghttp2-client), python3, curl. It does not build:
# it runs GATEWAY_BIN (default target/release/gateway). Every process it starts is stopped
# by PID on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/gateway}
GATEWAY_TOML=${GATEWAY_TOML:-$BENCH_DIR/gateway.toml}   # a template with the @VARS@ of peers.sh
TOKEN=${TOKEN:-valid}            # gen_tokens.py kind: valid badsig tampered expired noexp
PROTO=${PROTO:-h1}               # h1 | h2c
WARM=${WARM:-300}
REQUESTS=${REQUESTS:-2000}
CONNS=${CONNS:-1}
PORT_BASE=${PORT_BASE:-20080}    # backend +0, gateway +3
JWT_SECRET=${JWT_SECRET:-bench-hs256-secret-0123456789abcdef}
RUN_DIR=${RUN_DIR:-$(mktemp -d -t authgw-instr.XXXXXX)}
BACKEND_PORT=$PORT_BASE
GATEWAY_PORT=$((PORT_BASE + 3))

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

for tool in valgrind callgrind_control nginx h2load python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -x "$GATEWAY_BIN" ]] || die "$GATEWAY_BIN not found: cargo build --release first"
for p in $BACKEND_PORT $GATEWAY_PORT; do
  [[ -z "$(ss -Htln "sport = :$p")" ]] || die "port $p already in use"
done

render() {
  sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
      -e "s#@GATEWAY_PORT@#$GATEWAY_PORT#g" -e "s#@HS256_SECRET@#$JWT_SECRET#g" \
      -e "s#@RS256_PUB@#$RUN_DIR/keys/rs256.pub.pem#g" \
      -e "s#@ES256_PUB@#$RUN_DIR/keys/es256.pub.pem#g" "$1" >"$2"
}
wait_http() {  # pid port
  local i
  for i in $(seq 300); do
    kill -0 "$1" 2>/dev/null || die "process $1 exited during start-up (logs in $RUN_DIR)"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$2/")" != 000 ]] && return 0
    sleep 0.2
  done
  die "nothing answers on :$2"
}

python3 "$BENCH_DIR/gen_tokens.py" "$RUN_DIR" --secret "$JWT_SECRET" >/dev/null
token=$(cat "$RUN_DIR/tokens/hs256.$TOKEN.jwt")
want=200
[[ $TOKEN == valid ]] || want=401

render "$BENCH_DIR/conf/backend.nginx.conf" "$RUN_DIR/backend.nginx.conf"
nginx -c "$RUN_DIR/backend.nginx.conf" -e "$RUN_DIR/backend.nginx.err" -g 'daemon off;' \
  >"$RUN_DIR/backend.log" 2>&1 &
STARTED+=("$!")
wait_http "$!" "$BACKEND_PORT"

render "$GATEWAY_TOML" "$RUN_DIR/gateway.toml"
valgrind --tool=callgrind --callgrind-out-file="$RUN_DIR/callgrind.out.%p" \
  "$GATEWAY_BIN" run --config "$RUN_DIR/gateway.toml" >"$RUN_DIR/gateway.log" 2>&1 &
gw=$!
STARTED+=("$gw")
wait_http "$gw" "$GATEWAY_PORT"

load() {  # requests
  local args=(-n "$1" -c "$CONNS" -m 1 -H "Authorization: Bearer $token")
  [[ $PROTO == h1 ]] && args+=(--h1)
  h2load "${args[@]}" "http://127.0.0.1:$GATEWAY_PORT/" >"$RUN_DIR/h2load.out" 2>&1 ||
    die "h2load failed: $(tail -3 "$RUN_DIR/h2load.out")"
  local status
  status=$(awk -v w="$want" '/^status codes:/ {
      for (i = 3; i <= NF; i += 2) { gsub(",", "", $i); n[substr($(i + 1), 1, 1)] += $i }
      print n[substr(w, 1, 1)] + 0 }' "$RUN_DIR/h2load.out")
  [[ "$status" == "$1" ]] ||
    die "expected $1 responses with status ${want:0:1}xx, got $status: $(grep -E '^(requests|status codes):' "$RUN_DIR/h2load.out")"
}

log "warm-up: $WARM requests"
load "$WARM"
callgrind_control -z "$gw" >/dev/null 2>&1
log "measured: $REQUESTS requests, $CONNS connection(s), $PROTO, token $TOKEN"
load "$REQUESTS"
callgrind_control -d "$gw" >/dev/null 2>&1
dump=$(ls -t "$RUN_DIR"/callgrind.out."$gw".* 2>/dev/null | head -1)
[[ -n "$dump" ]] || die "no callgrind dump in $RUN_DIR"
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
echo "instructions/request: $(( total / REQUESTS )) (total $total over $REQUESTS; $PROTO, c=$CONNS, token $TOKEN)"
echo "dump: $dump (callgrind_annotate --inclusive=yes $dump)"
