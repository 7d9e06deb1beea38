-- chatgw.limiter{...}: the C rate limiter (runtime/vm/lib_limiter.c), its name and options
-- remembered (lua/chatgw/known.lua) so that the admin page can list every limiter.
--
-- shared = true (docs/cluster.md): in cluster mode the counts live in Redis, one EVALSHA per
-- decision (take, peek), with Redis' own clock, so every node sees the same buckets. While
-- Redis cannot answer, the decision falls back to this node's local limiter of the same
-- options (logged once per outage). Without cluster.redis_url, shared = true is the local one.
local chatgw = chatgw
local known = require "chatgw.known"
local cluster = require "chatgw.cluster"

local new_c, pcall, error, type, tostring, setmetatable = chatgw.limiter, pcall, error, type, tostring, setmetatable
local ceil, max = math.ceil, math.max

-- KEYS[1]: the bucket. ARGV: rate (per s), burst, n, peek (1: take nothing). -> {ok, retry_ms}
local BUCKET = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tk, ts = tonumber(v[1]) or burst, tonumber(v[2]) or now
tk = math.min(burst, tk + math.max(0, now - ts) * rate / 1000)
if tk >= n then
  if ARGV[4] ~= '1' then
    redis.call('HSET', KEYS[1], 'tk', tostring(tk - n), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
  end
  return {1, 0}
end
return {0, math.ceil((n - tk) * 1000 / rate)}
]]
-- KEYS[1]: the window (a sorted set of takes), KEYS[2]: its sequence. ARGV: limit, window_ms,
-- n, peek. -> {ok, retry_ms}
local WINDOW = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, win, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
local count = redis.call('ZCARD', KEYS[1])
if count + n <= limit then
  if ARGV[4] ~= '1' then
    local seq = redis.call('INCRBY', KEYS[2], n)
    for i = 1, n do redis.call('ZADD', KEYS[1], now, tostring(seq - i)) end
    redis.call('PEXPIRE', KEYS[1], win + 1000)
    redis.call('PEXPIRE', KEYS[2], win + 1000)
  end
  return {1, 0}
end
local need = count + n - limit
local r = redis.call('ZRANGE', KEYS[1], need - 1, need - 1, 'WITHSCORES')
local at = tonumber(r[2]) or now
return {0, math.max(1, at + win - now)}
]]

local Shared = {}
Shared.__index = Shared

local function check_args(self, m, key, n)
  local kt = type(key)
  if kt ~= "string" and kt ~= "number" then
    error(("lim:%s: key must be a string, got %s"):format(m, kt), 3)
  end
  if n == nil then n = 1 end
  if type(n) ~= "number" then error(("lim:%s: n must be a number, got %s"):format(m, type(n)), 3) end
  if not (n > 0) or n > self.capacity then
    error(("lim:%s: n must be > 0 and <= %s (%f)"):format(m, self.window and "limit" or "burst", self.capacity), 3)
  end
  if self.window and n ~= math.floor(n) then
    error(("lim:%s: n must be a whole number for a window limiter"):format(m), 3)
  end
  return tostring(key), n
end

-- true | false, retry_ms | nil (Redis could not decide: use the local limiter)
local function decide(self, key, n, peek)
  if not cluster.enabled then return nil end
  local rk = "chatgw:lim:" .. self.name .. ":" .. key
  local r, err
  if self.window then
    r, err = cluster.script("limiter_window", WINDOW):call({ rk, rk .. ":seq" },
      { self.opts.limit, self.opts.window_ms, n, peek and 1 or 0 })
  else
    r, err = cluster.script("limiter_bucket", BUCKET):call({ rk },
      { self.opts.rate, self.opts.burst or max(1, self.opts.rate), n, peek and 1 or 0 })
  end
  if type(r) ~= "table" then
    cluster.outage(self, "shared limiter: Redis cannot decide: this node's local counts decide until it can",
      { limiter = self.name }, err)
    return nil
  end
  cluster.recovered(self, "shared limiter: Redis decides again", { limiter = self.name })
  if r[1] == 1 then return true end
  return false, r[2]
end

function Shared:take(key, n)
  key, n = check_args(self, "take", key, n)
  local ok, retry = decide(self, key, n, false)
  if ok == nil then return self.local_:take(key, n) end
  if ok then return true end
  return false, retry
end

function Shared:peek(key, n)
  key, n = check_args(self, "peek", key, n)
  local ok, retry = decide(self, key, n, true)
  if ok == nil then return self.local_:peek(key, n) end
  if ok then return true end
  return false, retry
end

-- Waits until n can be taken (bounded by retries the buckets name), then takes it.
function Shared:wait(key, n)
  key, n = check_args(self, "wait", key, n)
  for _ = 1, 1000 do
    local ok, retry = decide(self, key, n, false)
    if ok == nil then return self.local_:wait(key, n) end
    if ok then return true end
    local slept, err = chatgw.sleep(max(1, retry))
    if not slept then return nil, err end
  end
  return nil, "lim:wait: gave up"
end

function Shared:reset(key)
  local k = check_args(self, "reset", key, 1)
  self.local_:reset(k)
  if cluster.enabled then
    local rk = "chatgw:lim:" .. self.name .. ":" .. k
    local r = cluster.command("DEL", rk, rk .. ":seq")
    return type(r) == "number" and r > 0
  end
  return true
end

-- This node's local keys (the shared ones are in Redis, with their own expiry).
function Shared:count() return self.local_:count() end

Shared.__tostring = function(self) return "chatgw.limiter(" .. self.name .. ", shared)" end

function chatgw.limiter(opts)
  local shared = false
  if type(opts) == "table" and opts.shared ~= nil then
    if type(opts.shared) ~= "boolean" then
      error("chatgw.limiter: shared must be a boolean, got " .. type(opts.shared), 2)
    end
    shared = opts.shared
    local copy = {}
    for k, v in pairs(opts) do if k ~= "shared" then copy[k] = v end end
    opts = copy
  end
  local ok, l = pcall(new_c, opts)
  if not ok then error(l, 0) end -- the C message as it was, no position added
  if type(opts) == "table" then known.remember("limiter", opts.name, opts) end
  if not shared then return l end
  local window = opts.limit ~= nil
  return setmetatable({ name = l.name, opts = opts, local_ = l, window = window, shared = true,
    capacity = window and opts.limit or (opts.burst or max(1, opts.rate)) }, Shared)
end

return {}
