# bench/lib.sh - what the benchmark scripts (bench/run.sh, bench/*/run.sh) share: messages, knob
# checks, stopping the processes they start (by PID, also on error or Ctrl-C), packages,
# building chatgw, free ports and bounded waits.
#
# Source it after `set -euo pipefail`, with BENCH_TAG set (the prefix of every message) and,
# for the build helpers, REPO and BUILD_DIR (and OUT for build_chatgw). Sourcing it installs
# the EXIT/INT/TERM traps that stop every PID in PIDS.
# shellcheck shell=bash

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

require_uint() { # require_uint VAR...: each named variable must be digits only
  local v
  for v in "$@"; do
    case "${!v}" in ''|*[!0-9]*) die "$v must be a positive integer";; esac
  done
}

# ---- processes we start: stopped by PID on any exit ---------------------------------------
PIDS=()
STOP_WAIT_TENTHS=50 # how long stop_pid waits after SIGTERM, in tenths of a second
stop_pid() { # stop_pid PID: SIGTERM, wait up to STOP_WAIT_TENTHS/10 s, then SIGKILL
  local pid="$1" _
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$STOP_WAIT_TENTHS"); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && stop_pid "$pid"; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- packages -----------------------------------------------------------------------------
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
install_pkgs() { # install_pkgs "PKG ...": apt-get them (none: nothing); with NO_INSTALL, die
  local pkgs="$1" sudo=""
  [ -n "$pkgs" ] || return 0
  [ -n "${NO_INSTALL:-}" ] && die "missing packages: $pkgs (NO_INSTALL set)"
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing: $pkgs"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >&2
}

# ---- chatgw -------------------------------------------------------------------------------
# build_chatgw: unless CHATGW_BIN is set (then it must be executable), installs the build
# dependencies (not with NO_INSTALL) and builds chatgw (RelWithDebInfo) in BUILD_DIR, logs in
# OUT; sets CHATGW_BIN.
build_chatgw() {
  if [ -n "${CHATGW_BIN:-}" ]; then
    [ -x "$CHATGW_BIN" ] || die "CHATGW_BIN=$CHATGW_BIN is not executable"
    return 0
  fi
  if [ -z "${NO_INSTALL:-}" ] && [ -x "$REPO/scripts/install-deps.sh" ]; then "$REPO/scripts/install-deps.sh" >&2; fi
  log "building chatgw (RelWithDebInfo) in $BUILD_DIR"
  cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/cmake.log" 2>&1 ||
    die "cmake configure failed, see $OUT/cmake.log"
  cmake --build "$BUILD_DIR" -j2 --target chatgw >"$OUT/build.log" 2>&1 ||
    die "build failed, see $OUT/build.log"
  CHATGW_BIN="$BUILD_DIR/chatgw"
}
# build_chatgw_quick: unless CHATGW_BIN is set, builds chatgw (RelWithDebInfo) in BUILD_DIR on
# every CPU, nothing installed, build output dropped; sets CHATGW_BIN.
build_chatgw_quick() {
  [ -z "${CHATGW_BIN:-}" ] || return 0
  log "building chatgw (RelWithDebInfo) in $BUILD_DIR"
  cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target chatgw >/dev/null
  CHATGW_BIN="$BUILD_DIR/chatgw"
}

# ---- ports and waits ----------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # wait_port PID PORT: up to 10 s for a TCP accept
  local pid="$1" port="$2" _
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
wait_line() { # wait_line FILE REGEX SECONDS: prints the first matching line
  local _
  for _ in $(seq 1 $(( $3 * 20 ))); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "timed out waiting for /$2/ in $1"
}
