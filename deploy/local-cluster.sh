#!/usr/bin/env bash
# The compose topology (deploy/compose.yaml) as native processes on 127.0.0.1:
# three gateways behind HAProxy (health-checking each gateway's /readyz on its admin
# port), in front of an nginx backend that echoes X-Identity, sharing one Redis for their
# login limits. Linux only.
#
#   deploy/local-cluster.sh start             start everything, wait; Ctrl-C stops it all
#   deploy/local-cluster.sh rolling-restart   restart the gateways one by one (SIGTERM,
#                                             drain, exit 0, start, healthy, back in the LB)
#   deploy/local-cluster.sh status            what HAProxy thinks of each gateway
#   deploy/local-cluster.sh stop              stop a running `start` (and all it started)
#
# Environment:
#   GATEWAY_BIN        gateway binary (default target/release/gateway, built if missing)
#   CLUSTER_BASE_PORT  first port (default 18080); the layout is:
#                        base     HAProxy (the entry point)
#                        base+1   backend (nginx)
#                        base+2   HAProxy stats (/stats, /stats;csv)
#                        base+3   Redis (the gateways' shared store)
#                        base+10+i  gateway i, base+20+i  its admin listener (i = 1..3)
#   CLUSTER_DIR        state folder: configs, logs, PID files
#                      (default ${TMPDIR:-/tmp}/gateway-cluster-<base port>)
#   GATEWAY_SECRET     shared signing secret (default: 48 random bytes, base64)
#   CLUSTER_WAIT_SECS  how long each wait may take before giving up (default 60)
#   CLUSTER_TRUSTED_PROXIES  the gateways' [server] trusted_proxies (default
#                      ["127.0.0.1/32"]: HAProxy's X-Forwarded-For names the client)
#   CLUSTER_ADDRESS_FAILURES  [login.limits] address_failures (default 50)
#   CLUSTER_LIFECYCLE  1: the gateways also run [refresh] and [revocation] (refresh
#                      tokens, logout, revocations shared through the Redis); default 0
#
# Needs haproxy, nginx, redis-server and curl
# (Debian: apt-get install haproxy nginx redis-server curl).
# Every process `start` launches has its PID recorded in CLUSTER_DIR, and exactly those
# PIDs are stopped when `start` exits (Ctrl-C, SIGTERM, `stop`, or an error).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${CLUSTER_BASE_PORT:-18080}
DIR=${CLUSTER_DIR:-${TMPDIR:-/tmp}/gateway-cluster-$BASE}
WAIT_SECS=${CLUSTER_WAIT_SECS:-60}
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/gateway}
N=3
# SIGTERM drain limit of each gateway ([server] shutdown_grace below).
GRACE_SECS=10

LB_PORT=$BASE
BACKEND_PORT=$((BASE + 1))
STATS_PORT=$((BASE + 2))
REDIS_PORT=$((BASE + 3))
TRUSTED_PROXIES=${CLUSTER_TRUSTED_PROXIES:-'["127.0.0.1/32"]'}
ADDRESS_FAILURES=${CLUSTER_ADDRESS_FAILURES:-50}
LIFECYCLE=""
if [[ ${CLUSTER_LIFECYCLE:-0} == 1 ]]; then
    LIFECYCLE=$'# Refresh tokens, logout and revocation, shared through the same Redis.\n[refresh]\n\n[revocation]\n'
fi
gw_port() { echo $((BASE + 10 + $1)); }
admin_port() { echo $((BASE + 20 + $1)); }

log() { echo "local-cluster: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds; fails after SECONDS.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
        sleep 0.05
    done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# redis_ok: Redis answers PING (bash's /dev/tcp: no client needed).
redis_ok() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3<&- 3>&-
    [[ $reply == +PONG* ]]
}

# alive PID: the process exists and is not a zombie.
alive() {
    [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# lb_status NAME: HAProxy's status of server NAME ("UP", "DOWN", "UP 1/2", ...).
lb_status() {
    curl -fsS --max-time 2 "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null |
        awk -F, -v s="$1" '$1 == "gateways" && $2 == s { print $18 }'
}
lb_is() { [[ "$(lb_status "$1")" == "$2" ]]; }

# exits I: how many times gateway I has exited (lines of gatewayI.exits).
exits() {
    if [[ -f $DIR/gateway$1.exits ]]; then wc -l <"$DIR/gateway$1.exits"; else echo 0; fi
}

# healthy I EXITS: gateway I answers /healthz; gives up at once if it has exited more than
# EXITS times (it died instead of starting).
healthy() {
    if (($(exits "$1") > $2)); then
        die "gateway $1 exited with status $(tail -n 1 "$DIR/gateway$1.exits") (log: $DIR/gateway$1.log)"
    fi
    http_ok "http://127.0.0.1:$(admin_port "$1")/healthz"
}

# still PIDFILE WHAT COMMAND...: runs COMMAND; gives up at once if the process died.
still() {
    local pidfile=$1 what=$2
    shift 2
    alive "$(cat "$pidfile")" || die "$what exited (its log is in $DIR)"
    "$@"
}

running() { [[ -f $DIR/start.pid ]] && alive "$(cat "$DIR/start.pid")" && [[ -f $DIR/ready ]]; }

write_configs() {
    mkdir -p "$DIR/backend"
    rm -f "$DIR"/*.pid "$DIR"/*.exits "$DIR"/*.restart "$DIR"/*.log "$DIR/ready"
    (
        umask 077
        if [[ -n ${GATEWAY_SECRET:-} ]]; then
            printf '%s' "$GATEWAY_SECRET" >"$DIR/secret"
        else
            head -c 48 /dev/urandom | base64 -w0 >"$DIR/secret"
        fi
    )
    local i
    for i in $(seq 1 $N); do
        cat >"$DIR/gateway$i.toml" <<EOF
# gateway $i of $N (written by local-cluster.sh; compose/gateway.toml on loopback)
[server]
listen = "127.0.0.1:$(gw_port "$i")"
shutdown_grace = "${GRACE_SECS}s"
# Only HAProxy reaches the gateways.
trust_forwarded = true
# HAProxy's X-Forwarded-For names the client (for the login limits and the logs).
trusted_proxies = $TRUSTED_PROXIES
# Reload with SIGHUP only: kill -HUP \$(cat $DIR/gateway$i.pid)
reload_poll = "0s"

[admin]
listen = "127.0.0.1:$(admin_port "$i")"

[tokens]
# The same secret for every instance: a token from one verifies on all.
secret_file = "secret"
missing_secret = "refuse"

[login]
path = "/auth"

[login.limits]
address_failures = $ADDRESS_FAILURES

# The three gateways share their failed-login counters in one Redis.
[store]
backend = "redis"
url = "redis://127.0.0.1:$REDIS_PORT/0"

$LIFECYCLE
[[users]]
id = 1
username = "user1"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$wSaoz+WjVyDsS0mngmCCZw\$lmrh+SyHdtpcel/Vv+nEzSbKyrsRTlKEFpoT+qiXaQw"

[[users]]
id = 2
username = "user2"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$EHZg7TkI/yDxnjGOSQpsjA\$40+bAy3AVg+q4NBXHUe7bqEqyoyKNkNyBIQ90IpAM+4"

[upstreams.backend]
servers = ["http://127.0.0.1:$BACKEND_PORT"]

[upstreams.backend.health]
path = "/"
interval = "250ms"

[[routes]]
path = "/"
upstream = "backend"
auth = "required"
EOF
    done

    cat >"$DIR/backend/nginx.conf" <<EOF
# The sample backend (compose/backend.conf): echoes X-Identity.
worker_processes 1;
pid nginx.pid;
error_log error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        default_type text/plain;
        location / {
            return 200 "\$http_x_identity\n";
        }
    }
}
EOF

    {
        cat <<EOF
# compose/haproxy.cfg on loopback, with faster health checks and a stats page.
global
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # A draining gateway refuses new connections: send the request to another one.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response
    # The client's address, for the gateways' trusted_proxies.
    option forwardfor

frontend public
    bind 127.0.0.1:$LB_PORT
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
    default-server inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2
EOF
        for i in $(seq 1 $N); do
            echo "    server gateway$i 127.0.0.1:$(gw_port "$i") check port $(admin_port "$i")"
        done
        cat <<EOF

listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /stats
EOF
    } >"$DIR/haproxy.cfg"

    {
        echo "LB_PORT=$LB_PORT"
        echo "BACKEND_PORT=$BACKEND_PORT"
        echo "STATS_PORT=$STATS_PORT"
        echo "REDIS_PORT=$REDIS_PORT"
        for i in $(seq 1 $N); do
            echo "GATEWAY${i}_PORT=$(gw_port "$i")"
            echo "GATEWAY${i}_ADMIN_PORT=$(admin_port "$i")"
        done
    } >"$DIR/cluster.env"
}

# supervise I: runs gateway I; when it exits, records the exit code in gatewayI.exits and
# starts it again if gatewayI.restart exists (that is how rolling-restart restarts it).
supervise() {
    local i=$1 code
    trap - EXIT INT TERM
    while :; do
        "$GATEWAY_BIN" run --config "$DIR/gateway$i.toml" --log-format json \
            >>"$DIR/gateway$i.log" 2>&1 &
        echo $! >"$DIR/gateway$i.pid"
        code=0
        wait $! || code=$?
        echo "$code" >>"$DIR/gateway$i.exits"
        if [[ -e $DIR/gateway$i.restart ]]; then
            rm -f "$DIR/gateway$i.restart"
            continue
        fi
        return 0
    done
}

# stop_pid FILE SECONDS: SIGTERM the PID in FILE, SIGKILL it if still alive after SECONDS.
stop_pid() {
    local file=$1 secs=$2 pid
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + secs))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    if alive "$pid"; then
        log "pid $pid ($(basename "$file" .pid)) did not stop in ${secs}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    local code=$?
    trap - EXIT INT TERM
    rm -f "$DIR/ready" "$DIR"/*.restart
    log "stopping"
    local i
    # Gateways first (each drains), then the load balancer, then the backend.
    for i in $(seq 1 $N); do stop_pid "$DIR/gateway$i.pid" $((GRACE_SECS + 5)); done
    for i in $(seq 1 $N); do stop_pid "$DIR/supervisor$i.pid" 5; done
    stop_pid "$DIR/haproxy.pid" 5
    stop_pid "$DIR/redis.pid" 5
    stop_pid "$DIR/backend.pid" 5
    wait 2>/dev/null || true
    rm -f "$DIR/start.pid"
    log "stopped"
    exit "$code"
}

start() {
    local tool
    for tool in haproxy nginx redis-server curl; do
        command -v "$tool" >/dev/null || die "$tool is needed (apt-get install haproxy nginx redis-server curl)"
    done
    if [[ ! -x $GATEWAY_BIN ]]; then
        [[ $GATEWAY_BIN == "$ROOT/target/release/gateway" ]] || die "GATEWAY_BIN=$GATEWAY_BIN is not executable"
        log "building $GATEWAY_BIN"
        (cd "$ROOT" && cargo build --release --bin gateway)
    fi
    if [[ -f $DIR/start.pid ]] && alive "$(cat "$DIR/start.pid")"; then
        die "a cluster already runs from $DIR (pid $(cat "$DIR/start.pid"))"
    fi
    write_configs
    echo $$ >"$DIR/start.pid"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    nginx -p "$DIR/backend" -e "$DIR/backend/error.log" -c "$DIR/backend/nginx.conf" \
        -g 'daemon off;' &
    echo $! >"$DIR/backend.pid"
    wait_for "$WAIT_SECS" "the backend on :$BACKEND_PORT" \
        still "$DIR/backend.pid" nginx http_ok "http://127.0.0.1:$BACKEND_PORT/"

    # The shared store: no persistence (the counters are short-lived by design).
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$DIR" >"$DIR/redis.log" 2>&1 &
    echo $! >"$DIR/redis.pid"
    wait_for "$WAIT_SECS" "Redis on :$REDIS_PORT" \
        still "$DIR/redis.pid" redis-server redis_ok

    local i
    for i in $(seq 1 $N); do
        supervise "$i" &
        echo $! >"$DIR/supervisor$i.pid"
    done
    for i in $(seq 1 $N); do
        wait_for "$WAIT_SECS" "gateway $i /healthz (log: $DIR/gateway$i.log)" healthy "$i" 0
    done

    haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 &
    echo $! >"$DIR/haproxy.pid"
    for i in $(seq 1 $N); do
        wait_for "$WAIT_SECS" "HAProxy to mark gateway$i UP" \
            still "$DIR/haproxy.pid" haproxy lb_is "gateway$i" UP
    done

    touch "$DIR/ready"
    echo "ready: http://127.0.0.1:$LB_PORT (HAProxy) -> gateways :$(gw_port 1) :$(gw_port 2) :$(gw_port 3) (admin :$(admin_port 1) :$(admin_port 2) :$(admin_port 3)) -> backend :$BACKEND_PORT; redis :$REDIS_PORT; stats http://127.0.0.1:$STATS_PORT/stats; state $DIR"
    # Until a signal (or every child exiting): the EXIT trap stops what was started.
    wait
}

rolling_restart() {
    running || die "no running cluster in $DIR (start one first)"
    local i old new before code
    for i in $(seq 1 $N); do
        old=$(cat "$DIR/gateway$i.pid")
        before=$(exits "$i")
        touch "$DIR/gateway$i.restart"
        log "gateway $i: SIGTERM to pid $old"
        kill -TERM "$old"
        wait_for $((GRACE_SECS + 5)) "gateway $i (pid $old) to drain and exit" \
            eval "(( \$(exits $i) > $before ))"
        code=$(tail -n 1 "$DIR/gateway$i.exits")
        [[ $code == 0 ]] || die "gateway $i exited with status $code (log: $DIR/gateway$i.log)"
        wait_for "$WAIT_SECS" "gateway $i to start again" \
            eval "[[ -f '$DIR/gateway$i.pid' && \$(cat '$DIR/gateway$i.pid') != $old ]]"
        new=$(cat "$DIR/gateway$i.pid")
        wait_for "$WAIT_SECS" "gateway $i /healthz" healthy "$i" $((before + 1))
        wait_for "$WAIT_SECS" "HAProxy to mark gateway$i UP" lb_is "gateway$i" UP
        log "gateway $i: restarted (exit 0, pid $old -> $new, back in the load balancer)"
    done
}

status() {
    running || die "no running cluster in $DIR"
    local i
    for i in $(seq 1 $N); do
        echo "gateway$i pid $(cat "$DIR/gateway$i.pid") :$(gw_port "$i") admin :$(admin_port "$i") lb: $(lb_status "gateway$i")"
    done
}

stop() {
    [[ -f $DIR/start.pid ]] || die "no cluster state in $DIR"
    local pid
    pid=$(cat "$DIR/start.pid")
    alive "$pid" || die "the cluster in $DIR is not running"
    grep -qF "$(basename "$0")" "/proc/$pid/cmdline" || die "pid $pid is not $(basename "$0")"
    kill -TERM "$pid"
    wait_for $((GRACE_SECS + 30)) "the cluster (pid $pid) to stop" eval "! alive $pid"
}

case "${1:-}" in
    start) start ;;
    rolling-restart) rolling_restart ;;
    status) status ;;
    stop) stop ;;
    *)
        sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
