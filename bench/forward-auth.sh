#!/usr/bin/env bash
# Forward-auth benchmark: decisions per second, and the same protected route served two
# ways, interleaved:
#
#   decisions       wrk -> gateway [forward_auth] /forward-auth/nginx (the bare decision)
#   proxy           wrk -> gateway as the proxy -> backend
#   nginx+gateway   wrk -> nginx auth_request -> gateway decision, then nginx -> backend
#   nginx+cache     the same, nginx caching decisions (deploy/forward-auth/nginx.conf's key)
#   direct          wrk -> backend (the ceiling)
#
#   bench/forward-auth.sh                       REPS=3 DURATION=10 CONNS=32
#   REPS=1 DURATION=3 bench/forward-auth.sh     smoke run (not a measurement)
#
# One gateway worker, one nginx worker each (front and backend), wrk with one thread, all
# on loopback. CPU µs per request is the process's user+system time over the requests it
# served (the gateway's and the front nginx's, summed for nginx+gateway). Needs nginx and
# wrk (Debian: apt-get install -y nginx wrk). Every process started is stopped by PID.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
REPS=${REPS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PORT_BASE=${PORT_BASE:-19080}
BACKEND_PORT=$PORT_BASE
GATEWAY_PORT=$((PORT_BASE + 1))
DECISION_PORT=$((PORT_BASE + 2))
FRONT_PORT=$((PORT_BASE + 3))
CACHED_PORT=$((PORT_BASE + 4))
PATH="$PATH:/usr/sbin"

for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install -y nginx wrk)" >&2; exit 1; }
done
for port in $BACKEND_PORT $GATEWAY_PORT $DECISION_PORT $FRONT_PORT $CACHED_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is in use (set PORT_BASE)" >&2
        exit 1
    fi
done

cd "$ROOT"
cargo build --release -j"${BUILD_JOBS:-2}" --bin gateway
GATEWAY="$ROOT/target/release/gateway"

RUN_DIR=$(mktemp -d)
chmod 755 "$RUN_DIR"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT

head -c 48 /dev/urandom | base64 >"$RUN_DIR/secret"
cat >"$RUN_DIR/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$GATEWAY_PORT"
workers = 1
reload_poll = "0s"
# The front nginx, on loopback, may describe requests to the decision endpoints.
trusted_proxies = ["127.0.0.1/32"]

[logging]
access = false

[tokens]
secret_file = "$RUN_DIR/secret"
lifetime = "1h"

[forward_auth]
listen = "127.0.0.1:$DECISION_PORT"
contracts = ["nginx"]

[[routes]]
path = "/"
upstream = "http://127.0.0.1:$BACKEND_PORT"
auth = "required"
EOF

sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
    "$BENCH_DIR/conf/backend.nginx.conf" >"$RUN_DIR/backend.conf"

# The front nginx: deploy/forward-auth/nginx.conf's auth_request wiring, one worker,
# with (cached) and without the decision cache.
front_server() {
    local port=$1 cache=$2
    cat <<EOF
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            auth_request /.gateway/decide;
            auth_request_set \$gateway_identity \$upstream_http_x_identity;
            proxy_set_header X-Identity \$gateway_identity;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
        location = /.gateway/decide {
            internal;
            proxy_pass http://gateway_decisions/forward-auth/nginx;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Original-Host \$host;
            proxy_set_header X-Original-URI \$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
$cache
        }
    }
EOF
}
CACHE_LINES='            proxy_cache gateway_decisions;
            proxy_cache_key "$http_authorization|$request_method|$host|$request_uri";'
{
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $RUN_DIR/front.pid;
error_log $RUN_DIR/front.err warn;
events { worker_connections 16000; multi_accept on; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $RUN_DIR/body;
    proxy_temp_path $RUN_DIR/proxy;
    fastcgi_temp_path $RUN_DIR/fastcgi;
    uwsgi_temp_path $RUN_DIR/uwsgi;
    scgi_temp_path $RUN_DIR/scgi;
    upstream gateway_decisions { server 127.0.0.1:$DECISION_PORT; keepalive 64; }
    upstream app { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    proxy_cache_path $RUN_DIR/cache levels=1:2 keys_zone=gateway_decisions:10m max_size=64m;
EOF
    front_server "$FRONT_PORT" ""
    front_server "$CACHED_PORT" "$CACHE_LINES"
    echo "}"
} >"$RUN_DIR/front.conf"
mkdir -p "$RUN_DIR/cache" && chmod 777 "$RUN_DIR/cache"

nginx -p "$RUN_DIR" -e "$RUN_DIR/backend.err" -c "$RUN_DIR/backend.conf" -g 'daemon off;' &
PIDS+=($!)
"$GATEWAY" run --config "$RUN_DIR/gateway.toml" 2>"$RUN_DIR/gateway.log" &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)
nginx -p "$RUN_DIR" -e "$RUN_DIR/front.err" -c "$RUN_DIR/front.conf" -g 'daemon off;' &
FRONT_MASTER=$!
PIDS+=($FRONT_MASTER)

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    exit 1
}
for port in $BACKEND_PORT $GATEWAY_PORT $DECISION_PORT $FRONT_PORT $CACHED_PORT; do wait_port "$port"; done

TOKEN=$("$GATEWAY" token mint --config "$RUN_DIR/gateway.toml" --identity 1)
AUTH="Authorization: JWT $TOKEN"

# Functional checks before measuring: each path allows with the token, refuses without.
check() {
    local name=$1 url=$2; shift 2
    local ok no
    ok=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$@" "$url")
    no=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$ok" = 200 ] && [ "$no" = 401 ] || { echo "$name: $ok with a token, $no without" >&2; exit 1; }
}
DECIDE=(-H "X-Original-Method: GET" -H "X-Original-Host: app.test" -H "X-Original-URI: /api/items")
check decisions "http://127.0.0.1:$DECISION_PORT/forward-auth/nginx" "${DECIDE[@]}"
check proxy "http://127.0.0.1:$GATEWAY_PORT/api/items"
check nginx+gateway "http://127.0.0.1:$FRONT_PORT/api/items"
check nginx+cache "http://127.0.0.1:$CACHED_PORT/api/items"

# The front nginx's worker (the master does no request work).
FRONT_WORKER=$(pgrep -P "$FRONT_MASTER" | head -1)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

declare -A URL HEADERS
URL[decisions]="http://127.0.0.1:$DECISION_PORT/forward-auth/nginx"
HEADERS[decisions]="-H|X-Original-Method: GET|-H|X-Original-Host: app.test|-H|X-Original-URI: /api/items"
URL[proxy]="http://127.0.0.1:$GATEWAY_PORT/api/items"
URL[nginx+gateway]="http://127.0.0.1:$FRONT_PORT/api/items"
URL[nginx+cache]="http://127.0.0.1:$CACHED_PORT/api/items"
URL[direct]="http://127.0.0.1:$BACKEND_PORT/api/items"
CONFIGS=(decisions proxy nginx+gateway nginx+cache direct)

RESULTS="$RUN_DIR/results.tsv"
: >"$RESULTS"
for rep in $(seq 1 "$REPS"); do
    for name in "${CONFIGS[@]}"; do
        args=()
        IFS='|' read -r -a extra <<<"${HEADERS[$name]:-}"
        [ -n "${HEADERS[$name]:-}" ] && args+=("${extra[@]}")
        g0=$(cpu_ticks "$GATEWAY_PID"); f0=$(cpu_ticks "$FRONT_WORKER")
        out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$AUTH" "${args[@]}" "${URL[$name]}")
        g1=$(cpu_ticks "$GATEWAY_PID"); f1=$(cpu_ticks "$FRONT_WORKER")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        total=$(awk '/requests in/ {print $1}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rep" "$rps" "$total" "$p99" \
            "$(( (g1 - g0) ))" "$(( (f1 - f0) ))" >>"$RESULTS"
        [ -z "$non2xx" ] || { echo "$name: $non2xx non-2xx answers" >&2; exit 1; }
        echo "rep $rep  $name: $rps req/s" >&2
    done
done

# Medians over the repetitions; CPU µs per request from the ticks.
python3 - "$RESULTS" "$TICK" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
tick = int(sys.argv[2])
order = ["decisions", "proxy", "nginx+gateway", "nginx+cache", "direct"]
print("| config | req/s (median) | p99 | gateway CPU µs/req | front nginx CPU µs/req |")
print("|---|---:|---:|---:|---:|")
for name in order:
    rs = [r for r in rows if r[0] == name]
    rps = statistics.median(float(r[2]) for r in rs)
    p99 = statistics.median_low(r[4] for r in rs)
    g = statistics.median(int(r[5]) * 1e6 / tick / int(r[3]) for r in rs)
    f = statistics.median(int(r[6]) * 1e6 / tick / int(r[3]) for r in rs)
    front = f"{f:.1f}" if name.startswith("nginx") else "-"
    gw = f"{g:.1f}" if name != "direct" else "-"
    print(f"| {name} | {rps:,.0f} | {p99} | {gw} | {front} |")
EOF
