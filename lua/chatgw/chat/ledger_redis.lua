-- chatgw.chat.ledger_redis: the cluster's processed-id set (docs/cluster.md, cluster mode only).
--
-- An inbound update's platform id is claimed in Redis by the first node that records it:
-- chatgw:seen:<channel>:<account>:<platform_id> = <node_id>, with the ledger's retention as its
-- time to live, so a webhook redelivered to another node is a duplicate there too. One EVALSHA
-- per update: set the key unless it exists, and return its holder either way (the holder lets a
-- node that restarted on its data dir tell its own claims from another node's; node_id must
-- then stay the same across restarts, as docs/cluster.md asks).
-- A leader's claims (the Telegram poller's batch) are fenced: M.fence(channel, account, lock,
-- token) makes each claim of that account check, in the same script, that the leader lock
-- still holds this node's token; a stale leader's claim is refused (nil, "fenced: ...").
-- While Redis cannot answer, dedupe falls back to the node's local ledger (at least once across
-- nodes): a WARN once per outage, an INFO when Redis answers again.
local chatgw = chatgw
local cluster = require "chatgw.cluster"

local tostring, floor = tostring, math.floor

local M = {}

local CLAIM = [[
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
]]

local m_claims = chatgw.metrics.counter{ name = "chatgw_cluster_ledger_claims_total",
  help = "Inbound platform ids claimed in Redis (cluster mode), by result: claimed, duplicate, fenced, unavailable",
  labels = { "result" } }

local fences = {} -- "<channel>\0<account>" -> { key = the lock's Redis key, token = "node|fence" }

-- The leader loop of an account (its lock name and token; nil token: no fence any more).
function M.fence(channel, account, lock, token)
  fences[channel .. "\0" .. account] = token and { key = "chatgw:lock:" .. lock, token = token } or nil
end

local outage = {} -- cluster.outage's memory: between the first failed claim and the next good one

function M.key(channel, account, platform_id)
  return "chatgw:seen:" .. channel .. ":" .. account .. ":" .. tostring(platform_id)
end

-- true (this node holds the id: dispatch) | false, holder (another node has it: a duplicate) |
-- nil, "fenced: ..." (this node no longer leads the account: refuse the update) |
-- nil, err (Redis cannot answer: dedupe is local only).
-- unfenced: no fence check (a replay after a restart: not a leader's write).
function M.claim(channel, account, platform_id, retention_s, unfenced)
  local ttl_ms = tostring(floor(retention_s * 1000))
  local f = not unfenced and fences[channel .. "\0" .. account] or nil
  local holder, err = cluster.script("ledger_claim", CLAIM):call(
    { M.key(channel, account, platform_id), f and f.key or "chatgw:lock:-" },
    { cluster.node_id, ttl_ms, f and f.token or "" })
  if holder == 0 then
    m_claims:inc({ result = "fenced" })
    return nil, "fenced: the leader lock no longer holds this node's token " .. f.token
  end
  if type(holder) ~= "string" then
    m_claims:inc({ result = "unavailable" })
    cluster.outage(outage, "cluster: Redis cannot dedupe inbound updates: the local ledger alone decides "
      .. "(a webhook redelivered to another node may be handled twice) until it answers again", nil, err)
    return nil, tostring(err)
  end
  cluster.recovered(outage, "cluster: Redis dedupes inbound updates again")
  if holder == cluster.node_id then
    m_claims:inc({ result = "claimed" })
    return true
  end
  m_claims:inc({ result = "duplicate" })
  return false, holder
end

return M
