#!/usr/bin/env bash
# HTTP benchmark: chatgw vs nginx + lua-nginx-module (one worker) on two routes,
#   GET  /health           (bearer check, {"ok":true})
#   POST /v1/notify/text   (bearer check, JSON decode, validation, shared-dict incr, JSON reply)
# See bench/README.md. Only 127.0.0.1 is used; every process started here is stopped by PID.
#
# Knobs (environment):
#   RUNS=3            measured runs per (server, route); the table shows the median of each column
#   DURATION=10s      wrk -d of one measured run;  WARMUP=3s  wrk -d of the warm-up run
#   CONNS=50          wrk -c (always -t1)
#   SERVER_CPU=0 WRK_CPU=1   taskset CPUs of the server and of wrk
#   BUILD_DIR=/tmp/bench-build   where chatgw is built (RelWithDebInfo)
#   CHATGW_BIN=...    use this binary instead of building
#   INFO_ROW=1        also measure chatgw at log level info (access log formatted, sent to /dev/null)
#   NO_INSTALL=1      do not apt-get anything (fail if a tool is missing)
#   OUT=DIR           where raw wrk output and results.md go (default: a fresh /tmp/chatgw-bench.XXXX)
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
CONNS="${CONNS:-50}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-build}"
INFO_ROW="${INFO_ROW:-1}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

BENCH_TAG=bench
# log, die, stop_pid (every process started here is in PIDS), packages, build, ports
. "$BENCH_DIR/lib.sh"

require_uint RUNS
if [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 20 ]; then die "RUNS must be 1..20"; fi

# ---- tools --------------------------------------------------------------------------------
pkgs=""
for p in wrk libnginx-mod-http-lua lua-cjson curl python3 util-linux coreutils; do
  have_pkg "$p" || pkgs="$pkgs $p"
done
# any nginx flavour will do (nginx-light is the smallest that loads the lua module)
command -v nginx >/dev/null || pkgs="$pkgs nginx-light"
install_pkgs "${pkgs# }"
for m in ndk_http_module ngx_http_lua_module; do
  [ -f "/usr/lib/nginx/modules/$m.so" ] || die "/usr/lib/nginx/modules/$m.so missing"
done

# ---- build chatgw -------------------------------------------------------------------------
build_chatgw

# ---- helpers ------------------------------------------------------------------------------
TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export BENCH_TOKEN="$TOKEN"
CLK_TCK="$(getconf CLK_TCK)"

cpu_ticks() { # utime+stime (all threads) of PID, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
expect() { # expect NAME WANT_STATUS WANT_BODY_SUBSTRING curl-args...
  local name="$1" want="$2" sub="$3"; shift 3
  local body status
  body="$(curl -sS --max-time 5 -w '\n%{http_code}' "$@")" || die "$name: curl failed"
  status="${body##*$'\n'}"; body="${body%$'\n'*}"
  [ "$status" = "$want" ] || die "$name: status $status, want $want (body: $body)"
  case "$body" in *"$sub"*) ;; *) die "$name: body '$body' lacks '$sub'";; esac
}
check_routes() { # check_routes BASE_URL: same behaviour on both servers before measuring
  local u="$1" a="Authorization: Bearer $TOKEN" j="Content-Type: application/json"
  expect "health" 200 '"ok":true' -H "$a" "$u/health"
  expect "health/no-auth" 401 'unauthorized' "$u/health"
  expect "notify" 200 '"id":' -H "$a" -H "$j" -d '{"text":"hi"}' "$u/v1/notify/text"
  expect "notify/empty" 400 'text_required' -H "$a" -H "$j" -d '{"text":""}' "$u/v1/notify/text"
  expect "notify/no-text" 400 'text_required' -H "$a" -H "$j" -d '{"x":1}' "$u/v1/notify/text"
  expect "notify/bad-auth" 401 'unauthorized' -H "Authorization: Bearer nope" -H "$j" \
    -d '{"text":"hi"}' "$u/v1/notify/text"
}

SERVER_PID=""
start_chatgw() { # start_chatgw NAME LOG_LEVEL
  local name="$1" level="$2" dir="$OUT/$1"
  mkdir -p "$dir/data"
  PORT="$(free_port)"
  cat >"$dir/chatgw.yml" <<EOF
listeners:
  main:
    host: "127.0.0.1"
    port: $PORT
data_dir: "$dir/data"
log:
  level: "$level"
EOF
  # stderr (the JSON log, one access-log line per request at level info) goes to /dev/null.
  # --no-master: one process that serves, as nginx runs with master_process off, so that the PID
  # whose /proc/PID/stat run.sh reads is the one doing the work (with the master, it would be the
  # idle master and every CPU figure would read 0).
  # The config file sets host/port/log level; clear env overrides that could contradict it.
  (cd "$dir" && exec env -u CHAT_GATEWAY_HOST -u CHAT_GATEWAY_PORT -u CHAT_GATEWAY_LOG_LEVEL \
    -u CHAT_GATEWAY_DATA_DIR CHAT_GATEWAY_TOKEN="$TOKEN" \
    taskset -c "$SERVER_CPU" "$CHATGW_BIN" run --no-master "$BENCH_DIR/handlers" --config "$dir/chatgw.yml" \
    </dev/null >/dev/null 2>/dev/null) &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SERVER_PID" "$PORT" || die "$name did not start (run it by hand: $CHATGW_BIN run $BENCH_DIR/handlers --config $dir/chatgw.yml)"
}
start_nginx() { # start_nginx NAME
  local name="$1" dir="$OUT/$1"
  mkdir -p "$dir"
  PORT="$(free_port)"
  sed -e "s#@PREFIX@#$dir#g" -e "s#@PORT@#$PORT#g" "$BENCH_DIR/nginx/nginx.conf" >"$dir/nginx.conf"
  (exec env CHAT_GATEWAY_TOKEN="$TOKEN" taskset -c "$SERVER_CPU" \
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" </dev/null >/dev/null 2>"$dir/stderr.log") &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SERVER_PID" "$PORT" || die "$name did not start, see $dir/error.log and $dir/stderr.log"
}

# wrk_run NAME ROUTE SCRIPT URL DURATION FILE -> prints the BENCH line fields
wrk_run() {
  local script="$3" url="$4" dur="$5" file="$6" secs
  secs="${dur%s}"
  timeout --kill-after=5 "$((secs + 30))" \
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$dur" --timeout 5s --latency \
    -s "$BENCH_DIR/wrk/$script" "$url" >"$file" 2>&1 || die "wrk failed, see $file"
  grep '^BENCH ' "$file" || die "no BENCH line in $file"
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

[[ "$DURATION" =~ ^[1-9][0-9]{0,2}s$ ]] || die "DURATION must look like 10s (1..999 s)"
[[ "$WARMUP" =~ ^[1-9][0-9]{0,2}s$ ]] || die "WARMUP must look like 3s (1..999 s)"
[[ "$CONNS" =~ ^[1-9][0-9]{0,3}$ ]] || die "CONNS must be 1..9999"

# ---- servers ------------------------------------------------------------------------------
SERVERS=("chatgw" "nginx-lua")
[ "$INFO_ROW" = "1" ] && SERVERS+=("chatgw-loginfo")
declare -A URL PID_OF RSS_IDLE RSS_AFTER
ROUTES=("GET /health" "POST /v1/notify/text")
script_of() { case "$1" in "GET /health") echo health.lua;; *) echo notify.lua;; esac; }
path_of() { echo "${1#* }"; }

for s in "${SERVERS[@]}"; do
  case "$s" in
    chatgw) start_chatgw "$s" warn ;;
    chatgw-loginfo) start_chatgw "$s" info ;;
    nginx-lua) start_nginx "$s" ;;
  esac
  PID_OF[$s]="$SERVER_PID"
  URL[$s]="http://127.0.0.1:$PORT"
  sleep 0.5
  RSS_IDLE[$s]="$(rss_kib "$SERVER_PID")"
  check_routes "${URL[$s]}"
  log "$s: pid $SERVER_PID on ${URL[$s]}, idle VmRSS ${RSS_IDLE[$s]} KiB"
done

# ---- warm-up ------------------------------------------------------------------------------
for s in "${SERVERS[@]}"; do
  for r in "${ROUTES[@]}"; do
    log "warm-up $s $r ($WARMUP)"
    wrk_run "$s" "$r" "$(script_of "$r")" "${URL[$s]}$(path_of "$r")" "$WARMUP" \
      "$OUT/warmup-$s-$(script_of "$r" | sed 's/\.lua//').txt" >/dev/null
  done
done

# ---- measured runs (interleaved so drift hits every server alike) -------------------------
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
RAW="$OUT/raw.tsv"
printf 'run\tserver\troute\trequests\trps\tp50_us\tp99_us\tcpu_us_per_req\tserver_busy_pct\tnon2xx\terrors\tloadavg1\n' >"$RAW"
for run in $(seq 1 "$RUNS"); do
  for r in "${ROUTES[@]}"; do
    for s in "${SERVERS[@]}"; do
      pid="${PID_OF[$s]}"
      kill -0 "$pid" 2>/dev/null || die "$s (pid $pid) died"
      log "run $run/$RUNS: $s $r ($DURATION)"
      t0="$(cpu_ticks "$pid")"
      line="$(wrk_run "$s" "$r" "$(script_of "$r")" "${URL[$s]}$(path_of "$r")" "$DURATION" \
        "$OUT/run$run-$s-$(script_of "$r" | sed 's/\.lua//').txt")"
      t1="$(cpu_ticks "$pid")"
      reqs="$(field requests "$line")"
      [ "${reqs:-0}" -gt 0 ] || die "$s $r: no requests completed"
      cpu="$(awk -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')"
      busy="$(awk -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v us="$(field duration_us "$line")" \
        'BEGIN { printf "%.1f", d / hz / (us / 1e6) * 100 }')"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$s" "$r" "$reqs" \
        "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" "$cpu" "$busy" \
        "$(field non2xx "$line")" "$(field errors "$line")" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
    done
  done
done
for s in "${SERVERS[@]}"; do RSS_AFTER[$s]="$(rss_kib "${PID_OF[$s]}")"; done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- table --------------------------------------------------------------------------------
{
  echo "| server | route | req/s | p50 | p99 | server CPU µs/request | server CPU busy | non-2xx | socket errors |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for r in "${ROUTES[@]}"; do
    for s in "${SERVERS[@]}"; do
      awk -F'\t' -v s="$s" -v r="$r" '
        function median(a, n,   i, j, t) {
          for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
          return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
        }
        function ms(us) { return us >= 1000 ? sprintf("%.2f ms", us / 1000) : sprintf("%d µs", us) }
        NR > 1 && $2 == s && $3 == r {
          n++; rps[n] = $5; p50[n] = $6; p99[n] = $7; cpu[n] = $8; busy[n] = $9; bad += $10; err += $11
        }
        END {
          if (!n) exit
          printf "| %s | %s | %.0f | %s | %s | %.1f | %.0f %% | %d | %d |\n", s, r, median(rps, n),
            ms(median(p50, n)), ms(median(p99, n)), median(cpu, n), median(busy, n), bad, err
        }' "$RAW"
    done
  done
  echo
  echo "| server | idle VmRSS | VmRSS after load |"
  echo "| --- | ---: | ---: |"
  for s in "${SERVERS[@]}"; do
    awk -v s="$s" -v a="${RSS_IDLE[$s]}" -v b="${RSS_AFTER[$s]}" \
      'BEGIN { printf "| %s | %.2f MiB (%d KiB) | %.2f MiB (%d KiB) |\n", s, a/1024, a, b/1024, b }'
  done
  echo
  echo "wrk -t1 -c$CONNS -d$DURATION --latency (pinned to CPU $WRK_CPU), server pinned to CPU $SERVER_CPU;" \
    "median of $RUNS runs per cell, after a $WARMUP warm-up per cell. chatgw stderr -> /dev/null," \
    "log level warn (chatgw-loginfo: level info, i.e. the per-request access-log line is formatted and" \
    "written to /dev/null). nginx: 1 process (master_process off), access_log off."
  echo
  echo "Server CPU busy = server CPU time / wall time of the run; well below 100 % means the server" \
    "core was not the bottleneck (the single wrk thread or other load was). Load average" \
    "(1/5/15 min) before the runs: $LOAD_START; after: $LOAD_END."
} >"$OUT/results.md"

cat "$OUT/results.md"
log "raw results: $RAW; wrk output and server dirs: $OUT"
