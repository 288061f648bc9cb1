#!/usr/bin/env bash
# Extra gateway measurements that bench/peers.sh does not make (issue 6 items 3b, 4, 6):
#
#   bench/extra.sh idle        memory per IDLE keep-alive client connection, nginx proxy vs gateway
#   bench/extra.sh soak        RSS over a constant-load soak of the gateway (growth = leak?)
#   bench/extra.sh login       POST /auth logins/s (argon2id), and proxied GET latency during a login storm
#   bench/extra.sh flood-mix   valid traffic alone vs with a concurrent bad-signature 401 flood
#   bench/extra.sh all         the four, in this order
#
# Each prints a small markdown table and writes it to
# bench/results/<timestamp>-extra/<name>.md (RESULTS_DIR overrides the folder).
# Needs nginx, wrk, curl, python3 (stdlib), openssl, taskset, ss. Does not build anything:
# the gateway binary is GATEWAY_BIN (build it first: cargo build --release).
#
# Knobs (environment):
#   GATEWAY_BIN=target/release/gateway   (relative to the repo root by default)
#   PORT_BASE=19080          backend nginx +0, nginx proxy +1, gateway +3 (all 127.0.0.1);
#                            busy ports are refused, not reused
#   SERVER_CPUS=0 LOAD_CPUS=1   pinned servers / wrk (as peers.sh); login runs the gateway unpinned
#   THREADS=1                wrk threads per wrk process
#   WARMUP=1                 seconds of unmeasured load before each measured wrk run
#   JWT_SECRET=...           HS256 secret (the same default as peers.sh)
#   RUN_DIR=(mktemp -d)      rendered configs, keys, tokens, logs, raw wrk output (kept)
#   RESULTS_DIR=bench/results/<timestamp>-extra
#   QUIET_MAX=10 QUIET_TIMEOUT=600   before measuring, wait (at most QUIET_TIMEOUT s) until the
#                            machine uses <= QUIET_MAX % of one core; the table says if it was not
#   idle:      IDLE_CONNS=1000 IDLE_PARALLEL=50 (connects/requests in flight while opening)
#              IDLE_WARM_CONNS=20 (connections opened+closed before the idle baseline)
#              IDLE_HOLD=3 (s the connections stay idle before RSS is read: more than twice the
#              gateway's [server] park_idle_after of 1s, after which an idle HTTP/1.1
#              connection gives back its buffers; a park happens 1 to 2 idle windows in)
#              IDLE_HEADER_READ_TIMEOUT=300s (gateway [server] header_read_timeout in the
#              rendered config: it also bounds an idle HTTP/1.1 keep-alive connection)
#              SETTLE_MAX=30 (s, bound of each wait for a stable RSS) SETTLE_TOL_KB=8
#   soak:      SOAK_SECONDS=600 SAMPLE_SECONDS=30 SOAK_CONNS=64 SOAK_WARMUP=5
#   login:     LOGIN_SECONDS=10 LOGIN_CONNS=8 STORM_SECONDS=10 STORM_CONNS=64
#              LOGIN_STORE=memory|redis: the [store] of the login limits; with redis, a
#              redis-server of our own on PORT_BASE+5 (stopped with the others)
#   flood-mix: FLOOD_SECONDS=10 VALID_CONNS=32 FLOOD_CONNS=32
#
# Every process this script starts is stopped by its PID on exit (EXIT trap), and the
# servers of one subcommand are stopped before the next starts. Load is bounded by wrk -d.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
ACTION=${1:-}

GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/gateway}
PORT_BASE=${PORT_BASE:-19080}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-1}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
QUIET_MAX=${QUIET_MAX:-10}
QUIET_TIMEOUT=${QUIET_TIMEOUT:-600}
JWT_SECRET=${JWT_SECRET:-bench-hs256-secret-0123456789abcdef}
IDLE_CONNS=${IDLE_CONNS:-1000}
IDLE_PARALLEL=${IDLE_PARALLEL:-50}
IDLE_WARM_CONNS=${IDLE_WARM_CONNS:-20}
IDLE_HOLD=${IDLE_HOLD:-3}
IDLE_HEADER_READ_TIMEOUT=${IDLE_HEADER_READ_TIMEOUT:-300s}
SETTLE_MAX=${SETTLE_MAX:-30}
SETTLE_TOL_KB=${SETTLE_TOL_KB:-8}
SOAK_SECONDS=${SOAK_SECONDS:-600}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-30}
SOAK_CONNS=${SOAK_CONNS:-64}
SOAK_WARMUP=${SOAK_WARMUP:-5}
LOGIN_SECONDS=${LOGIN_SECONDS:-10}
LOGIN_CONNS=${LOGIN_CONNS:-8}
LOGIN_STORE=${LOGIN_STORE:-memory}
REDIS_PORT=$(( ${PORT_BASE:-19080} + 5 ))
STORM_SECONDS=${STORM_SECONDS:-10}
STORM_CONNS=${STORM_CONNS:-64}
FLOOD_SECONDS=${FLOOD_SECONDS:-10}
VALID_CONNS=${VALID_CONNS:-32}
FLOOD_CONNS=${FLOOD_CONNS:-32}

BACKEND_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
GATEWAY_PORT=$((PORT_BASE + 3))
RUN_DIR=${RUN_DIR:-$(mktemp -d -t authgw-extra.XXXXXX)}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)-extra}
LUA_AUTH=$BENCH_DIR/lua/auth.lua
LUA_LOGIN=$BENCH_DIR/lua/login.lua
LUA_FLOOD=$BENCH_DIR/lua/flood.lua
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

declare -A PID=()   # server name -> pid
STARTED=()          # every pid started and not yet stopped
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- lifecycle
stop_pids() {  # pid...  TERM, wait up to 5 s, then KILL; forgets them
  local p alive
  (( $# )) || return 0
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for p in "$@"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
    (( alive )) || break
    sleep 0.1
  done
  for p in "$@"; do
    if kill -0 "$p" 2>/dev/null; then log "pid $p ignored TERM, sending KILL"; kill -KILL "$p" 2>/dev/null || true; fi
  done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  local keep=() q drop
  for q in "${STARTED[@]}"; do
    drop=0; for p in "$@"; do [[ $q == "$p" ]] && drop=1; done
    (( drop )) || keep+=("$q")
  done
  STARTED=("${keep[@]}")
  log "stopped pids: $*"
}
cleanup() { stop_pids "${STARTED[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_servers() { stop_pids "${STARTED[@]}"; PID=(); }

start_bg() {  # name cpus|"" cmd...   (cmd must stay in the foreground)
  local name=$1 cpus=$2; shift 2
  if [[ -n "$cpus" ]]; then
    taskset -c "$cpus" "$@" >"$RUN_DIR/$name.log" 2>&1 &
  else
    "$@" >"$RUN_DIR/$name.log" 2>&1 &
  fi
  PID[$name]=$!
  STARTED+=("$!")
}

port_busy() { [[ -n "$(ss -Htln "sport = :$1")" ]]; }
need_ports() { local p; for p in "$@"; do if port_busy "$p"; then die "port $p already in use (not ours?): stop it or set PORT_BASE"; fi; done; }

wait_ready() {  # name port
  for _ in $(seq 100); do
    kill -0 "${PID[$1]}" 2>/dev/null || { cat "$RUN_DIR/$1.log" >&2; die "$1 exited during start-up"; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/" || true)" != 000 ]] && return 0
    sleep 0.1
  done
  die "$1 not answering on :$2"
}

render() {  # template out   (the @VARS@ of bench/conf/* and bench/gateway*.toml, as peers.sh)
  sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
      -e "s#@NGINX_PORT@#$NGINX_PORT#g" -e "s#@GATEWAY_PORT@#$GATEWAY_PORT#g" \
      -e "s#@HS256_SECRET@#$JWT_SECRET#g" -e "s#@RS256_PUB@#$RUN_DIR/keys/rs256.pub.pem#g" \
      -e "s#@ES256_PUB@#$RUN_DIR/keys/es256.pub.pem#g" "$1" >"$2"
}

tokens() {  # keys and tokens (bench/gen_tokens.py), once per RUN_DIR
  [[ -f "$RUN_DIR/tokens/hs256.valid.jwt" ]] && return 0
  python3 "$BENCH_DIR/gen_tokens.py" "$RUN_DIR" --secret "$JWT_SECRET" || die "token generation failed"
  chmod 600 "$RUN_DIR/keys/hs256.secret"
}
tok() { cat "$RUN_DIR/tokens/$1.jwt"; }

start_backend() {  # [rendered-config]   pinned to SERVER_CPUS
  local conf=${1:-$RUN_DIR/backend.nginx.conf}
  [[ -n "${1:-}" ]] || render "$BENCH_DIR/conf/backend.nginx.conf" "$conf"
  start_bg backend "$SERVER_CPUS" nginx -c "$conf" -e "$RUN_DIR/backend.nginx.err" -g 'daemon off;'
  wait_ready backend "$BACKEND_PORT"
}
start_nginx_proxy() {
  render "$BENCH_DIR/conf/proxy.nginx.conf" "$RUN_DIR/proxy.nginx.conf"
  start_bg nginx "$SERVER_CPUS" nginx -c "$RUN_DIR/proxy.nginx.conf" -e "$RUN_DIR/proxy.nginx.err" -g 'daemon off;'
  wait_ready nginx "$NGINX_PORT"
}
start_gateway() {  # rendered-config cpus|""
  "$GATEWAY_BIN" check --config "$1" >"$RUN_DIR/gateway.check" 2>&1 || { cat "$RUN_DIR/gateway.check" >&2; die "gateway check failed: $1"; }
  start_bg gateway "$2" "$GATEWAY_BIN" run --config "$1"
  wait_ready gateway "$GATEWAY_PORT"
}
set_server_key() {  # file key toml-value : set a [server] key in a rendered gateway config
  if grep -q "^$2 *=" "$1"; then sed -i "s#^$2 *=.*#$2 = $3#" "$1"; else sed -i "/^\[server\]/a $2 = $3" "$1"; fi
}

code() {  # url [curl args...] -> HTTP status
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true
}
expect() {  # what got want
  [[ "$2" == "$3" ]] || die "check failed: $1: got $2, want $3"
  log "ok  $1: $2"
}

# ---------------------------------------------------------------- measurement helpers
tree_pids() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }
rss_kb() {  # summed VmRSS of a process tree (kB)
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
    t=$(( t + ${v:-0} ))
  done
  echo "$t"
}
cpu_ticks() {  # summed utime+stime of a process tree
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}' || true)
    t=$(( t + ${v:-0} ))
  done
  echo "$t"
}
now() { date +%s.%N; }
calc() { awk "BEGIN { $1 }"; }   # calc 'printf "%.1f", 3/2'
res() {  # wrk-output key -> value from its BENCH_RESULT line
  awk -v k="$2" '/^BENCH_RESULT/{for(i=2;i<=NF;i++){n=index($i,"="); if(substr($i,1,n-1)==k) print substr($i,n+1)}}' "$1"
}
ms() { calc "printf \"%.2f\", $1/1000"; }
sockerr() { echo $(( $(res "$1" err_connect) + $(res "$1" err_read) + $(res "$1" err_write) + $(res "$1" err_timeout) )); }
thousands() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

wrk_cmd() {  # conns seconds lua url token path -> prints nothing; sets WRK as an array
  WRK=(env BENCH_TOKEN="$5" BENCH_PATH="$6" taskset -c "$LOAD_CPUS"
       wrk -t"$THREADS" -c"$1" -d"${2}s" --timeout "$WRK_TIMEOUT" --latency -s "$3" "$4")
}
# wrk runs in the background and the script `wait`s for it: a signal to the script then
# stops at once (bash defers traps while a foreground command runs), and the EXIT trap
# stops wrk by its PID.
wrk_bg() {  # out conns seconds lua url token path  -> WRK_PID (background, pinned to LOAD_CPUS)
  local out=$1; shift
  wrk_cmd "$@"
  "${WRK[@]}" >"$out" 2>&1 &
  WRK_PID=$!
  STARTED+=("$WRK_PID")
}
wrk_wait() {  # pid out [nocheck]
  local rc=0
  wait "$1" || rc=$?
  local keep=() q; for q in "${STARTED[@]}"; do [[ $q == "$1" ]] || keep+=("$q"); done; STARTED=("${keep[@]}")
  [[ -n "${3:-}" ]] && return 0
  if (( rc != 0 )) || ! grep -q "^BENCH_RESULT" "$2"; then cat "$2" >&2; die "wrk failed ($2)"; fi
}
wrk_run() {  # out conns seconds lua url token path
  wrk_bg "$@"
  wrk_wait "$WRK_PID" "$1"
}
warmup() {  # conns lua url token path   (WARMUP seconds, result ignored)
  (( WARMUP > 0 )) || return 0
  wrk_bg "$RUN_DIR/wrk.warmup.out" "$1" "$WARMUP" "$2" "$3" "$4" "$5"
  wrk_wait "$WRK_PID" "$RUN_DIR/wrk.warmup.out" nocheck
}

settle_rss() {  # pid -> "rss_kb seconds settled(yes|no)": polls every 0.5 s until 4 readings in a row
  local pid=$1 prev=-1 same=0 t0 r d     # agree within SETTLE_TOL_KB, at most SETTLE_MAX s
  t0=$(now)
  while :; do
    r=$(rss_kb "$pid")
    if (( prev >= 0 )); then
      d=$(( r - prev )); (( d < 0 )) && d=$(( -d ))
      if (( d <= SETTLE_TOL_KB )); then same=$(( same + 1 )); else same=0; fi
    fi
    prev=$r
    if (( same >= 3 )); then echo "$r $(calc "printf \"%.1f\", $(now) - $t0") yes"; return 0; fi
    if calc "exit !($(now) - $t0 >= $SETTLE_MAX)"; then echo "$r $SETTLE_MAX no"; return 0; fi
    sleep 0.5
  done
}

# CPU used by processes that are not ours during a measured window, in % of one core
# (like peers.sh's foreign_cpu_pct): machine busy time (user+nice+system+irq+softirq of
# /proc/stat) minus our servers' and wrk's CPU. Our servers and background wrk are read from
# /proc; foreground wrk and helpers from `times` (children this shell has reaped).
read_children_ticks() {  # -> CHILD_TICKS (must run in this shell, not in $(...))
  times >"$RUN_DIR/.times"
  CHILD_TICKS=$(awk -v hz="$HZ" 'NR==2{s=0; for(i=1;i<=2;i++){split($i,a,"m"); sub("s","",a[2]); s+=a[1]*60+a[2]} printf "%d", s*hz}' "$RUN_DIR/.times")
}
ours_ticks() {  # extra pids... -> CPU ticks of our servers + those pids
  local t=0 p
  for p in "${PID[@]}" "$@"; do t=$(( t + $(cpu_ticks "$p") )); done
  echo "$t"
}
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
foreign_start() {  # [pids of background wrk alive through the window]
  FX_PIDS=("$@")
  read_children_ticks; F_C0=$CHILD_TICKS
  F_S0=$(ours_ticks "${FX_PIDS[@]}"); F_B0=$(machine_busy); F_T0=$(now)
}
foreign_end() {  # -> FOREIGN (% of one core)
  local b1 s1 t1
  s1=$(ours_ticks "${FX_PIDS[@]}"); b1=$(machine_busy); t1=$(now)
  read_children_ticks
  FOREIGN=$(calc "f = 100*(($b1-$F_B0) - ($s1-$F_S0) - ($CHILD_TICKS-$F_C0))/$HZ/($t1-$F_T0); if (f < 0) f = 0; printf \"%.0f\", f")
}

# The machine may be shared: each subcommand first waits (at most QUIET_TIMEOUT s) until
# the machine, its own idle servers included, uses at most QUIET_MAX % of one core.
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }  # busy idle (jiffies)
QUIET_NOTE=""
wait_quiet() {
  local t0=$SECONDS last=-100 b0 i0 b1 i1 busy
  while :; do
    read -r b0 i0 < <(sys_busy); sleep 1; read -r b1 i1 < <(sys_busy)
    busy=$(( 100 * NCPU * (b1 - b0) / ( (b1 - b0) + (i1 - i0) + 1 ) ))
    if (( busy <= QUIET_MAX )); then QUIET_NOTE="machine quiet (${busy}% of a core busy) at the start"; return 0; fi
    if (( SECONDS - t0 >= QUIET_TIMEOUT )); then
      QUIET_NOTE="machine NOT quiet at the start (${busy}% of a core busy after waiting ${QUIET_TIMEOUT} s): numbers disturbed"
      log "$QUIET_NOTE"; return 0
    fi
    if (( SECONDS - last >= 30 )); then
      last=$SECONDS
      log "waiting for a quiet machine (${busy}% of a core busy; busiest: $(ps -eo pcpu=,comm= --sort=-pcpu | head -2 | awk '{printf "%s %s%% ", $2, $1}'))"
    fi
  done
}

emit() {  # name : stdin (markdown) -> stdout and RESULTS_DIR/<name>.md
  mkdir -p "$RESULTS_DIR"
  tee "$RESULTS_DIR/$1.md"
  log "written: $RESULTS_DIR/$1.md"
}
run_line() {
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), gateway \`$GATEWAY_BIN\`, $NCPU CPUs ($(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2; exit}')), $(nginx -v 2>&1 | sed 's#.*/##;s#^#nginx #'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); $QUIET_NOTE."
}

# ---------------------------------------------------------------- idle
IDLE_ROWS=""
measure_idle() {  # name port pid -> appends one table row to IDLE_ROWS
  local name=$1 port=$2 pid=$3 st r fresh idle with after s_with ok failed open_srv up held closed hp
  read -r fresh _ _ < <(settle_rss "$pid")
  # warm-up: a few connections opened, used once and closed, so one-time initialisation
  # (first connection, first upstream request, thread-local caches) is not charged to N.
  st=$RUN_DIR/idle.$name.warm.status; rm -f "$st"
  taskset -c "$LOAD_CPUS" python3 "$BENCH_DIR/extra/idle_conns.py" 127.0.0.1 "$port" "$IDLE_WARM_CONNS" "$st" \
      --token "$(tok hs256.valid)" --parallel "$IDLE_PARALLEL" >"$RUN_DIR/idle.$name.warm.log" 2>&1 &
  hp=$!; STARTED+=("$hp")
  wait_status "$st" "$hp" ready
  stop_pids "$hp"
  read -r idle _ _ < <(settle_rss "$pid")

  st=$RUN_DIR/idle.$name.status; rm -f "$st"
  log "$name: opening $IDLE_CONNS keep-alive connections (one authenticated GET each), holding them idle"
  taskset -c "$LOAD_CPUS" python3 "$BENCH_DIR/extra/idle_conns.py" 127.0.0.1 "$port" "$IDLE_CONNS" "$st" \
      --token "$(tok hs256.valid)" --parallel "$IDLE_PARALLEL" >"$RUN_DIR/idle.$name.log" 2>&1 &
  hp=$!; STARTED+=("$hp")
  wait_status "$st" "$hp" ready
  ok=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$st"); failed=$(sed -n 's/^ready .*failed=\([0-9]*\).*/\1/p' "$st")
  (( failed == 0 && ok == IDLE_CONNS )) || die "$name: only $ok of $IDLE_CONNS connections got a 200 ($(cat "$st"))"
  sleep "$IDLE_HOLD"
  read -r with s_with r < <(settle_rss "$pid")
  [[ $r == yes ]] || log "$name: RSS did not settle within ${SETTLE_MAX}s with the connections open (using the last reading)"
  open_srv=$(ss -Htn state established "( sport = :$port )" | wc -l)
  up=0
  for p in $(tree_pids "$pid"); do
    up=$(( up + $(ss -Htnp state established "( dport = :$BACKEND_PORT )" | grep -c "pid=$p," || true) ))
  done
  stop_pids "$hp"
  held=$(sed -n 's/^held open=\([0-9]*\).*/\1/p' "$st"); closed=$(sed -n 's/^held .*closed_by_server=\([0-9]*\).*/\1/p' "$st")
  [[ -n "$held" ]] || die "$name: the connection holder did not report ($st)"
  (( closed == 0 )) || die "$name: the server closed $closed of the idle connections during the measurement (timeouts?)"
  read -r after _ _ < <(settle_rss "$pid")
  IDLE_ROWS+=$(printf '| %s | %s | %s | %s | **%s** | %s | %s | %s | %s |' "$name" \
    "$(calc "printf \"%.1f\", $fresh/1024")" "$(calc "printf \"%.1f\", $idle/1024")" \
    "$(calc "printf \"%.1f\", $with/1024")" "$(calc "printf \"%.1f\", ($with-$idle)/$IDLE_CONNS")" \
    "$open_srv / $IDLE_CONNS" "$up" "$(calc "printf \"%.1f\", $after/1024")" "$s_with")$'\n'
}
wait_status() {  # file pid word : until the file has a line starting with word (bounded)
  for _ in $(seq 1200); do
    grep -q "^$3" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "${1%.status}.log" >&2 2>/dev/null || true; die "connection holder exited early"; }
    sleep 0.1
  done
  die "connection holder not $3 after 120 s"
}

cmd_idle() {
  log "== idle: RSS per idle keep-alive connection, c=$IDLE_CONNS"
  need_ports "$BACKEND_PORT" "$NGINX_PORT" "$GATEWAY_PORT"
  tokens
  local need=$(( IDLE_CONNS + 200 ))
  (( $(ulimit -Hn) >= need )) || die "hard RLIMIT_NOFILE $(ulimit -Hn) < $need: lower IDLE_CONNS"
  (( $(ulimit -n) >= need )) || ulimit -n "$need"   # the gateway inherits it (nginx: worker_rlimit_nofile)
  start_backend
  start_nginx_proxy
  render "$BENCH_DIR/gateway.toml" "$RUN_DIR/gateway-idle.toml"
  set_server_key "$RUN_DIR/gateway-idle.toml" header_read_timeout "\"$IDLE_HEADER_READ_TIMEOUT\""
  start_gateway "$RUN_DIR/gateway-idle.toml" "$SERVER_CPUS"
  expect "gateway: valid token" "$(code "http://127.0.0.1:$GATEWAY_PORT/" -H "Authorization: Bearer $(tok hs256.valid)")" 200
  expect "gateway: bad signature" "$(code "http://127.0.0.1:$GATEWAY_PORT/" -H "Authorization: Bearer $(tok hs256.badsig)")" 401
  expect "nginx proxy" "$(code "http://127.0.0.1:$NGINX_PORT/")" 200
  wait_quiet
  IDLE_ROWS=""
  measure_idle nginx-proxy "$NGINX_PORT" "${PID[nginx]}"
  measure_idle gateway "$GATEWAY_PORT" "${PID[gateway]}"
  stop_servers
  {
    echo "### Idle keep-alive connections: RSS per connection (c=$IDLE_CONNS)"
    echo
    run_line
    echo
    echo "| server | RSS fresh MB | RSS idle MB (after warm-up) | RSS with $IDLE_CONNS idle conns MB | KB per idle conn | conns open at measurement (server side) | upstream conns held | RSS after close MB | RSS settled after s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s' "$IDLE_ROWS"
    echo
    echo "RSS = VmRSS summed over the process tree (nginx: master + worker), polled every 0.5 s until"
    echo "4 readings in a row agree within ${SETTLE_TOL_KB} KB (at most ${SETTLE_MAX} s). Every server pinned to CPU $SERVER_CPUS"
    echo "(one nginx worker; gateway \`workers = 1\`, bench/gateway.toml). Each connection sent one"
    echo "\`GET /\` with a valid HS256 \`Authorization: Bearer\` token, read the whole 200 response, then stayed"
    echo "open and silent (at most $IDLE_PARALLEL opening at once) for $IDLE_HOLD s before RSS was read (the gateway"
    echo "parks an HTTP/1.1 connection idle for its \`park_idle_after\`, default 1s, without its buffers); none was closed by the server before the"
    echo "connections were closed by the client. KB per idle conn = (RSS with − RSS idle) / $IDLE_CONNS; it"
    echo "includes whatever upstream connections the server kept (column \"upstream conns held\")."
    echo "Before the idle baseline, $IDLE_WARM_CONNS connections were opened, used once and closed (warm-up)."
    echo "Timeouts: nginx \`keepalive_timeout 75s\`; gateway \`[server] header_read_timeout = \"$IDLE_HEADER_READ_TIMEOUT\"\`"
    echo "(raised from the default 10s in the rendered copy only: it also closes idle HTTP/1.1"
    echo "keep-alive connections)."
  } | emit idle
}

# ---------------------------------------------------------------- soak
cmd_soak() {
  log "== soak: ${SOAK_SECONDS}s constant load, c=$SOAK_CONNS, RSS every ${SAMPLE_SECONDS}s"
  need_ports "$BACKEND_PORT" "$GATEWAY_PORT"
  tokens
  start_backend
  render "$BENCH_DIR/gateway.toml" "$RUN_DIR/gateway.toml"
  start_gateway "$RUN_DIR/gateway.toml" "$SERVER_CPUS"
  expect "gateway: valid token" "$(code "http://127.0.0.1:$GATEWAY_PORT/" -H "Authorization: Bearer $(tok hs256.valid)")" 200
  wait_quiet
  local url=http://127.0.0.1:$GATEWAY_PORT/ t out=$RUN_DIR/wrk.soak.out csv=$RUN_DIR/soak.rss.csv sp
  t=$(tok hs256.valid)
  local rss0; rss0=$(rss_kb "${PID[gateway]}")
  log "warm-up ${SOAK_WARMUP}s"
  wrk_run "$RUN_DIR/wrk.soak.warmup.out" "$SOAK_CONNS" "$SOAK_WARMUP" "$LUA_AUTH" "$url" "$t" ""
  python3 "$BENCH_DIR/extra/rss_sampler.py" "${PID[gateway]}" "$csv" --interval "$SAMPLE_SECONDS" --duration "$SOAK_SECONDS" &
  sp=$!; STARTED+=("$sp")
  log "soak ${SOAK_SECONDS}s (sampler pid $sp)"
  foreign_start "$sp"
  wrk_run "$out" "$SOAK_CONNS" "$SOAK_SECONDS" "$LUA_AUTH" "$url" "$t" ""
  foreign_end
  local soak_foreign=$FOREIGN
  stop_pids "$sp"
  sleep 2
  local rss_after; rss_after=$(rss_kb "${PID[gateway]}")
  stop_servers
  (( $(wc -l <"$csv") >= 3 )) || die "too few RSS samples in $csv"
  local start end max
  start=$(awk -F, 'NR==2{print $2}' "$csv"); end=$(awk -F, 'END{print $2}' "$csv")
  max=$(awk -F, 'NR>1 && $2>m{m=$2} END{print m}' "$csv")
  {
    echo "### Soak: gateway RSS under constant load (${SOAK_SECONDS} s, c=$SOAK_CONNS)"
    echo
    run_line
    echo
    echo "| duration s | req/s | p50 ms | p99 ms | non-2xx | socket errors | RSS before load MB | RSS start MB | RSS end MB | RSS max MB | growth end−start MB | growth % | RSS 2 s after load MB | other processes' CPU % |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$SOAK_SECONDS" \
      "$(thousands "$(res "$out" rps)")" "$(ms "$(res "$out" p50_us)")" "$(ms "$(res "$out" p99_us)")" \
      "$(res "$out" non2xx)" "$(sockerr "$out")" "$(calc "printf \"%.1f\", $rss0/1024")" \
      "$(calc "printf \"%.1f\", $start/1024")" "$(calc "printf \"%.1f\", $end/1024")" "$(calc "printf \"%.1f\", $max/1024")" \
      "$(calc "printf \"%+.2f\", ($end-$start)/1024")" "$(calc "printf \"%+.1f\", 100*($end-$start)/$start")" \
      "$(calc "printf \"%.1f\", $rss_after/1024")" "$soak_foreign"
    echo
    echo "RSS samples (VmRSS of the gateway process; t from the start of the measured load, which"
    echo "followed a ${SOAK_WARMUP} s warm-up at the same load):"
    echo
    echo "| t s | RSS MB |"
    echo "|---:|---:|"
    awk -F, 'NR>1{printf "| %.0f | %.2f |\n", $1, $2/1024}' "$csv"
    echo
    echo "Gateway (bench/gateway.toml, \`workers = 1\`) and backend nginx pinned to CPU $SERVER_CPUS, wrk (t=$THREADS)"
    echo "on CPU $LOAD_CPUS; valid HS256 token on every request; RSS sampled every ${SAMPLE_SECONDS} s by a separate process."
    echo "Other processes' CPU: machine CPU time during the load not used by our servers, wrk and helpers,"
    echo "in % of one core (above ~10 the numbers are disturbed)."
  } | emit soak
}

# ---------------------------------------------------------------- login
cmd_login() {
  log "== login: logins/s and a login storm against proxied GETs"
  need_ports "$BACKEND_PORT" "$GATEWAY_PORT"
  tokens
  start_backend
  render "$BENCH_DIR/gateway-login.toml" "$RUN_DIR/gateway-login.toml"
  grep -q '^workers' "$RUN_DIR/gateway-login.toml" && die "gateway-login.toml must leave workers at its default"
  case $LOGIN_STORE in
    memory) ;;
    redis)
      need_ports "$REDIS_PORT"
      # Unpinned like the gateway: it shares the cores with the hashing threads.
      start_bg redis "" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$RUN_DIR"
      for _ in $(seq 100); do
        [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && break
        sleep 0.1
      done
      [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] || die "redis-server not answering on :$REDIS_PORT"
      printf '\n[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:%s/0"\n' "$REDIS_PORT" >>"$RUN_DIR/gateway-login.toml"
      ;;
    *) die "LOGIN_STORE must be memory or redis" ;;
  esac
  start_gateway "$RUN_DIR/gateway-login.toml" ""   # NOT pinned: hashing runs on the blocking pool
  local base=http://127.0.0.1:$GATEWAY_PORT gw=${PID[gateway]} body token seen
  body='{"username":"user1","password":"abcxyz"}'
  token=$(curl -s --max-time 10 -X POST -H 'Content-Type: application/json' -d "$body" "$base/auth" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') || die "login as user1 failed"
  [[ -n "$token" ]] || die "login returned no access_token"
  log "ok  POST /auth user1/abcxyz: access_token"
  expect "POST /auth wrong password" "$(code "$base/auth" -X POST -H 'Content-Type: application/json' -d '{"username":"user1","password":"nope"}')" 401
  seen=$(curl -s -D - -o /dev/null --max-time 5 -H "Authorization: Bearer $token" "$base/" | tr -d '\r' | awk 'tolower($1)=="x-seen-identity:"{print $2}')
  expect "GET / with the login token: backend sees X-Identity" "${seen:-<none>}" 1
  expect "GET / bad signature" "$(code "$base/" -H "Authorization: Bearer $(tok hs256.badsig)")" 401
  local hashes workers_line
  hashes=$(awk -F'= *' '/^max_concurrent_hashes/{print $2}' "$RUN_DIR/gateway-login.toml")
  # Not set: the gateway's default, half the cores (1 to 8).
  [[ -n "$hashes" ]] || hashes="default ($(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 )))"
  workers_line="default (one per core: $NCPU)"
  wait_quiet

  # (a) logins/s
  local la=$RUN_DIR/wrk.login.out c0 c1 t0 t1
  warmup "$LOGIN_CONNS" "$LUA_LOGIN" "$base/auth" "" ""
  foreign_start; c0=$(cpu_ticks "$gw"); t0=$(now)
  wrk_run "$la" "$LOGIN_CONNS" "$LOGIN_SECONDS" "$LUA_LOGIN" "$base/auth" "" ""
  c1=$(cpu_ticks "$gw"); t1=$(now); foreign_end
  local la_foreign=$FOREIGN
  local la_cpu; la_cpu=$(calc "printf \"%.0f\", 100*($c1-$c0)/$HZ/($t1-$t0)")

  # (b) GET alone, then GET + login flood
  local alone=$RUN_DIR/wrk.storm.alone.out storm=$RUN_DIR/wrk.storm.get.out flood=$RUN_DIR/wrk.storm.login.out
  warmup "$STORM_CONNS" "$LUA_AUTH" "$base/" "$token" ""
  foreign_start; c0=$(cpu_ticks "$gw"); t0=$(now)
  wrk_run "$alone" "$STORM_CONNS" "$STORM_SECONDS" "$LUA_AUTH" "$base/" "$token" ""
  c1=$(cpu_ticks "$gw"); t1=$(now); foreign_end
  local alone_foreign=$FOREIGN
  local alone_cpu; alone_cpu=$(calc "printf \"%.0f\", 100*($c1-$c0)/$HZ/($t1-$t0)")
  log "login flood (c=$LOGIN_CONNS) starts 1 s before and ends ~1 s after the measured GET run"
  wrk_bg "$flood" "$LOGIN_CONNS" $(( STORM_SECONDS + 2 )) "$LUA_LOGIN" "$base/auth" "" ""
  local fp=$WRK_PID
  sleep 1
  foreign_start "$fp"; c0=$(cpu_ticks "$gw"); t0=$(now)
  wrk_run "$storm" "$STORM_CONNS" "$STORM_SECONDS" "$LUA_AUTH" "$base/" "$token" ""
  c1=$(cpu_ticks "$gw"); t1=$(now); foreign_end
  local storm_foreign=$FOREIGN
  wrk_wait "$fp" "$flood"
  local storm_cpu; storm_cpu=$(calc "printf \"%.0f\", 100*($c1-$c0)/$HZ/($t1-$t0)")
  stop_servers

  {
    echo "### Login (/auth, argon2id) and login storm, \`[store] backend = \"$LOGIN_STORE\"\`"
    echo
    run_line
    echo
    echo "Gateway: bench/gateway-login.toml (shipped [login] and seed [[users]], argon2id m=19456 KiB,"
    echo "t=2, p=1), \`workers\` = $workers_line, \`max_concurrent_hashes\` = $hashes, per-client login limit"
    echo "raised (\`max_attempts = 1000000\` per \`1s\`) so no 429 interferes. The gateway is NOT pinned"
    echo "(hashing runs on tokio's blocking pool, on any core); the backend nginx is pinned to CPU $SERVER_CPUS and"
    echo "every wrk (t=$THREADS) to CPU $LOAD_CPUS. The GET load uses a token from POST /auth (user1)."
    echo
    echo "#### (a) Logins per second (POST /auth, valid credentials, c=$LOGIN_CONNS, ${LOGIN_SECONDS} s)"
    echo
    echo "| logins/s | p50 ms | p99 ms | max ms | non-2xx | socket errors | gateway CPU % (of one core; $NCPU cores) | other processes' CPU % |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(calc "printf \"%.1f\", $(res "$la" rps)")" \
      "$(ms "$(res "$la" p50_us)")" "$(ms "$(res "$la" p99_us)")" "$(ms "$(res "$la" max_us)")" \
      "$(res "$la" non2xx)" "$(sockerr "$la")" "$la_cpu" "$la_foreign"
    echo
    echo "#### (b) Proxied GET (valid token, c=$STORM_CONNS, ${STORM_SECONDS} s) alone vs during a login flood (c=$LOGIN_CONNS)"
    echo
    echo "| GET load | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | socket errors | logins/s alongside | login p99 ms | login non-2xx | gateway CPU % | other processes' CPU % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '| alone | %s | %s | %s | %s | %s | %s | - | - | - | %s | %s |\n' "$(thousands "$(res "$alone" rps)")" \
      "$(ms "$(res "$alone" p50_us)")" "$(ms "$(res "$alone" p99_us)")" "$(ms "$(res "$alone" p999_us)")" \
      "$(res "$alone" non2xx)" "$(sockerr "$alone")" "$alone_cpu" "$alone_foreign"
    printf '| during login storm | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(thousands "$(res "$storm" rps)")" \
      "$(ms "$(res "$storm" p50_us)")" "$(ms "$(res "$storm" p99_us)")" "$(ms "$(res "$storm" p999_us)")" \
      "$(res "$storm" non2xx)" "$(sockerr "$storm")" "$(calc "printf \"%.1f\", $(res "$flood" rps)")" \
      "$(ms "$(res "$flood" p99_us)")" "$(res "$flood" non2xx)" "$storm_cpu" "$storm_foreign"
    echo
    echo "GET p99 ratio storm / alone: **$(calc "printf \"%.2f\", $(res "$storm" p99_us)/$(res "$alone" p99_us)")**;"
    echo "p50 ratio $(calc "printf \"%.2f\", $(res "$storm" p50_us)/$(res "$alone" p50_us)"); req/s ratio $(calc "printf \"%.2f\", $(res "$storm" rps)/$(res "$alone" rps)")."
    echo "The login flood starts 1 s before the measured ${STORM_SECONDS} s GET run and ends ~1 s after it; its logins/s"
    echo "is over its own $(( STORM_SECONDS + 2 )) s. Gateway CPU % is of one core, over the measured run ($NCPU cores: at most $(( NCPU * 100 )))."
    echo "Other processes' CPU: machine CPU time not used by our servers, wrk and helpers, in % of one core"
    echo "(above ~10 the numbers are disturbed)."
  } | emit login
}

# ---------------------------------------------------------------- flood-mix
backend_requests() {  # total requests served by the backend (nginx stub_status; counts itself)
  curl -s --max-time 5 "http://127.0.0.1:$BACKEND_PORT/bx_stub_status" | awk 'NR==3{print $3}'
}
cmd_flood_mix() {
  log "== flood-mix: valid c=$VALID_CONNS alone vs with a bad-signature flood c=$FLOOD_CONNS"
  need_ports "$BACKEND_PORT" "$GATEWAY_PORT"
  tokens
  # The backend of this subcommand also serves stub_status (request counter) and logs every
  # request whose URI starts with /flood to a file (nothing else is logged, so valid traffic
  # costs it nothing extra). The flood is sent to /flood-*: a flood request reaching the
  # backend would be logged.
  local bconf=$RUN_DIR/backend.flood.nginx.conf flog=$RUN_DIR/backend.flood-requests.log
  render "$BENCH_DIR/conf/backend.nginx.conf" "$bconf"
  grep -q '^ *access_log off;' "$bconf" || die "backend config has no 'access_log off;' to replace"
  sed -i -e "s#^\( *\)access_log off;#\1map \$request_uri \$bx_flood { ~^/flood 1; default 0; }\n\1access_log $flog combined if=\$bx_flood;#" \
         -e "s#^\( *\)location / {#\1location = /bx_stub_status { stub_status; }\n\1location / {#" "$bconf"
  rm -f "$flog"
  start_backend "$bconf"
  render "$BENCH_DIR/gateway.toml" "$RUN_DIR/gateway.toml"
  start_gateway "$RUN_DIR/gateway.toml" "$SERVER_CPUS"
  local base=http://127.0.0.1:$GATEWAY_PORT vt ft gw=${PID[gateway]} bk=${PID[backend]}
  vt=$(tok hs256.valid); ft=$(tok hs256.badsig)
  expect "gateway: valid token" "$(code "$base/" -H "Authorization: Bearer $vt")" 200
  expect "gateway: flood token (bad signature) on /flood-check" "$(code "$base/flood-check" -H "Authorization: Bearer $ft")" 401
  # positive control: the flood log works (a request sent to the backend directly)
  expect "backend direct /flood-probe (control)" "$(code "http://127.0.0.1:$BACKEND_PORT/flood-probe")" 200
  [[ "$(wc -l <"$flog" 2>/dev/null || echo 0)" == 1 ]] || die "backend flood log does not record /flood requests"
  [[ -n "$(backend_requests)" ]] || die "backend stub_status not answering"
  wait_quiet

  local a=$RUN_DIR/wrk.mix.alone.out v=$RUN_DIR/wrk.mix.valid.out f=$RUN_DIR/wrk.mix.flood.out
  local g0 g1 b0 b1 t0 t1 r0 r1
  warmup "$VALID_CONNS" "$LUA_AUTH" "$base/" "$vt" ""
  r0=$(backend_requests); foreign_start; g0=$(cpu_ticks "$gw"); b0=$(cpu_ticks "$bk"); t0=$(now)
  wrk_run "$a" "$VALID_CONNS" "$FLOOD_SECONDS" "$LUA_AUTH" "$base/" "$vt" ""
  g1=$(cpu_ticks "$gw"); b1=$(cpu_ticks "$bk"); t1=$(now); foreign_end; r1=$(backend_requests)
  local a_foreign=$FOREIGN
  local a_gw a_bk a_back
  a_gw=$(calc "printf \"%.1f\", 100*($g1-$g0)/$HZ/($t1-$t0)"); a_bk=$(calc "printf \"%.1f\", 100*($b1-$b0)/$HZ/($t1-$t0)")
  a_back=$(( r1 - r0 - 1 ))
  local a_us; a_us=$(calc "printf \"%.2f\", 1e6*($g1-$g0)/$HZ/$(res "$a" requests)")

  log "flood (c=$FLOOD_CONNS, bad signature, /flood-*) starts 1 s before and ends ~1 s after the measured valid run"
  wrk_bg "$f" "$FLOOD_CONNS" $(( FLOOD_SECONDS + 2 )) "$LUA_FLOOD" "$base/flood-x" "$ft" ""
  local fp=$WRK_PID
  sleep 1
  r0=$(backend_requests); foreign_start "$fp"; g0=$(cpu_ticks "$gw"); b0=$(cpu_ticks "$bk"); t0=$(now)
  wrk_run "$v" "$VALID_CONNS" "$FLOOD_SECONDS" "$LUA_AUTH" "$base/" "$vt" ""
  g1=$(cpu_ticks "$gw"); b1=$(cpu_ticks "$bk"); t1=$(now); foreign_end; r1=$(backend_requests)
  local v_foreign=$FOREIGN
  wrk_wait "$fp" "$f"
  local v_gw v_bk v_back
  v_gw=$(calc "printf \"%.1f\", 100*($g1-$g0)/$HZ/($t1-$t0)"); v_bk=$(calc "printf \"%.1f\", 100*($b1-$b0)/$HZ/($t1-$t0)")
  v_back=$(( r1 - r0 - 1 ))
  sleep 0.5
  local flog_lines; flog_lines=$(wc -l <"$flog")
  stop_servers

  # assertions
  local n401 nother freq
  n401=$(sed -n 's/^FLOOD_STATUS n401=\([0-9]*\).*/\1/p' "$f"); nother=$(sed -n 's/^FLOOD_STATUS .*nother=\([0-9]*\).*/\1/p' "$f")
  freq=$(res "$f" requests)
  [[ -n "$n401" && -n "$nother" ]] || die "no FLOOD_STATUS line in $f"
  (( nother == 0 )) || die "flood: $nother responses were not 401"
  (( n401 >= freq && n401 > 0 )) || die "flood: $n401 responses counted as 401 but wrk reports $freq requests"
  (( flog_lines == 1 )) || die "backend received $(( flog_lines - 1 )) flood request(s): see $flog"
  local vreq slack=$(( VALID_CONNS + 2 ))
  vreq=$(res "$v" requests)
  (( v_back >= vreq - slack && v_back <= vreq + slack )) ||
    die "backend served $v_back requests while the valid wrk completed $vreq (flood requests reaching it?)"
  log "asserted: all $n401 flood responses were 401; no /flood request in the backend log; backend requests = valid requests ± $slack"

  local share
  # gateway CPU not explained by the valid requests at the alone-run cost per request
  share=$(calc "s = 1 - ($(res "$v" requests) * $a_us / 1e6) / (($g1-$g0)/$HZ); if (s < 0) s = 0; printf \"%.0f\", 100*s")
  {
    echo "### Valid traffic alone vs during a 401 flood (bad signature)"
    echo
    run_line
    echo
    echo "| phase | valid req/s | valid p50 ms | valid p99 ms | valid non-2xx | flood 401/s | gateway CPU % (of one core) | backend CPU % | backend requests (valid wrk completed) | other processes' CPU % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '| valid alone (c=%s) | %s | %s | %s | %s | - | %s | %s | %s (%s) | %s |\n' "$VALID_CONNS" "$(thousands "$(res "$a" rps)")" \
      "$(ms "$(res "$a" p50_us)")" "$(ms "$(res "$a" p99_us)")" "$(res "$a" non2xx)" "$a_gw" "$a_bk" "$(thousands "$a_back")" "$(thousands "$(res "$a" requests)")" "$a_foreign"
    printf '| valid + flood (c=%s + c=%s) | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s |\n' "$VALID_CONNS" "$FLOOD_CONNS" \
      "$(thousands "$(res "$v" rps)")" "$(ms "$(res "$v" p50_us)")" "$(ms "$(res "$v" p99_us)")" "$(res "$v" non2xx)" \
      "$(thousands "$(res "$f" rps)")" "$v_gw" "$v_bk" "$(thousands "$v_back")" "$(thousands "$vreq")" "$v_foreign"
    echo
    local ratio; ratio=$(calc "printf \"%.2f\", $(res "$v" rps)/$(res "$a" rps)")
    echo "Valid req/s ratio (with flood / alone): **$ratio**, i.e. valid throughput $(calc "printf \"%.0f\", 100*(1-$ratio)")% lower;"
    echo "valid p99 ratio $(calc "printf \"%.2f\", $(res "$v" p99_us)/$(res "$a" p99_us)"). Flood share of the gateway's CPU during the mix: **${share}%**"
    echo "(estimate: the gateway CPU time not explained by the valid requests at the alone run's"
    echo "$a_us µs each). Flood p99 $(ms "$(res "$f" p99_us)") ms."
    echo
    echo "Asserted: all $n401 flood responses were 401 (counted per response by bench/lua/flood.lua);"
    echo "the backend logged no request to /flood-* (its only logged line is the direct control"
    echo "request), and its stub_status request count during the mix equals the valid requests"
    echo "(± $slack in flight). Gateway (bench/gateway.toml, \`workers = 1\`) and backend nginx pinned to"
    echo "CPU $SERVER_CPUS; both wrk processes (t=$THREADS each) on CPU $LOAD_CPUS. The flood wrk starts 1 s before the"
    echo "measured ${FLOOD_SECONDS} s valid run and ends ~1 s after it; its 401/s is over its own $(( FLOOD_SECONDS + 2 )) s."
    echo "Other processes' CPU: machine CPU time not used by our servers, wrk and helpers, in % of one core"
    echo "(above ~10 the numbers are disturbed)."
  } | emit flood-mix
}

# ---------------------------------------------------------------- main
case $ACTION in
  idle|soak|login|flood-mix|all) ;;
  *) echo "usage: bench/extra.sh idle|soak|login|flood-mix|all   (knobs: see the top of this file)" >&2; exit 2 ;;
esac
for t in nginx wrk curl python3 taskset ss openssl; do command -v "$t" >/dev/null || die "need $t"; done
[[ -x "$GATEWAY_BIN" ]] || die "no gateway binary at $GATEWAY_BIN (cargo build --release, or set GATEWAY_BIN)"
mkdir -p "$RUN_DIR"
log "run dir: $RUN_DIR; results: $RESULTS_DIR"
case $ACTION in
  idle) cmd_idle ;;
  soak) cmd_soak ;;
  login) cmd_login ;;
  flood-mix) cmd_flood_mix ;;
  all) cmd_idle; cmd_soak; cmd_login; cmd_flood_mix ;;
esac
