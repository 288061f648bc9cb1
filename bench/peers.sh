#!/usr/bin/env bash
# Auth-gateway peer benchmark: starts a backend and the peers in front of it on
# loopback, checks that each auth peer really validates JWTs, runs interleaved
# wrk measurements, stops everything it started (by PID) and prints a table.
# Usually driven by bench/run.sh (which builds the gateway first).
#
#   bench/peers.sh            full run (defaults below)
#   QUICK=1 bench/peers.sh    smoke run (1 rep x 3 s)
#   bench/peers.sh check      start, run the functional checks, stop
#   bench/peers.sh serve      start + check, then wait for manual poking (Ctrl-C or kill -TERM <script pid> stops all)
#
# Ports (PORT_BASE=18080): backend 18080, nginx 18081, haproxy-hs256 18082,
# gateway-hs256 18083, haproxy-rs256 18084, haproxy-es256 18085, haproxy-noauth 18086,
# gateway-rs256 18087, gateway-es256 18088, gateway-prod 18089 (its Redis 18090, its
# admin listener 18091).
#
# The Rust gateway (configurations gateway-hs256, gateway-rs256, gateway-es256: one
# process each, one worker each):
#   GATEWAY_CMD='target/release/gateway run --config {CONFIG}' bench/peers.sh
# {CONFIG} is replaced by the rendered copy of bench/gateway.toml (HS256) or
# bench/gateway-<alg>.toml; the command also gets GATEWAY_CONFIG, GATEWAY_PORT,
# BACKEND_PORT, JWT_SECRET, RS256_PUB, ES256_PUB in its environment.
# gateway-rs256-distinct / gateway-es256-distinct measure the same processes as
# gateway-rs256 / -es256 but every request carries another token (DISTINCT_TOKENS of
# them, cycled; more than the gateway's verified-token cache holds, so every request
# pays a full signature check). gateway-prod (not in the default list: CONFIGS=...) is
# gateway-hs256 with what a production config adds: [login] with its limits, a local user
# (every token's identity is looked up) and the revocation check against a Redis holding
# REVOKED (default 100,000) revoked jtis, loaded before the checks (bench/gateway-prod.toml).
# Every gateway must pass the same checks as HAProxy (check_auth_peer) before it is measured.
#
# Only traffic to 127.0.0.1 is generated. All load loops are bounded by -d.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACTION=${1:-run}

# ---------------------------------------------------------------- settings
if [[ "${QUICK:-0}" == 1 ]]; then
  : "${REPS:=1}" "${DURATION:=3}" "${WARMUP:=1}" "${NEG_REPS:=1}" "${HIGHC_DURATION:=3}"
fi
GATEWAY_CMD=${GATEWAY_CMD:-}
DISTINCT_TOKENS=${DISTINCT_TOKENS:-12000}  # per alg, for the *-distinct configurations
DEFAULT_CONFIGS="direct nginx haproxy-noauth haproxy-hs256 haproxy-rs256 haproxy-es256"
[[ -n "$GATEWAY_CMD" ]] && DEFAULT_CONFIGS="$DEFAULT_CONFIGS gateway-hs256 gateway-rs256 gateway-es256 gateway-rs256-distinct gateway-es256-distinct"
CONFIGS=${CONFIGS:-$DEFAULT_CONFIGS}      # measured configurations, interleaved
MODES=${MODES-"pinned unpinned"}
REPS=${REPS:-5}                           # repetitions of the interleaved A B C ... cycle
DURATION=${DURATION:-10}                  # seconds per measured wrk run
WARMUP=${WARMUP:-1}                       # seconds of unmeasured load before each run
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}                     # wrk threads
SERVER_CPUS=${SERVER_CPUS:-0}             # pinned mode: backend + proxies here ...
LOAD_CPUS=${LOAD_CPUS:-1}                 # ... and wrk here
ALL_CPUS=${ALL_CPUS:-0-$(( $(nproc) - 1 ))}
NEG_KINDS=${NEG_KINDS-badsig}            # token kinds for the negative-path runs (401 expected)
NEG_REPS=${NEG_REPS:-3}
NEG_MODE=${NEG_MODE:-pinned}
HIGHC=${HIGHC:-1000}                     # high-concurrency run (RSS under load); 0 = skip
HIGHC_DURATION=${HIGHC_DURATION:-10}
HIGHC_REPS=${HIGHC_REPS:-1}
HIGHC_MODE=${HIGHC_MODE:-pinned}
JWT_SECRET=${JWT_SECRET:-bench-hs256-secret-0123456789abcdef}
# This machine may be shared (other builds running): each run first waits until the
# machine is quiet, and a run during which foreign processes used more than FOREIGN_MAX %
# of a core is discarded (kept in runs_discarded.csv) and repeated, up to RETRIES times.
QUIET_MAX=${QUIET_MAX:-10}                # % of one core busy (idle servers) that counts as quiet
QUIET_TIMEOUT=${QUIET_TIMEOUT:-600}       # seconds to wait for quiet before measuring anyway
FOREIGN_MAX=${FOREIGN_MAX:-20}            # % of one core used by non-benchmark processes during a run
RETRIES=${RETRIES:-3}

PORT_BASE=${PORT_BASE:-18080}             # backend=+0 nginx=+1 haproxy-hs256=+2 gateway=+3 rs256=+4 es256=+5 noauth=+6
BACKEND_PORT=$PORT_BASE
declare -A PORT=([direct]=$PORT_BASE [nginx]=$((PORT_BASE + 1)) [haproxy-hs256]=$((PORT_BASE + 2))
                 [gateway-hs256]=$((PORT_BASE + 3)) [haproxy-rs256]=$((PORT_BASE + 4)) [haproxy-es256]=$((PORT_BASE + 5))
                 [haproxy-noauth]=$((PORT_BASE + 6)) [gateway-rs256]=$((PORT_BASE + 7)) [gateway-es256]=$((PORT_BASE + 8)))
PORT[gateway-prod]=$((PORT_BASE + 9))
REDIS_PORT=$((PORT_BASE + 10))             # gateway-prod's store
ADMIN_PORT=$((PORT_BASE + 11))             # gateway-prod's admin listener (set size)
REVOKED=${REVOKED:-100000}
PORT[gateway-rs256-distinct]=${PORT[gateway-rs256]}
PORT[gateway-es256-distinct]=${PORT[gateway-es256]}
# token family sent to each configuration; direct/nginx get the HS256 token too
# (ignored) so every configuration receives byte-identical HS256 requests.
declare -A ALG=([direct]=hs256 [nginx]=hs256 [haproxy-noauth]=hs256 [haproxy-hs256]=hs256 [gateway-hs256]=hs256
                [haproxy-rs256]=rs256 [haproxy-es256]=es256 [gateway-rs256]=rs256 [gateway-es256]=es256
                [gateway-rs256-distinct]=rs256 [gateway-es256-distinct]=es256 [gateway-prod]=hs256)
declare -A AUTH=([direct]=0 [nginx]=0 [haproxy-noauth]=0 [haproxy-hs256]=1 [haproxy-rs256]=1 [haproxy-es256]=1
                 [gateway-hs256]=1 [gateway-rs256]=1 [gateway-es256]=1 [gateway-rs256-distinct]=1 [gateway-es256-distinct]=1
                 [gateway-prod]=1)
# A *-distinct configuration is a load shape, not a process: it measures its base's process.
is_alias() { [[ $1 == *-distinct ]]; }
base_of() { echo "${1%-distinct}"; }
# The processes to start / sample (aliases resolved, each once, in CONFIGS order).
PROCS=""
for _c in $CONFIGS; do
  _b=$(base_of "$_c"); [[ " $PROCS " == *" $_b "* ]] || PROCS+="$_b "
done

RUN_DIR=${RUN_DIR:-$(mktemp -d -t authgw-bench.XXXXXX)}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)}
LUA=$BENCH_DIR/lua/auth.lua
LUA_POOL=$BENCH_DIR/lua/pool.lua
HZ=$(getconf CLK_TCK)

declare -A PID=()      # server name -> pid (direct's server is "backend")
STARTED=()             # every pid this script started, for cleanup
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- lifecycle
cleanup() {
  local p i
  for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 50); do
    local alive=0
    for p in "${STARTED[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.1
  done
  for p in "${STARTED[@]}"; do kill -0 "$p" 2>/dev/null && { log "pid $p ignored TERM, sending KILL"; kill -KILL "$p"; }; done
  wait 2>/dev/null
  (( ${#STARTED[@]} )) && log "stopped pids: ${STARTED[*]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_bg() {  # name cmd...   (cmd must stay in the foreground: daemon off / -db / exec)
  local name=$1; shift
  "$@" >"$RUN_DIR/$name.log" 2>&1 &
  PID[$name]=$!
  STARTED+=("$!")
}

port_busy() { [[ -n "$(ss -Htln "sport = :$1")" ]]; }

wait_ready() {  # name port
  local i
  for i in $(seq 100); do
    kill -0 "${PID[$1]}" 2>/dev/null || { cat "$RUN_DIR/$1.log" >&2; die "$1 exited during start-up"; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/")" != 000 ]] && return 0
    sleep 0.1
  done
  die "$1 not answering on :$2"
}

render() {  # template out [gateway-port]  (substitutes the @VARS@ used by conf/*)
  sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
      -e "s#@NGINX_PORT@#${PORT[nginx]}#g" -e "s#@GATEWAY_PORT@#${3:-${PORT[gateway-hs256]}}#g" \
      -e "s#@HS256_SECRET@#$JWT_SECRET#g" -e "s#@RS256_PUB@#$RUN_DIR/keys/rs256.pub.pem#g" \
      -e "s#@ES256_PUB@#$RUN_DIR/keys/es256.pub.pem#g" \
      -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@ADMIN_PORT@#$ADMIN_PORT#g" "$1" >"$2"
}

start_redis() {  # gateway-prod's store, filled with REVOKED revoked jtis (none of them the bench token's)
  port_busy "$REDIS_PORT" && die "port $REDIS_PORT already in use (not ours?)"
  start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$RUN_DIR"
  local i
  for i in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "redis did not start"
  # In the gateway's key format (as bench/revocation.sh writes them); they outlive the run.
  local exp=$(( $(date +%s) + 6 * 3600 ))
  seq 1 "$REVOKED" | awk -v e="$exp" '{printf "SET gateway:revoked:jti:bench-%d \"%d %d\" EX 21600\n", $1, e, e}' |
    redis-cli -p "$REDIS_PORT" --pipe >/dev/null || die "cannot fill redis"
}

check_revocation_set() {  # gateway-prod loaded the whole set before it is measured
  local size i
  for i in $(seq 100); do
    size=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^gateway_revocation_set_size /{print $2}')
    [[ -n "$size" && "$size" -ge "$REVOKED" ]] && { log "gateway-prod: revocation set of $size entries"; return 0; }
    sleep 0.1
  done
  die "gateway-prod's revocation set holds ${size:-nothing}, not $REVOKED"
}

start_haproxy() {  # config-name alg|noauth
  local name=$1 alg=$2 key tpl=$BENCH_DIR/conf/haproxy-jwt.cfg
  case $alg in hs256) key=$JWT_SECRET ;; noauth) key=; tpl=$BENCH_DIR/conf/haproxy-noauth.cfg ;; *) key=$RUN_DIR/keys/$alg.pub.pem ;; esac
  render "$tpl" "$RUN_DIR/$name.cfg.tmp"
  sed -e "s#@NAME@#$name#g" -e "s#@PORT@#${PORT[$name]}#g" -e "s#@ALG@#${alg^^}#g" -e "s#@KEY@#$key#g" \
      "$RUN_DIR/$name.cfg.tmp" >"$RUN_DIR/$name.cfg"
  haproxy -c -q -f "$RUN_DIR/$name.cfg" || die "bad haproxy config for $name"
  start_bg "$name" haproxy -db -f "$RUN_DIR/$name.cfg"
}

start_all() {
  local c
  for c in backend $PROCS; do
    [[ $c == direct ]] && continue
    local p=${PORT[$c]:-$BACKEND_PORT}
    port_busy "$p" && die "port $p already in use (not ours?) - stop whatever listens there first"
  done
  python3 "$BENCH_DIR/gen_tokens.py" "$RUN_DIR" --secret "$JWT_SECRET" || die "token generation failed"
  if [[ " $CONFIGS " == *-distinct* ]]; then
    log "signing $DISTINCT_TOKENS distinct RS256 and ES256 tokens"
    python3 "$BENCH_DIR/gen_distinct.py" "$RUN_DIR" "$DISTINCT_TOKENS" || die "distinct token generation failed (needs python3-cryptography)"
  fi

  render "$BENCH_DIR/conf/backend.nginx.conf" "$RUN_DIR/backend.nginx.conf"
  start_bg backend nginx -c "$RUN_DIR/backend.nginx.conf" -e "$RUN_DIR/backend.nginx.err" -g 'daemon off;'
  wait_ready backend $BACKEND_PORT
  PID[direct]=${PID[backend]}
  for c in $PROCS; do
    case $c in
      direct) ;;
      nginx)
        render "$BENCH_DIR/conf/proxy.nginx.conf" "$RUN_DIR/proxy.nginx.conf"
        start_bg nginx nginx -c "$RUN_DIR/proxy.nginx.conf" -e "$RUN_DIR/proxy.nginx.err" -g 'daemon off;' ;;
      haproxy-*) start_haproxy "$c" "${c#haproxy-}" ;;
      gateway-*)
        [[ -n "$GATEWAY_CMD" ]] || die "config '$c' needs GATEWAY_CMD"
        local tpl=$BENCH_DIR/gateway.toml
        [[ $c == gateway-hs256 ]] || tpl=$BENCH_DIR/${c}.toml
        [[ $c == gateway-prod ]] && start_redis
        render "$tpl" "$RUN_DIR/$c.toml" "${PORT[$c]}"
        GATEWAY_CONFIG=$RUN_DIR/$c.toml GATEWAY_PORT=${PORT[$c]} BACKEND_PORT=$BACKEND_PORT \
        JWT_SECRET=$JWT_SECRET RS256_PUB=$RUN_DIR/keys/rs256.pub.pem ES256_PUB=$RUN_DIR/keys/es256.pub.pem \
          start_bg "$c" bash -c "exec ${GATEWAY_CMD//\{CONFIG\}/$RUN_DIR/$c.toml}" ;;
      *) die "unknown config $c" ;;
    esac
    [[ $c != direct ]] && wait_ready "$c" "${PORT[$c]}"
    [[ $c == gateway-prod ]] && check_revocation_set
  done
  for c in $CONFIGS; do is_alias "$c" && PID[$c]=${PID[$(base_of "$c")]}; done
  log "started: $(for k in "${!PID[@]}"; do printf '%s=%s ' "$k" "${PID[$k]}"; done)"
}

# ---------------------------------------------------------------- checks
tok() { cat "$RUN_DIR/tokens/$1.jwt"; }
code() {  # port [token] [extra curl args...]
  local port=$1 t=${2:-}; shift 2 || shift
  if [[ -n "$t" ]]; then curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H "Authorization: Bearer $t" "$@" "http://127.0.0.1:$port/"
  else curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" "http://127.0.0.1:$port/"; fi
}
expect() {  # what got want
  if [[ "$2" == "$3" ]]; then printf '  ok   %-45s %s\n' "$1" "$2"
  else printf '  FAIL %-45s got %s want %s\n' "$1" "$2" "$3"; CHECK_FAILED=1; fi
}
check_auth_peer() {  # config alg
  local c=$1 a=$2 p=${PORT[$1]} k other
  echo "$c (:$p, $a):"
  local seen
  seen=$(curl -s -D - -o /dev/null --max-time 3 -H "Authorization: Bearer $(tok "$a.valid")" -H 'X-Identity: admin' \
         "http://127.0.0.1:$p/" | tr -d '\r' | awk 'tolower($1)=="x-seen-identity:"{print $2}')
  expect "valid token -> upstream sees X-Identity=sub" "${seen:-<none>}" user-42
  expect "valid token" "$(code "$p" "$(tok "$a.valid")")" 200
  for k in badsig tampered expired noexp; do expect "$k token" "$(code "$p" "$(tok "$a.$k")")" 401; done
  expect "alg=none token" "$(code "$p" "$(tok none)")" 401
  for other in hs256 rs256 es256; do
    [[ $other == "$a" ]] || expect "valid $other token (wrong alg)" "$(code "$p" "$(tok "$other.valid")")" 401
  done
  expect "no Authorization header" "$(code "$p")" 401
  expect "Authorization: Basic" "$(code "$p" "" -H 'Authorization: Basic dXNlcjpwdw==')" 401
  expect "Bearer garbage" "$(code "$p" 'not.a.jwt')" 401
}
run_checks() {
  CHECK_FAILED=0
  local c
  for c in $CONFIGS; do
    if (( ${AUTH[$c]} )); then check_auth_peer "$c" "${ALG[$c]}"
    else echo "$c (:${PORT[$c]}):"; expect "plain request" "$(code "${PORT[$c]}")" 200; fi
  done
  (( CHECK_FAILED )) && die "functional checks failed - not benchmarking a peer that does not validate"
  log "functional checks passed"
}

# ---------------------------------------------------------------- measurement helpers
tree_pids() {  # pid -> pid and its direct children (nginx workers)
  echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '
}
server_pids() {  # the servers of this run (gateway-prod's Redis included: its work is the gateway's)
  local n; for n in backend $PROCS; do [[ $n == direct ]] || tree_pids "${PID[$n]}"; done
  [[ -n "${PID[redis]:-}" ]] && echo "${PID[redis]}" || true
}
cpu_ticks() {  # summed utime+stime of a server tree
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}') && t=$(( t + ${v:-0} ))
  done
  echo $t
}
rss_kb() {  # summed VmRSS of a server tree (kB)
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) && t=$(( t + ${v:-0} ))
  done
  echo $t
}
pss_kb() {
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) && t=$(( t + ${v:-0} ))
  done
  echo $t
}
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }  # busy idle (jiffies)
NCPU=$(nproc)
wait_quiet() {  # until the machine (our idle servers included) uses <= QUIET_MAX % of a core
  local t0=$SECONDS last=-100 b0 i0 b1 i1 busy
  while :; do
    read -r b0 i0 < <(sys_busy); sleep 1; read -r b1 i1 < <(sys_busy)
    busy=$(( 100 * NCPU * (b1 - b0) / ( (b1 - b0) + (i1 - i0) + 1 ) ))
    (( busy <= QUIET_MAX )) && return 0
    if (( SECONDS - t0 >= QUIET_TIMEOUT )); then log "still ${busy}% busy after ${QUIET_TIMEOUT}s: measuring anyway"; return 0; fi
    if (( SECONDS - last >= 30 )); then
      last=$SECONDS
      log "waiting for a quiet machine (${busy}% of a core busy; busiest by lifetime %cpu: $(ps -eo pcpu=,comm= --sort=-pcpu | head -2 | awk '{printf "%s %s%% ", $2, $1}'))"
    fi
  done
}

set_mode() {  # pinned|unpinned : pins every server thread; wrk is pinned per run
  local cpus=$SERVER_CPUS p
  [[ $1 == unpinned ]] && cpus=$ALL_CPUS
  for p in $(server_pids); do taskset -a -p -c "$cpus" "$p" >/dev/null 2>&1; done
}
wrk_prefix() { if [[ $1 == pinned ]]; then echo "taskset -c $LOAD_CPUS"; else echo "taskset -c $ALL_CPUS"; fi; }

CSV_HEADER="phase,mode,config,token,rep,conns,requests,rps,mean_us,p50_us,p90_us,p99_us,p999_us,max_us,sock_errors,non2xx,proxy_cpu_pct,backend_cpu_pct,wrk_cpu_pct,sys_busy_pct,foreign_cpu_pct,softirq_pct,steal_pct,attempt,rss_peak_kb"

measure() {  # phase mode config token-kind rep conns duration  (retries runs disturbed by foreign load)
  local attempt
  for attempt in $(seq 1 $(( RETRIES + 1 ))); do
    wait_quiet
    measure_once "$@" "$attempt"
    local f; f=$(tail -n1 "$RESULTS_DIR/runs.csv" | awk -F, '{print $21}')
    (( f <= FOREIGN_MAX )) && return 0
    if (( attempt <= RETRIES )); then
      log "foreign processes used ${f}% of a core during that run: discarding it and repeating"
      tail -n1 "$RESULTS_DIR/runs.csv" >>"$RESULTS_DIR/runs_discarded.csv"
      sed -i '$d' "$RESULTS_DIR/runs.csv"
    else
      log "foreign load ${f}% on the last attempt too: keeping it (see foreign_cpu_pct)"
    fi
  done
}

measure_once() {  # phase mode config token-kind rep conns duration attempt
  local phase=$1 mode=$2 c=$3 kind=$4 rep=$5 conns=$6 dur=$7 attempt=$8
  local port=${PORT[$c]} token url out tfile pre lua=$LUA pool=
  token=$(tok "$kind"); url="http://127.0.0.1:$port/"; pre=$(wrk_prefix "$mode")
  if is_alias "$c"; then lua=$LUA_POOL; pool=$RUN_DIR/tokens/${ALG[$c]}.distinct.txt; fi
  out=$RUN_DIR/wrk.$phase.$mode.$c.$kind.$rep.out; tfile=$out.time
  if (( WARMUP > 0 )); then
    BENCH_TOKEN=$token BENCH_TOKEN_FILE=$pool $pre wrk -t"$THREADS" -c"$conns" -d"${WARMUP}s" -s "$lua" "$url" >/dev/null 2>&1
  fi
  local sampler="" peakf=$RUN_DIR/rss.peak
  if [[ $phase == highc ]]; then
    echo 0 >"$peakf"
    # cheap sampler (bash builtins only, pid list fixed up front) so it barely shows as foreign load
    local spids; spids=$(tree_pids "${PID[$c]}")
    ( peak=0
      while :; do
        r=0
        for p in $spids; do
          while read -r k v _; do [[ $k == VmRSS: ]] && { r=$(( r + v )); break; }; done <"/proc/$p/status"
        done
        (( r > peak )) && { peak=$r; echo $peak >"$peakf"; }
        sleep 0.5
      done ) &
    sampler=$!; STARTED+=("$sampler")
  fi
  local px0 bk0 px1 bk1 st0 st1
  px0=$(cpu_ticks "${PID[$c]}"); bk0=$(cpu_ticks "${PID[backend]}"); st0=$(head -1 /proc/stat)
  local TIMEFORMAT='%R %U %S'
  { time BENCH_TOKEN=$token BENCH_TOKEN_FILE=$pool $pre wrk -t"$THREADS" -c"$conns" -d"${dur}s" --timeout 5s --latency -s "$lua" "$url" >"$out" 2>&1 ; } 2>"$tfile"
  px1=$(cpu_ticks "${PID[$c]}"); bk1=$(cpu_ticks "${PID[backend]}"); st1=$(head -1 /proc/stat)
  local peak=""
  if [[ -n "$sampler" ]]; then
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; peak=$(cat "$peakf")
    local keep=() p; for p in "${STARTED[@]}"; do [[ $p == "$sampler" ]] || keep+=("$p"); done; STARTED=("${keep[@]}")
  fi
  local line; line=$(grep '^BENCH_RESULT' "$out") || { cat "$out" >&2; die "wrk failed ($c)"; }
  python3 - "$line" "$(cat "$tfile")" "$phase,$mode,$c,$kind,$rep,$conns" \
      "$px0" "$px1" "$bk0" "$bk1" "$HZ" "$c" "$attempt" "$peak" "$st0" "$st1" >>"$RESULTS_DIR/runs.csv" <<'PY'
import sys
line, tm, prefix = sys.argv[1], sys.argv[2].split(), sys.argv[3]
px0, px1, bk0, bk1, hz = map(int, sys.argv[4:9])
cfg, attempt, peak = sys.argv[9], sys.argv[10], sys.argv[11]
# /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
s0 = [int(x) for x in sys.argv[12].split()[1:]]
s1 = [int(x) for x in sys.argv[13].split()[1:]]
d = [b - a for a, b in zip(s0, s1)]
kv = dict(x.split("=") for x in line.split()[1:])
wall, usr, sy = map(float, tm)
pct = lambda ticks: 100.0 * ticks / hz / wall          # % of one core
proxy_t = 0 if cfg == "direct" else px1 - px0          # direct: the backend is the peer
ours = proxy_t + (bk1 - bk0) + (usr + sy) * hz          # our servers + wrk, in ticks
foreign = max(0.0, pct(d[0] + d[1] + d[2] + d[5] + d[6] - ours))  # busy (no steal) not ours
busy = pct(d[0] + d[1] + d[2] + d[4] + d[5] + d[6] + d[7])
sock = sum(int(kv[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
print(",".join([prefix, kv["requests"], "%.0f" % float(kv["rps"]), kv["mean_us"], kv["p50_us"], kv["p90_us"],
                kv["p99_us"], kv["p999_us"], kv["max_us"], str(sock), kv["non2xx"],
                "" if cfg == "direct" else "%.0f" % pct(proxy_t), "%.0f" % pct(bk1 - bk0),
                "%.0f" % (100.0 * (usr + sy) / wall), "%.0f" % busy, "%.0f" % foreign,
                "%.0f" % pct(d[5] + d[6]), "%.0f" % pct(d[7]), attempt, peak]))
PY
  tail -n1 "$RESULTS_DIR/runs.csv" | awk -F, '{printf "  %-6s %-8s %-13s %-12s r%-2s c=%-4s %7s req/s p50 %6.2fms p99 %7.2fms | cpu%% proxy %s backend %s wrk %s foreign %s%s\n",
      $1,$2,$3,$4,$5,$6,$8,$10/1000,$12/1000,$17,$18,$19,$21, ($25!=""?" | rss_peak "$25"kB":"")}' >&2
}

rotate() {  # rep words... -> words rotated by rep (so no config always runs first)
  local r=$1; shift; local a=("$@") n=$#; local i
  for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(( (i + r) % n ))]}"; done
}

record_env() {
  {
    echo "date: $(date -Is)"; echo "kernel: $(uname -r)"
    echo "cpu: $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}') x $(nproc)"
    echo "nginx: $(nginx -v 2>&1)"; echo "haproxy: $(haproxy -v | head -1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"; echo "openssl: $(openssl version)"
    echo "ulimit -n: $(ulimit -n)"
    echo "settings: CONFIGS='$CONFIGS' MODES='$MODES' REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS THREADS=$THREADS"
    echo "          SERVER_CPUS=$SERVER_CPUS LOAD_CPUS=$LOAD_CPUS ALL_CPUS=$ALL_CPUS NEG_KINDS='$NEG_KINDS' NEG_REPS=$NEG_REPS HIGHC=$HIGHC HIGHC_DURATION=$HIGHC_DURATION"
    echo "          QUIET_MAX=$QUIET_MAX FOREIGN_MAX=$FOREIGN_MAX RETRIES=$RETRIES"
    echo "gateway: ${GATEWAY_CMD:-<none>}"
  } >"$RESULTS_DIR/env.txt"
}

# ---------------------------------------------------------------- main
command -v nginx >/dev/null && command -v haproxy >/dev/null && command -v wrk >/dev/null ||
  die "need nginx haproxy wrk: apt-get install -y nginx haproxy wrk"
mkdir -p "$RUN_DIR"
log "run dir: $RUN_DIR"
start_all
run_checks

case $ACTION in
  check) exit 0 ;;
  serve)
    log "serving; ports: $(for c in $CONFIGS; do printf '%s=%s ' "$c" "${PORT[$c]}"; done)"
    log "tokens in $RUN_DIR/tokens, keys in $RUN_DIR/keys; Ctrl-C stops everything"
    while :; do sleep 1; done ;;
  run) ;;
  *) die "unknown action $ACTION (run|check|serve)" ;;
esac

mkdir -p "$RESULTS_DIR"
echo "$CSV_HEADER" >"$RESULTS_DIR/runs.csv"
echo "$CSV_HEADER" >"$RESULTS_DIR/runs_discarded.csv"
record_env
need=$(( HIGHC * 2 + 100 ))
if (( HIGHC > 0 )) && (( $(ulimit -n) < need )); then
  ulimit -n "$need" 2>/dev/null || { log "ulimit -n $(ulimit -n) < $need: skipping the c=$HIGHC run"; HIGHC=0; }
fi

# idle RSS, before any load
echo "config,rss_idle_kb,pss_idle_kb" >"$RESULTS_DIR/rss_idle.csv"
for c in $PROCS; do echo "$c,$(rss_kb "${PID[$c]}"),$(pss_kb "${PID[$c]}")" >>"$RESULTS_DIR/rss_idle.csv"; done

log "main phase: $REPS reps x modes [$MODES] x configs [$CONFIGS], ${DURATION}s each, c=$CONNS t=$THREADS"
for rep in $(seq 1 "$REPS"); do
  for mode in $MODES; do
    set_mode "$mode"
    for c in $(rotate "$rep" $CONFIGS); do measure main "$mode" "$c" "${ALG[$c]}.valid" "$rep" "$CONNS" "$DURATION"; done
  done
done

neg_configs=""; for c in $PROCS; do (( ${AUTH[$c]} )) && neg_configs+="$c "; done
if [[ -n "$neg_configs" && -n "$NEG_KINDS" ]]; then
  log "negative phase ($NEG_MODE): kinds [$NEG_KINDS] x [$neg_configs]"
  set_mode "$NEG_MODE"
  for rep in $(seq 1 "$NEG_REPS"); do
    for c in $(rotate "$rep" $neg_configs); do
      for k in $NEG_KINDS; do measure neg "$NEG_MODE" "$c" "${ALG[$c]}.$k" "$rep" "$CONNS" "$DURATION"; done
    done
  done
fi

if (( HIGHC > 0 )); then
  log "high-concurrency phase ($HIGHC_MODE): c=$HIGHC, RSS sampled every 0.5 s"
  set_mode "$HIGHC_MODE"
  for rep in $(seq 1 "$HIGHC_REPS"); do
    for c in $(rotate "$rep" $PROCS); do measure highc "$HIGHC_MODE" "$c" "${ALG[$c]}.valid" "$rep" "$HIGHC" "$HIGHC_DURATION"; done
  done
fi
sleep 2
echo "config,rss_after_kb" >"$RESULTS_DIR/rss_after.csv"
for c in $PROCS; do echo "$c,$(rss_kb "${PID[$c]}")" >>"$RESULTS_DIR/rss_after.csv"; done

python3 "$BENCH_DIR/report.py" "$RESULTS_DIR" | tee "$RESULTS_DIR/summary.md"
python3 "$BENCH_DIR/chart.py" "$RESULTS_DIR" "$RESULTS_DIR/chart.svg" && log "chart: $RESULTS_DIR/chart.svg"
log "raw results: $RESULTS_DIR"
