-- chatgw.auth: who a bearer token is, and which scopes it holds.
--
-- CHAT_GATEWAY_TOKEN (seed 000's) is the token named "gateway" and holds every scope. The
-- config's `tokens:` names more, each with scopes:
--
--   tokens:
--     alerts:   { token_env: ALERTS_TOKEN, scopes: [notify] }
--     grafana:  { sha256: "9f86d08...", scopes: [read] }     # the digest: no secret in the file
--     console:  { token_env: CONSOLE_TOKEN, scopes: [ws], roles: [operator], ws_scopes: [chat.read, chat.write] }
--
-- Scopes: notify (/v1/notify/*, /v1/outbox/*), tasks (/v1/tasks), ws (the WebSocket connect,
-- with its roles and ws_scopes), read (/health, /metrics, /v1/channels), admin (everything,
-- and the default of a handler route). Tokens are kept as SHA-256 digests and compared in
-- constant time; the values of token_env are read at each load (a reload picks up a change).
local config = require "chatgw.config"
local gateway_auth = require("chatgw.cffi").auth -- chatgw._auth through the FFI

local type, ipairs, pairs, getenv = type, ipairs, pairs, os.getenv
local sub, find = string.sub, string.find

local M = {}

M.SCOPES = { "notify", "tasks", "ws", "read", "admin" }
local KNOWN = {}
for _, s in ipairs(M.SCOPES) do KNOWN[s] = true end
M.KNOWN = KNOWN

local WS_ROLES = { "operator", "node" }

config.register_section("tokens", { type = "dict", key_pattern = "^[a-z][a-z0-9_.-]*$", max_keys = 256,
  doc = "API tokens besides `CHAT_GATEWAY_TOKEN`, by name: each with `token_env` or `sha256`, `scopes`, `roles`, `ws_scopes` "
    .. "([operations.md](operations.md#api-tokens-and-scopes)).",
  values = { type = "map", fields = {
    token_env = { type = "string", min_len = 1, max_len = 255,
      doc = "The environment variable holding the token (an unset or empty one: the token matches nothing)." },
    sha256 = { type = "string", min_len = 64, max_len = 64,
      doc = "The token's SHA-256 as 64 hex digits, instead of `token_env`: `printf %s \"$TOKEN\" | sha256sum`." },
    scopes = { type = "list", single = true, items = { type = "string", enum = M.SCOPES },
      doc = "What it may call: `notify`, `tasks`, `ws`, `read`, `admin` (admin: everything)." },
    roles = { type = "list", items = { type = "string", enum = WS_ROLES }, doc_default = "all roles",
      doc = "With `ws`: the roles it may connect as." },
    ws_scopes = { type = "list", items = { type = "string", min_len = 1, max_len = 128 },
      doc = "With `ws`: the WebSocket scopes it may be granted (`\"*\"` = any)." },
  } } })

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

local GATEWAY = { name = "gateway", all = true, scopes = set_of(M.SCOPES) }
GATEWAY.public = { name = "gateway", scopes = M.SCOPES }
M.GATEWAY = GATEWAY

-- name -> { name, digest, scopes (set), roles (set or nil), ws_scopes (set) }; digests in order
local entries = {}

local function scope_list(who)
  if who.all then return M.SCOPES end
  local out = {}
  for _, s in ipairs(M.SCOPES) do if who.scopes[s] then out[#out + 1] = s end end
  return out
end
M.scope_list = scope_list

-- The tokens of cfg (and ws.tokens, the older place for WebSocket-only tokens). Returns the
-- problems ("file:line: message") of entries that cannot work.
function M.configure(cfg)
  local problems, list = {}, {}
  local lines = cfg._lines or {}
  local function problem(path, msg)
    problems[#problems + 1] = ("%s:%d: %s: %s"):format(cfg._source or "(config)", lines[path] or 1, path, msg)
  end
  local names = {}
  for name in pairs(cfg.tokens or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local t = cfg.tokens[name]
    local path = "tokens." .. name
    if (t.token_env ~= nil) == (t.sha256 ~= nil) then
      problem(path, "give exactly one of token_env and sha256")
    elseif t.sha256 and not t.sha256:match("^%x+$") then
      problem(path .. ".sha256", "must be 64 hex digits (the SHA-256 of the token)")
    elseif #(t.scopes or {}) == 0 then
      problem(path .. ".scopes", "give at least one of " .. table.concat(M.SCOPES, ", "))
    else
      local digest = t.sha256 and t.sha256:lower()
      if t.token_env then
        local v = getenv(t.token_env)
        digest = v and v ~= "" and chatgw.crypto.sha256(v, "hex") or nil
      end
      list[#list + 1] = { name = name, digest = digest, scopes = set_of(t.scopes),
        all = set_of(t.scopes).admin or false,
        roles = t.roles and #t.roles > 0 and set_of(t.roles) or nil, ws_scopes = set_of(t.ws_scopes) }
    end
  end
  -- ws.tokens: WebSocket-only tokens (their scopes are WebSocket scopes)
  for i, t in ipairs(cfg.ws and cfg.ws.tokens or {}) do
    local v = t.token_env and getenv(t.token_env)
    list[#list + 1] = { name = ("ws.tokens[%d]"):format(i), digest = v and v ~= "" and chatgw.crypto.sha256(v, "hex") or nil,
      scopes = { ws = true }, all = false, roles = t.roles and #t.roles > 0 and set_of(t.roles) or nil,
      ws_scopes = set_of(t.scopes) }
  end
  if #problems > 0 then return problems end
  for _, e in ipairs(list) do e.public = { name = e.name, scopes = scope_list(e) } end -- req.auth
  entries = list
  return nil
end

local function bearer(header)
  if type(header) ~= "string" then return nil end
  local s, e = find(header, "^[Bb][Ee][Aa][Rr][Ee][Rr] +")
  if not s then return nil end
  local tok = sub(header, e + 1):match("^(.-)%s*$")
  return tok ~= "" and tok or nil
end

-- The entry of a raw token, or nil: each digest is compared (none skipped), in constant time.
local function entry_of(token)
  if #entries == 0 or type(token) ~= "string" or token == "" then return nil end
  local d = chatgw.crypto.sha256(token, "hex")
  local found
  for _, e in ipairs(entries) do
    if e.digest and chatgw.crypto.constant_time_eq(d, e.digest) and not found then found = e end
  end
  return found
end

-- Who sends this Authorization header: GATEWAY, a tokens entry, or nil. The gateway token is
-- checked first, in C: the common case costs what it did before scopes.
function M.check(header)
  if gateway_auth(header) then return GATEWAY end
  if #entries == 0 then return nil end
  return entry_of(bearer(header))
end

-- May who call a route of this scope? (false: any valid token, e.g. /v1/whoami)
function M.allows(who, scope)
  return scope == false or who.all or who.scopes[scope or "admin"] == true
end

-- The WebSocket grant of a raw token: { roles = set, scopes = set } ("*" any scope), ALL for
-- the gateway token and admin tokens, nil when it holds no ws scope.
local ALL = { all = true }
function M.ws_grant(token)
  if type(token) ~= "string" or token == "" then return nil end
  if gateway_auth("Bearer " .. token) then return ALL end
  local e = entry_of(token)
  if not e then return nil end
  if e.all then return ALL end
  if not e.scopes.ws then return nil end
  return { name = e.name, roles = e.roles or { operator = true, node = true }, scopes = e.ws_scopes }
end

return M
