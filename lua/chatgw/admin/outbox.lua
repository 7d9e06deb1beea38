-- chatgw.admin.outbox: the outbox's failed messages for the admin page (scope admin):
--   GET  /v1/admin/outbox/failed?limit=&before=   newest first, with the platform's reason
--   POST /v1/admin/outbox/:id/retry                back to queued, its sender woken
--   POST /v1/admin/outbox/:id/drop                 deleted from the outbox
local chatgw = chatgw
local json = require "chatgw.json"
local outbox = require "chatgw.chat.outbox"

local type, tonumber, tostring, pcall = type, tonumber, tostring, pcall

local M = {}

local function audit(kind, req, fields)
  local ok, a = pcall(require, "chatgw.audit")
  if ok and type(a) == "table" and a.record then
    fields.who, fields.addr = req.auth and req.auth.name, req.remote_addr
    pcall(a.record, kind, fields)
  end
end

local function int_param(v)
  local n = tonumber(v)
  if not n or n % 1 ~= 0 or n < 1 or n > 2 ^ 53 then return nil end
  return n
end

function M.failed(req)
  local q = req.query
  local limit = q.limit == nil and 50 or int_param(q.limit)
  if not limit or limit > 500 then
    return 400, { ok = false, error = "invalid_field", field = "limit", message = "limit is 1..500" }
  end
  local before = q.before and int_param(q.before)
  if q.before and not before then
    return 400, { ok = false, error = "invalid_field", field = "before", message = "before is an outbox id" }
  end
  local rows, err = chatgw.db.query([[SELECT id, channel, account, chat_id, kind, error, attempts,
      created_at, updated_at, substr(json_extract(body, '$.text'), 1, 200) AS text
    FROM chat_outbox WHERE status = 'failed' AND id < ? ORDER BY id DESC LIMIT ?]], before or 2 ^ 53, limit + 1)
  if not rows then return 500, { ok = false, error = "store_failed", message = tostring(err) } end
  local next_before = json.null
  if #rows > limit then
    rows[#rows] = nil
    next_before = rows[#rows].id
  end
  for _, r in ipairs(rows) do
    r.error, r.text = r.error or json.null, r.text or json.null
  end
  return { ok = true, messages = #rows > 0 and rows or json.empty_array, next = next_before }
end

local function act(verb, fn)
  return function(req)
    local id = int_param(req.params.id)
    if not id then return 404, { ok = false, error = "not_found", field = "id" } end
    local r, err = fn(id)
    if not r then
      local code = tostring(err):match("^([%w_]+):")
      if code == "not_found" then return 404, { ok = false, error = "not_found", field = "id" } end
      if code == "not_failed" then
        return 409, { ok = false, error = "not_failed", message = tostring(err):gsub("^not_failed: ", "") }
      end
      return 500, { ok = false, error = "store_failed", message = tostring(err) }
    end
    audit("outbox." .. verb, req, { what = tostring(id), detail = { id = id } })
    chatgw.log.info("outbox message " .. (verb == "retry" and "queued again" or "dropped") .. " by an operator",
      { id = id, who = req.auth and req.auth.name })
    if verb == "retry" then return { ok = true, id = id, status = "queued" } end
    return { ok = true, id = id, dropped = true }
  end
end

M.retry = act("retry", outbox.retry)
M.drop = act("drop", outbox.drop)

return M
