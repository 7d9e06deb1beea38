-- chatgw.ws: WebSocket clients of the main listener, driven from Lua (docs/websocket.md).
--
-- The transport lives in C (runtime/net/ws_*.c): frames, queues, broadcast fan-out, heartbeats, rate
-- limits, presence batching; connections survive reloads there. This module is the protocol's
-- meaning, run in the current state: the `ws:` config section, the handler keys `methods`,
-- `on_connect` and `on_disconnect`, the connect handshake (tokens, roles, scopes), method
-- dispatch (`req` -> `res`), the chatgw.ws API and POST /v1/ws/broadcast.
local chatgw = chatgw
local json = require "chatgw.json"
local config = require "chatgw.config"
local loader = require "chatgw.loader"
local url = require "chatgw.url"
local auth = require "chatgw.auth"

local C = chatgw._ws
local cluster -- chatgw.cluster, set by install (this file also loads without the runtime)
local presence -- chatgw.ws_presence, set by install
local type, pairs, ipairs, tostring, error, pcall, xpcall = type, pairs, ipairs, tostring, error, pcall, xpcall
local traceback, sort = require("chatgw.errtrace").handler, table.sort

local M = {}
local R -- chatgw.runtime (see M.install)

-- ---- config ----

local int = config.int

config.register_section("ws", { type = "map", fields = {
  enabled = { type = "boolean", default = true,
    doc = "Serve WebSocket upgrades. When `false` the path is an ordinary (unknown) route." },
  path = { type = "string", default = "/ws", min_len = 1, max_len = 255,
    doc = "Path of the upgrade on the `main` listener (exact match, without the query)." },
  origins = { type = "list", items = { type = "string", min_len = 1, max_len = 255 },
    doc = "Allowed `Origin` values of browser clients, e.g. `\"https://ops.example.com\"` (compared "
      .. "case-insensitively); `\"*\"` allows any. A request without `Origin` (a non-browser client) is "
      .. "always allowed; any other origin gets 403." },
  tokens = { type = "list", doc = "Tokens that grant less than the gateway token: each `{token_env, roles, scopes}`.",
    items = { type = "map", fields = {
      token_env = { type = "string", min_len = 1, max_len = 255, doc = "Environment variable holding the "
        .. "token (read at each load; an unset or empty variable matches nothing)." },
      roles = { type = "list", items = { type = "string", enum = { "operator", "node" } },
        doc_default = "all roles", doc = "Roles the token may connect as." },
      scopes = { type = "list", items = { type = "string", min_len = 1, max_len = 128 },
        doc = "Scopes it may be granted (the intersection with the scopes asked); `\"*\"` = any." },
    } } },
  max_payload = int(1048576, 1024, 67108864, "Largest message a client may send (all fragments), in bytes; "
    .. "beyond: close 1009. The first (`connect`) message is limited to 64 KiB."),
  max_buffered_bytes = int(1048576, 1024, 1073741824, "Unsent bytes (runtime queue + socket write queue) a "
    .. "connection may have; beyond: dropped as a slow consumer (close 1008)."),
  ping_interval_ms = int(30000, 10, 3600000, "Server ping interval; sent to clients as `tickIntervalMs`."),
  pong_timeout_ms = int(60000, 10, 3600000,
    "A connection silent (no pong, no frame) this long is closed (1001 \"heartbeat timeout\")."),
  handshake_timeout_ms = int(10000, 10, 3600000,
    "Time from the upgrade to a successful `connect`; beyond: close 1008."),
  close_timeout_ms = int(1000, 10, 60000,
    "After a close frame is sent, the socket is closed when the peer answers, or after this."),
  lingering_timeout_ms = int(5000, 0, 60000, "Once closed (the close frames exchanged, or sent "
    .. "after an error), the write side is shut down and what the client still sends is read and "
    .. "dropped for up to this long (or 16 MiB) before the socket closes, so the client gets the "
    .. "close code rather than a reset; `0`: close at once."),
  max_connections = int(10000, 1, 1000000, "Open WebSocket connections; beyond: the upgrade gets 503. "
    .. "(Upgrade requests also count against `http.max_connections` while they are HTTP.)"),
  max_per_ip = int(1000, 1, 1000000, "Open WebSocket connections per client address; beyond: 503."),
  data_max_bytes = int(4096, 64, 1048576, "Size limit of each connection's `conn.data` (keys + JSON values)."),
  rate_limit = { type = "map", fields = {
    messages_per_second = { type = "number", default = 50, min = 0.001, max = 1000000,
      doc = "Messages a connection may send after `connect` (token bucket rate)." },
    burst = int(100, 1, 1000000,
      "Bucket size. Messages over the limit get a `rate_limited` error with `retryAfterMs`."),
    close_after = int(100, 1, 1000000,
      "More refused messages than this within 10 s: close 1008 \"rate limit exceeded\"."),
  } },
  presence = { type = "map", fields = {
    batch_size = int(50, 1, 10000,
      "Presence changes per `presence` event at most; a full batch is sent at once."),
    flush_interval_ms = int(100, 1, 60000, "A batch is sent this long after its first change at the latest."),
  } },
} })

local function wscfg() return (chatgw.config and chatgw.config.ws) or {} end

-- ---- handler keys ----

local BUILTIN_METHODS = { connect = true, ["presence.list"] = true }
-- Built-in methods of runtime modules (the ws chat channel): name -> { fn(conn, params), scope }.
local builtin_fns = {}
function M.register_builtin_method(name, fn, scope)
  BUILTIN_METHODS[name] = true
  builtin_fns[name] = { fn = fn, scope = scope }
end
local methods, method_where = {}, {} -- this state's methods, collected while the handlers load

local function line_at(source, pos)
  local line = 1
  for _ in source:sub(1, pos):gmatch("\n") do line = line + 1 end
  return line
end

local function method_line(ctx, name, fn)
  for _, needle in ipairs({ '["' .. name .. '"]', "['" .. name .. "']", '"' .. name .. '"' }) do
    local pos = ctx.source:find(needle, 1, true)
    if pos then return line_at(ctx.source, pos) end
  end
  local info = type(fn) == "function" and debug.getinfo(fn, "S")
  return info and info.linedefined > 0 and info.linedefined or 1
end

loader.register_key("methods", function(v, ctx)
  if type(v) ~= "table" then return "methods must be a table, got " .. type(v) end
  local names = {}
  for k in pairs(v) do names[#names + 1] = k end
  sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, name in ipairs(names) do
    local fn = v[name]
    if type(name) ~= "string" or #name > 128 or not name:match("^[%w_][%w_%.:/%-]*$") then
      ctx.problem(nil, "method names must be strings like 'chat.send' ([A-Za-z0-9_.:/-], at most 128), got "
        .. tostring(name))
    else
      local line = method_line(ctx, name, fn)
      if type(fn) ~= "function" then
        ctx.problem(line, "method '" .. name .. "' must be a function, got " .. type(fn))
      elseif BUILTIN_METHODS[name] then
        ctx.problem(line, "method '" .. name .. "' is already declared by the runtime (built in)")
      elseif methods[name] then
        local w = method_where[name]
        ctx.problem(line, ("method '%s' is already declared by %s:%d"):format(name, w.file, w.line))
      else
        methods[name] = fn
        method_where[name] = { file = ctx.file, line = line }
      end
    end
  end
end)

for _, hook in ipairs({ "on_connect", "on_disconnect" }) do
  loader.register_key(hook, function(v)
    if type(v) ~= "function" then return hook .. " must be a function, got " .. type(v) end
  end)
end

local function run_hooks(name, ...)
  for _, h in ipairs(R and R.handlers or {}) do
    local fn = h.module[name]
    if fn then
      local ok, err = xpcall(fn, traceback, ...)
      if not ok then chatgw.log.error(name .. " failed", { file = h.file, error = tostring(err) }) end
    end
  end
end

-- ---- connections as handlers see them ----

local Conn = {}
Conn.__index = Conn

local function data_proxy(num)
  return setmetatable({}, {
    __index = function(_, k)
      if type(k) ~= "string" then return nil end
      local j = C.data_get(num, k)
      if j == nil then return nil end
      return (json.decode(j))
    end,
    __newindex = function(_, k, v)
      if type(k) ~= "string" or k == "" then error("conn.data: keys must be non-empty strings", 2) end
      local j
      if v ~= nil then
        local ok, s = pcall(json.encode, v)
        if not ok then error("conn.data: " .. tostring(s), 2) end
        j = s
      end
      local ok, err = C.data_set(num, k, j)
      if not ok and err:find("^too_large") then error("conn.data: " .. err, 2) end
    end,
  })
end

local function decode_data(raw)
  local data = {}
  for k, j in pairs(raw or {}) do data[k] = json.decode(j) end
  return data
end

local function public_info(info, with_data)
  if not info then return nil end
  info._num = nil
  if with_data then info.data = decode_data(info._data) end
  info._data = nil
  return info
end

local cache = setmetatable({}, { __mode = "v" })

-- The connection object of a live connection (static fields + the data proxy).
local function conn_obj(num)
  local o = cache[num]
  if o then return o end
  local info = C.info(num)
  if not info then return nil end
  o = setmetatable({ id = info.id, role = info.role, scopes = info.scopes, device = info.device,
    client = info.client, remote_addr = info.remote_addr, remote_port = info.remote_port,
    connected_at = info.connected_at, data = data_proxy(num) }, Conn)
  cache[num] = o
  return o
end

function Conn:send(event, payload) return chatgw.ws.send(self.id, event, payload) end
function Conn:close(code, reason) return chatgw.ws.close(self.id, code, reason) end
function Conn:info() return chatgw.ws.get(self.id) end
function Conn:has_scope(scope)
  for _, s in ipairs(self.scopes or {}) do if s == scope then return true end end
  return false
end

-- ---- chatgw.ws ----

local ws = {}
chatgw.ws = ws

local CLOSE_CODES = { [1000] = true, [1001] = true, [1002] = true, [1003] = true, [1007] = true,
                      [1008] = true, [1009] = true, [1010] = true, [1011] = true }

local function encode_payload(fname, payload)
  if payload == nil then return "null" end
  local ok, s = pcall(json.encode, payload)
  if not ok then error(fname .. ": payload: " .. tostring(s), 3) end
  return s
end

local function check_event(fname, event)
  if type(event) ~= "string" then error(fname .. ": event must be a string, got " .. type(event), 3) end
end

local function id_of(fname, conn_id)
  if type(conn_id) == "table" and type(conn_id.id) == "string" then return conn_id.id end
  if type(conn_id) ~= "string" then error(fname .. ": conn_id must be a string, got " .. type(conn_id), 3) end
  return conn_id
end

local function check_ids(fname, key, v)
  if v == nil then return nil end
  if type(v) ~= "table" then error(fname .. ": " .. key .. " must be an array of connection ids", 3) end
  for i, id in ipairs(v) do
    if type(id) ~= "string" then error(("%s: %s[%d] must be a string"):format(fname, key, i), 3) end
  end
  return v
end

local FILTER_KEYS = { role = "string", scope = "string", include = "table", exclude = "table" }

function ws.broadcast(event, payload, opts)
  local f = "chatgw.ws.broadcast"
  check_event(f, event)
  if opts ~= nil and type(opts) ~= "table" then error(f .. ": opts must be a table, got " .. type(opts), 2) end
  opts = opts or {}
  for k, v in pairs(opts) do
    if FILTER_KEYS[k] == nil then
      error(f .. ": unknown option '" .. tostring(k) .. "' (known: exclude, include, role, scope)", 2)
    elseif type(v) ~= FILTER_KEYS[k] then
      error(f .. ": " .. k .. " must be a " .. FILTER_KEYS[k] .. ", got " .. type(v), 2)
    end
  end
  local body = encode_payload(f, payload)
  local include, exclude = check_ids(f, "include", opts.include), check_ids(f, "exclude", opts.exclude)
  local n = C.broadcast(event, body, opts.role, opts.scope, include, exclude)
  -- Cluster mode: the other nodes deliver it to their own connections (docs/cluster.md).
  -- Connection ids carry a random per-process prefix, so include and exclude name connections
  -- on any node; an include list served here in full is not published.
  if cluster and cluster.enabled and not (include and n >= #include) then
    cluster.publish("ws", { e = event, p = body, r = opts.role, s = opts.scope, i = include, x = exclude })
  end
  return n
end

function ws.send(conn_id, event, payload)
  local f = "chatgw.ws.send"
  conn_id = id_of(f, conn_id)
  check_event(f, event)
  return C.send(conn_id, event, encode_payload(f, payload))
end

function ws.close(conn_id, code, reason)
  local f = "chatgw.ws.close"
  conn_id = id_of(f, conn_id)
  code = code or 1000
  if type(code) ~= "number" or not (CLOSE_CODES[code] or (code >= 3000 and code <= 4999 and code % 1 == 0)) then
    error(f .. ": code must be 1000-1003, 1007-1011 or 3000-4999, got " .. tostring(code), 2)
  end
  if reason ~= nil and type(reason) ~= "string" then error(f .. ": reason must be a string", 2) end
  return C.close(conn_id, code, reason or "")
end

function ws.list(filter)
  local f = "chatgw.ws.list"
  if filter ~= nil and type(filter) ~= "table" then error(f .. ": filter must be a table", 2) end
  filter = filter or {}
  for k, v in pairs(filter) do
    if k ~= "role" and k ~= "scope" and k ~= "device" then
      error(f .. ": unknown filter '" .. tostring(k) .. "' (known: device, role, scope)", 2)
    elseif type(v) ~= "string" then
      error(f .. ": " .. k .. " must be a string", 2)
    end
  end
  local list = C.list(filter.role, filter.scope, filter.device)
  for _, info in ipairs(list) do public_info(info, false) end
  return list
end

function ws.get(conn_id)
  return public_info(C.get(id_of("chatgw.ws.get", conn_id)), true)
end

function ws.count() return C.count() end

-- ---- protocol (called through the ws hooks of runtime/vm/lib_ws.c, in CO_WS coroutines of the current state) ----

local function valid_id(id)
  local t = type(id)
  return (t == "string" and #id <= 256) or (t == "number" and id == id and id ~= math.huge and id ~= -math.huge)
end

local function res_error(rid, code, message, extra)
  local e = { code = code, message = message }
  if extra then for k, v in pairs(extra) do e[k] = v end end
  if rid == nil then rid = json.null end
  return json.encode({ type = "res", id = rid, ok = false, error = e })
end

-- A handler's `return nil, err`: "code: message" or {code=, message=, retryable=, retryAfterMs=}.
local function handler_error(rid, err)
  if type(err) == "table" then
    return res_error(rid, tostring(err.code or "error"), tostring(err.message or ""),
      { retryable = err.retryable, retryAfterMs = err.retryAfterMs })
  end
  err = tostring(err)
  local code, msg = err:match("^([%w_%.%-]+):%s*(.*)$")
  if code then return res_error(rid, code, msg) end
  return res_error(rid, "error", err)
end

local ALL = { all = true }

-- Grants of a token: the gateway token (and an admin token) grants everything; a token with
-- the ws scope grants its roles (all roles when none are listed) and ws_scopes ("*" = any);
-- ws.tokens entries the same. nil when the token is unknown.
local function grant_for(token)
  local g = auth.ws_grant(token) -- tokens: entries with the ws scope, and ws.tokens
  if g and g.all then return ALL end
  return g
end

local function opt_string(v, max)
  return v == nil or (type(v) == "string" and #v <= max)
end

-- query: the upgrade's raw query string; bearer: its Authorization bearer token (or nil).
function M._handshake(num, conn_id, text, query, bearer, remote)
  local function fail(rid, code, message, close_code, close_reason)
    chatgw.log.info("ws connect refused", { conn = conn_id, remote = remote, code = code })
    return res_error(rid, code, message), close_code or 1008, close_reason or code
  end
  local msg = json.decode(text)
  if type(msg) ~= "table" then
    return fail(nil, "invalid_request", "the first message must be a connect request (a JSON object)")
  end
  local rid = msg.id
  if not valid_id(rid) then rid = nil end
  if msg.type ~= "req" or rid == nil or type(msg.method) ~= "string" then
    return fail(rid, "invalid_request", 'expected {"type":"req","id":...,"method":"connect","params":{...}}')
  end
  if msg.method ~= "connect" then
    return fail(rid, "handshake_required", "the first request must be 'connect', got '" .. msg.method .. "'")
  end
  local p = msg.params
  if type(p) ~= "table" then return fail(rid, "invalid_request", "connect: params must be an object") end
  local role = p.role
  if role ~= "operator" and role ~= "node" then
    return fail(rid, "invalid_request", "connect: params.role must be 'operator' or 'node'")
  end
  local scopes = p.scopes
  if scopes ~= nil and type(scopes) ~= "table" then
    return fail(rid, "invalid_request", "connect: params.scopes must be an array of strings")
  end
  for _, s in ipairs(scopes or {}) do
    if type(s) ~= "string" or s == "" or #s > 128 then
      return fail(rid, "invalid_request", "connect: params.scopes must be an array of strings")
    end
  end
  local auth, device, client = p.auth, p.device, p.client
  if (auth ~= nil and type(auth) ~= "table") or (device ~= nil and type(device) ~= "table")
      or (client ~= nil and type(client) ~= "table") then
    return fail(rid, "invalid_request", "connect: params.auth, params.device and params.client must be objects")
  end
  auth, device, client = auth or {}, device or {}, client or {}
  if not opt_string(auth.token, 4096) or not opt_string(device.id, 128) or not opt_string(client.id, 128)
      or not opt_string(client.version, 64) then
    return fail(rid, "invalid_request", "connect: auth.token, device.id, client.id and client.version must be strings")
  end
  local token = auth.token or url.query_value(query, "token") or bearer
  if token == nil or token == "" then
    return fail(rid, "unauthorized", "a token is required (params.auth.token)", 1008, "unauthorized")
  end
  local grant = grant_for(token)
  if not grant then return fail(rid, "unauthorized", "invalid token", 1008, "unauthorized") end
  if not grant.all and not grant.roles[role] then
    return fail(rid, "forbidden", "this token does not allow the role '" .. role .. "'", 1008, "forbidden")
  end
  local granted, seen = {}, {}
  for _, s in ipairs(scopes or {}) do
    if not seen[s] and (grant.all or grant.scopes[s] or grant.scopes["*"]) then
      granted[#granted + 1] = s
    end
    seen[s] = true
  end
  local cfg = wscfg()
  local hello = json.encode({ type = "res", id = rid, ok = true, payload = {
    type = "hello-ok",
    server = { version = chatgw.version, connId = conn_id },
    auth = { role = role, scopes = #granted > 0 and granted or json.empty_array },
    policy = { maxPayload = cfg.max_payload, maxBufferedBytes = cfg.max_buffered_bytes,
               tickIntervalMs = cfg.ping_interval_ms },
  } })
  if not C.accept(num, role, granted, device.id, client.id, client.version, hello) then return end
  local conn = conn_obj(num)
  if conn then run_hooks("on_connect", conn) end
end

function M._on_message(num, text, retry_after)
  local msg = json.decode(text)
  if type(msg) ~= "table" then return res_error(nil, "invalid_request", "messages must be JSON objects") end
  local rid = msg.id
  if not valid_id(rid) then
    return res_error(nil, "invalid_request", "a request needs an id (a string or a number)")
  end
  if retry_after > 0 then
    return res_error(rid, "rate_limited", "too many messages", { retryable = true, retryAfterMs = retry_after })
  end
  local method = msg.method
  if msg.type ~= "req" or type(method) ~= "string" then
    return res_error(rid, "invalid_request", 'expected {"type":"req","id":...,"method":"...","params":...}')
  end
  if method == "connect" then return res_error(rid, "already_connected", "this connection is connected already") end
  local conn = conn_obj(num)
  if not conn then return nil end
  local params = msg.params
  if params == json.null then params = nil end
  local payload
  if method == "presence.list" then
    if not conn:has_scope("operator.read") then
      return res_error(rid, "forbidden", "presence.list needs the scope operator.read")
    end
    payload = presence and presence.list() or C.presence()
  else
    local builtin = builtin_fns[method]
    if builtin and builtin.scope and not conn:has_scope(builtin.scope) then
      return res_error(rid, "forbidden", method .. " needs the scope " .. builtin.scope)
    end
    local fn = builtin and builtin.fn or methods[method]
    if not fn then return res_error(rid, "unknown_method", "unknown method '" .. method .. "'") end
    local ok, a, b = xpcall(fn, traceback, conn, params)
    if not ok then
      chatgw.log.error("ws method failed", { conn = conn.id, method = method, error = tostring(a) })
      return res_error(rid, "internal_error", "internal error")
    end
    if a == nil and b ~= nil then return handler_error(rid, b) end
    payload = a
  end
  local ok, s = pcall(json.encode, { type = "res", id = rid, ok = true, payload = payload })
  if not ok then
    chatgw.log.error("ws method result is not JSON", { conn = conn.id, method = method, error = tostring(s) })
    return res_error(rid, "internal_error", "internal error")
  end
  return s
end

-- Disconnect hooks of runtime modules (the ws chat channel's rooms), before the handlers'.
local disconnect_hooks = {}
function M.register_disconnect(fn) disconnect_hooks[#disconnect_hooks + 1] = fn end

function M._on_disconnect(info, code, reason)
  cache[info._num] = nil
  local conn = setmetatable(public_info(info, true), Conn)
  for _, fn in ipairs(disconnect_hooks) do
    local ok, err = pcall(fn, conn, code, reason)
    if not ok then chatgw.log.error("ws disconnect hook failed", { error = tostring(err) }) end
  end
  run_hooks("on_disconnect", conn, code, reason)
end

-- ---- POST /v1/ws/broadcast ----

local function bad(detail)
  return 400, { ok = false, error = "invalid_request", detail = detail }
end

local function broadcast_route(req)
  local b = req.json
  if type(b) ~= "table" then
    return bad("a JSON body {event, payload, role?, scope?, include?, exclude?} is expected")
  end
  local opts = {}
  for _, k in ipairs({ "role", "scope", "include", "exclude" }) do
    local v = b[k]
    if v ~= nil and v ~= json.null then opts[k] = v end
  end
  local payload = b.payload
  if payload == json.null then payload = nil end
  local ok, n = pcall(ws.broadcast, b.event, payload, opts)
  if not ok then return bad((tostring(n):gsub("^.-chatgw%.ws%.broadcast: ", ""))) end
  return { ok = true, sent = n }
end

function M.install(runtime)
  cluster = require "chatgw.cluster"
  presence = require "chatgw.ws_presence"
  -- A broadcast published by another node: delivered here to the connections that match.
  local function ids(v) -- a published include/exclude list, or nil
    if type(v) ~= "table" then return nil end
    for _, id in ipairs(v) do if type(id) ~= "string" then return nil end end
    return v
  end
  cluster.on("ws", function(m)
    if type(m) == "table" and type(m.e) == "string" and type(m.p) == "string" then
      -- a list gone wrong: deliver to none rather than to connections it may have left out
      if (m.i ~= nil and not ids(m.i)) or (m.x ~= nil and not ids(m.x)) then return end
      C.broadcast(m.e, m.p, type(m.r) == "string" and m.r or nil, type(m.s) == "string" and m.s or nil,
        ids(m.i), ids(m.x))
    end
  end)
  R = runtime
  R.register_builtin_route({ method = "POST", path = "/v1/ws/broadcast", fn = broadcast_route,
    public = false, label = "POST /v1/ws/broadcast" })
  -- The upgrade path is the runtime's (C answers every method on it before routing): a handler
  -- route there would never run, so it is a load error like GET /health.
  for _, method in ipairs({ "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }) do
    R.register_builtin_route({ method = method, path = "/ws", public = true,
      path_fn = function(cfg) return cfg.ws.enabled and cfg.ws.path or nil end,
      fn = function() return 404, { ok = false, error = "not_found" } end,
      label = method .. " " .. "(ws.path)", owner = "the runtime (the WebSocket path, ws.path)" })
  end
  -- Cluster mode: this node's part of presence.list, written to Redis (lua/chatgw/ws_presence.lua).
  R.register_start("ws.presence", function()
    if cluster.enabled then
      require("chatgw.supervisor").internal{ name = "cluster.presence", run = presence.writer }
    end
    return true
  end)
  R.register_health("websocket", function(brief)
    if brief then return R.BRIEF_OK end -- always ok: the count is detail
    return { status = "ok", connections = C.count() }
  end)
end

return M
