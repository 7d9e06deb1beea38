# Sourced by the cluster benchmarks (after bench/lib.sh): start_redis DIR starts a
# redis-server without persistence on a free loopback port, pinned to SERVER_CPU, and sets
# REDIS_PORT and REDIS_PID (in PIDS, so it is stopped by PID on exit).
REDIS_PID="" REDIS_PORT=""
start_redis() { # start_redis DIR
  REDIS_PORT="$(free_port)"
  mkdir -p "$1"
  taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$1" \
    --save '' --appendonly no >"$1/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$REDIS_PID" "$REDIS_PORT" || die "redis-server did not start (see $1/redis.log)"
}
