-- CPU cost of parsing a streamed model answer in chatgw's Lua layer, in process, with plain
-- luajit (part 2 of bench/tasks/run.sh). Usage:
--   luajit bench/tasks/sse_parse.lua REPO [REPS] [MAX_SECONDS] [TOKENS]
-- REPO: the chatgw tree (its lua/ is put first on package.path; chatgw.json needs lua-cjson).
-- REPS (default 2000, 1..1000000): streams parsed per case; MAX_SECONDS (default 20, 1..600):
-- a case stops early once it has used this much CPU; TOKENS (default 1000, 1..100000).
--
-- The streams, built once: an OpenAI chat completions stream of TOKENS deltas
--   data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"m",
--          "choices":[{"index":0,"delta":{"content":"<token>"},"finish_reason":null}]}\n\n
-- then data: [DONE]\n\n; and an Anthropic Messages stream of the same tokens (message_start,
-- content_block_start, ping, TOKENS content_block_delta, content_block_stop, message_delta,
-- message_stop, each "event: <type>\ndata: {...}\n\n"). Tokens are " word"-like, about one in
-- eight non-ASCII (é, ü, 中文, emoji), a few with JSON escapes (\n, \").
-- Each stream is cut into chunks of CHUNK bytes (1400: about one TCP segment; 64: a worst case;
-- the cuts fall inside lines and inside UTF-8 characters) before timing. One parse is what
-- chatgw.providers does per request: format.stream(emit, out), :feed(chunk) for each chunk,
-- :finish(), emit appending the delta to a table (as providers/init.lua's attempt() does, with
-- a pcall of a no-op stream callback), then table.concat. The text and the end event are
-- checked after every case. CPU: os.clock over 5 batches of REPS/5 parses; µs per stream is the
-- median batch's CPU / its parses (best_us_per_stream: the fastest batch's).
-- Two reference rows show where the time goes: "SSE framing only" (stream.sse with a no-op
-- event callback: line splitting and field parsing) and "JSON decode only" (chatgw.json.decode
-- of the TOKENS data payloads, already split).
-- Prints one line per case:
--   SSE case=<name> chunk=<bytes> bytes=<stream bytes> chunks=<n> tokens=<n> reps=<n>
--       us_per_stream=<x> us_per_token=<x> mb_per_s=<x> best_us_per_stream=<x>
local repo = arg[1] or error("usage: luajit sse_parse.lua REPO [REPS] [MAX_SECONDS] [TOKENS]")
local REPS = tonumber(arg[2] or "2000")
local MAX_S = tonumber(arg[3] or "20")
local TOKENS = tonumber(arg[4] or "1000")
local function bounded(name, v, lo, hi)
  if not v or v ~= math.floor(v) or v < lo or v > hi then
    error(("%s must be an integer %d..%d"):format(name, lo, hi))
  end
end
bounded("REPS", REPS, 1, 1000000)
bounded("MAX_SECONDS", MAX_S, 1, 600)
bounded("TOKENS", TOKENS, 1, 100000)

package.path = repo .. "/lua/?.lua;" .. repo .. "/lua/?/init.lua;" .. package.path
local json = require "chatgw.json"
local stream = require "chatgw.providers.stream"
local openai = require "chatgw.providers.formats.openai"
local anthropic = require "chatgw.providers.formats.anthropic"

local concat, clock = table.concat, os.clock

-- ---- the token sequence ---------------------------------------------------------------------
local WORDS = { " the", " model", " answer", " is", " streamed", " token", " by", " token", ",", " and",
  " each", " delta", " carries", " a", " short", " piece", " of", " text", ".", " word" }
local ODD = { " café", " über", " 中文", " 😀", " naïve", " Ελλάδα", " 日本語", " – dash" }
local ESCAPED = { "\n", " \"quoted\"", "\n\n", " tab\there" }
local tokens = {}
for i = 1, TOKENS do
  local t
  if i % 97 == 0 then t = ESCAPED[math.floor(i / 97) % #ESCAPED + 1]
  elseif i % 8 == 0 then t = ODD[math.floor(i / 8) % #ODD + 1]
  else t = WORDS[i % #WORDS + 1] end
  tokens[i] = t
end
local expected = concat(tokens)

local function jstr(s) return json.encode(s) end -- a JSON string literal, quotes included

-- ---- the streams ------------------------------------------------------------------------------
local function openai_stream()
  local parts, payloads = {}, {}
  for i = 1, TOKENS do
    local p = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":'
      .. jstr(tokens[i]) .. '},"finish_reason":null}]}'
    payloads[i] = p
    parts[i] = "data: " .. p .. "\n\n"
  end
  parts[#parts + 1] = "data: [DONE]\n\n"
  return concat(parts), payloads
end

local function anthropic_stream()
  local parts, payloads = {}, {}
  local function ev(t, data) parts[#parts + 1] = "event: " .. t .. "\ndata: " .. data .. "\n\n" end
  ev("message_start", '{"type":"message_start","message":{"id":"msg_01bench","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-latest","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}')
  ev("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}')
  ev("ping", '{"type": "ping"}')
  for i = 1, TOKENS do
    local p = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":' .. jstr(tokens[i]) .. '}}'
    payloads[i] = p
    ev("content_block_delta", p)
  end
  ev("content_block_stop", '{"type":"content_block_stop","index":0}')
  ev("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":' .. TOKENS .. '}}')
  ev("message_stop", '{"type":"message_stop"}')
  return concat(parts), payloads
end

local function cut(s, size)
  local out = {}
  for i = 1, #s, size do out[#out + 1] = s:sub(i, i + size - 1) end
  return out
end

-- ---- one parse, as chatgw.providers does it ---------------------------------------------------
local function noop() end
local function parse(fmt, chunks, user_cb)
  local texts, out = {}, {}
  local p = fmt.stream(function(delta)
    texts[#texts + 1] = delta
    local ok, e = pcall(user_cb, delta)
    if not ok then error(e, 0) end
  end, out)
  for i = 1, #chunks do
    local ok, err = p:feed(chunks[i])
    if not ok then error("feed: " .. tostring(err)) end
  end
  local ok, err = p:finish()
  if not ok then error("finish: " .. tostring(err)) end
  return concat(texts), out
end

local function framing_only(chunks)
  local n = 0
  local p = stream.sse(function() n = n + 1 return true end)
  for i = 1, #chunks do p:feed(chunks[i]) end
  p:finish()
  return n
end

local function decode_only(payloads)
  local n = 0
  for i = 1, #payloads do
    if json.decode(payloads[i]) then n = n + 1 end
  end
  return n
end

-- runs fn REPS times (or until MAX_S of CPU), after a warm-up, in BATCHES batches; µs of CPU
-- per call: the median batch and the fastest. (On a shared VM the same code's speed drifts by up
-- to 2x over seconds; the median of batches spread over the case's time is steadier than the mean.)
local BATCHES = 5
local function time_it(fn)
  for _ = 1, math.min(50, REPS) do fn() end -- warm-up: let the JIT record its traces
  collectgarbage("collect")
  local per = math.max(1, math.floor(REPS / BATCHES))
  local deadline = clock() + MAX_S
  local us, done = {}, 0
  for b = 1, BATCHES do
    local t0, k = clock(), 0
    for _ = 1, per do
      fn()
      k = k + 1
      if k % 16 == 0 and clock() > deadline then break end
    end
    us[b] = (clock() - t0) * 1e6 / k
    done = done + k
    if clock() > deadline then break end
  end
  table.sort(us)
  local m = #us
  local median = m % 2 == 1 and us[(m + 1) / 2] or (us[m / 2] + us[m / 2 + 1]) / 2
  return median, done, us[1]
end

local function report(name, chunk, bytes, nchunks, us, done, best)
  io.write(("SSE case=%s chunk=%d bytes=%d chunks=%d tokens=%d reps=%d us_per_stream=%.1f us_per_token=%.3f mb_per_s=%.1f best_us_per_stream=%.1f\n")
    :format(name, chunk, bytes, nchunks, TOKENS, done, us, us / TOKENS, bytes / us, best))
  io.stdout:flush()
end

local cases = {
  { "openai", openai, openai_stream },
  { "anthropic", anthropic, anthropic_stream },
}
for _, c in ipairs(cases) do
  local name, fmt, build = c[1], c[2], c[3]
  local s, payloads = build()
  for _, size in ipairs({ 1400, 64 }) do
    local chunks = cut(s, size)
    local text, out = parse(fmt, chunks, noop)
    if text ~= expected then error(name .. "/" .. size .. ": the parsed text differs from the tokens") end
    if not out.done then error(name .. "/" .. size .. ": no end event seen") end
    local us, done, best = time_it(function() parse(fmt, chunks, noop) end)
    text, out = parse(fmt, chunks, noop)
    if text ~= expected or not out.done then error(name .. "/" .. size .. ": wrong result after the timed runs") end
    report(name, size, #s, #chunks, us, done, best)
  end
  if name == "openai" then
    local chunks = cut(s, 1400)
    local n = framing_only(chunks)
    if n ~= TOKENS + 1 then error("framing: " .. n .. " events, want " .. (TOKENS + 1)) end
    local us, done, best = time_it(function() framing_only(chunks) end)
    report("openai-sse-framing-only", 1400, #s, #chunks, us, done, best)
    if decode_only(payloads) ~= TOKENS then error("decode: a payload did not decode") end
    us, done, best = time_it(function() decode_only(payloads) end)
    report("openai-json-decode-only", 0, #s, 0, us, done, best)
  end
end
