#!/bin/sh
# fuzz/run.sh BUILD_DIR SECONDS [TARGET...] - runs each libFuzzer harness of BUILD_DIR/fuzz for
# SECONDS (docs/fuzzing.md), one after the other, from its checked-in seeds (fuzz/corpus/<t>,
# never written) plus a working corpus in BUILD_DIR/fuzz-corpus/<t> that grows across runs.
# Prints one line per target (executions, coverage, corpus size) and exits 1 if any harness
# found a crash, a sanitizer report, a timeout or ran out of memory; the input that did it is
# in BUILD_DIR/fuzz-artifacts/ and the harness's log in BUILD_DIR/fuzz-logs/<t>.log.
set -u
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")" && pwd)
targets=${*:-"http_request ws_frames ws_message config policy notify_registry feishu_events \
telegram_update"}
mkdir -p "$build/fuzz-corpus" "$build/fuzz-artifacts" "$build/fuzz-logs"
failed=""
printf '%-16s %12s %10s %8s %8s  %s\n' target execs exec/s cov corpus result
for t in $targets; do
  bin="$build/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz/run.sh: no $bin (make build-fuzz)" >&2; exit 2; }
  work="$build/fuzz-corpus/$t"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$work"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: the machine is shared
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" \
    "$work" "$src/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  units=$(ls "$work" | wc -l)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc, see $log)"
    failed="$failed $t"
  fi
  printf '%-16s %12s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$units" \
    "$result"
done
if [ -n "$failed" ]; then
  echo "fuzz/run.sh: failed:$failed" >&2
  for t in $failed; do grep -E 'ERROR|SUMMARY|fuzz:' "$build/fuzz-logs/$t.log" | head -5 >&2; done
  exit 1
fi
