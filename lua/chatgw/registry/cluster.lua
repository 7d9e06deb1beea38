-- chatgw.registry.cluster: the gateway registry shared by every cluster node (docs/cluster.md).
--
-- Each node keeps its own rows in SQLite (and its own status of each gateway). Redis holds the
-- shared copy, one hash chatgw:registry: id -> the row as stored (credentials still encrypted,
-- so every node needs the same CHAT_GATEWAY_ENCRYPTION_KEY) or a tombstone for a deleted one.
-- A change made through the API on one node is written there and announced on the fan-out
-- channel; a node applies an entry newer than its own row (updated_at) at once, and every
-- sync_interval_ms it compares the whole hash (a node that was down or missed an announcement
-- catches up; a row created on a node while Redis was down is pushed then).
local chatgw = chatgw
local json = require "chatgw.json"
local cluster = require "chatgw.cluster"
local store = require "chatgw.registry.store"

local type, tostring, tonumber, pairs, ipairs, pcall = type, tostring, tonumber, pairs, ipairs, pcall

local M = { sync_interval_ms = 30000 }

local HASH = "chatgw:registry"
local FIELDS = { "id", "name", "type", "config", "credentials_enc", "credential_info", "created_at", "updated_at" }

local function entry_of(g)
  local e = {}
  for _, k in ipairs(FIELDS) do e[k] = g[k] end
  return e
end

local function decode(s)
  local ok, e = pcall(json.decode, s)
  if ok and type(e) == "table" and type(e.id) == "string" then return e end
  return nil
end

local function put(id, e)
  if not cluster.enabled then return true end
  local ok, err = cluster.command("HSET", HASH, id, json.encode(e))
  if ok == nil then
    chatgw.log.warn("gateway registry: not shared with the other nodes yet (Redis cannot answer); the next sync pushes it",
      { id = id, error = tostring(err) })
    return nil, err
  end
  cluster.publish("registry", { id = id })
  return true
end

-- After the API stored g (a row of registry/store.lua).
function M.push(g) return put(g.id, entry_of(g)) end

-- After the API deleted id: a tombstone, so a node that was down does not push its old row back.
function M.push_delete(id) return put(id, { id = id, deleted = true, updated_at = chatgw.time() }) end

-- The shared entry of id | false (none) | nil, err.
function M.get(id)
  local s, err = cluster.command("HGET", HASH, id)
  if s == nil then return nil, err end
  return type(s) == "string" and decode(s) or false
end

-- Compares the whole hash with this node's rows: apply(id, entry) for each newer entry, and the
-- rows this node has newer (or alone) pushed. true | nil, err.
function M.sync(apply)
  local r, err = cluster.command("HGETALL", HASH)
  if type(r) ~= "table" then return nil, err end
  local remote = {}
  for i = 1, #r - 1, 2 do remote[r[i]] = decode(r[i + 1]) end
  for id, e in pairs(remote) do apply(id, e) end
  for _, g in ipairs(store.all()) do
    local e = remote[g.id]
    if not e or (tonumber(e.updated_at) or 0) < (tonumber(g.updated_at) or 0) then M.push(g) end
  end
  return true
end

return M
