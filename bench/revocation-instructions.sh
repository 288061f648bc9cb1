#!/usr/bin/env bash
# What the revocation check costs, in instructions per request (loopback only).
#
#   bench/revocation-instructions.sh                build the release binary, then measure
#   GATEWAY=path/to/gateway bench/revocation-instructions.sh   use that binary (no build)
#
# Wall-clock throughput on a small shared machine moves by more than the 2 % the check
# may cost, so this counts instructions instead, which do not depend on what else runs.
# Two gateways, "off" (no [revocation]) and "on" ([revocation] with a Redis store holding
# REVOKED revoked jtis, default 100,000), run under valgrind's callgrind, one worker each,
# `respond = "identity"`. Each gets WARMUP keep-alive requests with one valid token that
# carries a jti (so the verified-token cache answers, as it does in production), then the
# counters are zeroed, REQUESTS more are sent, and the counters dumped: the instructions
# per request of each, and the on/off ratio. Needs valgrind, redis-server, redis-cli,
# python3, curl.
#
# Every process it starts is stopped by PID on exit; ports are PORT_BASE.. (default 18280).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
REVOKED=${REVOKED:-100000}
WARMUP=${WARMUP:-300}
REQUESTS=${REQUESTS:-2000}
PORT_BASE=${PORT_BASE:-18280}
REDIS_PORT=$PORT_BASE
OFF_PORT=$((PORT_BASE + 1))
ON_PORT=$((PORT_BASE + 2))
ON_ADMIN=$((PORT_BASE + 3))

GATEWAY=${GATEWAY:-}
if [[ -z "$GATEWAY" ]]; then
  (cd "$ROOT" && cargo build --release -j2)
  GATEWAY="$ROOT/target/release/gateway"
fi

RUN_DIR="$BENCH_DIR/results/revocation-instructions-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

for port in "$REDIS_PORT" "$OFF_PORT" "$ON_PORT" "$ON_ADMIN"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; set PORT_BASE" >&2
    exit 1
  fi
done

wait_port() {  # port; valgrind starts slowly
  for _ in $(seq 1 1200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}

printf 'bench-revocation-hs256-secret-0123456789abcdef' >"$RUN_DIR/secret"
HASH=$(printf 'bench-password' | "$GATEWAY" hash-password)

render() {  # port, revocation on (1/0)
  cat <<TOML
[server]
listen = "127.0.0.1:$1"
workers = 1
reload_poll = "0s"

[logging]
access = false

[tokens]
secret_file = "$RUN_DIR/secret"

[login]
max_attempts = 100000

[[users]]
id = 1
username = "bench"
password_hash = "$HASH"

[[routes]]
path = "/"
respond = "identity"
auth = "required"
TOML
  if [[ "$2" == 1 ]]; then
    printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$ON_ADMIN"
    printf '\n[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:%s/0"\n' "$REDIS_PORT"
    printf '\n[revocation]\n'
  fi
}
render "$OFF_PORT" 0 >"$RUN_DIR/off.toml"
render "$ON_PORT" 1 >"$RUN_DIR/on.toml"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$RUN_DIR" >"$RUN_DIR/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
exp=$(( $(date +%s) + 3600 ))
seq 1 "$REVOKED" | awk -v e="$exp" '{printf "SET gateway:revoked:jti:bench-%d \"%d %d\" EX 3600\n", $1, e, e}' |
  redis-cli -p "$REDIS_PORT" --pipe >/dev/null

for name in off on; do
  valgrind --tool=callgrind --callgrind-out-file="$RUN_DIR/$name.%p.out" \
    "$GATEWAY" run --config "$RUN_DIR/$name.toml" >"$RUN_DIR/$name.log" 2>&1 &
  PIDS+=($!)
done
wait_port "$OFF_PORT"; wait_port "$ON_PORT"; wait_port "$ON_ADMIN"

# One token from "on" (it carries a jti); "off" shares the secret and accepts it too.
TOKEN=$(curl -sf "http://127.0.0.1:$ON_PORT/auth" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-password"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for _ in $(seq 1 600); do
  size=$(curl -s "http://127.0.0.1:$ON_ADMIN/metrics" | awk '/^gateway_revocation_set_size /{print $2}')
  [[ "${size:-0}" -ge "$REVOKED" ]] && break
  sleep 0.1
done
echo "revocation set on \"on\": $size entries"
[[ "$size" -ge "$REVOKED" ]] || { echo "the set did not load" >&2; exit 1; }

requests() {  # port, count: sequential keep-alive requests, each must pass
  python3 - "$1" "$2" "$TOKEN" <<'PY'
import http.client, sys
port, n, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    c.request("GET", "/", headers={"authorization": "JWT " + token})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
}

echo "config,instructions,requests,per_request" >"$RUN_DIR/instructions.csv"
for i in 0 1; do
  name=off; port=$OFF_PORT; pid=${PIDS[1]}
  [[ $i == 1 ]] && { name=on; port=$ON_PORT; pid=${PIDS[2]}; }
  requests "$port" "$WARMUP"
  callgrind_control -z "$pid" >/dev/null 2>&1
  requests "$port" "$REQUESTS"
  callgrind_control -d "$pid" >/dev/null 2>&1
  # The dump after zeroing is the last numbered file; its totals line counts everything.
  out=$(ls -t "$RUN_DIR/$name.$pid.out".* | head -1)
  total=$(awk '/^summary:|^totals:/{print $2; exit}' "$out")
  echo "$name,$total,$REQUESTS,$((total / REQUESTS))" | tee -a "$RUN_DIR/instructions.csv"
done
# The background work "on" does while idle: the periodic resync of the whole set (every
# 10 s by default), which reads all REVOKED entries from the store. IDLE seconds of it.
IDLE=${IDLE:-30}
callgrind_control -z "${PIDS[2]}" >/dev/null 2>&1
sleep "$IDLE"
callgrind_control -d "${PIDS[2]}" >/dev/null 2>&1
out=$(ls -t "$RUN_DIR/on.${PIDS[2]}.out".* | head -1)
idle=$(awk '/^summary:|^totals:/{print $2; exit}' "$out")
echo "on, idle for ${IDLE}s: $idle instructions ($((idle / IDLE)) per second)" | tee "$RUN_DIR/idle.txt"

awk -F, 'NR==2{off=$4} NR==3{on=$4} END{printf "on/off: %.4f (the check costs %.1f %%)\n", on/off, (on/off-1)*100}' \
  "$RUN_DIR/instructions.csv" | tee "$RUN_DIR/summary.txt"
