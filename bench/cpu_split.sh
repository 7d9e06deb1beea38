#!/usr/bin/env bash
# Where the server CPU per request goes (issue 21): user-space and kernel time per request of
# chatgw and of nginx + lua (one worker) on bench/run.sh's two routes, from /proc/PID/stat
# (utime, stime) around each wrk run, side by side in the same run; with STRACE=1 also the
# syscalls each makes per /health request (strace -c, a separate short run: strace slows both).
# Same servers, configs, wrk scripts and pinning as bench/run.sh. Only 127.0.0.1; every
# process started here is stopped by PID and has a time limit.
#
# Knobs (environment):
#   RUNS=3 DURATION=5s CONNS=50 SERVER_CPU=0 WRK_CPU=1 STRACE=
#   BUILD_DIR=/tmp/bench-build  CHATGW_BIN=... to skip the build;  NO_INSTALL=1
#   OUT=DIR (default: a fresh /tmp/chatgw-cpusplit.XXXX)
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-5s}"
CONNS="${CONNS:-50}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-cpusplit.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

BENCH_TAG=cpu-split
. "$BENCH_DIR/lib.sh"

require_uint RUNS CONNS
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 10 ] || die "RUNS must be 1..10"
[[ "$DURATION" =~ ^[1-9][0-9]{0,2}s$ ]] || die "DURATION must look like 5s"

pkgs=""
for p in wrk libnginx-mod-http-lua lua-cjson python3 util-linux; do have_pkg "$p" || pkgs="$pkgs $p"; done
command -v nginx >/dev/null || pkgs="$pkgs nginx-light"
[ -n "${STRACE:-}" ] && ! command -v strace >/dev/null && pkgs="$pkgs strace"
install_pkgs "${pkgs# }"
build_chatgw

BENCH_TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export BENCH_TOKEN
CLK_TCK="$(getconf CLK_TCK)"

mkdir -p "$OUT/chatgw/data" "$OUT/nginx"
CPORT="$(free_port)"
cat >"$OUT/chatgw/chatgw.yml" <<EOF
listeners:
  main: { host: "127.0.0.1", port: $CPORT }
data_dir: "$OUT/chatgw/data"
log:
  level: "warn"
EOF
(cd "$OUT/chatgw" && exec env -u CHAT_GATEWAY_HOST -u CHAT_GATEWAY_PORT -u CHAT_GATEWAY_LOG_LEVEL \
  -u CHAT_GATEWAY_DATA_DIR CHAT_GATEWAY_TOKEN="$BENCH_TOKEN" taskset -c "$SERVER_CPU" \
  "$CHATGW_BIN" run --no-master "$BENCH_DIR/handlers" --config "$OUT/chatgw/chatgw.yml" </dev/null >/dev/null 2>&1) &
CPID=$!
PIDS+=("$CPID")
wait_port "$CPID" "$CPORT" || die "chatgw did not start"
NPORT="$(free_port)"
sed -e "s#@PREFIX@#$OUT/nginx#g" -e "s#@PORT@#$NPORT#g" "$BENCH_DIR/nginx/nginx.conf" >"$OUT/nginx/nginx.conf"
(exec env CHAT_GATEWAY_TOKEN="$BENCH_TOKEN" taskset -c "$SERVER_CPU" \
  nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log" </dev/null >/dev/null 2>&1) &
NPID=$!
PIDS+=("$NPID")
wait_port "$NPID" "$NPORT" || die "nginx did not start (see $OUT/nginx/error.log)"

wrk_n() { # wrk_n PORT PATH SCRIPT DURATION -> requests
  timeout 120 taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$4" -s "$BENCH_DIR/wrk/$3" "http://127.0.0.1:$1$2" |
    sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p'
}

: >"$OUT/split.tsv"
for route in "/health health.lua" "/v1/notify/text notify.lua"; do
  set -- $route
  path="$1" script="$2"
  for server in chatgw nginx; do
    if [ "$server" = chatgw ]; then pid=$CPID port=$CPORT; else pid=$NPID port=$NPORT; fi
    wrk_n "$port" "$path" "$script" 2s >/dev/null
    for i in $(seq 1 "$RUNS"); do
      read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
      n="$(wrk_n "$port" "$path" "$script" "$DURATION")"
      read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
      printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$path" "$((u1 - u0))" "$((s1 - s0))" "$n" >>"$OUT/split.tsv"
      log "$server $path run $i: $n requests"
    done
  done
done

if [ -n "${STRACE:-}" ]; then
  for server in chatgw nginx; do
    if [ "$server" = chatgw ]; then pid=$CPID port=$CPORT; else pid=$NPID port=$NPORT; fi
    timeout 30 strace -c -f -p "$pid" -o "$OUT/strace-$server.txt" &
    spid=$!
    sleep 1
    n="$(wrk_n "$port" /health health.lua 3s)"
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    echo "$n" >"$OUT/strace-$server.requests"
  done
fi

python3 - "$OUT" "$CLK_TCK" "$RUNS" "$DURATION" "$CONNS" "${STRACE:-}" <<'EOF' | tee "$OUT/results.md"
import os, statistics, sys, time
out, clk, runs, duration, conns, st = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
rows = {}
for line in open(os.path.join(out, "split.tsv")):
    server, path, u, s, n = line.split("\t")
    n = int(n)
    rows.setdefault((server, path), []).append((int(u) / clk * 1e6 / n, int(s) / clk * 1e6 / n))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, {os.cpu_count()} CPUs, load "
      f"{os.getloadavg()[0]:.2f}; `bench/cpu_split.sh` (RUNS={runs} DURATION={duration} CONNS={conns}): "
      f"medians of {runs} runs, both servers in the same run.\n")
print("| route | server | user µs/request | kernel µs/request | total |")
print("| --- | --- | ---: | ---: | ---: |")
for path in ("/health", "/v1/notify/text"):
    for server in ("chatgw", "nginx"):
        r = rows.get((server, path), [])
        if not r: continue
        u = statistics.median(x[0] for x in r); k = statistics.median(x[1] for x in r)
        print(f"| {path} | {server} | {u:.2f} | {k:.2f} | {u + k:.2f} |")
if st:
    print("\nSyscalls per `GET /health` (strace -c, a 3 s run each):\n")
    print("| syscall | chatgw | nginx |")
    print("| --- | ---: | ---: |")
    counts = {}
    for server in ("chatgw", "nginx"):
        n = int(open(os.path.join(out, f"strace-{server}.requests")).read() or 1)
        for line in open(os.path.join(out, f"strace-{server}.txt")):
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] not in ("total",):
                counts.setdefault(f[-1], {})[server] = int(f[3]) / n
    for name, c in sorted(counts.items(), key=lambda kv: -max(kv[1].values())):
        if max(c.values()) >= 0.01:
            print(f"| {name} | {c.get('chatgw', 0):.3f} | {c.get('nginx', 0):.3f} |")
EOF
log "raw results in $OUT"
