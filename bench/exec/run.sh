#!/usr/bin/env bash
# Subprocess benchmark for chatgw.exec (see bench/RESULTS.md, section "chatgw.exec"):
#   1. throughput: N chatgw.exec{argv = {"/bin/true"}} calls from CONC coroutines under the
#      default caps (module "default": the global cap 8; module "telegram": 4), spawn + wait
#      per second;
#   2. loop latency: lateness of a chatgw.every(10) timer, measured inside chatgw with
#      chatgw.now(), while nothing runs, while 8 children sleep, while 8 children burn CPU.
# Only 127.0.0.1 is used; every process started here is stopped by PID; every step is bounded.
#
# Knobs (environment):
#   N=2000         exec calls per throughput run      CONC=64  coroutines making them
#   RUNS=3         runs per row (median shown)
#   LAT_MS=5000    duration of each latency run, ms
#   BUILD_DIR=/tmp/bench-exec-build   where chatgw is built (RelWithDebInfo)
#   CHATGW_BIN=... use this binary instead of building
#   OUT=DIR        raw output and results.md (default: a fresh /tmp/chatgw-bench-exec.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
N="${N:-2000}"
CONC="${CONC:-64}"
RUNS="${RUNS:-3}"
LAT_MS="${LAT_MS:-5000}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-exec-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-exec.XXXXXX)}"
mkdir -p "$OUT"

BENCH_TAG=bench-exec
# log, die, stop_pid (every process started here is in PIDS), build, wait_line
. "$HERE/../lib.sh"
STOP_WAIT_TENTHS=100 # stop_pid waits 10 s here, not 5

require_uint N CONC RUNS LAT_MS
command -v curl >/dev/null || die "curl is required"

build_chatgw_quick

WORK="$OUT/chatgw"; mkdir -p "$WORK/data"
: >"$WORK/chatgw.yml"
# Only the bench's own settings: every CHAT_GATEWAY_EXEC_* cap stays at its default.
( cd "$WORK" && exec env -u CHAT_GATEWAY_EXEC_MAX_GLOBAL -u CHAT_GATEWAY_EXEC_MAX_TELEGRAM \
    CHAT_GATEWAY_PORT=0 CHAT_GATEWAY_TOKEN=bench-token \
    "$CHATGW_BIN" run --no-master "$HERE/handlers" --config "$WORK/chatgw.yml" >"$OUT/chatgw.log" 2>&1 ) &
GW_PID=$!; PIDS+=("$GW_PID")
GW_PORT=$(wait_line "$OUT/chatgw.log" '"msg":"listening"' 10 | sed -E 's/.*"port":([0-9]+).*/\1/')
wait_line "$OUT/chatgw.log" '"msg":"ready"' 10 >/dev/null
log "chatgw pid $GW_PID on 127.0.0.1:$GW_PORT, output in $OUT"

get() { curl -sS --max-time 600 -H "Authorization: Bearer bench-token" "http://127.0.0.1:$GW_PORT$1"; }

log "warm-up"
get "/bench/exec?n=200&conc=$CONC" >/dev/null
: >"$OUT/exec.jsonl"; : >"$OUT/latency.jsonl"
for i in $(seq 1 "$RUNS"); do
  for m in default telegram; do
    q="/bench/exec?n=$N&conc=$CONC"; [ "$m" = default ] || q="$q&module=$m"
    r=$(get "$q"); echo "$r" >>"$OUT/exec.jsonl"; log "exec run $i ($m): $r"
  done
  for mode in idle sleep burn; do
    r=$(get "/bench/latency?mode=$mode&ms=$LAT_MS"); echo "$r" >>"$OUT/latency.jsonl"
    log "latency run $i ($mode): $r"
  done
done

python3 - "$OUT" "$N" "$LAT_MS" "$CONC" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys, os
out, n, lat_ms, conc = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ex = [json.loads(l) for l in open(os.path.join(out, "exec.jsonl"))]
la = [json.loads(l) for l in open(os.path.join(out, "latency.jsonl"))]
print("| %s execs of `/bin/true` from %s coroutines | cap | spawn+wait per second (median) | runs |" % (n, conc))
print("| --- | --- | --- | --- |")
for m, cap in (("default", 8), ("telegram", 4)):
    rows = [r for r in ex if r["module"] == m]
    assert all(r["failed"] == 0 for r in rows), rows
    print("| module `%s` | %d | %.0f | %s |" % (m, cap, statistics.median(r["per_second"] for r in rows),
          ", ".join("%.0f" % r["per_second"] for r in rows)))
print()
print("| `chatgw.every(10)` lateness over %s ms | ticks | mean | p50 | p99 | max |" % lat_ms)
print("| --- | --- | --- | --- | --- | --- |")
names = {"idle": "nothing else running", "sleep": "8 children sleeping", "burn": "8 children burning CPU"}
for mode in ("idle", "sleep", "burn"):
    rows = [r for r in la if r["mode"] == mode]
    med = lambda k: statistics.median(r[k] for r in rows)
    print("| %s | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms |" % (
        names[mode], med("ticks"), med("mean_ms"), med("p50_ms"), med("p99_ms"), med("max_ms")))
PY
