-- chatgw.chat.channels.telegram.api: calls to the Bot API of one account.
--
--   local api = require(...).new(account)          -- account: from telegram/config.lua
--   api:call(method, params, opts) -> result | nil, err, info
--       params: a table sent as JSON, or with opts.form as multipart (files)
--       info: { status, error_code, description, retry_after, migrate_to_chat_id, sent }
--       err: "telegram: <description>" or the transport error; never holds the token
--
-- The token is in every URL path (https://api.telegram.org/bot<token>/<method>): it is kept
-- out of every error, log line and metric label here, by replacing it wherever a message could
-- carry it. chatgw.http's own metrics label requests by host only.
local chatgw = chatgw
local json = require "chatgw.json"

local type, tostring, setmetatable = type, tostring, setmetatable

local M = {}

-- An id as the string chatgw keeps (numbers up to 14 digits decode as numbers, longer ones as
-- strings: see chatgw.json).
function M.id(v)
  if type(v) == "number" then return ("%d"):format(v) end
  return v ~= nil and tostring(v) or nil
end

local Api = {}
Api.__index = Api

local function plain_pattern(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

function M.new(account)
  return setmetatable({ account = account.name, base = account.api_base, token = account.token,
                        token_pat = account.token and plain_pattern(account.token) or nil }, Api)
end

-- s with the token (and the token's URL-encoded ':' form) replaced.
function Api:scrub(s)
  s = tostring(s)
  if self.token_pat then
    s = s:gsub(self.token_pat, "<token>")
    s = s:gsub((plain_pattern(self.token:gsub(":", "%%3A"))), "<token>")
  end
  return s
end

function Api:url(method)
  return self.base .. "/bot" .. self.token .. "/" .. method
end

function Api:file_url(path)
  return self.base .. "/file/bot" .. self.token .. "/" .. path
end

-- opts: timeout_ms (default 30000), form (multipart parts instead of JSON)
function Api:call(method, params, opts)
  opts = opts or {}
  if not self.token then return nil, "telegram: the account has no token", { status = 0 } end
  local req = { method = "POST", url = self:url(method), timeout_ms = opts.timeout_ms or 30000,
                connect_timeout_ms = 10000, max_body = 4 * 1024 * 1024 }
  if opts.form then req.form = opts.form else req.json = params or json.empty_object end
  local res, err = chatgw.http.request(req)
  if not res then
    err = self:scrub(err)
    return nil, err, { status = 0, sent = not err:find("(request not sent)", 1, true), transport = err }
  end
  local j = type(res.json) == "table" and res.json or nil
  if res.status == 200 and j and j.ok == true then return j.result end
  local info = { status = res.status }
  if j then
    info.error_code = j.error_code
    info.description = type(j.description) == "string" and self:scrub(j.description) or nil
    local p = type(j.parameters) == "table" and j.parameters or {}
    info.retry_after = tonumber(p.retry_after)
    info.migrate_to_chat_id = M.id(p.migrate_to_chat_id)
  end
  local desc = info.description or ("HTTP " .. res.status)
  return nil, "telegram: " .. desc, info
end

return M
