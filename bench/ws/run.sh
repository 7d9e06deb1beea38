#!/usr/bin/env bash
# WebSocket fan-out benchmark: chatgw vs a Node.js `ws` server doing the same broadcast
# (bench/ws/node_server.js), driven by the same client (bench/ws/load.js, node + node-ws).
# Server and client are pinned to different CPUs with taskset; only 127.0.0.1 is used; every
# process started here is stopped by PID (and each has a time limit).
#
# Per server: one fan-out phase (N receivers + 1 sender, M broadcasts, K in flight; RUNS runs,
# the median run by deliveries/s is reported) and one memory phase (IDLE_CLIENTS idle
# connections on a fresh server: RSS before and after, per connection).
#
# Knobs (environment):
#   CLIENTS=1000 MESSAGES=500 INFLIGHT=32 PAYLOAD=64    fan-out phase
#   RUNS=3                 fan-out runs per server (median reported)
#   IDLE_CLIENTS=10000     memory phase (needs ~2 file descriptors per connection here)
#   SERVER_CPU=0 CLIENT_CPU=1
#   BUILD_DIR=/tmp/bench-build   where chatgw is built (RelWithDebInfo);  CHATGW_BIN=... to skip
#   NO_INSTALL=1           do not apt-get anything
#   OUT=DIR                raw results and results.md (default: a fresh /tmp/chatgw-wsbench.XXXX)
#   APPEND=1               also append the results section to bench/RESULTS.md
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CLIENTS="${CLIENTS:-1000}"
MESSAGES="${MESSAGES:-500}"
INFLIGHT="${INFLIGHT:-32}"
PAYLOAD="${PAYLOAD:-64}"
RUNS="${RUNS:-3}"
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-wsbench.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export NODE_PATH=/usr/share/nodejs

BENCH_TAG=ws-bench
# log, die, stop_pid (every process started here is in PIDS), packages, build, ports
. "$HERE/../lib.sh"

require_uint CLIENTS MESSAGES INFLIGHT PAYLOAD RUNS IDLE_CLIENTS
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 10 ] || die "RUNS must be 1..10"

# ---- tools --------------------------------------------------------------------------------
pkgs=""
command -v node >/dev/null || pkgs="$pkgs nodejs"
[ -f /usr/share/nodejs/ws/package.json ] || pkgs="$pkgs node-ws"
for p in util-linux python3; do have_pkg "$p" || pkgs="$pkgs $p"; done
install_pkgs "${pkgs# }"
NCPU="$(nproc)"
[ "$SERVER_CPU" -lt "$NCPU" ] && [ "$CLIENT_CPU" -lt "$NCPU" ] || die "need CPUs $SERVER_CPU and $CLIENT_CPU (have $NCPU)"

build_chatgw

# File descriptors: each idle connection costs one here in the server and one in the client.
want_fds=$((IDLE_CLIENTS + CLIENTS + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want_fds" ]; then
  ulimit -Hn "$want_fds" 2>/dev/null || log "cannot raise the hard fd limit to $want_fds"
fi
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS="$(ulimit -n)"
if [ "$FDS" -lt $((IDLE_CLIENTS + 200)) ]; then
  IDLE_CLIENTS=$((FDS - 200))
  log "fd limit $FDS: measuring memory with $IDLE_CLIENTS connections instead"
fi

TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
CLK_TCK="$(getconf CLK_TCK)"

SERVER_PID=""
PORT=""
start_server() { # start_server chatgw|node TAG
  local kind="$1" dir="$OUT/$2"
  mkdir -p "$dir/data"
  PORT="$(free_port)"
  if [ "$kind" = chatgw ]; then
    cat >"$dir/chatgw.yml" <<EOF
listeners:
  main: { host: "127.0.0.1", port: $PORT }
data_dir: "$dir/data"
log: { level: "warn" }
http: { max_connections: 100000, max_per_ip: 100000 }
ws:
  max_connections: 100000
  max_per_ip: 100000
  rate_limit: { messages_per_second: 1000000, burst: 1000000 }
EOF
    CHAT_GATEWAY_TOKEN="$TOKEN" taskset -c "$SERVER_CPU" "$CHATGW_BIN" run --no-master "$HERE/handlers" \
      --config "$dir/chatgw.yml" >"$dir/server.log" 2>&1 &
  else
    taskset -c "$SERVER_CPU" node "$HERE/node_server.js" "$PORT" "$TOKEN" >"$dir/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SERVER_PID" "$PORT" || die "$kind did not start (see $dir/server.log)"
}

run_client() { # run_client SERVER_NAME MODE CLIENTS -> JSON line on stdout
  local name="$1" mode="$2" n="$3"
  local cfg
  cfg="$(printf '{"server":"%s","url":"ws://127.0.0.1:%s/ws","token":"%s","pid":%s,"mode":"%s","clients":%s,"messages":%s,"inflight":%s,"payload":%s,"clkTck":%s,"timeoutMs":240000}' \
    "$name" "$PORT" "$TOKEN" "$SERVER_PID" "$mode" "$n" "$MESSAGES" "$INFLIGHT" "$PAYLOAD" "$CLK_TCK")"
  timeout 600 taskset -c "$CLIENT_CPU" node --max-old-space-size=4096 "$HERE/load.js" "$cfg"
}

median_run() { # median_run FILE: the run with the median deliveries/s
  python3 - "$1" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
runs = [r for r in runs if "deliveries_per_s" in r]
if not runs:
    sys.exit("no successful run in " + sys.argv[1])
runs.sort(key=lambda r: r["deliveries_per_s"])
print(json.dumps(runs[len(runs) // 2]))
EOF
}

for server in chatgw node; do
  : >"$OUT/$server-fanout.jsonl"
  for i in $(seq 1 "$RUNS"); do
    log "$server: fan-out run $i/$RUNS ($CLIENTS clients x $MESSAGES broadcasts, $INFLIGHT in flight)"
    start_server "$server" "$server-fanout-$i"
    run_client "$server" fanout "$CLIENTS" | tee -a "$OUT/$server-fanout.jsonl" >&2 || log "$server: run $i failed"
    stop_pid "$SERVER_PID"
  done
  median_run "$OUT/$server-fanout.jsonl" >"$OUT/$server-fanout.json"
  log "$server: memory with $IDLE_CLIENTS idle connections"
  start_server "$server" "$server-idle"
  run_client "$server" idle "$IDLE_CLIENTS" >"$OUT/$server-idle.json" || die "$server: idle phase failed"
  cat "$OUT/$server-idle.json" >&2
  stop_pid "$SERVER_PID"
done

# ---- results ------------------------------------------------------------------------------
python3 - "$OUT" "$CLIENTS" "$MESSAGES" "$INFLIGHT" "$PAYLOAD" "$IDLE_CLIENTS" "$RUNS" "$SERVER_CPU" "$CLIENT_CPU" \
  >"$OUT/results.md" <<'EOF'
import json, os, platform, subprocess, sys
out, clients, messages, inflight, payload, idle, runs, scpu, ccpu = sys.argv[1:]
f = lambda name: json.load(open(os.path.join(out, name)))
c, n = f("chatgw-fanout.json"), f("node-fanout.json")
ci, ni = f("chatgw-idle.json"), f("node-idle.json")
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
ratio = c["deliveries_per_s"] / n["deliveries_per_s"] if n["deliveries_per_s"] else 0
per_conn_kib = ci["rss_per_conn_bytes"] / 1024
def ok(b): return "met" if b else "**not met**"
print("## WebSocket fan-out: chatgw vs Node.js ws (bench/ws)\n")
print(f"{cpu}, {os.cpu_count()} CPUs; server on CPU {scpu}, load client on CPU {ccpu} (taskset); "
      f"node {node_v}, Debian node-ws. `bench/ws/run.sh`: {clients} receivers + 1 sender, "
      f"{messages} broadcasts of a ~{payload}-byte payload, {inflight} in flight (a broadcast is in "
      f"flight until every receiver has it); median of {runs} runs by deliveries/s. Latency: send "
      f"to delivery, measured in the client (one process, one clock). Server CPU: utime+stime "
      f"from /proc during the measured run. Memory: a fresh server, RSS before and after {idle} "
      f"idle connected clients.\n")
print("| | chatgw | Node.js ws | goal |")
print("| --- | ---: | ---: | --- |")
print(f"| deliveries/s | {c['deliveries_per_s']:,} | {n['deliveries_per_s']:,} | "
      f"≥ 1.8× Node: {ratio:.2f}× ({ok(ratio >= 1.8)}) |")
print(f"| p50 delivery latency | {c['latency_p50_ms']:.2f} ms | {n['latency_p50_ms']:.2f} ms | |")
print(f"| p99 delivery latency | {c['latency_p99_ms']:.2f} ms | {n['latency_p99_ms']:.2f} ms | |")
print(f"| server CPU per delivery | {c['server_cpu_us_per_delivery']:.2f} µs | "
      f"{n['server_cpu_us_per_delivery']:.2f} µs | ≤ 5 µs ({ok(c['server_cpu_us_per_delivery'] <= 5)}) |")
print(f"| server RSS idle | {c['rss_idle_kib']/1024:.1f} MiB | {n['rss_idle_kib']/1024:.1f} MiB | |")
print(f"| server RSS with {clients} connected | {c['rss_connected_kib']/1024:.1f} MiB | "
      f"{n['rss_connected_kib']/1024:.1f} MiB | |")
print(f"| server RSS idle, then with {idle} connected | {ci['rss_idle_kib']/1024:.1f} → "
      f"{ci['rss_connected_kib']/1024:.1f} MiB | {ni['rss_idle_kib']/1024:.1f} → "
      f"{ni['rss_connected_kib']/1024:.1f} MiB | |")
print(f"| RSS per idle connection ({idle}) | {ci['rss_per_conn_bytes']/1024:.2f} KiB | "
      f"{ni['rss_per_conn_bytes']/1024:.2f} KiB | ≤ 8 KiB ({ok(per_conn_kib <= 8)}) |")
print(f"| errors / timeouts | {c.get('errors', 0)} / {c.get('timeout')} | {n.get('errors', 0)} / {n.get('timeout')} | |")
EOF
cat "$OUT/results.md"
if [ -n "${APPEND:-}" ]; then
  { echo; cat "$OUT/results.md"; } >>"$REPO/bench/RESULTS.md"
  log "appended to bench/RESULTS.md"
fi
log "raw results in $OUT"
