#!/usr/bin/env bash
# Outbound HTTP benchmark: requests per second from ONE chatgw process (chatgw.http.request in
# CONC coroutines, libcurl multi on the loop) to a local keep-alive Node.js upstream, and CPU
# time per request, compared with a Node.js script doing the same with its built-in fetch.
# Only 127.0.0.1 is used; every process started here is stopped by PID; every step is bounded.
#
# Knobs (environment):
#   TOTAL=50000 requests per measured run   CONC=100 concurrent coroutines / async loops
#   RUNS=3      measured runs per client (the table shows the median)
#   CLIENT_CPU=0 UPSTREAM_CPU=1   taskset CPUs of the client (chatgw or node) and of the upstream
#   BUILD_DIR=/tmp/bench-http-build   where chatgw is built (RelWithDebInfo)
#   CHATGW_BIN=...   use this binary instead of building
#   OUT=DIR          raw output and results.md (default: a fresh /tmp/chatgw-bench-http.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOTAL="${TOTAL:-50000}"
CONC="${CONC:-100}"
RUNS="${RUNS:-3}"
CLIENT_CPU="${CLIENT_CPU:-0}"
UPSTREAM_CPU="${UPSTREAM_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-http-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-http.XXXXXX)}"
mkdir -p "$OUT"

BENCH_TAG=bench-http
# log, die, stop_pid (every process started here is in PIDS), build, wait_line
. "$HERE/../lib.sh"

require_uint TOTAL CONC RUNS
command -v node >/dev/null || die "node is required (the upstream and the fetch client)"
command -v taskset >/dev/null || die "taskset is required (util-linux)"
command -v curl >/dev/null || die "curl is required"

# CPU seconds (user + system) used so far by PID.
cpu_of() {
  local tck; tck=$(getconf CLK_TCK)
  awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%.4f\n", ($12 + $13) / t }' "/proc/$1/stat"
}

# ---- chatgw binary ----
build_chatgw_quick

# ---- upstream ----
taskset -c "$UPSTREAM_CPU" node "$HERE/upstream.js" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
UP_PORT=$(wait_line "$OUT/upstream.log" '^listening [0-9]+' 10 | awk '{print $2}')
UP_URL="http://127.0.0.1:$UP_PORT/sendMessage"
log "upstream (node http, CPU $UPSTREAM_CPU) on $UP_URL"

# ---- chatgw ----
WORK="$OUT/chatgw"; mkdir -p "$WORK/data"
: >"$WORK/chatgw.yml"
( cd "$WORK" && CHAT_GATEWAY_PORT=0 CHAT_GATEWAY_TOKEN=bench-token no_proxy=127.0.0.1 \
    exec taskset -c "$CLIENT_CPU" "$CHATGW_BIN" run --no-master "$HERE/handlers" --config "$WORK/chatgw.yml" \
    >"$OUT/chatgw.log" 2>&1 ) &
GW_PID=$!; PIDS+=("$GW_PID")
GW_PORT=$(wait_line "$OUT/chatgw.log" '"msg":"listening"' 10 | sed -E 's/.*"port":([0-9]+).*/\1/')
wait_line "$OUT/chatgw.log" '"msg":"ready"' 10 >/dev/null
log "chatgw (CPU $CLIENT_CPU) on 127.0.0.1:$GW_PORT"

run_chatgw() { # run_chatgw TOTAL -> JSON line with cpu fields added
  local n="$1" c0 u0 c1 u1 out
  c0=$(cpu_of "$GW_PID"); u0=$(cpu_of "$UP_PID")
  out=$(curl -sS --max-time 300 "http://127.0.0.1:$GW_PORT/bench/http?url=$UP_URL&total=$n&conc=$CONC")
  c1=$(cpu_of "$GW_PID"); u1=$(cpu_of "$UP_PID")
  python3 - "$out" "$c0" "$c1" "$u0" "$u1" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); c = float(sys.argv[3]) - float(sys.argv[2]); u = float(sys.argv[5]) - float(sys.argv[4])
r.update(cpu_seconds=c, cpu_us_per_request=c * 1e6 / r["requests"], upstream_cpu_us_per_request=u * 1e6 / r["requests"])
print(json.dumps(r))
PY
}

run_node() {
  local n="$1" u0 u1 out
  u0=$(cpu_of "$UP_PID")
  out=$(timeout 300 taskset -c "$CLIENT_CPU" node "$HERE/fetch_client.js" "$UP_URL" "$n" "$CONC")
  u1=$(cpu_of "$UP_PID")
  python3 - "$out" "$u0" "$u1" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); u = float(sys.argv[3]) - float(sys.argv[2])
# the client's warm-up run (2000 requests) also hit the upstream while u0..u1 was measured
r["upstream_cpu_us_per_request"] = u * 1e6 / (r["requests"] + min(2000, r["requests"]))
print(json.dumps(r))
PY
}

log "warm-up"
run_chatgw 2000 >/dev/null
: >"$OUT/chatgw.jsonl"; : >"$OUT/node.jsonl"
for i in $(seq 1 "$RUNS"); do
  log "run $i/$RUNS: chatgw ($TOTAL requests, $CONC coroutines)"
  run_chatgw "$TOTAL" | tee -a "$OUT/chatgw.jsonl" >&2
  log "run $i/$RUNS: node fetch ($TOTAL requests, $CONC async loops)"
  run_node "$TOTAL" | tee -a "$OUT/node.jsonl" >&2
done
RSS_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$GW_PID/status")

python3 - "$OUT" "$TOTAL" "$CONC" "$RUNS" "$RSS_KB" "$(node --version)" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys
out, total, conc, runs, rss, nodev = sys.argv[1:7]
def med(path, k):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return statistics.median(r[k] for r in rows), sum(r.get("errors", 0) for r in rows)
print("| client (%s requests, %s concurrent, median of %s) | req/s | client CPU µs/req | upstream CPU µs/req | errors |" % (total, conc, runs))
print("| --- | ---: | ---: | ---: | ---: |")
for name, f in (("chatgw `chatgw.http.request` (1 process, 1 loop)", "chatgw.jsonl"),
                ("Node.js %s built-in `fetch`" % nodev, "node.jsonl")):
    p = out + "/" + f
    rps, errs = med(p, "rps")
    cpu, _ = med(p, "cpu_us_per_request")
    up, _ = med(p, "upstream_cpu_us_per_request")
    print("| %s | %.0f | %.1f | %.1f | %d |" % (name, rps, cpu, up, errs))
print("")
print("chatgw peak RSS: %.1f MiB" % (int(rss) / 1024.0))
PY
log "raw results in $OUT"
