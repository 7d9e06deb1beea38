-- wrk script: GET /health with the bearer token (BENCH_TOKEN).
-- wrk -s bench/wrk/health.lua http://127.0.0.1:PORT/health
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

wrk.method = "GET"
wrk.headers["Authorization"] = bench_auth
