-- chatgw.db: the embedded store (SQLite in <data_dir>/chatgw.db), from Lua. The C side
-- (runtime/core/store.c, runtime/vm/lib_store.c) runs statements on a writer thread (writes of
-- one loop turn commit together) and a reader thread; every call here waits without blocking.
--
--   chatgw.db.exec(sql, ...)     -> changes, last_id | nil, "db: ..." | nil, "busy: ..."
--   chatgw.db.query(sql, ...)    -> { {col = value, ...}, ... } | nil, err
--   chatgw.db.write_query(sql, ...) -> rows of a write's RETURNING clause (on the writer)
--   chatgw.db.tx(function(tx) ... end) -> what the function returns | nil, err
--       tx:exec / tx:query as above; nothing else may wait inside (it raises), an error raised
--       inside rolls the transaction back and is raised again
--   chatgw.db.blob(bytes)        a parameter stored as a BLOB (strings are TEXT)
--
-- Parameters: positional after sql (`?`), or one table of named ones (`:name`). Migrations:
-- M.register(owner, { sql, sql, ... }) for the runtime's own tables, and the handler key
-- `migrations`; both run in order, each once, in a transaction with its record in
-- _migrations(owner, version).
local chatgw = chatgw
local C = chatgw._db
local loader = require "chatgw.loader"

local type, error, pcall, tostring, ipairs, pairs = type, error, pcall, tostring, ipairs, pairs

local M = {}
local db = {}

function db.exec(sql, ...) return C.exec(nil, sql, ...) end
function db.query(sql, ...) return C.query(nil, sql, ...) end
function db.write_query(sql, ...) return C.write_query(nil, sql, ...) end
db.blob = C.blob
function db.available() return C.available() end

local Tx = {}
Tx.__index = Tx
function Tx:exec(sql, ...)
  if not self.open then error("tx:exec: the transaction has ended", 2) end
  return C.exec(self.id, sql, ...)
end
function Tx:query(sql, ...)
  if not self.open then error("tx:query: the transaction has ended", 2) end
  return C.query(self.id, sql, ...)
end
function Tx:script(sql)
  if not self.open then error("tx:script: the transaction has ended", 2) end
  return C.script(self.id, sql)
end

local in_tx = setmetatable({}, { __mode = "k" }) -- coroutine -> true

local function finish(tx, ok, ...)
  tx.open = false
  C.restrict(false)
  in_tx[coroutine.running()] = nil
  if not ok then
    C.tx_end(tx.id, false) -- does not wait
    error((...), 0)
  end
  local done, err = C.tx_end(tx.id, true)
  if not done then
    C.tx_end(tx.id, false) -- a commit that could not wait (cancelled): roll back
    return nil, err
  end
  return ...
end

function db.tx(fn)
  if type(fn) ~= "function" then
    error("chatgw.db.tx: fn must be a function, got " .. type(fn), 2)
  end
  local co = coroutine.running()
  if in_tx[co] then error("chatgw.db.tx: already inside a transaction (use the outer tx)", 2) end
  local id, err = C.tx_begin()
  if not id then return nil, err end
  local tx = setmetatable({ id = id, open = true }, Tx)
  in_tx[co] = true
  C.restrict(true)
  return finish(tx, pcall(fn, tx))
end

chatgw.db = db

-- ---- migrations ----

local runtime_owners, runtime_sets = {}, {}

-- owner: a name ("chatgw.outbox"); list: SQL scripts, applied in order; never edit one that has
-- shipped, append a new one.
function M.register(owner, list)
  assert(type(owner) == "string" and type(list) == "table", "db.register(owner, list)")
  if not runtime_sets[owner] then runtime_owners[#runtime_owners + 1] = owner end
  runtime_sets[owner] = list
end

loader.register_key("migrations", function(v)
  if type(v) ~= "table" then return "migrations must be a list of SQL strings, got " .. type(v) end
  local n = 0
  for k in pairs(v) do
    n = n + 1
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 then return "migrations must be a list (1, 2, ...)" end
  end
  for i = 1, n do
    if type(v[i]) ~= "string" or not v[i]:find("%S") then
      return ("migrations[%d] must be a non-empty SQL string"):format(i)
    end
  end
end)

local BOOTSTRAP = [[CREATE TABLE IF NOT EXISTS _migrations (
  owner TEXT NOT NULL, version INTEGER NOT NULL, applied_at REAL NOT NULL,
  PRIMARY KEY (owner, version))]]

-- Applies what is missing of list for owner. Returns true | nil, "owner: migration N: err".
local function apply(owner, list)
  local rows, err = db.query("SELECT max(version) AS v FROM _migrations WHERE owner = ?", owner)
  if not rows then return nil, owner .. ": " .. err end
  local have = rows[1] and rows[1].v or 0
  for version = have + 1, #list do
    local ok, e, cerr = pcall(db.tx, function(tx)
      local done, serr = tx:script(list[version])
      if not done then error(serr, 0) end
      local rec, rerr = tx:exec("INSERT INTO _migrations (owner, version, applied_at) VALUES (?, ?, ?)",
        owner, version, chatgw.time())
      if not rec then error(rerr, 0) end
      return true
    end)
    if ok and not e then ok, e = false, cerr or "commit failed" end
    if not ok then return nil, ("%s: migration %d: %s"):format(owner, version, tostring(e)) end
    chatgw.log.info("db migration applied", { owner = owner, version = version })
  end
  return true
end

-- The runtime's tables, then each handler's (in file order). Called once the store is open:
-- at boot, and after each reload has fully loaded.
function M.migrate(handlers)
  local ok, err = db.exec(BOOTSTRAP)
  if not ok then return nil, err end
  for _, owner in ipairs(runtime_owners) do
    ok, err = apply(owner, runtime_sets[owner])
    if not ok then return nil, err end
  end
  for _, h in ipairs(handlers or {}) do
    local list = h.module.migrations
    if list then
      ok, err = apply("handler:" .. h.name, list)
      if not ok then return nil, h.file .. ": " .. err end
    end
  end
  return true
end

return M
