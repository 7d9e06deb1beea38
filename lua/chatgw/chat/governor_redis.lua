-- chatgw.chat.governor_redis: the governor's buckets in Redis (cluster mode, docs/cluster.md).
-- One EVALSHA per decision checks the shared 429 freezes and the per-chat token bucket, the
-- per-group 60 s window and the per-bot sliding window, and takes from all that apply or from
-- none, timed by Redis' clock (TIME) so node clocks do not matter. nil means Redis could not
-- answer: the caller falls back to its local limiters (logged once per outage by cluster.lua).
local cluster = require "chatgw.cluster"

local type, tostring, ceil = type, tostring, math.ceil

local M = {}

-- KEYS: bot freeze, chat freeze, chat bucket, group window, group seq, bot window, bot seq.
-- ARGV: chat_rate, chat_burst, group_limit, bot_limit, bot_window_ms, bot_need, peek ('' = no
-- such limit; bot_need 2 for typing, which still takes 1). -> {1} | {0, wait_ms, why}
local ADMIT = [[
local t = redis.call('TIME')
local nowf = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local now = math.floor(nowf)
local f = math.max(redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]))
if f > 0 then return {0, f, 'frozen'} end
local wait = 0
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tk
if rate then
  local v = redis.call('HMGET', KEYS[3], 'tk', 'ts')
  local ts = tonumber(v[2]) or nowf
  tk = math.min(burst, (tonumber(v[1]) or burst) + math.max(0, nowf - ts) * rate / 1000)
  if tk < 1 then wait = math.max(wait, math.ceil((1 - tk) * 1000 / rate)) end
end
local function window(key, limit, win, need)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - win)
  local count = redis.call('ZCARD', key)
  if count + need <= limit then return end
  local r = redis.call('ZRANGE', key, count + need - limit - 1, count + need - limit - 1, 'WITHSCORES')
  wait = math.max(wait, math.max(1, (tonumber(r[2]) or now) + win - now))
end
local glimit, blimit = tonumber(ARGV[3]), tonumber(ARGV[4])
if glimit then window(KEYS[4], glimit, 60000, 1) end
if blimit then window(KEYS[6], blimit, tonumber(ARGV[5]), tonumber(ARGV[6])) end
if wait > 0 then return {0, wait, 'paced'} end
if ARGV[7] == '1' then return {1} end
if rate then
  redis.call('HSET', KEYS[3], 'tk', tostring(tk - 1), 'ts', tostring(nowf))
  redis.call('PEXPIRE', KEYS[3], math.ceil(burst * 1000 / rate) + 1000)
end
local function take(key, seq, win)
  local s = redis.call('INCR', seq)
  redis.call('ZADD', key, now, tostring(s))
  redis.call('PEXPIRE', key, win + 1000)
  redis.call('PEXPIRE', seq, win + 1000)
end
if glimit then take(KEYS[4], KEYS[5], 60000) end
if blimit then take(KEYS[6], KEYS[7], tonumber(ARGV[5])) end
return {1}
]]

local function key(g, what) return "chatgw:gov:" .. g.channel .. ":" .. g.account .. ":" .. what end

-- true | false, wait_ms, why | nil (Redis could not decide). peek: take nothing, skip the bot's limit
function M.admit(g, chat_id, is_group, class, pacing, peek)
  local l = g.limits
  local chat = pacing and l.chat_rate
  local group = pacing and is_group and l.group_per_minute
  local bot = pacing and not peek and g.bot_window -- a peek asks about the chat's own limits only
  local r, err = cluster.script("governor_admit", ADMIT):call({
    key(g, "frozen:*"), key(g, "frozen:" .. chat_id), key(g, "chat:" .. chat_id),
    key(g, "group:" .. chat_id), key(g, "group:" .. chat_id .. ":seq"), key(g, "bot"), key(g, "bot:seq"),
  }, {
    chat and l.chat_rate or "", chat and math.max(1, l.chat_burst or 1) or "",
    group and l.group_per_minute or "", bot and bot.limit or "", bot and bot.window_ms or "",
    class == "typing" and 2 or 1, peek and 1 or 0,
  })
  if type(r) ~= "table" then
    cluster.outage(g, "governor: Redis cannot decide: this node's local limits decide until it can",
      { channel = g.channel, account = g.account }, err)
    return nil
  end
  cluster.recovered(g, "governor: Redis decides again", { channel = g.channel, account = g.account })
  if r[1] == 1 then return true end
  return false, r[2], r[3]
end

-- A 429 seen by this node: every node honours it (one SET PX; it expires by itself).
function M.freeze(g, scope_chat, seconds)
  local ok, err = cluster.command("SET", key(g, "frozen:" .. scope_chat), "1", "PX", tostring(ceil(seconds * 1000)))
  if not ok then
    cluster.outage(g, "governor: Redis cannot decide: this node's local limits decide until it can",
      { channel = g.channel, account = g.account }, err)
  end
  return ok
end

return M
