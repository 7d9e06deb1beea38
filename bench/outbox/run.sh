#!/usr/bin/env bash
# Outbox benchmark (see bench/RESULTS.md, "The chat outbox"): accept + persist + send to a local
# fake platform, with pacing off. chatgw runs the test chat channel with its HTTP sink pointed at
# bench/outbox/sink.js (node, keep-alive, answers at once); bench/outbox/handlers/bench.lua
# accepts N messages from PRODUCERS tasks over CHATS chats and waits until all are delivered.
# Measured: messages/s (accepted to all delivered), server CPU µs per message (utime + stime of
# the chatgw process, all its threads, over the run / N), accept latency p50/p99
# (chatgw.chat.send: the row is committed when it returns). Two rows: "sink" is the whole path
# (one HTTP request per message to the fake platform); "memory" delivers to the test channel's
# in-memory platform instead, to show the outbox's own cost without the HTTP client.
# Only 127.0.0.1 is used; every process started here is stopped by PID; every step is bounded.
#
# Knobs (environment):
#   N=20000  CHATS=200  PRODUCERS=50  RUNS=3
#   BUILD_DIR=/tmp/bench-outbox-build   CHATGW_BIN=... (skip the build)
#   OUT=DIR  raw output and results.md (default: a fresh /tmp/chatgw-bench-outbox.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-20000}"
CHATS="${CHATS:-200}"
PRODUCERS="${PRODUCERS:-50}"
RUNS="${RUNS:-3}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-outbox-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-outbox.XXXXXX)}"
mkdir -p "$OUT"

BENCH_TAG=bench-outbox
. "$HERE/../lib.sh"
STOP_WAIT_TENTHS=100

require_uint N CHATS PRODUCERS RUNS
command -v curl >/dev/null || die "curl is required"
command -v node >/dev/null || install_pkgs nodejs

build_chatgw_quick

node "$HERE/sink.js" >"$OUT/sink.log" 2>&1 &
SINK_PID=$!; PIDS+=("$SINK_PID")
SINK_PORT=$(wait_line "$OUT/sink.log" '^listening' 10 | awk '{print $2}')
TCK=$(getconf CLK_TCK)
: >"$OUT/runs.jsonl"

run_mode() { # run_mode sink|memory: a fresh chatgw (data dir and all), a warm-up, RUNS runs
  local mode="$1" work="$OUT/chatgw-$1" sink_env=() gw_pid gw_port i r c0 c1
  mkdir -p "$work/data"
  printf 'chat:\n  pacing: false\n' >"$work/chatgw.yml"
  [ "$mode" = sink ] && sink_env=(CHATGW_TEST_CHANNEL_SINK="http://127.0.0.1:$SINK_PORT")
  ( cd "$work" && exec env CHAT_GATEWAY_PORT=0 CHAT_GATEWAY_TOKEN=bench-token CHAT_GATEWAY_DATA_DIR="$work/data" \
      CHATGW_TEST_CHANNEL=1 "${sink_env[@]}" \
      "$CHATGW_BIN" run --no-master "$HERE/handlers" --config "$work/chatgw.yml" >"$work/chatgw.log" 2>&1 ) &
  gw_pid=$!; PIDS+=("$gw_pid")
  gw_port=$(wait_line "$work/chatgw.log" '"msg":"listening"' 10 | sed -E 's/.*"port":([0-9]+).*/\1/')
  wait_line "$work/chatgw.log" '"msg":"ready"' 10 >/dev/null
  log "$mode: chatgw pid $gw_pid on 127.0.0.1:$gw_port"
  get() { curl -sS --max-time 600 -H "Authorization: Bearer bench-token" "http://127.0.0.1:$gw_port$1"; }
  get "/bench/outbox?n=2000&chats=$CHATS&producers=$PRODUCERS" >/dev/null # warm-up
  for i in $(seq 1 "$RUNS"); do
    c0=$(awk '{print $14 + $15}' "/proc/$gw_pid/stat")
    r=$(get "/bench/outbox?n=$N&chats=$CHATS&producers=$PRODUCERS")
    c1=$(awk '{print $14 + $15}' "/proc/$gw_pid/stat")
    r=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j["mode"]=sys.argv[5]; j["cpu_us_per_msg"]=(int(sys.argv[2])-int(sys.argv[3]))*1e6/int(sys.argv[4])/j["n"]; print(json.dumps(j))' "$r" "$c1" "$c0" "$TCK" "$mode")
    echo "$r" >>"$OUT/runs.jsonl"; log "$mode run $i: $r"
  done
  awk '/VmRSS/{print $2}' "/proc/$gw_pid/status" >"$OUT/rss-$mode"
  stop_pid "$gw_pid"
}

run_mode sink
run_mode memory

python3 - "$OUT" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys, os
out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
assert all(r["failed"] == 0 and r["delivered"] == r["n"] for r in runs), runs
r0 = runs[0]
print("%d messages over %d chats from %d producers, pacing off; median of %d runs (each run in brackets)" %
      (r0["n"], r0["chats"], r0["producers"], sum(1 for r in runs if r["mode"] == "sink")))
print()
print("| delivery | messages/s | server CPU µs/message | accept p50 | accept p99 | accept max | VmRSS after |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for mode, name in (("sink", "HTTP to the fake platform"), ("memory", "in-memory test platform")):
    rs = [r for r in runs if r["mode"] == mode]
    med = lambda k: statistics.median(r[k] for r in rs)
    each = lambda k, f: " (" + ", ".join(f % r[k] for r in rs) + ")"
    rss = int(open(os.path.join(out, "rss-" + mode)).read())
    print("| %s | %.0f%s | %.1f%s | %.0f µs | %.0f µs | %.0f µs | %.1f MiB |" % (name,
          med("msgs_per_s"), each("msgs_per_s", "%.0f"), med("cpu_us_per_msg"), each("cpu_us_per_msg", "%.0f"),
          med("accept_p50_us"), med("accept_p99_us"), med("accept_max_us"), rss / 1024))
PY
