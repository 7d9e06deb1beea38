#!/usr/bin/env bash
# Feishu round-trip benchmark (like bench/telegram, "Telegram round trips" in bench/RESULTS.md):
# a fake Feishu open platform (bench/feishu/fake_feishu.js, Node.js, limits off) pushes N v2
# im.message.receive_v1 events ("/echo <n>" from 200 p2p chats, plain, verification token) to
# chatgw's event callback (POST /feishu/events on the feishu listener) over CONC keep-alive
# connections; chatgw records each in the ledger and answers 200, runs the handler
# (bench/feishu/handlers/echo.lua: msg:reply), and delivers every reply through the outbox with
# POST /open-apis/im/v1/messages, pacing off. Measured: round trips per second (push start to
# the last reply) and server CPU µs per round trip (utime + stime of the chatgw process, all
# threads / N); push errors (any answer but 200) must be 0.
# Only 127.0.0.1 is used; every process started here is stopped by PID; every step is bounded.
#
# Knobs (environment): N=20000  RUNS=3  CONC=32  BUILD_DIR=/tmp/bench-feishu-build  CHATGW_BIN=...
#   OUT=DIR (raw output and results.md; default a fresh /tmp/chatgw-bench-feishu.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-20000}"
RUNS="${RUNS:-3}"
CONC="${CONC:-32}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-feishu-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-feishu.XXXXXX)}"
mkdir -p "$OUT"

BENCH_TAG=bench-feishu
. "$HERE/../lib.sh"
STOP_WAIT_TENTHS=100

require_uint N RUNS CONC
command -v curl >/dev/null || die "curl is required"
command -v node >/dev/null || install_pkgs nodejs

build_chatgw_quick

node "$HERE/fake_feishu.js" >"$OUT/fake.log" 2>&1 &
FAKE_PID=$!; PIDS+=("$FAKE_PID")
FAKE_PORT=$(wait_line "$OUT/fake.log" '^listening' 10 | awk '{print $2}')
FAKE="http://127.0.0.1:$FAKE_PORT"

WORK="$OUT/chatgw"; mkdir -p "$WORK/data"
printf 'chat:\n  pacing: false\n' >"$WORK/chatgw.yml"
( cd "$WORK" && exec env CHAT_GATEWAY_PORT=0 CHAT_GATEWAY_TOKEN=bench-token CHAT_GATEWAY_DATA_DIR="$WORK/data" \
    FEISHU_APP_ID=cli_bench FEISHU_APP_SECRET=bench-secret FEISHU_VERIFICATION_TOKEN=bench-vt \
    FEISHU_API_BASE="$FAKE" FEISHU_WEBHOOK_PORT=0 \
    "$CHATGW_BIN" run --no-master "$HERE/handlers" --config "$WORK/chatgw.yml" >"$OUT/chatgw.log" 2>&1 ) &
GW_PID=$!; PIDS+=("$GW_PID")
wait_line "$OUT/chatgw.log" '"msg":"ready"' 10 >/dev/null
GW_PORT=$(wait_line "$OUT/chatgw.log" '"msg":"listening".*"listener":"feishu"' 1 |
  sed -n 's/.*"port":\([0-9][0-9]*\).*/\1/p')
[ -n "$GW_PORT" ] || die "no port in the feishu listener's log line (see $OUT/chatgw.log)"
EVENTS="http://127.0.0.1:$GW_PORT/feishu/events"
log "chatgw pid $GW_PID (events at $EVENTS), fake Feishu pid $FAKE_PID on $FAKE_PORT, output in $OUT"

stats() { curl -sS --max-time 10 "$FAKE/control/stats"; }
# wait_sent SENT PUSHED: up to 300 s for the fake to count SENT replies and PUSHED events
# answered; a push error stops it at once (its replies would never come)
wait_sent() {
  local want="$1" want_pushed="$2" s _
  for _ in $(seq 1 3000); do
    s=$(stats)
    case "$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); w,wp=int(sys.argv[2]),int(sys.argv[3])
print("error" if s["push_errors"] else "done" if s["sent"] >= w and s["pushed"] >= wp else "wait")' "$s" "$want" "$want_pushed")" in
      done) return 0;;
      error) die "push errors: $s (see $OUT/fake.log and $OUT/chatgw.log)";;
    esac
    sleep 0.1
  done
  die "timed out waiting for $want replies and $want_pushed events acknowledged: $s (see $OUT)"
}
push() { curl -sS --max-time 10 -X POST "$FAKE/control/push?n=$1&conc=$CONC&url=$EVENTS" >/dev/null; }
TCK=$(getconf CLK_TCK)
total=0
log "warm-up"
push 2000; total=$((total + 2000)); wait_sent "$total" "$total"
: >"$OUT/runs.jsonl"
for i in $(seq 1 "$RUNS"); do
  c0=$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")
  t0=$(date +%s.%N)
  push "$N"; total=$((total + N)); wait_sent "$total" 0
  t1=$(date +%s.%N)
  c1=$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")
  wait_sent "$total" "$total" # every event's 200 is in (a reply can come before its event's answer)
  r=$(python3 -c 'import json,sys; n,t0,t1,c0,c1,tck=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5]),int(sys.argv[6]); print(json.dumps({"n":n,"seconds":t1-t0,"round_trips_per_s":n/(t1-t0),"cpu_us_per_round_trip":(c1-c0)*1e6/tck/n}))' "$N" "$t0" "$t1" "$c0" "$c1" "$TCK")
  echo "$r" >>"$OUT/runs.jsonl"; log "run $i: $r"
done
RSS=$(awk '/VmRSS/{print $2}' "/proc/$GW_PID/status")
stats >"$OUT/stats.json"

python3 - "$OUT" "$RSS" "$CONC" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys, os
out, rss, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
st = json.load(open(os.path.join(out, "stats.json")))
med = lambda k: statistics.median(r[k] for r in runs)
print("| %d events from 200 p2p chats, %d connections, pacing off, median of %d runs | value | runs |" % (runs[0]["n"], conc, len(runs)))
print("| --- | ---: | --- |")
print("| events/s (webhook → handler → reply received) | %.0f | %s |" % (med("round_trips_per_s"), ", ".join("%.0f" % r["round_trips_per_s"] for r in runs)))
print("| server CPU µs per round trip | %.1f | %s |" % (med("cpu_us_per_round_trip"), ", ".join("%.1f" % r["cpu_us_per_round_trip"] for r in runs)))
print("| push errors (must be 0) | %d | warm-up included |" % st["push_errors"])
print()
print("chatgw VmRSS after the runs: %.2f MiB" % (rss / 1024))
if st.get("bad_requests") or st.get("duplicate_uuids"):
    print()
    print("fake Feishu: %d bad requests, %d repeated send uuids" % (st.get("bad_requests", 0), st.get("duplicate_uuids", 0)))
PY
