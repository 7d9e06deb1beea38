-- chatgw.chat.ledger_redis: the cluster's inbound ledger in Redis (docs/cluster.md, cluster
-- mode only), beside each node's SQLite ledger (chat/ledger.lua).
--
-- Keys, per channel account:
--   chatgw:seen:<channel>:<account>:<platform_id> = <node_id>  the processed-id set: the node
--       that holds the update, with the ledger's retention as its time to live, so a webhook
--       redelivered to another node is a duplicate there too
--   chatgw:in:<channel>:<account>  a stream of the updates recorded, consumer group "chatgw",
--       one consumer per node: an entry is pending from its record until its dispatch
--   chatgw:node:<node_id>  the node's heartbeat (chatgw.cluster), which the claims look at
-- Two EVALSHA per update:
--   claim    (before the platform is acknowledged) sets the seen key unless it exists and, when
--            it set it, adds the update to the stream and reads it into this node's pending list
--            (XADD then XREADGROUP ">" in one script: every writer reads what it adds, so ">"
--            returns that entry); returns the holder either way (a node that restarted on its
--            data dir tells its own claims from another node's: node_id must then stay the same)
--   dispatch (just before the handlers start) checks the node still holds the update and XACKs
--            it: the handlers run on one node of the cluster (again on that node after its
--            crash, chat/ledger.lua)
-- Entries a dead node left pending (recorded, never dispatched) are claimed by a live node
-- (M.claim_stale): pending longer than min_idle_ms, of a consumer whose heartbeat is gone; the
-- claim moves the seen key to the claimer in the same script, so the dead node, restarted,
-- finds its row taken and does not dispatch it. Why not XAUTOCLAIM: it takes every idle entry,
-- and an entry stays pending on a live node whose dispatch could not reach Redis (it ran the
-- handler locally); the heartbeat tells a dead node from such a live one.
-- A leader's claims (the Telegram poller's batch) are fenced: M.fence(channel, account, lock,
-- token) makes each claim of that account check, in the same script, that the leader lock
-- still holds this node's token; a stale leader's claim is refused (nil, "fenced: ...").
-- While Redis cannot answer, dedupe falls back to the node's local ledger (at least once across
-- nodes): a WARN once per outage, an INFO when Redis answers again.
local chatgw = chatgw
local cluster = require "chatgw.cluster"

local tostring, type, floor = tostring, type, math.floor

local M = {}

M.GROUP = "chatgw"
M.MAX_LEN = 100000 -- entries kept per stream (approximately: XADD MAXLEN ~)

-- KEYS: seen, lock, stream. ARGV: node, ttl_ms, fence token or "", platform id, message JSON,
-- group, max length. -> 0 (fenced) | { holder, stream id or "" }
local CLAIM = [[
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local v = redis.call('GET', KEYS[1])
if v then return { v, '' } end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.pcall('XGROUP', 'CREATE', KEYS[3], ARGV[6], '$', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'p', ARGV[4], 'm', ARGV[5], 'n', ARGV[1])
redis.call('XREADGROUP', 'GROUP', ARGV[6], ARGV[1], 'COUNT', 100, 'STREAMS', KEYS[3], '>')
return { ARGV[1], id }
]]

-- KEYS: seen, stream. ARGV: node, stream id or "", group. -> 1 (run it) | { 0, holder }
-- (an entry acknowledged before, by a dispatch cut off by a crash, is run again: the handler
-- runs again after a crash, chat/ledger.lua)
local DISPATCH = [[
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] then return { 0, v or 'expired' } end
if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
return 1
]]

-- KEYS: stream. ARGV: node, min idle ms, count, group, seen key prefix ("chatgw:seen:<ch>:<acct>:"),
-- heartbeat key prefix ("chatgw:node:"). -> a flat list: stream id, platform id, message JSON,
-- whose (the node it was taken from, or "" for this node's own stale entries), ...
-- Own entries are only moved (their idle time restarts); the caller looks at its local ledger.
local CLAIM_STALE = [=[
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then return out end
local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[4], 'IDLE', ARGV[2], '-', '+', ARGV[3])
if not ok then return out end
for _, e in ipairs(p) do
  local id, owner = e[1], e[2]
  local mine = owner == ARGV[1]
  if mine or redis.call('EXISTS', ARGV[6] .. owner) == 0 then
    local c = redis.call('XCLAIM', KEYS[1], ARGV[4], ARGV[1], ARGV[2], id)
    local entry = c[1]
    if not entry then
      redis.call('XACK', KEYS[1], ARGV[4], id) -- trimmed away: nothing left to hand over
    else
      local f = {}
      for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
      local seen = ARGV[5] .. (f.p or '')
      local holder = redis.call('GET', seen)
      if mine then
        out[#out + 1] = id; out[#out + 1] = f.p or ''; out[#out + 1] = f.m or ''; out[#out + 1] = ''
      elseif holder and holder ~= owner then
        redis.call('XACK', KEYS[1], ARGV[4], id) -- another node has it already
      else
        local ttl = redis.call('PTTL', seen)
        redis.call('SET', seen, ARGV[1], 'PX', ttl > 0 and ttl or 86400000)
        out[#out + 1] = id; out[#out + 1] = f.p or ''; out[#out + 1] = f.m or ''; out[#out + 1] = owner
      end
    end
  end
end
return out
]=]

local m_claims = chatgw.metrics.counter{ name = "chatgw_cluster_ledger_claims_total",
  help = "Inbound platform ids claimed in Redis (cluster mode), by result: claimed, duplicate, fenced, unavailable",
  labels = { "result" } }
local m_taken = chatgw.metrics.counter{ name = "chatgw_cluster_ledger_taken_over_total",
  help = "Inbound updates a dead node had recorded and never dispatched, claimed by this node (cluster mode)",
  labels = { "channel", "account" } }

local fences = {} -- "<channel>\0<account>" -> { key = the lock's Redis key, token = "node|fence" }

-- The leader loop of an account (its lock name and token; nil token: no fence any more).
function M.fence(channel, account, lock, token)
  fences[channel .. "\0" .. account] = token and { key = "chatgw:lock:" .. lock, token = token } or nil
end

local outage = {} -- cluster.outage's memory: between the first failed claim and the next good one

local function seen_prefix(channel, account) return "chatgw:seen:" .. channel .. ":" .. account .. ":" end

function M.key(channel, account, platform_id)
  return seen_prefix(channel, account) .. tostring(platform_id)
end

function M.stream(channel, account) return "chatgw:in:" .. channel .. ":" .. account end

local function unavailable(err)
  cluster.outage(outage, "cluster: Redis cannot dedupe inbound updates: the local ledger alone decides "
    .. "(a webhook redelivered to another node may be handled twice) until it answers again", nil, err)
  return nil, tostring(err)
end

-- true, stream id ("" when it was claimed before) (this node holds the id: dispatch) |
-- false, holder (another node has it: a duplicate) |
-- nil, "fenced: ..." (this node no longer leads the account: refuse the update) |
-- nil, err (Redis cannot answer: dedupe is local only).
-- message: the update's fields as JSON (what another node needs to handle it).
-- unfenced: no fence check (a replay after a restart: not a leader's write).
function M.claim(channel, account, platform_id, retention_s, message, unfenced)
  local ttl_ms = tostring(floor(retention_s * 1000))
  local f = not unfenced and fences[channel .. "\0" .. account] or nil
  local r, err = cluster.script("ledger_claim", CLAIM):call(
    { M.key(channel, account, platform_id), f and f.key or "chatgw:lock:-", M.stream(channel, account) },
    { cluster.node_id, ttl_ms, f and f.token or "", tostring(platform_id), message or "{}", M.GROUP,
      tostring(M.MAX_LEN) })
  if r == 0 then
    m_claims:inc({ result = "fenced" })
    return nil, "fenced: the leader lock no longer holds this node's token " .. f.token
  end
  if type(r) ~= "table" or type(r[1]) ~= "string" then
    m_claims:inc({ result = "unavailable" })
    return unavailable(err or "reply: " .. tostring(r))
  end
  cluster.recovered(outage, "cluster: Redis dedupes inbound updates again")
  if r[1] == cluster.node_id then
    m_claims:inc({ result = "claimed" })
    return true, r[2] or ""
  end
  m_claims:inc({ result = "duplicate" })
  return false, r[1]
end

-- Just before the handlers run: true (run them) | false, holder (another node holds the
-- update) | nil, err (Redis cannot answer: run them, at least once).
function M.dispatch(channel, account, platform_id, stream_id)
  local r, err = cluster.script("ledger_dispatch", DISPATCH):call(
    { M.key(channel, account, platform_id), M.stream(channel, account) },
    { cluster.node_id, stream_id or "", M.GROUP })
  if r == 1 then return true end
  if type(r) == "table" then return false, tostring(r[2]) end
  return unavailable(err or "reply: " .. tostring(r))
end

-- An own pending entry whose row is settled locally (dispatched or a duplicate): off the list.
function M.ack(channel, account, stream_id)
  return cluster.command("XACK", M.stream(channel, account), M.GROUP, stream_id)
end

-- Entries of the account pending longer than min_idle_ms on dead nodes (taken over: their
-- seen keys now name this node) or on this one: { { stream_id, platform_id, message (JSON),
-- from = node or nil for this node's own }, ... } | nil, err.
function M.claim_stale(channel, account, min_idle_ms, count)
  local r, err = cluster.script("ledger_claim_stale", CLAIM_STALE):call({ M.stream(channel, account) },
    { cluster.node_id, tostring(floor(min_idle_ms)), tostring(count or 100), M.GROUP,
      seen_prefix(channel, account), cluster.NODE_PREFIX })
  if type(r) ~= "table" then return nil, tostring(err or r) end
  local out = {}
  for i = 1, #r - 3, 4 do
    local from = r[i + 3] ~= "" and r[i + 3] or nil
    if from then m_taken:inc({ channel = channel, account = account }) end
    out[#out + 1] = { stream_id = r[i], platform_id = r[i + 1], message = r[i + 2], from = from }
  end
  return out
end

return M
