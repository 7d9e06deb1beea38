#!/usr/bin/env bash
# Telegram round-trip benchmark (see bench/RESULTS.md, "Telegram round trips"): a fake Telegram
# (bench/telegram/fake_telegram.js, Node.js, limits off) hands out N "/echo" updates from 200
# chats through getUpdates; chatgw polls them, records each in the ledger, runs the handler
# (bench/telegram/handlers/echo.lua: msg:reply), and delivers every reply through the outbox
# with sendMessage, pacing off. Measured: round trips per second (push to the last reply) and
# server CPU µs per round trip (utime + stime of the chatgw process, all threads / N).
# Only 127.0.0.1 is used; every process started here is stopped by PID; every step is bounded.
#
# Knobs (environment): N=20000  RUNS=3  BUILD_DIR=/tmp/bench-telegram-build  CHATGW_BIN=...
#   OUT=DIR (raw output and results.md; default a fresh /tmp/chatgw-bench-telegram.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-20000}"
RUNS="${RUNS:-3}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-telegram-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-telegram.XXXXXX)}"
mkdir -p "$OUT"

BENCH_TAG=bench-telegram
. "$HERE/../lib.sh"
STOP_WAIT_TENTHS=100

require_uint N RUNS
command -v curl >/dev/null || die "curl is required"
command -v node >/dev/null || install_pkgs nodejs

build_chatgw_quick

node "$HERE/fake_telegram.js" >"$OUT/fake.log" 2>&1 &
FAKE_PID=$!; PIDS+=("$FAKE_PID")
FAKE_PORT=$(wait_line "$OUT/fake.log" '^listening' 10 | awk '{print $2}')
FAKE="http://127.0.0.1:$FAKE_PORT"

WORK="$OUT/chatgw"; mkdir -p "$WORK/data"
printf 'chat:\n  pacing: false\nchannels:\n  telegram:\n    poll_timeout_s: 10\n' >"$WORK/chatgw.yml"
( cd "$WORK" && exec env CHAT_GATEWAY_PORT=0 CHAT_GATEWAY_TOKEN=bench-token CHAT_GATEWAY_DATA_DIR="$WORK/data" \
    TELEGRAM_BOT_TOKEN=4242:bench-token-not-secret TELEGRAM_API_BASE="$FAKE" \
    "$CHATGW_BIN" run --no-master "$HERE/handlers" --config "$WORK/chatgw.yml" >"$OUT/chatgw.log" 2>&1 ) &
GW_PID=$!; PIDS+=("$GW_PID")
wait_line "$OUT/chatgw.log" '"msg":"ready"' 10 >/dev/null
log "chatgw pid $GW_PID, fake Telegram pid $FAKE_PID on $FAKE_PORT, output in $OUT"

stat_sent() { curl -sS "$FAKE/control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sent"])'; }
wait_sent() { # wait_sent COUNT: up to 300 s
  local want="$1" _
  for _ in $(seq 1 3000); do
    [ "$(stat_sent)" -ge "$want" ] && return 0
    sleep 0.1
  done
  die "timed out waiting for $want replies (see $OUT)"
}
TCK=$(getconf CLK_TCK)
total=0
log "warm-up"
curl -sS -X POST "$FAKE/control/push?n=2000" >/dev/null; total=$((total + 2000)); wait_sent "$total"
: >"$OUT/runs.jsonl"
for i in $(seq 1 "$RUNS"); do
  c0=$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")
  t0=$(date +%s.%N)
  curl -sS -X POST "$FAKE/control/push?n=$N" >/dev/null; total=$((total + N)); wait_sent "$total"
  t1=$(date +%s.%N)
  c1=$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")
  r=$(python3 -c 'import json,sys; n,t0,t1,c0,c1,tck=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5]),int(sys.argv[6]); print(json.dumps({"n":n,"seconds":t1-t0,"round_trips_per_s":n/(t1-t0),"cpu_us_per_round_trip":(c1-c0)*1e6/tck/n}))' "$N" "$t0" "$t1" "$c0" "$c1" "$TCK")
  echo "$r" >>"$OUT/runs.jsonl"; log "run $i: $r"
done
RSS=$(awk '/VmRSS/{print $2}' "/proc/$GW_PID/status")

python3 - "$OUT" "$RSS" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys, os
out, rss = sys.argv[1], int(sys.argv[2])
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
med = lambda k: statistics.median(r[k] for r in runs)
print("| %d updates from 200 chats, pacing off, median of %d runs | value | runs |" % (runs[0]["n"], len(runs)))
print("| --- | ---: | --- |")
print("| round trips/s (update pushed to reply received) | %.0f | %s |" % (med("round_trips_per_s"), ", ".join("%.0f" % r["round_trips_per_s"] for r in runs)))
print("| server CPU µs per round trip | %.1f | %s |" % (med("cpu_us_per_round_trip"), ", ".join("%.1f" % r["cpu_us_per_round_trip"] for r in runs)))
print()
print("chatgw VmRSS after the runs: %.2f MiB" % (rss / 1024))
PY
