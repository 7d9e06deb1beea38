-- chatgw.cluster: several nodes sharing one Redis (docs/cluster.md).
--
-- Without cluster.redis_url nothing here runs: M.enabled is false and every caller keeps its
-- local path (flock locks, the local limiter, local ws delivery). With it:
--   - the node's id (cluster.node_id, default <hostname>-<pid>) is in every log line, /health
--     and the metric chatgw_cluster_node_info;
--   - leader locks (M.lock_acquire/renew/release): SET NX PX with a fencing counter (INCR),
--     renewed at ttl/3 by the supervisor (lua/chatgw/supervisor.lua);
--   - fan-out (M.publish/M.on): one pub/sub channel, messages tagged with the origin node, which
--     ignores its own echo (it delivered locally already);
--   - M.script: a Lua script run by EVALSHA (loaded once per Redis start: NOSCRIPT reloads it);
--   - the node's heartbeat key (M.NODE_PREFIX .. node_id), renewed at lock_ttl_ms/3.
-- The client (runtime/net/redis.c through chatgw._redis) lives in C across reloads.
local chatgw = chatgw
local json = require "chatgw.json"
local R = chatgw._redis

local type, tostring, tonumber, pcall, pairs, ipairs = type, tostring, tonumber, pcall, pairs, ipairs
local floor, max, min = math.floor, math.max, math.min

local M = { enabled = false, node_id = nil }

local PREFIX = "chatgw:"
local FANOUT = PREFIX .. "fanout"
M.NODE_PREFIX = PREFIX .. "node:" -- the heartbeats: chatgw:node:<node_id>, alive while it exists
local NODE_PATTERN = "^[%w._-]+$"

local m_info = chatgw.metrics.gauge{ name = "chatgw_cluster_node_info",
  help = "1 for this node's cluster.node_id (cluster mode only).", labels = { "node" } }
local m_up = chatgw.metrics.gauge{ name = "chatgw_cluster_redis_up",
  help = "1 while the cluster's Redis connection is up (cluster mode only)." }
local m_leader = chatgw.metrics.gauge{ name = "chatgw_cluster_leader",
  help = "1 while this node holds the cluster lock (cluster mode only).", labels = { "lock", "node" } }

-- ---- configuration ----

function M.configure(cfg)
  local c = cfg.cluster
  local id = c.node_id ~= "" and c.node_id or chatgw._node_default()
  if not id:find(NODE_PATTERN) or #id > 100 then
    return nil, "cluster.node_id: must match [A-Za-z0-9._-]+ (at most 100 characters), got '" .. id .. "'"
  end
  if c.redis_url == "" then
    if R.status().configured then
      return nil, "cluster.redis_url: a reload cannot leave cluster mode: restart the node"
    end
    M.node_id = id
    return true
  end
  local ok, err = R.configure(c.redis_url, c.connect_timeout_ms, c.command_timeout_ms)
  if ok == nil then return nil, "cluster.redis_url: " .. err end
  if ok == false then
    return nil, "cluster.redis_url: a reload cannot change it: restart the node"
  end
  M.node_id = id
  M.lock_ttl_ms = c.lock_ttl_ms
  M.enabled = true
  chatgw._log_node(id)
  return true
end

function M.status()
  local s = R.status()
  if not s.configured then return nil end
  return s
end

function M.up()
  local s = R.status()
  return s.configured and s.up == true
end

-- ---- commands and scripts ----

-- value | nil, err ("down: ...", "timeout: ...", "lost: ...", "reply: ...").
function M.command(...)
  return R.command(...)
end

local Script = {}
Script.__index = Script

-- script:call(keys, args) -> value | nil, err: one EVALSHA (plus a SCRIPT LOAD the first time
-- and after Redis lost its scripts).
function Script:call(keys, args)
  local argv = { "EVALSHA", "", #keys }
  for _, k in ipairs(keys) do argv[#argv + 1] = k end
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  for _ = 1, 2 do
    if not self.sha then
      local sha, err = R.command("SCRIPT", "LOAD", self.src)
      if not sha then return nil, err end
      self.sha = sha
    end
    argv[2] = self.sha
    local v, err = R.command(unpack(argv))
    if v ~= nil or not tostring(err):find("NOSCRIPT", 1, true) then return v, err end
    self.sha = nil
  end
  return nil, "reply: NOSCRIPT after SCRIPT LOAD"
end

-- Once-per-outage logging for callers that decide locally while Redis cannot answer (shared
-- limiters, the governor): a WARN at the first failure, an INFO when Redis decides again.
-- `owner` is the caller's object; its field redis_fallback remembers the outage.
function M.outage(owner, msg, fields, err)
  if owner.redis_fallback then return end
  owner.redis_fallback = true
  local f = { error = tostring(err) }
  for k, v in pairs(fields or {}) do f[k] = v end
  chatgw.log.warn(msg, f)
end

function M.recovered(owner, msg, fields)
  if not owner.redis_fallback then return end
  owner.redis_fallback = false
  chatgw.log.info(msg, fields)
end

local scripts = {}
function M.script(name, src)
  local s = scripts[name]
  if not s or s.src ~= src then
    s = setmetatable({ name = name, src = src }, Script)
    scripts[name] = s
  end
  return s
end

-- ---- leader locks ----

-- KEYS: lock, fence. ARGV: node, ttl_ms, the token this node held (or ""). A free lock is
-- taken with SET NX PX under a new fencing number; the node's own token (a reload) is renewed.
local ACQUIRE = [[
if ARGV[3] ~= '' and redis.call('GET', KEYS[1]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ARGV[3], redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local f = redis.call('INCR', KEYS[2])
  local tok = ARGV[1] .. '|' .. f
  if redis.call('SET', KEYS[1], tok, 'NX', 'PX', ARGV[2]) then return {1, tok, tonumber(ARGV[2])} end
end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
]]
local RENEW = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
]]
local RELEASE = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

-- Tokens this process holds, kept across reloads (a reloaded state takes its lock back at once).
local held_tokens = chatgw.shared("chatgw.cluster.locks")
-- name -> { holder, fence, me, ttl_ms, at, error } as last seen (for /health).
local seen = {}

local function split_token(tok)
  local node, fence = tostring(tok):match("^(.*)|(%d+)$")
  return node, tonumber(fence)
end

local function lock_key(name) return PREFIX .. "lock:" .. name end

-- true, info | false, info (held by another node; info.ttl_ms left) | nil, err.
function M.lock_acquire(name)
  local ttl = M.lock_ttl_ms
  local prev = held_tokens:get(name) or ""
  local r, err = M.script("lock_acquire", ACQUIRE):call(
    { lock_key(name), PREFIX .. "fence:" .. name }, { M.node_id, ttl, prev })
  if not r then
    seen[name] = { error = err, at = chatgw.time() }
    return nil, "cluster lock: " .. tostring(err)
  end
  local node, fence = split_token(r[2])
  local info = { holder = node, fence = fence, ttl_ms = r[3], me = r[1] == 1, at = chatgw.time() }
  seen[name] = info
  if r[1] == 1 then
    held_tokens:set(name, r[2])
    info.token = r[2]
    m_leader:set({ lock = name, node = M.node_id }, 1)
    return true, info
  end
  held_tokens:delete(name)
  m_leader:set({ lock = name, node = M.node_id }, 0)
  return false, info
end

-- true | nil, err (the lock is lost: stop at once).
function M.lock_renew(name, token)
  local r, err = M.script("lock_renew", RENEW):call({ lock_key(name) }, { token, M.lock_ttl_ms })
  if r == 1 then
    if seen[name] then seen[name].at = chatgw.time() end
    return true
  end
  M.lock_forget(name, token)
  seen[name] = { error = r == 0 and "taken by another node" or tostring(err), at = chatgw.time() }
  return nil, r == 0 and "the lock expired or was taken by another node" or tostring(err)
end

function M.lock_forget(name, token)
  if held_tokens:get(name) == token then held_tokens:delete(name) end
  m_leader:set({ lock = name, node = M.node_id }, 0)
end

-- Gives the lock up (a loop stopped for good, shutdown): another node takes it at once.
function M.lock_release(name, token)
  M.lock_forget(name, token)
  seen[name] = nil
  return M.script("lock_release", RELEASE):call({ lock_key(name) }, { token })
end

-- ---- fan-out ----

local handlers = {} -- kind -> fn(msg, origin)

function M.on(kind, fn) handlers[kind] = fn end

-- Publishes {kind, msg} to every other node (the caller delivered locally). Never waits: the
-- PUBLISH runs in its own task, so callers may be anywhere.
local published, received = 0, 0
function M.publish(kind, msg)
  if not M.enabled then return false end
  local body = json.encode({ o = M.node_id, k = kind, m = msg })
  published = published + 1
  chatgw.spawn(function()
    local ok, err = R.command("PUBLISH", FANOUT, body)
    if not ok then chatgw.log.debug("cluster: a fan-out message was not published", { error = tostring(err), kind = kind }) end
  end)
  return true
end

local function fanout_loop()
  R.subscribe(FANOUT)
  while true do
    local ch, data = R.next_message()
    if ch == nil then return nil, data end
    local ok, msg = pcall(json.decode, data)
    if ok and type(msg) == "table" and msg.o ~= M.node_id and handlers[msg.k] then
      received = received + 1
      local fine, err = pcall(handlers[msg.k], msg.m, msg.o)
      if not fine then chatgw.log.warn("cluster: a fan-out message failed", { kind = msg.k, error = tostring(err) }) end
    end
  end
end

-- The node's heartbeat: set every ttl/3 with ttl = cluster.lock_ttl_ms, so it is gone within
-- the lock's ttl of the node's death (the inbound ledger's claims look at it).
local function heartbeat_loop()
  local key = M.NODE_PREFIX .. M.node_id
  while true do
    local ttl = M.lock_ttl_ms or 10000
    R.command("SET", key, tostring(chatgw.time()), "PX", tostring(ttl))
    chatgw.sleep(max(50, floor(ttl / 3)))
  end
end

-- ---- health ----

local supervisor -- set by install (the loops' lock states)

function M.health()
  if not M.enabled then return nil end
  local s = R.status()
  local leaders = {}
  for name, i in pairs(seen) do
    leaders[name] = { holder = i.holder, fence = i.fence, me = i.me, error = i.error,
      seen_s_ago = i.at and floor((chatgw.time() - i.at) * 10) / 10 or nil }
  end
  m_up:set(s.up and 1 or 0)
  return {
    status = s.up and "ok" or "degraded",
    node_id = M.node_id,
    redis = { url = s.url, up = s.up, last_error = not s.up and s.cmd and s.cmd.last_error or nil,
      down_ms = s.cmd and s.cmd.down_ms, commands = s.cmd and s.cmd.commands,
      timeouts = s.cmd and s.cmd.timeouts, reconnects = s.cmd and s.cmd.reconnects,
      subscriber_up = s.sub and s.sub.up or nil },
    leaders = next(leaders) and leaders or nil,
    fanout = { published = published, received = received },
    lock_ttl_ms = M.lock_ttl_ms,
  }
end

function M.install(RT)
  RT.register_load_step(function(cfg, opts)
    local ok, err = M.configure(cfg)
    if not ok then return { (cfg._source or "config") .. ": " .. err } end
    return nil
  end)
  RT.register_health("cluster", M.health)
  RT.register_start("cluster", function()
    if not M.enabled then return true end
    m_info:set({ node = M.node_id }, 1)
    supervisor = supervisor or require "chatgw.supervisor"
    supervisor.internal{ name = "cluster.fanout", run = fanout_loop }
    supervisor.internal{ name = "cluster.heartbeat", run = heartbeat_loop }
    return true
  end)
end

return M
