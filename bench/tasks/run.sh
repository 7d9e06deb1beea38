#!/usr/bin/env bash
# Tasks API benchmark (issue 13; see bench/RESULTS.md, "Tasks API"), two parts:
#
# 1. POST /v1/tasks on chatgw's main listener (bearer), every request with a new task_id, body
#    {"task_id":"<unique>","stage":"analyze","prompt":"why?","context":{"k":"v"}}, against a
#    fake model server (bench/tasks/fake_llm.js, Node.js, keep-alive, answers at once) that
#    chatgw's deepseek provider calls (DEEPSEEK_API_KEY=bench-key, DEEPSEEK_BASE_URL=fake). Each
#    task is a store claim, one POST /v1/chat/completions, the stored answer and the reply. Load:
#    wrk (as bench/run.sh) with bench/tasks/tasks.lua, CONC keep-alive connections, one thread;
#    a warm-up, then RUNS measured runs of DURATION seconds (or N requests). Measured: req/s,
#    p50/p99 latency (wrk --latency), server CPU µs per task (utime + stime of the chatgw
#    process, all threads, from /proc/PID/stat, over the run / requests completed), non-2xx and
#    socket errors, answers that are not {"ok":true} or are cached (all must be 0), model calls
#    and new connections to the fake per run, VmRSS.
# 2. The CPU cost of parsing a streamed answer of 1,000 tokens in chatgw's Lua layer
#    (bench/tasks/sse_parse.lua, plain luajit, in process): OpenAI and Anthropic SSE, cut in
#    chunks of 1400 and of 64 bytes; µs of CPU per stream and per token, RUNS times.
#
# Writes $OUT/results.md (medians of RUNS; every run listed) and prints it.
# Only 127.0.0.1 is used; every process started here is stopped by PID; every step is bounded.
#
# Knobs (environment):
#   DURATION=10     seconds of one measured run (1..600);  WARMUP=3  seconds of the warm-up
#   N=              if set: requests per measured run instead of DURATION (cap: 600 s a run)
#   CONC=64         wrk connections (wrk -t1 -cCONC), 1..10000
#   RUNS=3          measured runs (1..20) of each part; the table shows the median
#   SERVER_CPU=0    taskset CPU of chatgw (and of sse_parse.lua); empty: not pinned
#   CLIENT_CPU=1    taskset CPU of wrk and of the fake model server; empty: not pinned
#   LOG_LEVEL=info  chatgw's log level (info: the default config, an access-log line per request
#                   into $OUT/chatgw.log; warn: no access log)
#   SSE_REPS=500    streams parsed per case and run (1..1000000); SSE_MAX_S=20 CPU cap per case
#   PERF=0          1: after the runs, one more run under `perf record -g -p <chatgw>`, its
#                   summary by dso, thread and symbol in results.md ($OUT/perf.data)
#   BUILD_DIR=/tmp/bench-tasks-build   CHATGW_BIN=...  (use this binary instead of building)
#   OUT=DIR         raw output and results.md (default a fresh /tmp/chatgw-bench-tasks.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-10}"; DURATION="${DURATION%s}"
WARMUP="${WARMUP:-3}"; WARMUP="${WARMUP%s}"
N="${N:-}"
CONC="${CONC:-64}"
RUNS="${RUNS:-3}"
SERVER_CPU="${SERVER_CPU-0}"
CLIENT_CPU="${CLIENT_CPU-1}"
LOG_LEVEL="${LOG_LEVEL:-info}"
SSE_REPS="${SSE_REPS:-500}"
SSE_MAX_S="${SSE_MAX_S:-20}"
PERF="${PERF:-0}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-tasks-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-tasks.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

BENCH_TAG=bench-tasks
. "$HERE/../lib.sh"
STOP_WAIT_TENTHS=100

require_uint DURATION WARMUP CONC RUNS SSE_REPS SSE_MAX_S
[ -z "$N" ] || require_uint N
in_range() { if [ "${!1}" -lt "$2" ] || [ "${!1}" -gt "$3" ]; then die "$1 must be $2..$3"; fi; }
in_range DURATION 1 600; in_range WARMUP 1 600; in_range CONC 1 10000; in_range RUNS 1 20
in_range SSE_REPS 1 1000000; in_range SSE_MAX_S 1 600
[ -z "$N" ] || in_range N 1 100000000
case "$LOG_LEVEL" in debug|info|warn|error) ;; *) die "LOG_LEVEL must be debug, info, warn or error";; esac
for v in SERVER_CPU CLIENT_CPU; do [ -z "${!v}" ] || require_uint "$v"; done

# ---- tools --------------------------------------------------------------------------------
pkgs=""
command -v wrk >/dev/null || pkgs="$pkgs wrk"
command -v curl >/dev/null || pkgs="$pkgs curl"
command -v node >/dev/null || pkgs="$pkgs nodejs"
command -v luajit >/dev/null || pkgs="$pkgs luajit"
command -v taskset >/dev/null || pkgs="$pkgs util-linux"
install_pkgs "${pkgs# }"
luajit -e 'require "cjson"' 2>/dev/null || install_pkgs lua-cjson
[ "$PERF" != "1" ] || command -v perf >/dev/null || die "PERF=1 needs perf"

build_chatgw_quick
log "chatgw: $CHATGW_BIN; output in $OUT"

# command prefixes that pin to a CPU (taskset execs the command: the PID stays the same), or env
SRV_PIN=(env); [ -z "$SERVER_CPU" ] || SRV_PIN=(taskset -c "$SERVER_CPU")
CLI_PIN=(env); [ -z "$CLIENT_CPU" ] || CLI_PIN=(taskset -c "$CLIENT_CPU")
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; } # utime+stime, all threads
forget_pid() { # forget_pid PID: drop an ended process from PIDS (its PID may be reused later)
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
steal_total() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; } # steal, all ticks
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
TCK="$(getconf CLK_TCK)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the fake model server ----------------------------------------------------------------
( exec "${CLI_PIN[@]}" node "$HERE/fake_llm.js" </dev/null >"$OUT/fake.log" 2>&1 ) &
FAKE_PID=$!; PIDS+=("$FAKE_PID")
FAKE_PORT="$(wait_line "$OUT/fake.log" '^listening' 10 | awk '{print $2}')"
FAKE="http://127.0.0.1:$FAKE_PORT"
fake_stat() { # fake_stat KEY: one number from the fake's /control/stats
  curl -sS --max-time 10 "$FAKE/control/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# ---- chatgw -------------------------------------------------------------------------------
WORK="$OUT/chatgw"; mkdir -p "$WORK/data" "$WORK/handlers"
TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export BENCH_TOKEN="$TOKEN"
if [ "$LOG_LEVEL" = "info" ]; then
  : >"$WORK/chatgw.yml" # the default config
  GW_PORT_ENV=0
else # the "listening" line is at level info: pick the port here
  printf 'log:\n  level: "%s"\n' "$LOG_LEVEL" >"$WORK/chatgw.yml"
  GW_PORT_ENV="$(free_port)"
fi
# A clean environment: no channel, provider or listener variable of the caller's gets in.
( cd "$WORK" && exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    CHAT_GATEWAY_PORT="$GW_PORT_ENV" CHAT_GATEWAY_TOKEN="$TOKEN" CHAT_GATEWAY_DATA_DIR="$WORK/data" \
    DEEPSEEK_API_KEY=bench-key DEEPSEEK_BASE_URL="$FAKE" \
    "${SRV_PIN[@]}" "$CHATGW_BIN" run --no-master "$WORK/handlers" --config "$WORK/chatgw.yml" </dev/null >"$OUT/chatgw.log" 2>&1 ) &
GW_PID=$!; PIDS+=("$GW_PID")
if [ "$LOG_LEVEL" = "info" ]; then
  wait_line "$OUT/chatgw.log" '"msg":"ready"' 10 >/dev/null
  GW_PORT="$(wait_line "$OUT/chatgw.log" '"msg":"listening".*"listener":"main"' 1 |
    sed -n 's/.*"port":\([0-9][0-9]*\).*/\1/p')"
  [ -n "$GW_PORT" ] || die "no port in the main listener's log line (see $OUT/chatgw.log)"
else
  GW_PORT="$GW_PORT_ENV"
fi
wait_port "$GW_PID" "$GW_PORT" || die "chatgw did not start (see $OUT/chatgw.log)"
URL="http://127.0.0.1:$GW_PORT/v1/tasks"
sleep 0.5
RSS_IDLE="$(rss_kib "$GW_PID")"
log "chatgw pid $GW_PID on $URL (idle VmRSS $RSS_IDLE KiB), fake model server pid $FAKE_PID on $FAKE_PORT"

# ---- checks before measuring: an answer from the model, the cache, the bearer ------------
post() { # post AUTH BODY -> "STATUS BODY"
  curl -sS --max-time 10 -w '\n%{http_code}' -H "Authorization: $1" -H 'Content-Type: application/json' \
    -d "$2" "$URL" || die "curl to $URL failed"
}
CHECK_ID="check-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
CHECK_BODY='{"task_id":"'"$CHECK_ID"'","stage":"analyze","prompt":"why?","context":{"k":"v"}}'
r="$(post "Bearer $TOKEN" "$CHECK_BODY")"
[ "${r##*$'\n'}" = 200 ] || die "first task: ${r//$'\n'/ } (want 200; see $OUT/chatgw.log)"
case "$r" in *'"ok":true'*'"summary":"ok"'*|*'"summary":"ok"'*'"ok":true'*) ;; *) die "first task: ${r//$'\n'/ } (want ok:true, summary ok)";; esac
r="$(post "Bearer $TOKEN" "$CHECK_BODY")"
case "$r" in *'"cached":true'*) ;; *) die "the same task_id again: ${r//$'\n'/ } (want cached:true)";; esac
r="$(post "Bearer nope" "$CHECK_BODY")"
[ "${r##*$'\n'}" = 401 ] || die "bad bearer: ${r//$'\n'/ } (want 401)"
[ "$(fake_stat requests)" = 1 ] || die "the fake model server counted $(fake_stat requests) calls, want 1"

# ---- load ---------------------------------------------------------------------------------
RUN_TAG="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
# wrk_run NAME SECONDS [LIMIT]: one wrk run (in the background, its PID in PIDS, so that it is
# stopped with the rest on any exit); sets WRK_LINE to its BENCH and TASKS lines
WRK_LINE=""
wrk_run() {
  local name="$1" secs="$2" limit="${3:-}" file="$OUT/wrk-$1.txt" wpid
  ( BENCH_TASK_PREFIX="$RUN_TAG-$name" BENCH_TASK_LIMIT="$limit" exec timeout --kill-after=5 "$((secs + 30))" \
      "${CLI_PIN[@]}" wrk -t1 -c"$CONC" -d"${secs}s" --timeout 5s --latency \
      -s "$HERE/tasks.lua" "$URL" >"$file" 2>&1 ) &
  wpid=$!; PIDS+=("$wpid")
  wait "$wpid" || { forget_pid "$wpid"; die "wrk failed, see $file"; }
  forget_pid "$wpid"
  grep -q '^TASKS ' "$file" || die "no TASKS line in $file"
  WRK_LINE="$(grep -E '^(BENCH|TASKS) ' "$file" | tr '\n' ' ')"
}

log "warm-up (${WARMUP}s, $CONC connections)"
wrk_run warmup "$WARMUP"

RAW="$OUT/raw.tsv"
printf 'run\trequests\tseconds\trps\tp50_us\tp99_us\tcpu_us_per_task\tserver_busy_pct\tnon2xx\terrors\tnotok\tcached\tllm_calls\tnew_conns\tfake_cpu_us_per_call\trss_kib\tloadavg1\tsteal_pct\n' >"$RAW"
for run in $(seq 1 "$RUNS"); do
  kill -0 "$GW_PID" 2>/dev/null || die "chatgw (pid $GW_PID) died, see $OUT/chatgw.log"
  if [ -n "$N" ]; then secs=600; what="$N requests"; else secs="$DURATION"; what="${DURATION}s"; fi
  log "run $run/$RUNS ($what, $CONC connections)"
  l0="$(fake_stat requests)"; k0="$(fake_stat connections)"; f0="$(cpu_ticks "$FAKE_PID")"
  read -r s0 a0 < <(steal_total)
  t0="$(cpu_ticks "$GW_PID")"
  wrk_run "run$run" "$secs" "$N"; line="$WRK_LINE"
  t1="$(cpu_ticks "$GW_PID")"
  read -r s1 a1 < <(steal_total)
  f1="$(cpu_ticks "$FAKE_PID")"; l1="$(fake_stat requests)"; k1="$(fake_stat connections)"
  reqs="$(field requests "$line")"; us="$(field duration_us "$line")"
  [ "${reqs:-0}" -gt 0 ] || die "run $run: no requests completed (see $OUT/wrk-run$run.txt)"
  awk -v OFS='\t' -v run="$run" -v n="$reqs" -v us="$us" -v rps="$(field rps "$line")" \
    -v p50="$(field p50_us "$line")" -v p99="$(field p99_us "$line")" -v d="$((t1 - t0))" -v hz="$TCK" \
    -v bad="$(field non2xx "$line")" -v err="$(field errors "$line")" -v notok="$(field notok "$line")" \
    -v cached="$(field cached "$line")" -v calls="$((l1 - l0))" -v conns="$((k1 - k0))" -v fd="$((f1 - f0))" \
    -v rss="$(rss_kib "$GW_PID")" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
    -v steal="$((s1 - s0))" -v all="$((a1 - a0))" 'BEGIN {
      print run, n, sprintf("%.2f", us / 1e6), rps, p50, p99, sprintf("%.1f", d * 1e6 / hz / n),
        sprintf("%.1f", d / hz / (us / 1e6) * 100), bad, err, notok, cached, calls, conns,
        sprintf("%.1f", calls ? fd * 1e6 / hz / calls : 0), rss, load,
        sprintf("%.1f", all ? steal * 100 / all : 0) }' >>"$RAW"
  log "run $run: $(tail -1 "$RAW" | cut -f2-8 | tr '\t' ' ') (requests s rps p50 p99 cpu_us busy%)"
done
RSS_AFTER="$(rss_kib "$GW_PID")"
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- optional profile ---------------------------------------------------------------------
if [ "$PERF" = "1" ]; then
  psecs=$(( DURATION < 5 ? DURATION : 5 ))
  log "profile: perf record -g -p $GW_PID for ${psecs}s under load"
  ( BENCH_TASK_PREFIX="$RUN_TAG-perf" exec timeout --kill-after=5 "$((psecs + 32))" \
      "${CLI_PIN[@]}" wrk -t1 -c"$CONC" -d"$((psecs + 2))s" --timeout 5s --latency \
      -s "$HERE/tasks.lua" "$URL" >"$OUT/wrk-perf.txt" 2>&1 ) &
  WRK_PERF_PID=$!; PIDS+=("$WRK_PERF_PID")
  sleep 1
  timeout --kill-after=5 "$((psecs + 20))" perf record -F 999 -g -p "$GW_PID" -o "$OUT/perf.data" \
    -- sleep "$psecs" >"$OUT/perf-record.log" 2>&1 || log "perf record failed, see $OUT/perf-record.log"
  wait "$WRK_PERF_PID" 2>/dev/null || true
  forget_pid "$WRK_PERF_PID"
  rep() { timeout 120 perf report -i "$OUT/perf.data" --no-children --stdio -g none "$@" 2>/dev/null |
    grep -v '^#' | grep -v '^$' || true; }
  rep --sort dso | head -15 >"$OUT/perf-dso.txt"
  { rep --sort pid | head -8
    echo "(tid $GW_PID is the event loop; the others are the store's writer and reader threads)"; } >"$OUT/perf-threads.txt"
  rep --sort dso,sym | head -30 >"$OUT/perf-sym.txt"
fi

# ---- chatgw's log: anything at warn or above -----------------------------------------------
grep -E '"level":"(warn|error|fatal)"' "$OUT/chatgw.log" >"$OUT/chatgw-warnings.log" || true
stop_pid "$GW_PID"; forget_pid "$GW_PID"
stop_pid "$FAKE_PID"; forget_pid "$FAKE_PID"
FAKE_BAD="$(sed -n 's/^stats .*"bad_requests":\([0-9]*\).*/\1/p' "$OUT/fake.log")"

# ---- part 2: SSE parsing in Lua ------------------------------------------------------------
SSE="$OUT/sse.txt"; : >"$SSE"
for run in $(seq 1 "$RUNS"); do
  log "SSE parse run $run/$RUNS ($SSE_REPS streams per case)"
  timeout --kill-after=5 "$(( SSE_MAX_S * 8 + 60 ))" "${SRV_PIN[@]}" \
    luajit "$HERE/sse_parse.lua" "$REPO" "$SSE_REPS" "$SSE_MAX_S" >>"$SSE" 2>"$OUT/sse-err.txt" ||
    die "sse_parse.lua failed, see $OUT/sse-err.txt"
done

# ---- results --------------------------------------------------------------------------------
python3 - "$OUT" "$CONC" "$RUNS" "${N:-}" "$DURATION" "$WARMUP" "$RSS_IDLE" "$RSS_AFTER" "$LOG_LEVEL" \
  "$SERVER_CPU" "$CLIENT_CPU" "$LOAD_START" "$LOAD_END" "${FAKE_BAD:-?}" "$SSE_REPS" "$PERF" <<'PY' | tee "$OUT/results.md"
import csv, os, re, statistics, sys
(out, conc, runs, n, duration, warmup, rss_idle, rss_after, level, server_cpu, client_cpu,
 load_start, load_end, fake_bad, sse_reps, perf) = sys.argv[1:]
rows = list(csv.DictReader(open(os.path.join(out, "raw.tsv")), delimiter="\t"))
med = lambda k: statistics.median(float(r[k]) for r in rows)
tot = lambda k: sum(int(r[k]) for r in rows)
def ms(us): return "%.2f ms" % (us / 1000) if us >= 1000 else "%d µs" % us

SEED_RPS, SEED_CPU, SEED_P99 = 1862, 537, 253000
rps, p99, cpu = med("rps"), med("p99_us"), med("cpu_us_per_task")
met = lambda ok: "**met**" if ok else "not met"
load = ("%s requests" % n) if n else ("%s s" % duration)
print("| POST /v1/tasks, unique task_id, fake model answering at once; %s conns, %s per run, median of %d runs | chatgw | seed 000 (published) | goal | |" % (conc, load, len(rows)))
print("| --- | ---: | ---: | ---: | --- |")
print("| req/s | %.0f | 1,862 | ≥ 18,620 (10x) | %s: %.1fx the seed |" % (rps, met(rps >= 10 * SEED_RPS), rps / SEED_RPS))
print("| p50 latency | %s | | | |" % ms(med("p50_us")))
print("| p99 latency | %s | 253 ms | ≤ 10 ms | %s |" % (ms(p99), met(p99 <= 10000)))
print("| server CPU µs per task | %.1f | 537 | ≤ 50 | %s: %.1fx the goal, %.1fx less than the seed |" % (cpu, met(cpu <= 50), cpu / 50, SEED_CPU / cpu))
print("| server CPU busy (CPU time / wall time) | %.0f %% | | | |" % med("server_busy_pct"))
print("| non-2xx / socket errors (must be 0) | %d / %d | | 0 | |" % (tot("non2xx"), tot("errors")))
print("| answers not ok:true / cached (must be 0) | %d / %d | | 0 | |" % (tot("notok"), tot("cached")))
print("| model calls per completed request (the fake's count; up to %s more a run are in flight when wrk stops) | %.3f | | 1 | |" % (conc, sum(int(r["llm_calls"]) for r in rows) / tot("requests")))
print("| new connections to the model server per 1,000 tasks | %.0f | | | |" % (1000 * tot("new_conns") / tot("requests")))
print("| VmRSS idle → after the runs | %.2f → %.2f MiB | | | |" % (int(rss_idle) / 1024, int(rss_after) / 1024))
print()
print("| run | requests | s | req/s | p50 | p99 | CPU µs/task | busy | model calls | new conns | fake CPU µs/call | loadavg | steal |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print("| %s | %s | %s | %.0f | %s | %s | %s | %s %% | %s | %s | %s | %s | %s %% |" % (r["run"], r["requests"], r["seconds"],
          float(r["rps"]), ms(int(r["p50_us"])), ms(int(r["p99_us"])), r["cpu_us_per_task"], r["server_busy_pct"],
          r["llm_calls"], r["new_conns"], r["fake_cpu_us_per_call"], r["loadavg1"], r["steal_pct"]))
print()
print("wrk -t1 -c%s --latency (bench/tasks/tasks.lua) after a %s s warm-up; chatgw pinned to CPU %s, wrk and the fake"
      " model server (bench/tasks/fake_llm.js) to CPU %s; chatgw with an empty handlers dir, the default"
      " config%s, DEEPSEEK_BASE_URL at the fake. CPU: utime+stime of the chatgw process (all threads)"
      " from /proc over the run / requests completed. Fake model server: %s bad requests."
      " Load average before: %s; after: %s."
      % (conc, warmup, server_cpu or "(none)", client_cpu or "(none)",
         "" if level == "info" else " but log.level %s" % level, fake_bad, load_start, load_end))
print()
print("Seed 000's figure (1,862 req/s, 537 µs server CPU per request, p99 253 ms) is the one issue 13 quotes;"
      " the seed's README (seeds/000_b5421200f2a71f80.txt) says nothing of how it was measured (no tool,"
      " concurrency or machine), so the comparison is of figures, not of like runs. wrk is a closed loop:"
      " mean latency ≈ connections / req/s (%.1f ms here), so p99 ≤ 10 ms at %s connections needs well over"
      " %.0f req/s." % (float(conc) / rps * 1000, conc, float(conc) / 0.010))
warn = open(os.path.join(out, "chatgw-warnings.log")).read().splitlines()
print()
print("chatgw log lines at warn or above: %d%s" % (len(warn), (" (first: `%s`)" % warn[0][:300]) if warn else ""))

# SSE parsing
sse = {}
for line in open(os.path.join(out, "sse.txt")):
    if not line.startswith("SSE "): continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    sse.setdefault((kv["case"], kv["chunk"]), []).append(kv)
print()
print("| parse a 1,000-token stream in Lua (plain luajit, os.clock), median of %d runs of %s streams | chunk | bytes | µs CPU per stream | µs per token | MB/s | fastest batch, µs per stream | runs (µs per stream) |" % (int(runs), sse_reps))
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
names = {"openai": "OpenAI SSE: `formats.openai.stream` (`data: {...chunk...}`, `[DONE]`)",
         "anthropic": "Anthropic SSE: `formats.anthropic.stream` (`content_block_delta` ... `message_stop`)",
         "openai-sse-framing-only": "reference: SSE framing only (`stream.sse`, no-op event callback), OpenAI stream",
         "openai-json-decode-only": "reference: `chatgw.json.decode` of the 1,000 OpenAI payloads only"}
for (case, chunk), v in sse.items():
    m = lambda k: statistics.median(float(x[k]) for x in v)
    print("| %s | %s | %d | %.0f | %.2f | %.1f | %.0f | %s |" % (names.get(case, case), chunk if chunk != "0" else "—",
          int(v[0]["bytes"]), m("us_per_stream"), m("us_per_token"), m("mb_per_s"),
          min(float(x["best_us_per_stream"]) for x in v), ", ".join("%.0f" % float(x["us_per_stream"]) for x in v)))
print()
print("Each parse: `format.stream(emit, out)`, `:feed(chunk)` per chunk, `:finish()`, emit appending to a table"
      " with a pcall of a no-op callback, `table.concat` (as `chatgw.providers` does); text and end event checked."
      " Chunks of 1400 bytes (about one TCP segment) and 64 bytes; cuts fall inside lines and UTF-8 characters."
      " A run's figure is the median of 5 batches; the fastest batch of all runs is beside it.")
if perf == "1":
    for name, title in (("perf-dso.txt", "by dso"), ("perf-threads.txt", "by thread"), ("perf-sym.txt", "top symbols")):
        p = os.path.join(out, name)
        if os.path.exists(p):
            print()
            print("perf record -g of chatgw under the same load, %s (`perf report --no-children`):" % title)
            print()
            print("```")
            print(open(p).read().rstrip())
            print("```")
PY
log "raw: $RAW, $SSE; wrk output, chatgw.log and fake.log in $OUT"
