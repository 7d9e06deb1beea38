-- wrk script: POST /v1/test/inbound (the test channel: CHATGW_TEST_CHANNEL=1), one update per
-- request, each with a new message id (the channel makes it), answered once it is recorded.
-- wrk -s bench/wrk/test_inbound.lua http://127.0.0.1:PORT/v1/test/inbound
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

wrk.method = "POST"
wrk.headers["Authorization"] = bench_auth
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"chat_id":"c1","text":"cpu at 91% on db-2","wait":false}'
