#!/usr/bin/env bash
# Cluster fan-out benchmark (issue 22): WebSocket broadcasts to CLIENTS receivers held by one
# chatgw node, then by three cluster nodes sharing one redis-server (receivers spread over the
# three, the sender on the first; each broadcast is one PUBLISH that every other node delivers
# to its own clients). Same client as bench/ws (bench/ws/load.js, node + node-ws).
#
# The servers (every chatgw node and redis-server) run on SERVER_CPU and the load client on
# CLIENT_CPU, so "server CPU per delivery" counts the nodes and Redis together: on a 2-CPU
# machine this measures the cluster's overhead, not its scaling (three nodes share one CPU).
# Redis round trips per broadcast come from INFO commandstats around the measured run.
# Only 127.0.0.1; every process started here is stopped by PID and has a time limit.
#
# Knobs (environment):
#   CLIENTS=3000 MESSAGES=300 INFLIGHT=16 PAYLOAD=64 RUNS=3
#   SERVER_CPU=0 CLIENT_CPU=1
#   BUILD_DIR=/tmp/bench-build  CHATGW_BIN=... to skip the build;  NO_INSTALL=1
#   OUT=DIR (default: a fresh /tmp/chatgw-clusterbench.XXXX);  APPEND=1 appends to bench/RESULTS.md
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CLIENTS="${CLIENTS:-3000}"
MESSAGES="${MESSAGES:-300}"
INFLIGHT="${INFLIGHT:-16}"
PAYLOAD="${PAYLOAD:-64}"
RUNS="${RUNS:-3}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-clusterbench.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export NODE_PATH=/usr/share/nodejs

BENCH_TAG=cluster-bench
. "$HERE/../lib.sh"

require_uint CLIENTS MESSAGES INFLIGHT PAYLOAD RUNS
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 10 ] || die "RUNS must be 1..10"

pkgs=""
command -v node >/dev/null || pkgs="$pkgs nodejs"
[ -f /usr/share/nodejs/ws/package.json ] || pkgs="$pkgs node-ws"
command -v redis-server >/dev/null || pkgs="$pkgs redis-server"
for p in util-linux python3; do have_pkg "$p" || pkgs="$pkgs $p"; done
install_pkgs "${pkgs# }"
build_chatgw

want_fds=$((2 * CLIENTS + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want_fds" ]; then
  ulimit -Hn "$want_fds" 2>/dev/null || log "cannot raise the hard fd limit to $want_fds"
fi
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
CLK_TCK="$(getconf CLK_TCK)"

. "$HERE/redis.sh" # start_redis

NODE_PIDS=() NODE_URLS=()
start_node() { # start_node DIR NAME [REDIS_URL]
  local dir="$1" name="$2" rurl="${3:-}" port
  mkdir -p "$dir/data"
  port="$(free_port)"
  cat >"$dir/chatgw.yml" <<EOF
listeners:
  main: { host: "127.0.0.1", port: $port }
data_dir: "$dir/data"
log: { level: "warn" }
http: { max_connections: 100000, max_per_ip: 100000 }
ws:
  max_connections: 100000
  max_per_ip: 100000
  rate_limit: { messages_per_second: 1000000, burst: 1000000 }
cluster: { node_id: "$name" }
EOF
  CHAT_GATEWAY_TOKEN="$TOKEN" CHAT_GATEWAY_REDIS_URL="$rurl" taskset -c "$SERVER_CPU" \
    "$CHATGW_BIN" run --no-master "$REPO/bench/ws/handlers" --config "$dir/chatgw.yml" >"$dir/server.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$pid" "$port" || die "node $name did not start (see $dir/server.log)"
  NODE_PIDS+=("$pid")
  NODE_URLS+=("ws://127.0.0.1:$port/ws")
}

wait_subscribed() { # every node's fan-out subscriber up (GET /health, cluster check)
  local url deadline=$((SECONDS + 20))
  for url in "${NODE_URLS[@]}"; do
    local h="${url#ws://}" ok=""
    h="http://${h%/ws}/health?verbose=1"
    while [ $SECONDS -lt $deadline ]; do
      if curl -s -H "Authorization: Bearer $TOKEN" "$h" | grep -q '"subscriber_up":true'; then ok=1; break; fi
      sleep 0.2
    done
    [ -n "$ok" ] || die "a node's fan-out subscriber did not come up ($h)"
  done
}

publishes() { # PUBLISH and total command calls so far on the bench's Redis
  redis-cli -p "$REDIS_PORT" INFO commandstats | python3 -c '
import sys
pub = tot = 0
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, rest = line.split(":", 1)
        calls = int(rest.split(",")[0].split("=")[1])
        tot += calls
        if name == "cmdstat_publish": pub = calls
print(pub, tot)'
}

run_client() { # run_client NAME -> JSON line
  local urls pids
  urls="$(printf '"%s",' "${NODE_URLS[@]}")"
  pids="$(printf '%s,' "${NODE_PIDS[@]}" ${REDIS_PID:+$REDIS_PID})"
  timeout 600 taskset -c "$CLIENT_CPU" node --max-old-space-size=4096 "$REPO/bench/ws/load.js" \
    "$(printf '{"server":"%s","urls":[%s],"token":"%s","pids":[%s],"mode":"fanout","clients":%s,"messages":%s,"inflight":%s,"payload":%s,"clkTck":%s,"timeoutMs":240000}' \
      "$1" "${urls%,}" "$TOKEN" "${pids%,}" "$CLIENTS" "$MESSAGES" "$INFLIGHT" "$PAYLOAD" "$CLK_TCK")"
}

stop_all() {
  local p
  for p in "${NODE_PIDS[@]}"; do stop_pid "$p"; done
  [ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID"
  NODE_PIDS=() NODE_URLS=() REDIS_PID=""
}

for setup in one three; do
  : >"$OUT/$setup.jsonl"
  for i in $(seq 1 "$RUNS"); do
    dir="$OUT/$setup-$i"
    if [ "$setup" = one ]; then
      log "one node: run $i/$RUNS ($CLIENTS clients x $MESSAGES broadcasts)"
      start_node "$dir/a" a
      run_client one | tee -a "$OUT/$setup.jsonl" >&2 || log "one: run $i failed"
    else
      log "three nodes on one Redis: run $i/$RUNS ($CLIENTS clients x $MESSAGES broadcasts)"
      start_redis "$dir/redis"
      for n in a b c; do start_node "$dir/$n" "$n" "redis://127.0.0.1:$REDIS_PORT/0"; done
      wait_subscribed
      read -r pub0 tot0 < <(publishes)
      line="$(run_client three)" || log "three: run $i failed"
      read -r pub1 tot1 < <(publishes)
      python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["publishes"]=int(sys.argv[2]); r["redis_calls"]=int(sys.argv[3]); print(json.dumps(r))' \
        "$line" $((pub1 - pub0)) $((tot1 - tot0)) | tee -a "$OUT/$setup.jsonl" >&2
    fi
    stop_all
  done
done

python3 - "$OUT" "$CLIENTS" "$MESSAGES" "$INFLIGHT" "$PAYLOAD" "$RUNS" >"$OUT/results.md" <<'EOF'
import json, os, sys, time
out, clients, messages, inflight, payload, runs = sys.argv[1:]
def median(name):
    rs = [json.loads(l) for l in open(os.path.join(out, name + ".jsonl")) if l.startswith("{")]
    rs = [r for r in rs if "deliveries_per_s" in r]
    if not rs: sys.exit("no successful run: " + name)
    rs.sort(key=lambda r: r["deliveries_per_s"])
    return rs[len(rs) // 2]
o, t = median("one"), median("three")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
# the warm-up run's broadcasts are counted by INFO too: per broadcast = publishes / all broadcasts
warm = min(200, int(messages))
per_bc = t["publishes"] / (int(messages) + warm)
print("## Cluster fan-out: three nodes on one Redis vs one node (bench/cluster)\n")
print(f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
      f"`bench/cluster/run.sh` (CLIENTS={clients} MESSAGES={messages} INFLIGHT={inflight} "
      f"PAYLOAD={payload} RUNS={runs}): {clients} receivers spread over the nodes, the sender on the "
      f"first; every server (nodes and Redis) on one CPU, the client on the other; median of {runs} "
      f"runs by deliveries/s. Server CPU is the sum over the nodes and Redis.\n")
print("| | one node | three nodes + Redis |")
print("| --- | ---: | ---: |")
print(f"| deliveries/s | {o['deliveries_per_s']:,} | {t['deliveries_per_s']:,} |")
print(f"| p50 / p99 delivery latency | {o['latency_p50_ms']:.1f} / {o['latency_p99_ms']:.1f} ms | "
      f"{t['latency_p50_ms']:.1f} / {t['latency_p99_ms']:.1f} ms |")
print(f"| server CPU per delivery | {o['server_cpu_us_per_delivery']:.2f} µs | {t['server_cpu_us_per_delivery']:.2f} µs |")
print(f"| RSS with {clients} connected (sum) | {o['rss_connected_kib']/1024:.1f} MiB | {t['rss_connected_kib']/1024:.1f} MiB |")
print(f"| Redis round trips per broadcast | 0 | {per_bc:.2f} (PUBLISH) |")
print(f"| Redis commands in the measured run (all kinds) | - | {t['redis_calls']:,} |")
print(f"| errors / timeouts | {o.get('errors', 0)} / {o.get('timeout')} | {t.get('errors', 0)} / {t.get('timeout')} |")
EOF
cat "$OUT/results.md"
if [ -n "${APPEND:-}" ]; then
  { echo; cat "$OUT/results.md"; } >>"$REPO/bench/RESULTS.md"
  log "appended to bench/RESULTS.md"
fi
log "raw results in $OUT"
