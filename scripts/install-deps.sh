#!/bin/sh
# Installs the Debian 12 packages chatgw needs to build, run and test. Idempotent: packages
# already present are left alone and nothing is downloaded then.
set -eu
PKGS="build-essential cmake pkg-config libluajit2-5.1-dev libuv1-dev libcurl4-openssl-dev \
libssl-dev libhttp-parser-dev libwslay-dev libsqlite3-dev libhiredis-dev lua-cjson lua-yaml python3 \
luajit2 ca-certificates gnuplot-nox"
# redis-server: the cluster tests (tests/e2e/test_cluster.py) start their own
# node + node-ws: the independent WebSocket client of the e2e tests and bench/ws
# openssl + curl: the TLS tests make a certificate and fetch over https; clang and
# libclang-rt-14-dev (libclang_rt.fuzzer, only a recommendation of clang): the fuzz harnesses
[ "${1:-}" = "--test" ] && PKGS="$PKGS redis-server procps openssl curl nodejs node-ws chromium chromium-driver python3-selenium \
clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
