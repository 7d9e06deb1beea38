-- chatgw.ws_presence: the answer to presence.list, across every node in cluster mode
-- (docs/cluster.md).
--
-- One node: the C snapshot of this process's connections. Cluster mode: each node writes its
-- snapshot to chatgw:presence:<node> every interval_ms (one EVALSHA: SET PX + ZADD into the
-- node index, scored by expiry), and presence.list reads the live nodes' snapshots in one
-- EVALSHA and merges them by device id, every connection tagged with its node. A node that
-- died drops out after 3 intervals; a live node's part may be one interval old (its own part is
-- always fresh). When Redis cannot answer, presence.list answers this node's part.
local chatgw = chatgw
local json = require "chatgw.json"
local cluster = require "chatgw.cluster"

local C = chatgw._ws
local type, pairs, ipairs, pcall, tostring = type, pairs, ipairs, pcall, tostring

local M = { interval_ms = 2000 }

local PREFIX = "chatgw:presence:"
local NODES = PREFIX .. "nodes"

-- Redis time, so node clocks do not matter. KEYS: the node's key, the index. ARGV: snapshot,
-- ttl_ms, node.
local WRITE = [[
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
return 1
]]
-- KEYS: the index. ARGV: the key prefix. Returns node, snapshot, node, snapshot, ...
local READ = [[
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = n
  out[#out + 1] = redis.call('GET', ARGV[1] .. n) or ''
end
return out
]]

local function tag(snapshot, node)
  for _, dev in pairs(snapshot) do
    if type(dev) == "table" and type(dev.connections) == "table" then
      for _, c in ipairs(dev.connections) do
        if type(c) == "table" then c.node = node end
      end
    end
  end
  return snapshot
end

local function merge(into, snapshot)
  for id, dev in pairs(snapshot) do
    if type(dev) == "table" then
      local have = into[id]
      if not have then
        into[id] = dev
      else
        for _, c in ipairs(type(dev.connections) == "table" and dev.connections or {}) do
          have.connections[#have.connections + 1] = c
        end
        if type(dev.since) == "number" and (type(have.since) ~= "number" or dev.since < have.since) then
          have.since = dev.since
        end
      end
    end
  end
end

-- The snapshot presence.list answers (docs/websocket.md's shape; `node` on each connection in
-- cluster mode).
function M.list()
  local mine = C.presence()
  if not cluster.enabled then return mine end
  tag(mine, cluster.node_id)
  local r = cluster.script("presence_read", READ):call({ NODES }, { PREFIX })
  if type(r) ~= "table" then return mine end
  local out = {}
  merge(out, mine)
  for i = 1, #r - 1, 2 do
    local node, body = r[i], r[i + 1]
    if node ~= cluster.node_id and type(body) == "string" and body ~= "" then
      local ok, snap = pcall(json.decode, body)
      if ok and type(snap) == "table" then merge(out, tag(snap, node)) end
    end
  end
  return out
end

-- The writer loop (a supervised internal loop of the live state, cluster mode only).
function M.writer()
  local ttl = 3 * M.interval_ms
  local key = PREFIX .. cluster.node_id
  while true do
    local ok, err = cluster.script("presence_write", WRITE):call({ key, NODES },
      { json.encode(C.presence()), ttl, cluster.node_id })
    if not ok then chatgw.log.debug("cluster: presence not written", { error = tostring(err) }) end
    chatgw.sleep(M.interval_ms)
  end
end

return M
