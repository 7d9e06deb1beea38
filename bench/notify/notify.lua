-- wrk script of the notify benchmark (bench/notify/run.sh): POST /v1/notify/text, each request
-- to the next of 200 chats per platform (a counter per wrk thread, offset by the thread's
-- number), priority HIGH, with the bearer token of BENCH_TOKEN.
--   BENCH_TARGET=both      {"target":"both","chat_ids":{"telegram":[...],"feishu":[...]}}: two messages
--   BENCH_TARGET=telegram  {"target":"telegram","chat_ids":{"telegram":[...]}}: one message
-- Telegram chats are private chats with positive ids 700000000..700000199, Feishu chats
-- oc_bench0..oc_bench199. Every answer is checked: its status must be 2xx and its body must say
-- "status":"queued" once per message; done() prints one line for run.sh:
--   BENCH requests=N duration_us=N rps=N p50_us=N p99_us=N non2xx=N errors=N unqueued=N
-- (non2xx: answers outside 200..299; unqueued: 2xx answers with fewer "queued" than messages;
-- errors: connect, read, write and timeout errors).
-- wrk -t1 -c64 -d10s -s bench/notify/notify.lua http://127.0.0.1:PORT/v1/notify/text
local token = os.getenv("BENCH_TOKEN")
if not token or token == "" then error("BENCH_TOKEN is not set") end
local target = os.getenv("BENCH_TARGET") or "both"
if target ~= "both" and target ~= "telegram" then error("BENCH_TARGET must be both or telegram") end
local CHATS = 200

local threads = {}
local nthreads = 0
function setup(thread)
  thread:set("thread_no", nthreads)
  nthreads = nthreads + 1
  threads[#threads + 1] = thread
end

local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
local per_request = target == "both" and 2 or 1
local n = 0
non2xx, unqueued = 0, 0

function init(args)
  n = (thread_no or 0) * 7919 -- threads start at different chats and texts
end

function request()
  n = n + 1
  local c = n % CHATS
  local body
  if target == "both" then
    body = string.format('{"target":"both","chat_ids":{"telegram":["%d"],"feishu":["oc_bench%d"]},' ..
      '"text":"alert %d","priority":"HIGH"}', 700000000 + c, c, n)
  else
    body = string.format('{"target":"telegram","chat_ids":{"telegram":["%d"]},"text":"alert %d","priority":"HIGH"}',
      700000000 + c, n)
  end
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    return
  end
  local _, q = string.gsub(body or "", '"status":"queued"', "")
  if q < per_request then unqueued = unqueued + 1 end
end

function done(summary, latency, requests)
  local bad, unq = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (tonumber(t:get("non2xx")) or 0)
    unq = unq + (tonumber(t:get("unqueued")) or 0)
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d errors=%d unqueued=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), bad, errors, unq))
end
