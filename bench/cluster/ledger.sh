#!/usr/bin/env bash
# Inbound updates/s through the ledger (issue 22): one chatgw node without Redis (the SQLite
# ledger only) against one node in cluster mode, where each update is also claimed in Redis
# and added to the account's stream (one EVALSHA before the answer) and acknowledged there at
# dispatch (one EVALSHA). The updates come through the test channel's inbound route
# (CHATGW_TEST_CHANNEL=1, answered once the update is recorded), each with a new message id;
# the handler sends nothing, so the outbox is not measured.
#
# Redis round trips per update: the commands the node sent in the measured run (its client's
# count in /health, all kinds: heartbeats and the takeover scan too) over the updates recorded;
# EVALSHA alone from Redis' INFO commandstats.
# After each run the script waits until every recorded update is dispatched (read from the
# node's SQLite file) and fails the run otherwise.
# The node and redis-server run on SERVER_CPU, wrk on WRK_CPU. Only 127.0.0.1; every process
# started here is stopped by PID and has a time limit.
#
# Knobs (environment):
#   DURATION=10s WARMUP=3s CONNS=16 RUNS=3 SERVER_CPU=0 WRK_CPU=1
#   BUILD_DIR=/tmp/bench-build  CHATGW_BIN=... to skip the build;  NO_INSTALL=1
#   OUT=DIR (default: a fresh /tmp/chatgw-ledgerbench.XXXX);  APPEND=1 appends to bench/RESULTS.md
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
CONNS="${CONNS:-16}"
RUNS="${RUNS:-3}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-ledgerbench.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

BENCH_TAG=ledger-bench
. "$HERE/../lib.sh"

require_uint CONNS RUNS
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 10 ] || die "RUNS must be 1..10"

pkgs=""
command -v wrk >/dev/null || pkgs="$pkgs wrk"
command -v redis-server >/dev/null || pkgs="$pkgs redis-server"
for p in util-linux python3 curl; do have_pkg "$p" || pkgs="$pkgs $p"; done
install_pkgs "${pkgs# }"
build_chatgw

BENCH_TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export BENCH_TOKEN
CLK_TCK="$(getconf CLK_TCK)"

. "$HERE/redis.sh" # start_redis

NODE_PID="" NODE_PORT=""
start_node() { # start_node DIR [REDIS_URL]
  local dir="$1" rurl="${2:-}"
  mkdir -p "$dir/data"
  NODE_PORT="$(free_port)"
  cat >"$dir/chatgw.yml" <<EOF
listeners:
  main: { host: "127.0.0.1", port: $NODE_PORT }
data_dir: "$dir/data"
log: { level: "warn" }
cluster: { node_id: "a" }
EOF
  CHAT_GATEWAY_TOKEN="$BENCH_TOKEN" CHAT_GATEWAY_REDIS_URL="$rurl" CHATGW_TEST_CHANNEL=1 \
    taskset -c "$SERVER_CPU" "$CHATGW_BIN" run --no-master "$HERE/handlers" --config "$dir/chatgw.yml" \
    >"$dir/server.log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  wait_port "$NODE_PID" "$NODE_PORT" || die "the node did not start (see $dir/server.log)"
}

redis_calls() { # round trips the node made so far (its client's command count), and EVALSHA alone
  [ -n "$REDIS_PORT" ] || { echo 0 0; return; }
  local sent
  sent="$(curl -s -H "Authorization: Bearer $BENCH_TOKEN" "http://127.0.0.1:$NODE_PORT/health?verbose=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"]["cluster"]["redis"]["commands"])')"
  redis-cli -p "$REDIS_PORT" INFO commandstats | python3 -c '
import sys
ev = 0
for line in sys.stdin:
    if line.startswith("cmdstat_evalsha:"):
        ev = int(line.split(":", 1)[1].split(",")[0].split("=")[1])
print(sys.argv[1], ev)' "$sent"
}

cpu_ticks() { # utime+stime of the given PIDs
  local t=0 p
  for p in "$@"; do
    [ -n "$p" ] || continue
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

settled() { # settled DIR: every recorded update dispatched within 60 s -> prints the count
  python3 - "$1/data/chatgw.db" <<'EOF'
import sqlite3, sys, time
deadline = time.time() + 60
while True:
    db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
    total, open_ = db.execute("SELECT count(*), sum(state != 'dispatched') FROM chat_inbound").fetchone()
    db.close()
    if not open_:
        print(total)
        break
    if time.time() > deadline:
        sys.exit("%d of %d updates not dispatched after 60 s" % (open_, total))
    time.sleep(0.2)
EOF
}

run_wrk() { # run_wrk DURATION -> the BENCH line
  timeout 120 taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$1" -s "$REPO/bench/wrk/test_inbound.lua" \
    "http://127.0.0.1:$NODE_PORT/v1/test/inbound" | grep '^BENCH '
}

for setup in local redis; do
  : >"$OUT/$setup.jsonl"
  for i in $(seq 1 "$RUNS"); do
    dir="$OUT/$setup-$i"
    REDIS_PORT="" REDIS_PID=""
    if [ "$setup" = redis ]; then
      start_redis "$dir/redis"
      start_node "$dir/node" "redis://127.0.0.1:$REDIS_PORT/0"
    else
      start_node "$dir/node"
    fi
    log "$setup: run $i/$RUNS (wrk -c$CONNS -d$DURATION after a $WARMUP warm-up)"
    run_wrk "$WARMUP" >/dev/null
    settled "$dir/node" >/dev/null
    read -r tot0 ev0 < <(redis_calls)
    n0="$(settled "$dir/node")"
    c0="$(cpu_ticks "$NODE_PID" "$REDIS_PID")"
    line="$(run_wrk "$DURATION")"
    n1="$(settled "$dir/node")"
    c1="$(cpu_ticks "$NODE_PID" "$REDIS_PID")"
    read -r tot1 ev1 < <(redis_calls)
    python3 -c '
import json, sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
n = int(sys.argv[2]) - int(sys.argv[3])
ticks, clk = int(sys.argv[4]) - int(sys.argv[5]), int(sys.argv[6])
print(json.dumps({"updates": n, "rps": float(f["rps"]), "p50_us": int(f["p50_us"]), "p99_us": int(f["p99_us"]),
  "errors": int(f["errors"]) + int(f["non2xx"]), "cpu_us_per_update": ticks / clk * 1e6 / max(1, n),
  "redis_per_update": (int(sys.argv[7]) - int(sys.argv[8])) / max(1, n),
  "evalsha_per_update": (int(sys.argv[9]) - int(sys.argv[10])) / max(1, n)}))' \
      "$line" "$n1" "$n0" "$c1" "$c0" "$CLK_TCK" "$tot1" "$tot0" "$ev1" "$ev0" | tee -a "$OUT/$setup.jsonl" >&2
    stop_pid "$NODE_PID"
    [ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID"
  done
done

python3 - "$OUT" "$CONNS" "$DURATION" "$RUNS" >"$OUT/results.md" <<'EOF'
import json, os, sys, time
out, conns, duration, runs = sys.argv[1:]
def median(name):
    rs = [json.loads(l) for l in open(os.path.join(out, name + ".jsonl")) if l.startswith("{")]
    if not rs: sys.exit("no successful run: " + name)
    rs.sort(key=lambda r: r["rps"])
    return rs[len(rs) // 2]
l, r = median("local"), median("redis")
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
print("## Inbound updates through the ledger: one node with and without Redis (bench/cluster/ledger.sh)\n")
print(f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPUs; `bench/cluster/ledger.sh` (CONNS={conns} "
      f"DURATION={duration} RUNS={runs}): updates posted to the test channel's inbound route (answered once "
      f"recorded), a handler that sends nothing; the node and Redis on one CPU, wrk on the other; median of "
      f"{runs} runs by updates/s; every update dispatched before the next run. Server CPU counts the node and "
      f"Redis.\n")
print("| | SQLite ledger only | + Redis (claim and stream, dispatch ack) |")
print("| --- | ---: | ---: |")
print(f"| updates/s | {l['rps']:,.0f} | {r['rps']:,.0f} |")
print(f"| p50 / p99 answer latency | {l['p50_us']/1000:.2f} / {l['p99_us']/1000:.2f} ms | {r['p50_us']/1000:.2f} / {r['p99_us']/1000:.2f} ms |")
print(f"| server CPU per update | {l['cpu_us_per_update']:.1f} µs | {r['cpu_us_per_update']:.1f} µs |")
print(f"| Redis round trips per update (all the node sent / EVALSHA) | 0 | {r['redis_per_update']:.3f} / {r['evalsha_per_update']:.3f} |")
print(f"| errors | {l['errors']} | {r['errors']} |")
EOF
cat "$OUT/results.md"
if [ -n "${APPEND:-}" ]; then
  { echo; cat "$OUT/results.md"; } >>"$REPO/bench/RESULTS.md"
  log "appended to bench/RESULTS.md"
fi
log "raw results in $OUT"
