-- chatgw.chat.channels.feishu.api: calls to the Feishu/Lark open platform for one app, with its
-- tenant access token.
--
--   local api = require(...).new(account)
--   api:call(method, path, { query =, json =, form =, timeout_ms = }) -> data | nil, err, info
--       info: { status, code, msg, headers, sent }
--   api:token() -> token | nil, err, info
--
-- The token (POST /open-apis/auth/v3/tenant_access_token/internal) is fetched once per app and
-- kept in a shared dictionary (it outlives reloads); it is renewed when under 30 minutes of its
-- life remain, single flight: concurrent calls wait for the one request. A call answered
-- 99991663/99991661 (invalid or missing token) renews it once and is tried again once; the
-- renewal is skipped when the cached token already changed since that call began. The app
-- secret and the tokens never reach an error, log line or metric label.
local chatgw = chatgw
local json = require "chatgw.json"

local type, tostring, tonumber, setmetatable = type, tostring, tonumber, setmetatable

local M = {}

local tokens = chatgw.shared("chatgw.feishu.tokens") -- account -> JSON { token, expires_at }
local RENEW_BEFORE_S = 1800
local TOKEN_ERRORS = { [99991663] = true, [99991661] = true, [99991668] = true }
M.TOKEN_ERRORS = TOKEN_ERRORS

local Api = {}
Api.__index = Api

function M.new(account)
  return setmetatable({ account = account.name, base = account.api_base, app_id = account.app_id,
                        secret = account.app_secret }, Api)
end

local function plain(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

function Api:scrub(s)
  s = tostring(s)
  if self.secret then s = s:gsub(plain(self.secret), "<secret>") end
  local cur = self:cached()
  if cur then s = s:gsub(plain(cur), "<token>") end
  return s
end

function Api:cached()
  local t = json.decode(tokens:get(self.account) or "null")
  if type(t) == "table" and type(t.token) == "string" then
    return t.token, t.expires_at, t.renew_at or (t.expires_at and t.expires_at - RENEW_BEFORE_S)
  end
  return nil
end

local function decode(res)
  local j = type(res.json) == "table" and res.json or nil
  return j, j and tonumber(j.code), j and j.msg
end

-- Forgets the cached tenant token (an app removed: another app may take its name).
function Api:forget() tokens:delete(self.account) end

-- A new token from the platform. token | nil, err, info
function Api:fetch_token()
  local res, err = chatgw.http.request{ method = "POST", timeout_ms = 15000,
    url = self.base .. "/open-apis/auth/v3/tenant_access_token/internal",
    json = { app_id = self.app_id, app_secret = self.secret } }
  if not res then return nil, self:scrub(err), { status = 0 } end
  local j, code, msg = decode(res)
  if res.status == 200 and code == 0 and j and type(j.tenant_access_token) == "string" then
    local ttl = tonumber(j.expire) or 7200
    -- renewed when under 30 minutes remain; a token given with less life than that at its
    -- half-life, so a short-lived one is not fetched again on every call
    local renew = ttl > 2 * RENEW_BEFORE_S and RENEW_BEFORE_S or ttl / 2
    local now = chatgw.time()
    tokens:set(self.account, json.encode({ token = j.tenant_access_token, expires_at = now + ttl,
                                           renew_at = now + ttl - renew }), ttl * 1000)
    return j.tenant_access_token
  end
  local why = ("feishu: tenant_access_token refused (%s%s)"):format(code and ("code " .. code .. ": ") or
    ("HTTP " .. res.status .. ": "), self:scrub(msg or "no message"))
  return nil, why, { status = res.status, code = code, msg = msg }
end

-- The token to use now: the cached one, or a renewal (single flight).
function Api:token(force_renew_of)
  local cur, exp, renew_at = self:cached()
  if cur and not force_renew_of and renew_at and chatgw.time() < renew_at then return cur end
  if cur and force_renew_of and cur ~= force_renew_of then return cur end -- renewed meanwhile
  local key = "feishu:token:" .. self.account
  -- one renewal at a time in the process (an old Lua state during a reload shares the flag):
  -- the others wait for it and take its token
  while not tokens:add("renewing:" .. self.account, 1, 20000) do
    local _, err = chatgw._wait(key, 20000)
    if err then return nil, err end
    local now_tok, _, now_renew = self:cached()
    if now_tok and now_tok ~= force_renew_of and now_tok ~= cur and now_renew and chatgw.time() < now_renew then
      return now_tok
    end
    local failed = tokens:get("failed:" .. self.account) -- the renewal just refused: its answer
    if failed then
      local f = json.decode(failed) or {}
      return nil, f.err, { status = f.status or 0, code = f.code }
    end
  end
  local tok, err, info = self:fetch_token()
  if not tok then
    tokens:set("failed:" .. self.account, json.encode({ err = err, status = info and info.status,
                                                          code = info and info.code }), 2000)
  else
    tokens:delete("failed:" .. self.account)
  end
  tokens:delete("renewing:" .. self.account)
  chatgw._notify(key)
  if not tok and cur and not force_renew_of and exp and exp > chatgw.time() then
    return cur -- the old one still works: renew later
  end
  return tok, err, info
end

function Api:call(method, path, opts)
  opts = opts or {}
  local attempt = 0
  while true do
    attempt = attempt + 1
    local tok, terr, tinfo = self:token()
    if not tok then return nil, terr, tinfo or { status = 0 } end
    local req = { method = method, url = self.base .. path, query = opts.query, timeout_ms = opts.timeout_ms or 30000,
                  connect_timeout_ms = 10000, headers = { Authorization = "Bearer " .. tok },
                  max_body = opts.max_body or 4 * 1024 * 1024 }
    if opts.form then req.form = opts.form elseif opts.json ~= nil then req.json = opts.json end
    local res, err = chatgw.http.request(req)
    if not res then
      err = self:scrub(err)
      return nil, err, { status = 0, sent = not err:find("(request not sent)", 1, true) }
    end
    if opts.raw and res.status == 200 then return res.body, nil, { status = 200, headers = res.headers } end
    local j, code, msg = decode(res)
    if res.status == 200 and code == 0 then return j.data ~= nil and j.data or j end
    if TOKEN_ERRORS[code] and attempt == 1 then
      self:token(tok) -- renew (unless renewed meanwhile), then once more
    else
      local info = { status = res.status, code = code, msg = msg and self:scrub(msg), headers = res.headers }
      return nil, ("feishu: %s%s"):format(code and ("code " .. code .. ": ") or ("HTTP " .. res.status .. ": "),
        info.msg or "no message"), info
    end
  end
end

return M
