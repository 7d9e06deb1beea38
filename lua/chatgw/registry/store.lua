-- chatgw.registry.store: the gateways table of the store (data_dir/chatgw.db).
--
--   gateways  one row per gateway: its type, name and config (plain JSON), its credentials
--             encrypted (registry/secrets.lua), what may be shown of them (credential_info),
--             and its last status as the test endpoint or the running channel saw it
local dbmod = require "chatgw.db"
local json = require "chatgw.json"

dbmod.register("chatgw.registry", {
  [[
  CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    config TEXT NOT NULL,
    credentials_enc TEXT NOT NULL,
    credential_info TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'connecting',
    last_connected_at REAL, last_error_at REAL, last_error TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
  CREATE INDEX gateways_type ON gateways (type);
  ]],
})

local M = {}

local NULL = json.null
local function nn(v) if v == nil then return NULL end return v end

local function decode(r)
  if not r then return nil end
  r.config = json.decode(r.config) or {}
  r.credential_info = json.decode(r.credential_info) or {}
  return r
end

function M.get(id)
  local rows = assert(chatgw.db.query("SELECT * FROM gateways WHERE id = ?", id))
  return decode(rows[1])
end

-- Rows in id order after `after` (a cursor), at most limit; type filter optional.
function M.list(kind, after, limit)
  local rows = assert(chatgw.db.query([[SELECT * FROM gateways WHERE (? IS NULL OR type = ?)
    AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?]], nn(kind), nn(kind), nn(after), nn(after), limit))
  for _, r in ipairs(rows) do decode(r) end
  return rows
end

function M.all()
  local rows = assert(chatgw.db.query("SELECT * FROM gateways ORDER BY id"))
  for _, r in ipairs(rows) do decode(r) end
  return rows
end

function M.insert(g)
  local t = chatgw.time()
  return chatgw.db.exec([[INSERT INTO gateways (id, name, type, config, credentials_enc, credential_info, status,
      created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'connecting', ?, ?)]],
    g.id, g.name, g.type, json.encode(g.config), g.credentials_enc, json.encode(g.credential_info), t, t)
end

-- A row as another cluster node stored it (registry/cluster.lua): inserted or replaced with its
-- own times; the status starts again at connecting here.
function M.put(g)
  return chatgw.db.exec([[INSERT INTO gateways (id, name, type, config, credentials_enc, credential_info, status,
      created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'connecting', ?, ?)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, config = excluded.config,
      credentials_enc = excluded.credentials_enc, credential_info = excluded.credential_info,
      status = 'connecting', updated_at = excluded.updated_at]],
    g.id, g.name, g.type, json.encode(g.config), g.credentials_enc, json.encode(g.credential_info),
    g.created_at, g.updated_at)
end

function M.update(g)
  return chatgw.db.exec([[UPDATE gateways SET name = ?, config = ?, credentials_enc = ?, credential_info = ?,
      updated_at = ? WHERE id = ?]],
    g.name, json.encode(g.config), g.credentials_enc, json.encode(g.credential_info), chatgw.time(), g.id)
end

-- status: connecting | connected | disconnected | error; err with error.
function M.set_status(id, status, err)
  local t = chatgw.time()
  if status == "connected" then
    return chatgw.db.exec("UPDATE gateways SET status = ?, last_connected_at = ? WHERE id = ?", status, t, id)
  elseif err then
    return chatgw.db.exec("UPDATE gateways SET status = ?, last_error = ?, last_error_at = ? WHERE id = ?",
      status, err, t, id)
  end
  return chatgw.db.exec("UPDATE gateways SET status = ? WHERE id = ?", status, id)
end

function M.delete(id)
  return chatgw.db.exec("DELETE FROM gateways WHERE id = ?", id)
end

return M
