-- wrk script: POST /v1/notify/text with a small JSON body and the bearer token (BENCH_TOKEN).
-- wrk -s bench/wrk/notify.lua http://127.0.0.1:PORT/v1/notify/text
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

wrk.method = "POST"
wrk.headers["Authorization"] = bench_auth
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"text":"build 4821 passed on main (12m 03s)","channel":"ci"}'
