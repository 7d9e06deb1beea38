-- chatgw.audit.routes: reading the ledger (scope admin).
--
--   GET /v1/audit?since=&kind=&limit=&cursor=
--       newest first: {"ok":true,"entries":[...],"next":"<cursor>"|null}
--   GET /v1/audit/export?since=&kind=
--       oldest first, one JSON entry a line (application/x-ndjson), at most EXPORT_MAX lines
--
-- since: epoch seconds or ISO-8601; kind: exact, or a prefix ending in "*" ("notify.*");
-- limit: 1..1000 (default 100); cursor: the `next` of the page before. A bad one:
-- 400 {"ok":false,"error":"invalid_since"} (invalid_kind, invalid_limit, invalid_cursor).
local json = require "chatgw.json"
local iso = require "chatgw.audit.iso"
local store = require "chatgw.audit.store"

local type, tonumber, concat = type, tonumber, table.concat

local M = {}

M.EXPORT_MAX = 100000
local EXPORT_PAGE = 2000

local function bad(code) return 400, { ok = false, error = code } end

local function one(v) -- a repeated parameter: the last one
  if type(v) == "table" then return v[#v] end
  return v
end

-- The filter of a request's query, or nil and the error code.
local function filter(q)
  local f = {}
  local since = one(q.since)
  if since ~= nil and since ~= "" then
    f.since = iso.since(since)
    if not f.since then return nil, "invalid_since" end
  end
  local kind = one(q.kind)
  if kind ~= nil and kind ~= "" then
    local prefix = kind:match("^([a-z0-9_.-]*)%*$")
    if prefix then
      f.prefix = prefix ~= "" and prefix or nil
    elseif kind:match("^[a-z][a-z0-9_.-]*$") and #kind <= 64 then
      f.kind = kind
    else
      return nil, "invalid_kind"
    end
  end
  return f
end

local function entry(r)
  local e = { id = r.id, at = r.at, time = iso.format(r.at), kind = r.kind, who = r.who, addr = r.addr or json.null,
    what = r.what or json.null, detail = r.detail and json.decode(r.detail) or json.null }
  if r.n then
    e.count, e.last_at, e.last_time = r.n, r.last_at, iso.format(r.last_at or r.at)
  end
  return e
end

local function list_route(req)
  local q = req.query
  local f, err = filter(q)
  if not f then return bad(err) end
  local limit = one(q.limit)
  if limit ~= nil and limit ~= "" then
    limit = limit:match("^%d+$") and tonumber(limit)
    if not limit or limit < 1 or limit > 1000 then return bad("invalid_limit") end
  else
    limit = 100
  end
  local cursor = one(q.cursor)
  if cursor ~= nil and cursor ~= "" then
    f.before = cursor:match("^%d+$") and #cursor <= 15 and tonumber(cursor)
    if not f.before or f.before < 1 then return bad("invalid_cursor") end
  end
  f.limit, f.order = limit + 1, "desc"
  local rows, qerr = store.select(f)
  if not rows then
    chatgw.log.error("audit: query failed", { error = tostring(qerr) })
    return 503, { ok = false, error = "store_unavailable" }
  end
  local out = {}
  for i = 1, math.min(#rows, limit) do out[i] = entry(rows[i]) end
  local nxt = #rows > limit and tostring(rows[limit].id) or json.null
  return { ok = true, entries = #out > 0 and out or json.empty_array, next = nxt }
end

local function export_route(req)
  local f, err = filter(req.query)
  if not f then return bad(err) end
  f.order = "asc"
  local lines, after, truncated = {}, nil, false
  while #lines < M.EXPORT_MAX do
    f.after, f.limit = after, math.min(EXPORT_PAGE, M.EXPORT_MAX - #lines + 1)
    local rows, qerr = store.select(f)
    if not rows then
      chatgw.log.error("audit: export query failed", { error = tostring(qerr) })
      return 503, { ok = false, error = "store_unavailable" }
    end
    for _, r in ipairs(rows) do
      if #lines == M.EXPORT_MAX then truncated = r break end
      lines[#lines + 1] = json.encode(entry(r))
      after = r.id
    end
    if truncated or #rows < f.limit then break end
  end
  local headers = { ["Content-Type"] = "application/x-ndjson" }
  if truncated then
    headers["X-Audit-Truncated"] = "1"
    headers["X-Audit-Next-Since"] = ("%.3f"):format(math.floor(truncated.at * 1000) / 1000) -- never past it
  end
  return 200, #lines > 0 and (concat(lines, "\n") .. "\n") or "", headers
end

function M.install(R)
  R.register_builtin_route({ method = "GET", path = "/v1/audit", fn = list_route, label = "GET /v1/audit", scope = "admin" })
  R.register_builtin_route({ method = "GET", path = "/v1/audit/export", fn = export_route, label = "GET /v1/audit/export",
    scope = "admin" })
end

return M
