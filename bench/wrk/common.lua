-- Shared by bench/wrk/health.lua and bench/wrk/notify.lua (loaded with dofile).
-- The token comes from BENCH_TOKEN (run.sh sets it to the token the servers were given).
-- done() prints one machine-readable line that run.sh parses:
--   BENCH requests=N duration_us=N rps=N p50_us=N p99_us=N non2xx=N errors=N
local token = os.getenv("BENCH_TOKEN")
if not token or token == "" then error("BENCH_TOKEN is not set") end
bench_auth = "Bearer " .. token

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), e.status, errors))
end
