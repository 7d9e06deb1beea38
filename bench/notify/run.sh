#!/usr/bin/env bash
# Notify benchmark (issue 14; see bench/RESULTS.md, "Telegram round trips" and "Feishu round
# trips" for the fakes): wrk (bench/notify/notify.lua, CONC keep-alive connections, one thread)
# POSTs /v1/notify/text to chatgw's notify listener for DURATION seconds, each notify to one of
# 200 chats per platform, priority HIGH, pacing off. chatgw accepts each into the outbox
# (answering 200 once its rows are committed) and delivers them to a fake Telegram
# (bench/telegram/fake_telegram.js: sendMessage) and a fake Feishu (bench/feishu/fake_feishu.js:
# im/v1/messages), side by side, both Node.js, keep-alive, no limits. After the load the run
# waits (bounded) until the fakes have counted every message of every notify chatgw answered 200.
#
# Variants (VARIANTS): "both" (target both: one notify = a Telegram and a Feishu message) and
# "telegram" (target telegram: one message). Measured per run:
#   accepted req/s   the HTTP answers wrk counted / wrk's duration (the load phase)
#   delivered msg/s  messages the fakes counted / (first request .. last delivery)
#   CPU µs/message   utime + stime of the chatgw process (all threads, /proc/PID/stat) over
#                    the same span / messages delivered
#   non-2xx          wrk's count of answers outside 200..299 plus chatgw's own count of non-200
#                    answers on the route (chatgw_http_requests_total); must be 0
#   drain            end of the load to the last delivery; backlog: messages accepted, not yet
#                    delivered when the load stopped
# The table sets them beside seed 000's figure as issue 14 gives it (about 45 msg/s at 22 ms
# CPU per message: the seed forks curl for every send) and the goal (>= 5,000 msg/s, <= 50 µs).
# Only 127.0.0.1 is used; every process started here is stopped by PID; every loop is bounded.
#
# Knobs (environment):
#   DURATION=10      seconds of load per run (wrk -d)
#   CONC=64          wrk -c (one wrk thread)
#   RUNS=3           measured runs per variant; the table shows medians
#   VARIANTS="both telegram"
#   WARMUP=3         seconds of wrk per variant before the runs (then drained); 0: none
#   DRAIN_TIMEOUT=300  at most this many seconds for the deliveries after a run's load
#   LOG_LEVEL=info   chatgw's default: one access-log line per request, to $OUT/chatgw.log, as
#                    in bench/telegram and bench/feishu; debug; or warn: no access log (the
#                    "listening" line is not logged then, so INTEGRATIONS_PORT is a free port
#                    picked here instead of 0)
#   PERF=0           1: after the runs one more "both" run under `perf record -g -p`, not in
#                    the table; summaries in $OUT/perf-dso.txt, perf-pid-dso.txt (by thread:
#                    the loop's thread id is chatgw's pid) and perf-dso-sym.txt
#   BUILD_DIR=/tmp/bench-notify-build  CHATGW_BIN=... (a built chatgw instead)  NO_INSTALL=1
#   OUT=DIR          raw output and results.md (default a fresh /tmp/chatgw-bench-notify.XXXX)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-10}"; DURATION="${DURATION%s}"
CONC="${CONC:-64}"
RUNS="${RUNS:-3}"
VARIANTS="${VARIANTS:-both telegram}"
WARMUP="${WARMUP:-3}"; WARMUP="${WARMUP%s}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-300}"
LOG_LEVEL="${LOG_LEVEL:-info}"
PERF="${PERF:-0}"
BUILD_DIR="${BUILD_DIR:-/tmp/bench-notify-build}"
OUT="${OUT:-$(mktemp -d /tmp/chatgw-bench-notify.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

BENCH_TAG=bench-notify
. "$HERE/../lib.sh"
STOP_WAIT_TENTHS=100

require_uint DURATION CONC RUNS WARMUP DRAIN_TIMEOUT
[ "$DURATION" -ge 1 ] && [ "$DURATION" -le 600 ] || die "DURATION must be 1..600 (seconds)"
[ "$CONC" -ge 1 ] && [ "$CONC" -le 4096 ] || die "CONC must be 1..4096"
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 20 ] || die "RUNS must be 1..20"
[ "$WARMUP" -le 60 ] || die "WARMUP must be 0..60 (seconds)"
[ "$DRAIN_TIMEOUT" -ge 1 ] && [ "$DRAIN_TIMEOUT" -le 3600 ] || die "DRAIN_TIMEOUT must be 1..3600 (seconds)"
for v in $VARIANTS; do case "$v" in both|telegram) ;; *) die "VARIANTS: '$v' is not both or telegram";; esac; done
[ -n "${VARIANTS// /}" ] || die "VARIANTS is empty"
case "$LOG_LEVEL" in debug|info|warn) ;; *) die "LOG_LEVEL must be info, debug or warn";; esac
case "$PERF" in 0|1) ;; *) die "PERF must be 0 or 1";; esac

pkgs=""
command -v wrk >/dev/null || pkgs="$pkgs wrk"
command -v curl >/dev/null || pkgs="$pkgs curl"
command -v node >/dev/null || pkgs="$pkgs nodejs"
command -v python3 >/dev/null || pkgs="$pkgs python3"
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then pkgs="$pkgs linux-perf"; fi
install_pkgs "${pkgs# }"

build_chatgw_quick
[ -x "$CHATGW_BIN" ] || die "CHATGW_BIN=$CHATGW_BIN is not executable"

PROBE=(python3 "$HERE/probe.py")
TOKEN=bench-token

# ---- the fakes, side by side ----------------------------------------------------------------
node "$REPO/bench/telegram/fake_telegram.js" >"$OUT/fake-telegram.log" 2>&1 &
TG_PID=$!; PIDS+=("$TG_PID")
node "$REPO/bench/feishu/fake_feishu.js" >"$OUT/fake-feishu.log" 2>&1 &
FS_PID=$!; PIDS+=("$FS_PID")
TG_PORT=$(wait_line "$OUT/fake-telegram.log" '^listening' 10 | awk '{print $2}')
FS_PORT=$(wait_line "$OUT/fake-feishu.log" '^listening' 10 | awk '{print $2}')
TG="http://127.0.0.1:$TG_PORT"
FS="http://127.0.0.1:$FS_PORT"

# ---- chatgw ---------------------------------------------------------------------------------
WORK="$OUT/chatgw"; mkdir -p "$WORK/data" "$WORK/handlers" # no handlers: the notify API is built in
printf 'chat:\n  pacing: false\nchannels:\n  telegram:\n    poll_timeout_s: 10\n' >"$WORK/chatgw.yml"
# Env that would point chatgw elsewhere is cleared; the registry path is a file that does not
# exist (no projects: every request names its chats).
NOTIFY_PORT_ENV=0 # INTEGRATIONS_PORT: 0 (the kernel picks; read from the log) unless at level warn
[ "$LOG_LEVEL" = warn ] && NOTIFY_PORT_ENV=$(free_port)
( cd "$WORK" && exec env -u CHAT_GATEWAY_HOST -u INTEGRATIONS_HOST -u PROJECTS_REGISTRY_PATH \
    -u CHAT_GATEWAY_PRIORITY_LEVELS -u TELEGRAM_MODE \
    CHAT_GATEWAY_PORT=0 INTEGRATIONS_PORT="$NOTIFY_PORT_ENV" CHAT_GATEWAY_TOKEN="$TOKEN" CHAT_GATEWAY_DATA_DIR="$WORK/data" \
    CHAT_GATEWAY_LOG_LEVEL="$LOG_LEVEL" \
    TELEGRAM_BOT_TOKEN=4242:bench-token-not-secret TELEGRAM_API_BASE="$TG" \
    FEISHU_APP_ID=cli_bench FEISHU_APP_SECRET=bench-secret FEISHU_VERIFICATION_TOKEN=bench-vt \
    FEISHU_API_BASE="$FS" FEISHU_WEBHOOK_PORT=0 \
    "$CHATGW_BIN" run --no-master "$WORK/handlers" --config "$WORK/chatgw.yml" </dev/null >"$OUT/chatgw.log" 2>&1 ) &
GW_PID=$!; PIDS+=("$GW_PID")
if [ "$LOG_LEVEL" = warn ]; then
  wait_port "$GW_PID" "$NOTIFY_PORT_ENV" || die "chatgw did not listen on $NOTIFY_PORT_ENV (see $OUT/chatgw.log)"
  NOTIFY_PORT=$NOTIFY_PORT_ENV
else
  wait_line "$OUT/chatgw.log" '"msg":"ready"' 10 >/dev/null
  NOTIFY_PORT=$(wait_line "$OUT/chatgw.log" '"msg":"listening".*"listener":"notify"' 1 |
    sed -n 's/.*"port":\([0-9][0-9]*\).*/\1/p')
fi
[ -n "$NOTIFY_PORT" ] || die "no port in the notify listener's log line (see $OUT/chatgw.log)"
GW="http://127.0.0.1:$NOTIFY_PORT"
log "chatgw pid $GW_PID (notify listener $GW), fake Telegram pid $TG_PID on $TG_PORT, fake Feishu pid $FS_PID on $FS_PORT, output in $OUT"

jget() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"; }

# ---- one notify by hand: both messages queued and delivered ---------------------------------
body=$(curl -sS --max-time 10 -w '\n%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -d '{"target":"both","chat_ids":{"telegram":["700000000"],"feishu":["oc_bench0"]},"text":"alert check","priority":"HIGH"}' \
  "$GW/v1/notify/text") || die "the check notify failed (see $OUT/chatgw.log)"
[ "${body##*$'\n'}" = 200 ] || die "the check notify: HTTP ${body##*$'\n'}: ${body%$'\n'*}"
[ "$(grep -o '"status":"queued"' <<<"$body" | wc -l)" -eq 2 ] || die "the check notify did not queue 2 messages: $body"
w=$("${PROBE[@]}" wait "$TG" 1 "$FS" 1 "$GW_PID" 10)
[ "$(jget "$w" ok)" = True ] || die "the check notify was not delivered to both fakes in 10 s: $w"

# ---- a load run -----------------------------------------------------------------------------
# load VARIANT SECONDS WRK_FILE JSONL: wrk (raw output to WRK_FILE), then the bounded wait for
# every message of every notify chatgw answered 200; appends one JSON line to JSONL
WANT_TG=1 WANT_FS=1 # messages the fakes must have counted so far (the check notify's)
load() {
  local variant="$1" secs="$2" file="$3" jsonl="$4" m0 f0 f1 s0 w wrkline t_load per_fs=0
  [ "$variant" = both ] && per_fs=1
  kill -0 "$GW_PID" 2>/dev/null || die "chatgw (pid $GW_PID) died, see $OUT/chatgw.log"
  m0=$("${PROBE[@]}" metrics "$GW" "$TOKEN")
  f0=$("${PROBE[@]}" cpu "$TG_PID" "$FS_PID")
  s0=$("${PROBE[@]}" wait "$TG" 0 "$FS" 0 "$GW_PID" 1) # the start: time, chatgw's CPU, the fakes' counts
  BENCH_TOKEN="$TOKEN" BENCH_TARGET="$variant" timeout --kill-after=5 "$((secs + 30))" \
    wrk -t1 -c"$CONC" -d"${secs}s" --timeout 10s --latency -s "$HERE/notify.lua" "$GW/v1/notify/text" \
    >"$file" 2>&1 || die "wrk failed, see $file"
  t_load=$(date +%s.%N)
  # every notify chatgw answered 200 (wrk's count misses the ones in flight when it stopped)
  w=$("${PROBE[@]}" drain "$GW" "$TOKEN" "$(jget "$m0" notify_200)" "$TG" "$WANT_TG" "$FS" "$WANT_FS" \
    "$per_fs" "$GW_PID" "$DRAIN_TIMEOUT")
  [ "$(jget "$w" ok)" = True ] ||
    die "not every message delivered in $DRAIN_TIMEOUT s: $w (see $OUT/chatgw.log and $OUT/fake-*.log)"
  [ "$(jget "$w" settled)" = True ] || die "chatgw kept answering notifies after wrk stopped: $w"
  wrkline=$(grep '^BENCH ' "$file") || die "no BENCH line in $file"
  f1=$("${PROBE[@]}" cpu "$TG_PID" "$FS_PID")
  python3 - "$variant" "$wrkline" "$t_load" "$m0" "$s0" "$w" "$f0" "$f1" "$per_fs" "$WANT_TG" "$WANT_FS" <<'PY' >>"$jsonl"
import json, sys
variant, wrkline, t_load = sys.argv[1], sys.argv[2], float(sys.argv[3])
m0, s0, w, f0, f1 = (json.loads(a) for a in sys.argv[4:9])
per_fs, before_tg, before_fs = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
m1, m2 = w["m1"], w["m2"]
wk = dict(kv.split("=") for kv in wrkline.split()[1:])
tck = f0["tck"]
t0, t1 = s0["t_done"], w["t_done"]
tg = w["tg"]["sent"] - s0["tg"]["sent"]
fs = w["fs"]["sent"] - s0["fs"]["sent"]
delivered = tg + fs
cpu_s = (w["ticks"] - s0["ticks"]) / tck
fake_s = (sum(f1["ticks"]) - sum(f0["ticks"])) / tck
print(json.dumps({
    "variant": variant, "wrk_requests": int(wk["requests"]), "accepted_by_chatgw": w["accepted"],
    "accepted_rps": float(wk["rps"]), "p50_us": int(wk["p50_us"]), "p99_us": int(wk["p99_us"]),
    "non2xx_wrk": int(wk["non2xx"]), "non2xx_chatgw": m2["notify_other"] - m0["notify_other"],
    "socket_errors": int(wk["errors"]), "unqueued": int(wk["unqueued"]),
    "delivered_telegram": tg, "delivered_feishu": fs, "delivered": delivered,
    "expected": w["accepted"] * (1 + per_fs),
    # sends the fakes counted before the run beyond what was expected (late duplicates)
    "extra_before": (s0["tg"]["sent"] - before_tg) + (s0["fs"]["sent"] - before_fs),
    "seconds": t1 - t0, "load_seconds": t_load - t0, "drain_seconds": max(0.0, t1 - t_load),
    "delivered_per_s": delivered / (t1 - t0),
    "cpu_us_per_msg": cpu_s * 1e6 / delivered if delivered else None,
    "chatgw_busy_pct": cpu_s / (t1 - t0) * 100, "fakes_busy_pct": fake_s / (t1 - t0) * 100,
    # accepted but not delivered when the load stopped: the messages of the notifies answered
    # 200 by then less the sends the fakes had counted (chatgw_outbox_depth counts only the rows
    # in the senders' view, at most MAX_VIEW = 50,000 per account)
    "backlog_at_load_end": (m1["notify_200"] - m0["notify_200"]) * (1 + per_fs) -
                           (w["first"]["tg"] - s0["tg"]["sent"]) - (w["first"]["fs"] - s0["fs"]["sent"]),
    "depth_gauge_at_load_end": sum(m1["depth"].values()), "depth_after": sum(m2["depth"].values()),
    "retries": m2["retries"] - m0["retries"],
    # store statements per delivered message (chatgw_store_jobs_total: writes, reads)
    "store_writes_per_msg": (m2["store"].get("write/ok", 0) - m0["store"].get("write/ok", 0)) / delivered if delivered else None,
    "store_reads_per_msg": (m2["store"].get("read/ok", 0) - m0["store"].get("read/ok", 0)) / delivered if delivered else None,
    "store_errors": sum(v for k, v in m2["store"].items() if not k.endswith("/ok")) -
                    sum(v for k, v in m0["store"].items() if not k.endswith("/ok")),
    # mean time of one platform request of the outbox (chatgw_outbox_send_seconds), per channel
    "send_ms": {ch: (m2["send_s"][ch] - m0["send_s"].get(ch, 0)) * 1000 / (m2["sends"][ch] - m0["sends"].get(ch, 0))
                for ch in m2["sends"] if m2["sends"][ch] > m0["sends"].get(ch, 0)},
    "failed": sum(v for k, v in m2["out"].items() if not k.endswith("/delivered")) -
              sum(v for k, v in m0["out"].items() if not k.endswith("/delivered")),
}))
PY
  WANT_TG=$(jget "$w" want_tg); WANT_FS=$(jget "$w" want_fs)
}

# ---- warm-up, then the measured runs (variants interleaved) ---------------------------------
: >"$OUT/warmup.jsonl"
if [ "$WARMUP" -gt 0 ]; then
  for v in $VARIANTS; do
    log "warm-up: $v (${WARMUP} s)"
    load "$v" "$WARMUP" "$OUT/warmup-$v.txt" "$OUT/warmup.jsonl"
  done
fi
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
: >"$OUT/runs.jsonl"
for i in $(seq 1 "$RUNS"); do
  for v in $VARIANTS; do
    log "run $i/$RUNS: $v (${DURATION} s, $CONC connections)"
    load "$v" "$DURATION" "$OUT/run$i-$v.txt" "$OUT/runs.jsonl"
    log "run $i $v: $(tail -n1 "$OUT/runs.jsonl")"
  done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
RSS=$(awk '/^VmRSS:/{print $2}' "/proc/$GW_PID/status")
HWM=$(awk '/^VmHWM:/{print $2}' "/proc/$GW_PID/status")

# ---- optional profile (not in the table) ----------------------------------------------------
if [ "$PERF" = 1 ]; then
  log "perf: one more 'both' run under perf record -g -p $GW_PID"
  perf record -g -p "$GW_PID" -o "$OUT/perf.data" -- sleep "$((DURATION + DRAIN_TIMEOUT))" \
    >"$OUT/perf-record.log" 2>&1 &
  PERF_PID=$!; PIDS+=("$PERF_PID")
  sleep 1
  : >"$OUT/perf-run.jsonl"
  load both "$DURATION" "$OUT/perf-both.txt" "$OUT/perf-run.jsonl"
  kill -INT "$PERF_PID" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$PERF_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$PERF_PID"
  # by shared object; by thread (pid = thread id: the loop is chatgw's pid) and object; by symbol
  for s in dso pid,dso dso,sym; do
    perf report -i "$OUT/perf.data" --no-children --sort "$s" --stdio -g none 2>/dev/null |
      grep -v -e '^$' -e '^#' | head -60 >"$OUT/perf-${s//,/-}.txt" || true
  done
fi

# ---- over-delivery and the log --------------------------------------------------------------
sleep 1
final=$("${PROBE[@]}" wait "$TG" 0 "$FS" 0 "$GW_PID" 1)
mfinal=$("${PROBE[@]}" metrics "$GW" "$TOKEN")
echo "$final" >"$OUT/fakes-final.json"; echo "$mfinal" >"$OUT/metrics-final.json"
grep -E '"level":"(warn|error|fatal)"' "$OUT/chatgw.log" >"$OUT/chatgw-warnings.log" || true

python3 - "$OUT" "$RSS" "$HWM" "$CONC" "$DURATION" "$LOG_LEVEL" "$WANT_TG" "$WANT_FS" "$LOAD_START" "$LOAD_END" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys, os, collections
out, rss, hwm, conc, dur, level = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
want_tg, want_fs, load_start, load_end = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9], sys.argv[10]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
final = json.load(open(os.path.join(out, "fakes-final.json")))
mfinal = json.load(open(os.path.join(out, "metrics-final.json")))
variants = []
for r in runs:
    if r["variant"] not in variants: variants.append(r["variant"])
by = {v: [r for r in runs if r["variant"] == v] for v in variants}
med = lambda v, k: statistics.median(r[k] for r in by[v])
each = lambda v, k, f: ", ".join(f % r[k] for r in by[v])
tot = lambda v, k: sum(r[k] for r in by[v])
name = {"both": "target both (Telegram + Feishu)", "telegram": "target telegram"}
nruns = len(by[variants[0]])
print("POST /v1/notify/text, %d connections for %d s, 200 chats per platform, pacing off; median of %d runs (each run in brackets)" % (conc, dur, nruns))
print()
print("| | seed 000 (issue 14) | goal | " + " | ".join(name[v] for v in variants) + " |")
print("| --- | ---: | ---: | " + " | ".join("---:" for v in variants) + " |")
print("| messages per notify | | | " + " | ".join("2" if v == "both" else "1" for v in variants) + " |")
print("| accepted notifies/s (HTTP 200s, load phase) | | | " + " | ".join("%.0f (%s)" % (med(v, "accepted_rps"), each(v, "accepted_rps", "%.0f")) for v in variants) + " |")
print("| delivered msg/s (first request → last delivery) | ≈ 45 | ≥ 5,000 | " + " | ".join("%.0f (%s)" % (med(v, "delivered_per_s"), each(v, "delivered_per_s", "%.0f")) for v in variants) + " |")
print("| server CPU µs per delivered message | ≈ 22,000 | ≤ 50 | " + " | ".join("%.1f (%s)" % (med(v, "cpu_us_per_msg"), each(v, "cpu_us_per_msg", "%.1f")) for v in variants) + " |")
print("| non-2xx (must be 0; wrk + chatgw's count) | | 0 | " + " | ".join("%d" % (tot(v, "non2xx_wrk") + tot(v, "non2xx_chatgw")) for v in variants) + " |")
print("| socket errors / answers without every message queued | | 0 | " + " | ".join("%d / %d" % (tot(v, "socket_errors"), tot(v, "unqueued")) for v in variants) + " |")
print("| outbox retries / sends not delivered | | 0 | " + " | ".join("%d / %d" % (tot(v, "retries"), tot(v, "failed")) for v in variants) + " |")
def send_ms(v):
    parts = []
    for ch in ("telegram", "feishu"):
        xs = [r["send_ms"][ch] for r in by[v] if ch in r.get("send_ms", {})]
        if xs: parts.append("%s %.1f ms" % (ch, statistics.median(xs)))
    return ", ".join(parts) or "-"
print("| mean outbox send (one platform request, in chatgw) | | | " + " | ".join(send_ms(v) for v in variants) + " |")
print("| store statements per delivered message: writes / reads (errors) | | | " + " | ".join("%.2f / %.2f (%d)" % (med(v, "store_writes_per_msg"), med(v, "store_reads_per_msg"), tot(v, "store_errors")) for v in variants) + " |")
print("| accept latency p50 / p99 | | | " + " | ".join("%.1f / %.1f ms" % (med(v, "p50_us") / 1000, med(v, "p99_us") / 1000) for v in variants) + " |")
print("| backlog when the load stopped (messages accepted, not yet delivered) | | | " + " | ".join("%d (%s)" % (med(v, "backlog_at_load_end"), each(v, "backlog_at_load_end", "%d")) for v in variants) + " |")
print("| drain: load stopped → last delivery | | | " + " | ".join("%.2f s (%s)" % (med(v, "drain_seconds"), each(v, "drain_seconds", "%.2f")) for v in variants) + " |")
print("| messages delivered per run | | | " + " | ".join("%d (%s)" % (med(v, "delivered"), each(v, "delivered", "%d")) for v in variants) + " |")
print("| chatgw CPU busy (of one core) / the two fakes' | | | " + " | ".join("%.0f %% / %.0f %%" % (med(v, "chatgw_busy_pct"), med(v, "fakes_busy_pct")) for v in variants) + " |")
print()
met = []
for v in variants:
    ok_t = med(v, "delivered_per_s") >= 5000
    ok_c = med(v, "cpu_us_per_msg") <= 50
    met.append("%s: %s msg/s goal %s, %s µs goal %s" % (v, "%.0f" % med(v, "delivered_per_s"), "met" if ok_t else "NOT met",
                                                        "%.1f" % med(v, "cpu_us_per_msg"), "met" if ok_c else "NOT met"))
print("Goal (≥ 5,000 delivered msg/s, ≤ 50 µs CPU per message): " + "; ".join(met) + ".")
print()
print("chatgw VmRSS after the runs: %.2f MiB (peak VmHWM %.2f MiB). Log level %s (%s)." % (rss / 1024, hwm / 1024, level,
      "no access log" if level == "warn" else "an access-log line per request, to a file"))
extra_tg, extra_fs = final["tg"]["sent"] - want_tg, final["fs"]["sent"] - want_fs
print("Delivered in all (check, warm-up and runs): Telegram %d of %d expected, Feishu %d of %d expected%s." % (
    final["tg"]["sent"], want_tg, final["fs"]["sent"], want_fs,
    "" if extra_tg == 0 and extra_fs == 0 else " — MORE THAN EXPECTED (duplicates?)"))
depth = sum(mfinal["depth"].values())
failed = {k: v for k, v in mfinal["out"].items() if not k.endswith("/delivered")}
print("Outbox depth at the end %d; retries %d; results other than delivered: %s; Feishu fake: %d bad requests, %d repeated uuids." % (
    depth, mfinal["retries"], json.dumps(failed) if failed else "none",
    final["fs"].get("bad_requests", 0), final["fs"].get("duplicate_uuids", 0)))
warn = [json.loads(l) for l in open(os.path.join(out, "chatgw-warnings.log")) if l.strip()]
if warn:
    c = collections.Counter("%s: %s" % (w.get("level"), w.get("msg")) for w in warn)
    print("chatgw log warnings/errors (%d lines): %s." % (len(warn), "; ".join("%s ×%d" % kv for kv in c.most_common(8))))
else:
    print("chatgw log: no warnings or errors.")
print("Load average (1/5/15 min) before the runs: %s; after: %s; nproc %d." % (load_start, load_end, os.cpu_count()))
PY
log "raw: $OUT/runs.jsonl, wrk output $OUT/run*.txt, chatgw log $OUT/chatgw.log"
