#!/usr/bin/env bash
# Revocation benchmark (loopback only): what the per-request revocation check costs, and
# how fast a revocation reaches another instance.
#
#   bench/revocation.sh            build the release binary, then both measurements
#   GATEWAY=path/to/gateway bench/revocation.sh   use that binary (no build)
#
# 1. Throughput: two gateways (one worker each, `respond = "identity"`, HS256, no
#    upstream), identical but for `[revocation]`: "off" has none, "on" has it with a Redis
#    store holding REVOKED (default 100,000) revoked jtis, loaded into its local set at
#    start. wrk runs against off and on alternately (REPS x DURATION s each, one token
#    with a jti that is not revoked); the table gives req/s per run and the on/off ratio
#    of the medians (the target: at most 2 % slower).
# 2. Propagation: a second "on" gateway shares the Redis. Under wrk load on it, SAMPLES
#    times: log in on A, check the token passes on B, revoke it on A's admin listener,
#    then poll B until it refuses the token; the time from the revocation's answer to the
#    first refusal, p50 / p99 / max.
#
# Every process it starts is stopped by PID on exit; ports are PORT_BASE.. (default 18180).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
REVOKED=${REVOKED:-100000}
REPS=${REPS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
SAMPLES=${SAMPLES:-200}
PORT_BASE=${PORT_BASE:-18180}
# Pinning, as peers.sh does: the gateways on SERVER_CPUS, wrk on LOAD_CPUS (both empty:
# unpinned). On 2 cores, SERVER_CPUS=0 LOAD_CPUS=1 keeps wrk off the measured core.
SERVER_CPUS=${SERVER_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}
on_cpus() {  # cpu list or "", command... (exec: a background job's PID is the command's)
  local cpus=$1
  shift
  if [[ -n "$cpus" ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}
REDIS_PORT=$PORT_BASE
OFF_PORT=$((PORT_BASE + 1))
ON_PORT=$((PORT_BASE + 2))
B_PORT=$((PORT_BASE + 3))
ON_ADMIN=$((PORT_BASE + 4))
B_ADMIN=$((PORT_BASE + 5))

GATEWAY=${GATEWAY:-}
if [[ -z "$GATEWAY" ]]; then
  (cd "$ROOT" && cargo build --release -j2)
  GATEWAY="$ROOT/target/release/gateway"
fi

RUN_DIR="$BENCH_DIR/results/revocation-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

for port in "$REDIS_PORT" "$OFF_PORT" "$ON_PORT" "$B_PORT" "$ON_ADMIN" "$B_ADMIN"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; set PORT_BASE" >&2
    exit 1
  fi
done

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}

printf 'bench-revocation-hs256-secret-0123456789abcdef' >"$RUN_DIR/secret"
HASH=$(printf 'bench-password' | "$GATEWAY" hash-password)

render() {  # port, admin port or "", revocation on (1/0)
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
  [[ -n "$2" ]] && printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$2"
  if [[ "$3" == 1 ]]; then
    printf '\n[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:%s/0"\n' "$REDIS_PORT"
    printf '\n[revocation]\n'
  fi
}
render "$OFF_PORT" "" 0 >"$RUN_DIR/off.toml"
render "$ON_PORT" "$ON_ADMIN" 1 >"$RUN_DIR/on.toml"
render "$B_PORT" "$B_ADMIN" 1 >"$RUN_DIR/b.toml"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$RUN_DIR" >"$RUN_DIR/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
# The revoked set: REVOKED jtis that expire in an hour, in the gateway's key format.
exp=$(( $(date +%s) + 3600 ))
seq 1 "$REVOKED" | awk -v e="$exp" '{printf "SET gateway:revoked:jti:bench-%d \"%d %d\" EX 3600\n", $1, e, e}' |
  redis-cli -p "$REDIS_PORT" --pipe >/dev/null

for name in off on b; do
  (on_cpus "$SERVER_CPUS" "$GATEWAY" run --config "$RUN_DIR/$name.toml") >"$RUN_DIR/$name.log" 2>&1 &
  PIDS+=($!)
done
wait_port "$OFF_PORT"; wait_port "$ON_PORT"; wait_port "$B_PORT"; wait_port "$ON_ADMIN"

login() {  # port -> access token
  curl -sf "http://127.0.0.1:$1/auth" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"bench-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
TOKEN=$(login "$ON_PORT")
size=$(curl -sf "http://127.0.0.1:$ON_ADMIN/metrics" | awk '/^gateway_revocation_set_size /{print $2}')
echo "revocation set on \"on\": $size entries"
[[ "$size" -ge "$REVOKED" ]] || { echo "the set did not load" >&2; exit 1; }
for port in "$OFF_PORT" "$ON_PORT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" -H "Authorization: JWT $TOKEN")
  [[ "$code" == 200 ]] || { echo "port $port answered $code to a valid token" >&2; exit 1; }
done

echo "config,rep,req_per_s" >"$RUN_DIR/throughput.csv"
for rep in $(seq 1 "$REPS"); do
  for name in off on; do
    port=$OFF_PORT; [[ "$name" == on ]] && port=$ON_PORT
    rps=$(on_cpus "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Authorization: JWT $TOKEN" \
      "http://127.0.0.1:$port/" | awk '/^Requests\/sec:/{print $2}')
    echo "$name,$rep,$rps" | tee -a "$RUN_DIR/throughput.csv"
  done
done

# Propagation, under load on B.
wrk -t1 -c16 -d600s -H "Authorization: JWT $TOKEN" "http://127.0.0.1:$B_PORT/" >/dev/null &
WRK=$!
PIDS+=($WRK)
python3 - "$ON_PORT" "$ON_ADMIN" "$B_PORT" "$SAMPLES" >"$RUN_DIR/propagation.txt" <<'PY'
import base64, http.client, json, sys, time

a, a_admin, b, samples = (int(x) for x in sys.argv[1:])

def call(port, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "JWT " + token
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data

def jti(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["jti"]

b_conn = http.client.HTTPConnection("127.0.0.1", b, timeout=5)
def on_b(token):
    b_conn.request("GET", "/", headers={"authorization": "JWT " + token})
    r = b_conn.getresponse()
    r.read()
    return r.status

out = []
for _ in range(samples):
    s, data = call(a, "POST", "/auth", json.dumps({"username": "bench", "password": "bench-password"}))
    token = json.loads(data)["access_token"]
    assert on_b(token) == 200
    s, _ = call(a_admin, "POST", "/revocations", json.dumps({"jti": jti(token)}))
    assert s == 200, s
    t0 = time.monotonic()
    while on_b(token) != 401:
        if time.monotonic() - t0 > 5:
            raise SystemExit("not refused on B within 5 s")
    out.append((time.monotonic() - t0) * 1000)
out.sort()
pick = lambda q: out[min(len(out) - 1, int(q * len(out)))]
print(f"samples {len(out)}  p50 {pick(0.5):.2f} ms  p99 {pick(0.99):.2f} ms  max {out[-1]:.2f} ms")
PY
kill "$WRK" 2>/dev/null || true

python3 - "$RUN_DIR/throughput.csv" <<'PY' | tee "$RUN_DIR/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {n: statistics.median(float(r["req_per_s"]) for r in rows if r["config"] == n) for n in ("off", "on")}
print(f"| revocation | median req/s |\n|---|---|\n| off | {med['off']:.0f} |\n| on ({len(rows)//2} runs, set loaded) | {med['on']:.0f} |")
print(f"\non / off = {med['on'] / med['off']:.4f}")
PY
cat "$RUN_DIR/propagation.txt" | tee -a "$RUN_DIR/summary.md"
echo "results in $RUN_DIR"
