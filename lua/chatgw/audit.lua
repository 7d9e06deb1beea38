-- chatgw.audit: the audit ledger (issue 16). Who changed or used what, when, from where, in the
-- store (table audit_log, lua/chatgw/audit/store.lua); read with GET /v1/audit and
-- GET /v1/audit/export (lua/chatgw/audit/routes.lua, scope admin); pruned after
-- audit.retention_days.
--
--   local audit = require "chatgw.audit"
--   audit.record("gateway.create", { who = req.auth.name, addr = req.remote_addr,
--     what = "gateway g1 created", detail = { id = "g1" } })     --> true | nil, err
--   audit.count("notify.call", { who =, addr =, what =, detail = }) -- one more in this hour's row
--   audit.reload("policy.reload", { source =, hash = })  -- recorded when the hash changed
--
-- Recording never fails its caller: a store error is a WARN and `nil, err`. `detail` is a small
-- table; the caller must never put a secret in it, and as a second guard every key matching
-- token|secret|key|password|credential (any case, at any depth) is dropped. Handlers get
-- chatgw.audit.record, whose kinds are stored as "app.<kind>" (a handler cannot write a runtime
-- kind).
local chatgw = chatgw
local json = require "chatgw.json"
local store = require "chatgw.audit.store"
require "chatgw.audit.config"

local type, pairs, pcall, tostring, floor = type, pairs, pcall, tostring, math.floor
local lower, find, sub = string.lower, string.find, string.sub

local M = {}

local shared = chatgw.shared("chatgw.audit") -- last recorded hashes, the prune pacing (outlive reloads)
local S = { started = false, pending = {}, retention_s = 90 * 86400 }

local KIND = "^[a-z][a-z0-9_.-]*$"
local MAX_TEXT, MAX_DETAIL = 256, 4096
local SECRET_WORDS = { "token", "secret", "key", "password", "credential" }

local function secret_key(k)
  k = lower(tostring(k))
  for _, w in pairs(SECRET_WORDS) do
    if find(k, w, 1, true) then return true end
  end
  return false
end
M.secret_key = secret_key

-- A copy of v without secret-looking keys, strings cut, nesting cut at depth 4.
local function clean(v, depth)
  local t = type(v)
  if t == "string" then return #v > MAX_TEXT and sub(v, 1, MAX_TEXT) or v end
  if t == "number" or t == "boolean" or v == json.null then return v end
  if t ~= "table" or depth > 4 then return nil end
  local out = {}
  for k, x in pairs(v) do
    if (type(k) == "string" and not secret_key(k)) or type(k) == "number" then out[k] = clean(x, depth + 1) end
  end
  return out
end

local function text(v, default)
  if v == nil then return default end
  v = tostring(v)
  return #v > MAX_TEXT and sub(v, 1, MAX_TEXT) or v
end

local function encode_detail(detail)
  if detail == nil then return nil end
  local d = clean(detail, 1)
  if d == nil or next(d) == nil then return nil end
  local s = json.encode(d)
  if #s > MAX_DETAIL then s = json.encode({ truncated = true, bytes = #s }) end
  return s
end

-- The same text for the same detail in every process (pairs() order is not): sorted keys.
local function canonical(detail)
  if type(detail) ~= "table" then return "" end
  local keys, parts = {}, {}
  for k in pairs(detail) do if type(k) == "string" and not secret_key(k) then keys[#keys + 1] = k end end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local v = detail[k]
    parts[i] = k .. "=" .. (type(v) == "table" and json.encode(clean(v, 2)) or tostring(v))
  end
  return table.concat(parts, "\n")
end

local function check(fname, kind, fields)
  if type(kind) ~= "string" or not kind:match(KIND) or #kind > 64 then
    error(fname .. ": kind must be a name like \"gateway.create\" ([a-z][a-z0-9_.-]*, at most 64), got " .. tostring(kind), 3)
  end
  if fields ~= nil and type(fields) ~= "table" then
    error(fname .. ": fields must be a table, got " .. type(fields), 3)
  end
  fields = fields or {}
  if fields.detail ~= nil and type(fields.detail) ~= "table" then
    error(fname .. ": fields.detail must be a table, got " .. type(fields.detail), 3)
  end
  return fields
end

local function warn(kind, err)
  chatgw.log.warn("audit: could not record an entry", { kind = kind, error = tostring(err) })
end

-- One event. fields: who (default "runtime"), addr, what, detail.
local function record(kind, fields)
  local ok, n, err = pcall(store.insert, chatgw.time(), kind, text(fields.who, "runtime"), fields.addr and text(fields.addr),
    text(fields.what), encode_detail(fields.detail))
  if ok and n then return true end
  err = ok and err or n
  warn(kind, err)
  return nil, tostring(err)
end

function M.record(kind, fields)
  return record(kind, check("audit.record", kind, fields))
end

-- One more call in the hour's counter row of (kind, who, addr, what, detail). The calls of 100 ms
-- are added up in memory and written by one task (one upsert per row): the request that is
-- counted never waits for it, and a reload does not cancel it (a kill -9 loses those 100 ms).
local pending, flushing = {}, false

local FLUSH_MS = 100 -- counts of up to this long go to the store in one write per row

local function write_pending()
  local batch = pending
  pending, flushing = {}, false
  for _, c in pairs(batch) do
    local ok, n, err = pcall(store.count, c.at, c.last_at, c.k, c.bucket, c.kind, c.who, c.addr, c.what, c.detail)
    if not (ok and n) then warn(c.kind, ok and err or n) end
  end
end

local function flush()
  chatgw.sleep(FLUSH_MS)
  write_pending()
end

-- key (optional): a string the caller makes of what tells its rows apart (the calls hook: kind,
-- token, address, route, status); a call whose row is already pending then costs a lookup.
function M.count(kind, fields, key)
  local now = chatgw.time()
  local hour = floor(now / 3600) * 3600
  local pk = key and (key .. "\0" .. hour)
  local c = pk and pending[pk]
  if not c then
    fields = check("audit.count", kind, fields)
    local who, addr, what = text(fields.who, "runtime"), fields.addr and text(fields.addr), text(fields.what)
    local detail = encode_detail(fields.detail)
    local bucket = json.encode({ kind, who, addr or "", what or "", canonical(fields.detail), hour })
    pk = pk or bucket
    c = pending[pk]
    if not c then
      pending[pk] = { at = now, last_at = now, k = 1, bucket = bucket, kind = kind, who = who, addr = addr,
        what = what, detail = detail }
    end
  end
  if c then c.k, c.last_at = c.k + 1, now end
  if not flushing then
    flushing = true
    chatgw._spawn_task(flush)
  end
  return true
end

-- The calls hook's count (lua/chatgw/audit/calls.lua): key as for count; the fields are made only
-- when the row is not pending yet, so a call whose row is pending costs two lookups.
local pk_of, pk_hour, npk = {}, nil, 0 -- key -> key .. "\0" .. hour, for the current hour
function M.count_call(kind, key, who, addr, label, method, status)
  local now = chatgw.time()
  local hour = floor(now / 3600) * 3600
  if hour ~= pk_hour or npk >= 4096 then pk_of, pk_hour, npk = {}, hour, 0 end
  local pk = pk_of[key]
  if not pk then
    pk = key .. "\0" .. hour
    pk_of[key] = pk
    npk = npk + 1
  end
  local c = pending[pk]
  if c then
    c.k, c.last_at = c.k + 1, now
    if not flushing then
      flushing = true
      chatgw._spawn_task(flush)
    end
    return true
  end
  local detail = status ~= nil and { method = method, route = label, status = status } or { method = method, route = label }
  return M.count(kind, { who = who, addr = addr, what = label, detail = detail }, key)
end

-- A configuration file read (re)loaded: recorded when its hash differs from the one recorded
-- last (in this process: the first load after boot always is). info: { source, hash, reason? }.
-- Before this state's start hook has run (load steps), it waits for it.
local function reload_now(kind, info)
  local key = "hash:" .. kind
  local prev = shared:get(key)
  local hash = info.hash or "none"
  if prev == hash then return true end
  shared:set(key, hash)
  return record(kind, { who = "runtime", what = ("%s %s -> %s"):format(kind, prev or "(boot)", hash),
    detail = { source = info.source, hash = hash, previous_hash = prev, reason = info.reason or (prev and "reload" or "boot") } })
end

function M.reload(kind, info)
  check("audit.reload", kind, info)
  if not S.started then
    S.pending[#S.pending + 1] = { kind, info }
    return true
  end
  return reload_now(kind, info)
end

-- ---- retention ----

local PRUNE_CHUNK = 1000

-- Deletes what is older than the retention, a chunk at a time with a pause between (the writer
-- is never held for long). Returns the number deleted.
function M.prune(now)
  local cutoff = (now or chatgw.time()) - S.retention_s
  local total = 0
  while true do
    local ok, n, err = pcall(store.prune_chunk, cutoff, PRUNE_CHUNK)
    if not ok or not n then
      warn("prune", ok and err or n)
      return total
    end
    total = total + n
    if n < PRUNE_CHUNK then break end
    local _, serr = chatgw.sleep(10)
    if serr then break end
  end
  if total > 0 then chatgw.log.info("audit: pruned old entries", { deleted = total, retention_days = S.retention_s / 86400 }) end
  return total
end

-- At most once per interval across states and reloads (the shared key's ttl).
local function prune_interval_ms()
  local ms = tonumber(os.getenv("CHATGW_TEST_AUDIT_PRUNE_MS") or "")
  if ms and ms >= 10 and os.getenv("CHATGW_TEST_CHANNEL") == "1" then return ms end -- tests only
  return 3600000
end

local function prune_tick(interval)
  if shared:add("pruned", true, interval) then M.prune() end
end

-- ---- the handlers' API ----

local api = {}
function api.record(kind, fields)
  fields = check("chatgw.audit.record", kind, fields)
  return record("app." .. kind, fields)
end
chatgw.audit = api

-- ---- install ----

function M.install(R)
  R.register_load_step(function(cfg)
    S.retention_s = cfg.audit.retention_days * 86400
    return nil
  end)
  -- last of the start hooks: the reloads the load steps saw are recorded once everything started
  R.register_start("audit", function()
    S.started = true
    local pending = S.pending
    S.pending = {}
    for _, p in ipairs(pending) do reload_now(p[1], p[2]) end
    local interval = prune_interval_ms()
    chatgw.spawn(prune_tick, interval)
    chatgw.every(math.min(60000, interval), function() prune_tick(interval) end)
    return true
  end)
  -- a stop writes what is pending at once (the flush task may not get its turn)
  local shutdown = R.shutdown
  R.shutdown = function(...)
    shutdown(...)
    if next(pending) ~= nil then write_pending() end
  end
  R.register_call_hook(require("chatgw.audit.calls").hook(M))
  require("chatgw.audit.routes").install(R)
end

return M
