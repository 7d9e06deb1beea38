-- chatgw.runtime: the Lua side of the runtime. C calls load() in a fresh state (boot and
-- every reload), dispatch(req) for each HTTP request and shutdown() on SIGTERM.
local chatgw = chatgw
local cffi = require "chatgw.cffi" -- first: it takes chatgw._ffi, before any other module runs
local config = require "chatgw.config"
local json = require "chatgw.json"
local loader = require "chatgw.loader"
local sandbox = require "chatgw.sandbox"
local parse_query = require("chatgw.url").parse_query

local errtrace = require "chatgw.errtrace"
local auth = require "chatgw.auth"
local type, pairs, tostring, xpcall, traceback = type, pairs, tostring, xpcall, errtrace.handler
local setmetatable, rawget, rawset = setmetatable, rawget, rawset
local find, lower = string.find, string.lower
local co_label = cffi.co_label

chatgw.json = json
require "chatgw.http" -- chatgw.http.request (lua/chatgw/http.lua)
require "chatgw.breaker" -- chatgw.breaker{...} (lua/chatgw/breaker.lua)
require "chatgw.limiter" -- chatgw.limiter{...}: the C limiter, its name remembered (lua/chatgw/limiter.lua)

do -- chatgw.yaml: lyaml with nil, err on bad input instead of a raise
  local lyaml = require "lyaml"
  chatgw.yaml = {
    load = function(text)
      if type(text) ~= "string" then
        error("chatgw.yaml.load: text must be a string, got " .. type(text), 2)
      end
      local ok, v = pcall(lyaml.load, text)
      if not ok then return nil, "yaml: " .. tostring(v) end
      return v
    end,
    dump = function(value)
      if type(value) ~= "table" then
        error("chatgw.yaml.dump: value must be a table, got " .. type(value), 2)
      end
      return lyaml.dump({ value })
    end,
  }
end

-- CHATGW_JIT_LOG=FILE: the JIT's trace log (LuaJIT's jit.v: each trace, abort and its reason)
-- of this state, for checking that the request path compiles (bench/README.md). The runtime's
-- to turn on: the sandbox below takes jit.* from handlers.
do
  local log_file = os.getenv("CHATGW_JIT_LOG")
  if log_file and log_file ~= "" then
    local ok, v = pcall(require, "jit.v")
    if ok then v.on(log_file) else chatgw.log.warn("CHATGW_JIT_LOG: jit.v not found", { error = tostring(v) }) end
  end
  -- CHATGW_JIT_PROFILE=FILE: LuaJIT's sampling profiler (jit.p) on this state, written to FILE
  -- when the state closes (a stop); CHATGW_JIT_PROFILE_MODE its mode (default "vl": VM state,
  -- then source lines; "f" by function). For bench/README.md's "where the time goes".
  local prof_file = os.getenv("CHATGW_JIT_PROFILE")
  if prof_file and prof_file ~= "" then
    local ok, p = pcall(require, "jit.p")
    if ok then
      p.start(os.getenv("CHATGW_JIT_PROFILE_MODE") or "vl", prof_file)
    else
      chatgw.log.warn("CHATGW_JIT_PROFILE: jit.p not found", { error = tostring(p) })
    end
  end
end

sandbox.apply()

local M = { handlers = {}, routers = {} }
M.register_handler_key = loader.register_key
M.register_config_section = config.register_section

-- Health contributors (later modules: supervised loops, channels, ...): name -> fn(brief)
-- returning a table with at least `status` ("ok" or "degraded"). Shown under `checks` in verbose
-- health; any "degraded" makes the overall status "degraded". brief (the plain GET /health, a
-- probe's every few seconds and a benchmark's every request): only `status` is read, so a check
-- may skip what costs (the chat layer's outbox depth, a store query).
local health_checks, health_order = {}, {}
function M.register_health(name, fn)
  if not health_checks[name] then health_order[#health_order + 1] = name end
  health_checks[name] = fn
end

-- A failed reload leaves the old handlers running: degraded, with the problems, until a reload
-- succeeds (the operator's edit is not live, and a restart would not start).
local BRIEF_OK = { status = "ok" } -- a check's answer to the plain /health (nothing may change it)
M.BRIEF_OK = BRIEF_OK
local health_flags = cffi.health_flags

M.register_health("reload", function(brief)
  if brief and not health_flags() then return BRIEF_OK end
  local r = chatgw._runtime_info("reloads")
  if r and r.last_result == "failed" then
    return { status = "degraded", last_error = r.last_error, last_time = r.last_time }
  end
  return { status = "ok" }
end)

-- TLS listeners (docs/operations.md, "TLS"): degraded while a listener's last certificate load
-- failed (it serves with the previous one). No TLS listener: no check.
M.register_health("tls", function(brief)
  if brief then
    local _, tls_failed = health_flags()
    if not tls_failed then return BRIEF_OK end
  end
  local t = chatgw._runtime_info("tls")
  if not t then return nil end
  local status, failed = "ok", nil
  for name, l in pairs(t) do
    if l.last_error then
      status = "degraded"
      failed = failed or {}
      failed[name] = l.last_error
    end
  end
  return { status = status, last_error = failed }
end)

local function run_health_checks(brief)
  local checks, status = nil, "ok"
  for i = 1, #health_order do
    local name = health_order[i]
    local ok, r = pcall(health_checks[name], brief)
    if not ok then r = { status = "degraded", error = tostring(r) } end
    if type(r) == "table" and r.status == "degraded" then status = "degraded" end
    if not brief or r ~= BRIEF_OK then
      checks = checks or {}
      checks[name] = r
    end
  end
  return status, checks
end

local JSON_CT = "application/json"
local TEXT_CT = "text/plain; charset=utf-8"
-- Shared response header tables: C only reads them, nothing may change them.
local JSON_HEADERS = { ["Content-Type"] = JSON_CT }
local TEXT_HEADERS = { ["Content-Type"] = TEXT_CT }
local NO_HEADERS = {}
local HEALTH_OK = '{"ok":true}'

local function json_error(status, code, extra_headers, fields)
  local body = { ok = false, error = code }
  if fields then for k, v in pairs(fields) do body[k] = v end end
  local headers = { ["Content-Type"] = JSON_CT }
  if extra_headers then for k, v in pairs(extra_headers) do headers[k] = v end end
  return status, json.encode(body), headers
end

-- ---- built-in routes ----

local verbose_health

-- The plain /health's "ok" holds for BRIEF_TTL_MS: a load balancer polling it many times a
-- second costs one clock read per poll, not every module's checks (2.5 µs of 5 in user time,
-- bench/RESULTS.md). A failed reload or TLS load (a C flag) shows at once; any other change
-- from ok to degraded within BRIEF_TTL_MS; degraded is computed at every request.
M.BRIEF_TTL_MS = 100
local brief_ok_until = 0
local function health(req)
  local verbose = req.query_string ~= "" and (req.query.verbose == "1" or req.query.verbose == "true")
  if not verbose then
    local t = chatgw.now()
    if t < brief_ok_until and not health_flags() then return 200, HEALTH_OK, JSON_HEADERS end
    local status, checks = run_health_checks(true)
    if status == "ok" then
      brief_ok_until = t + M.BRIEF_TTL_MS
      return 200, HEALTH_OK, JSON_HEADERS
    end
    brief_ok_until = 0
    return { ok = true, status = status, reload_error = checks and checks.reload and checks.reload.last_error }
  end
  return verbose_health(run_health_checks(false))
end

-- What GET /health?verbose=1 answers, for handlers too (chatgw.health(): the ops handler's /status).
function verbose_health(status, checks)
  if not status then status, checks = run_health_checks() end
  local info = chatgw._runtime_info()
  local handlers = {}
  for i, h in ipairs(M.handlers) do handlers[i] = { name = h.name, file = h.file } end
  if #handlers == 0 then handlers = json.empty_array end
  return {
    ok = true,
    status = status,
    checks = checks,
    version = info.version,
    uptime_s = info.uptime_s,
    started_at = info.started_at,
    pid = info.pid,
    generation = info.generation,
    lua_states = info.lua_states,
    connections = info.connections,
    inflight = info.inflight,
    process = info.process,
    handlers = handlers,
    reloads = info.reloads,
    tls = info.tls,
    config = chatgw.config and chatgw.config._source or nil,
  }
end

chatgw.health = function() return verbose_health() end

local function metrics_route()
  return 200, chatgw.metrics.render(), { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" }
end

-- Built-in routes of runtime modules (chatgw.ws: POST /v1/ws/broadcast), added after these two:
-- { method, path, fn, public, label, listener = "main" (default) }.
local extra_builtins = {}
function M.register_builtin_route(route)
  if route.path:find(":", 1, true) and not route.segs then -- "/telegram/:account": its segments
    local _, _, segs = require("chatgw.router").parse_key(route.method .. " " .. route.path)
    route.segs = segs
  end
  extra_builtins[#extra_builtins + 1] = route
end

local whoami

-- Liveness for probes (Kubernetes, load balancers): no token, no detail.
local HEALTHZ_DRAINING = '{"ok":false}'
local function healthz()
  if chatgw._stopping() then return 503, HEALTHZ_DRAINING, JSON_HEADERS end
  return 200, HEALTH_OK, JSON_HEADERS
end

-- Who the request's token is and what it may do (any valid token may ask).
function whoami(req)
  return { ok = true, name = req.auth.name, scopes = req.auth.scopes }
end

local function add_builtins(router, listener)
  router:add({ method = "GET", path = "/health", fn = health, public = false, label = "GET /health", scope = "read" })
  router:add({ method = "GET", path = "/healthz", fn = healthz, public = true, label = "GET /healthz" })
  router:add({ method = "GET", path = "/metrics", fn = metrics_route, public = false, label = "GET /metrics",
               scope = "read" })
  router:add({ method = "GET", path = "/v1/whoami", fn = whoami, public = false, label = "GET /v1/whoami",
               scope = false })
  for _, r in ipairs(extra_builtins) do
    -- listener: a name, or a function of the config read now (a route whose listener is set)
    local l = r.listener
    if type(l) == "function" then l = l(chatgw.config) end
    if (l or "main") == listener then
      local path = r.path_fn and r.path_fn(chatgw.config)
      if r.path_fn and not path then -- nil: not served with this config (ws.enabled: false)
      elseif r.path_fn then -- a path from the config (channels.feishu.event_path)
        local route = {}
        for k, v in pairs(r) do route[k] = v end
        route.path = path
        local _, _, segs = require("chatgw.router").parse_key(route.method .. " " .. route.path)
        route.segs = segs
        router:add(route)
      else
        router:add(r)
      end
    end
  end
end

-- ---- load ----

-- Load steps of runtime modules (the chat policy file, ...): fn(cfg, opts) returning nil or a
-- list of "file:line: message" problems. They run after the config and the handlers.
local load_steps = {}
function M.register_load_step(fn) load_steps[#load_steps + 1] = fn end

-- chatgw check: the certificate and key of each TLS listener load (at start the listener loads
-- them itself; a reload keeps the running ones when they do not).
M.register_load_step(function(cfg, opts)
  if not opts.check_only then return nil end
  local problems = {}
  for name, l in pairs(cfg.listeners) do
    local why = l.tls and chatgw._tls_check(name, l.tls.cert, l.tls.key)
    if why then problems[#problems + 1] = ("%s: listeners.%s.tls: %s"):format(cfg._source, name, why) end
  end
  table.sort(problems)
  return problems
end)

function M.load(opts)
  M.mode, M.handlers_dir = opts.mode, opts.handlers_dir
  local cfg, problems = config.load(opts.config_path, { explicit = opts.config_explicit })
  if not cfg then return false, problems end
  chatgw._watchdog(cfg.watchdog.stall_ms, cfg.watchdog.abort_ms) -- watches the files loading next
  chatgw._memory_cap(cfg.lua.max_memory_mb) -- this state's, from now on
  if chatgw._runtime_info().generation == 1 then -- at boot (and in check): a typo keeps a default
    for _, u in ipairs(require("chatgw.env_names").unknown(chatgw._env_names("CHAT_GATEWAY_"))) do
      chatgw.log.warn("unknown environment variable " .. u.name .. ": did you mean " .. u.nearest .. "?",
        { variable = u.name, nearest = u.nearest })
    end
  end
  chatgw.config = cfg
  local handlers, routers, hproblems = loader.load(opts.handlers_dir, cfg.listeners, add_builtins)
  if #hproblems > 0 then return false, hproblems end
  M.handlers, M.routers = handlers, routers
  local tproblems = auth.configure(cfg)
  if tproblems then return false, tproblems end
  for _, step in ipairs(load_steps) do
    local p = step(cfg, opts)
    if p and #p > 0 then return false, p end
  end
  return true, cfg
end

-- ---- dispatch ----

local function has_content_type(headers)
  for k in pairs(headers) do
    if lower(k) == "content-type" then return true end
  end
  return false
end

-- Turns what a handler returned into status, body string, headers.
local function normalize(a, b, c)
  local status, body, headers
  if type(a) == "number" then
    status, body, headers = a, b, c
  elseif a == nil then
    status, body, headers = 204, nil, b
  else
    status, body, headers = 200, a, b
  end
  if status ~= status or status < 100 or status > 599 or status % 1 ~= 0 then
    error("handler returned an invalid HTTP status " .. tostring(status), 0)
  end
  if status < 200 then -- 100 Continue and 101 Switching Protocols are the runtime's to send
    error("handler returned the informational status " .. status .. " (a response needs 200-599)", 0)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error("handler returned headers of type " .. type(headers) .. " (want a table)", 0)
  end
  local bt = type(body)
  if headers == nil then
    -- The common case: no headers from the handler. Shared, read-only header tables.
    if bt == "table" then return status, json.encode(body), JSON_HEADERS end
    if bt == "string" then return status, body, TEXT_HEADERS end
    if body == nil then return status, "", NO_HEADERS end
  elseif headers == JSON_HEADERS or headers == TEXT_HEADERS then
    if bt == "string" then return status, body, headers end
  end
  local out = {}
  if headers then
    for k, v in pairs(headers) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
        error("handler returned a bad header " .. tostring(k) .. " = " .. tostring(v), 0)
      end
      out[k] = tostring(v)
    end
  end
  if bt == "table" then
    body = json.encode(body)
    if not has_content_type(out) then out["Content-Type"] = JSON_CT end
  elseif bt == "string" then
    if not has_content_type(out) then out["Content-Type"] = TEXT_CT end
  elseif body == nil then
    body = ""
  elseif bt == "number" or bt == "boolean" then
    body = tostring(body)
    if not has_content_type(out) then out["Content-Type"] = TEXT_CT end
  else
    error("handler returned a body of type " .. bt, 0)
  end
  return status, body, out
end

local function run_handler(route, req)
  local ok, a, b, c = xpcall(route.fn, traceback, req)
  if ok then
    ok, a, b, c = pcall(normalize, a, b, c)
    if ok then return a, b, c end
  else
    a = errtrace.locate(tostring(a), route.fn)
  end
  chatgw.log.error("handler error", { request_id = req.id, route = route.label, error = tostring(a) })
  return json_error(500, "internal_error", nil, { request_id = req.id })
end

-- A listener's guard runs before its routes, the token and the body's JSON: fn(req) -> nothing
-- to go on, or status, body[, headers] to answer (the notify listener refuses peers that are
-- not internal, before anything else).
-- early(remote_addr): the part of the guard that needs no body and never waits, run by
-- M.precheck before a request's body is read (nil: go on, or status, body[, headers]).
local guards, early_guards = {}, {}
function M.register_listener_guard(listener, fn, early)
  guards[listener] = fn
  early_guards[listener] = early
end

-- At headers-complete of a request with a body, before the body is read and before any
-- `100 Continue` (C calls it on the state's main thread, vm/request.c: request_precheck): the
-- listener's early guard, the route and the token. nil: read the body and dispatch (which
-- decides again, with the body); else status, body, headers, route label: answered now with
-- Connection: close. No handler code runs here and nothing waits.
function M.precheck(method, path, listener, authorization, remote)
  local eg = early_guards[listener]
  if eg then
    local s, b, h = eg(remote)
    if s then
      if type(b) == "table" then return s, json.encode(b), h or JSON_HEADERS, nil end
      return s, b, h, nil
    end
  end
  local router = M.routers[listener]
  if not router then
    local s, b, h = json_error(404, "not_found")
    return s, b, h, nil
  end
  local route, _, allow = router:match(method, path)
  if not route then
    local s, b, h
    if allow then
      s, b, h = json_error(405, "method_not_allowed", { Allow = allow })
    else
      s, b, h = json_error(404, "not_found")
    end
    return s, b, h, nil
  end
  if route.public then return nil end
  local who = auth.check(authorization)
  if not who then
    local s, b, h = json_error(401, "unauthorized", { ["WWW-Authenticate"] = "Bearer" })
    return s, b, h, route.label
  end
  if not auth.allows(who, route.scope) then
    local s, b, h = json_error(403, "forbidden", nil, { scope = route.scope or "admin" })
    return s, b, h, route.label
  end
  return nil
end

-- Call hooks (the audit ledger): fn(req, route, who, status) after each call by a known token of
-- a route that is not public, also one refused for its scope (403). Errors are logged, never
-- the caller's.
local call_hooks = {}
function M.register_call_hook(fn) call_hooks[#call_hooks + 1] = fn end

local function after_call(req, route, who, status)
  for i = 1, #call_hooks do
    local ok, err = pcall(call_hooks[i], req, route, who, status)
    if not ok then chatgw.log.warn("call hook failed", { route = route.label, error = tostring(err) }) end
  end
end

-- The request table is lazy: it is built here from the request's scalar fields and body, read
-- through the FFI with the handle C gives the dispatcher (runtime/vm/request.c) while it runs; req.headers is built through the FFI the first time it is
-- read, req.query is decoded from req.query_string the first time, a static route's empty
-- req.params is made the first time (a __index on req; most handlers read none of them). Each is a real table from then on, as before; LuaJIT ignores __pairs, so
-- pairs(req) lists them only once read. The dispatcher reads single headers (authorization,
-- content-type) without building the table.
local req_header, req_headers = cffi.req_header, cffi.req_headers
local handles = setmetatable({}, { __mode = "k" }) -- req -> its C handle while it runs

local REQ_MT = { __index = function(req, k)
  if k == "headers" then
    local h = handles[req]
    local t = h and req_headers(h)
    if not t then
      error("req.headers: first read after the response was sent (read it while the request runs)", 2)
    end
    rawset(req, "headers", t)
    return t
  elseif k == "params" then -- a static route's: empty, made when read
    local p = {}
    rawset(req, "params", p)
    return p
  elseif k == "query" then
    local q = parse_query(rawget(req, "query_string") or "")
    rawset(req, "query", q)
    return q
  end
  return nil
end }

-- Header name (lower case) of req: from req.headers once it exists, else through the FFI.
local function header(req, handle, name)
  local hs = rawget(req, "headers")
  if hs then return hs[name] end
  if not handle then return nil end
  local v = req_header(handle, name)
  if v == false then return req.headers[name] end -- repeated: joined, as the table has it
  return v
end

local function dispatch(req, handle)
  local guard = guards[req.listener]
  if guard then
    local ok, s, b, h = pcall(guard, req)
    if not ok then
      chatgw.log.error("listener guard failed", { listener = req.listener, error = tostring(s) })
      local s2, b2, h2 = json_error(500, "internal_error")
      return s2, b2, h2, nil
    end
    if s then
      if type(b) == "table" then return s, json.encode(b), h or { ["Content-Type"] = JSON_CT }, nil end
      return s, b, h, nil
    end
  end
  local router = M.routers[req.listener]
  if not router then
    local s, b, h = json_error(404, "not_found")
    return s, b, h, nil
  end
  local route, params, allow = router:match(req.method, req.path)
  if not route then
    if allow then
      local s, b, h = json_error(405, "method_not_allowed", { Allow = allow })
      return s, b, h, nil
    end
    local s, b, h = json_error(404, "not_found")
    return s, b, h, nil
  end
  local label = route.label
  if not route.public then
    local who = auth.check(header(req, handle, "authorization"))
    if not who then
      local s, b, h = json_error(401, "unauthorized", { ["WWW-Authenticate"] = "Bearer" })
      return s, b, h, label
    end
    if not auth.allows(who, route.scope) then
      local s, b, h = json_error(403, "forbidden", nil, { scope = route.scope or "admin" })
      if #call_hooks > 0 then after_call(req, route, who, 403) end
      return s, b, h, label
    end
    req.auth = who.public -- { name, scopes }: the handler may ask who called
  end
  local caller = not route.public and #call_hooks > 0 and req.auth
  if params then req.params = params end
  local body = req.body
  if body ~= "" then
    local ct = header(req, handle, "content-type")
    if ct and find(ct, "json", 1, true) then
      local v, err = json.decode(body)
      if v == nil and err then
        local s, b, h = json_error(400, "invalid_json", nil, { detail = err })
        if caller then after_call(req, route, caller, 400) end
        return s, b, h, label
      end
      req.json = v
    elseif not ct and find(body, "^%s*[%[{]") then
      req.json = json.decode(body)
    end
  end
  co_label(label, route.file)
  local s, b, hs = run_handler(route, req)
  if caller then after_call(req, route, caller, s) end
  return s, b, hs, label
end

-- C calls it for each request: false and the request's handle (req is built here, through the
-- FFI), or req whole and nil (C could not give a handle).
local req_new = cffi.req_new
function M.dispatch(req, handle)
  if handle == nil then return dispatch(setmetatable(req, REQ_MT), nil) end
  req = setmetatable(req_new(handle), REQ_MT)
  handles[req] = handle
  local s, b, hs, label = dispatch(req, handle)
  handles[req] = nil -- the request is answered next: its headers cannot be read any more
  return s, b, hs, label
end

-- ---- start: once a loaded state's store is open, before it becomes current ----

local dbmod = require "chatgw.db" -- chatgw.db (lua/chatgw/db.lua)

-- Start hooks of runtime modules (channels, ...): name -> fn() returning true | nil, err. They
-- run in order after the migrations, in the new state, while the old one still serves.
local start_hooks, start_order = {}, {}
-- opts.before: the name of a hook this one must run before (the gateway registry adds its bots
-- before "chat" starts every account).
function M.register_start(name, fn, opts)
  if not start_hooks[name] then
    local at = #start_order + 1
    for i, n in ipairs(start_order) do
      if opts and n == opts.before then at = i break end
    end
    table.insert(start_order, at, name)
  end
  start_hooks[name] = fn
end

function M.start()
  local ok, err = dbmod.migrate(M.handlers)
  if not ok then return false, err end
  for _, name in ipairs(start_order) do
    local fine, done, why = xpcall(start_hooks[name], traceback)
    if not fine then return false, name .. ": " .. tostring(done) end
    if done == nil and why then return false, name .. ": " .. tostring(why) end
  end
  return true
end

-- chatgw test DIR [SPEC...]: runs the specs (lua/chatgw/testing.lua). true when none failed.
function M.test(specs)
  return require("chatgw.testing").run(specs, M)
end

-- ---- shutdown ----

function M.shutdown()
  for _, h in ipairs(M.handlers) do
    local fn = h.module.on_shutdown
    if fn then
      local ok, err = xpcall(fn, traceback)
      if not ok then chatgw.log.error("on_shutdown failed", { file = h.file, error = tostring(err) }) end
    end
  end
end

require("chatgw.cluster").install(M) -- cluster mode on Redis: node id, locks, fan-out (lua/chatgw/cluster.lua)
require("chatgw.supervisor").install(M) -- chatgw.exec, chatgw.supervise (lua/chatgw/supervisor.lua)
require("chatgw.ws").install(M) -- chatgw.ws, methods/on_connect/on_disconnect (lua/chatgw/ws.lua)
require("chatgw.chat").install(M) -- chatgw.chat, commands/on_message/... (lua/chatgw/chat/)
require("chatgw.chat.channels.test").install(M) -- the test channel (chatgw test, tests)
require("chatgw.chat.channels.ws").install(M) -- the ws chat channel (chat.send over /ws)
require("chatgw.chat.channels.telegram").install(M) -- Telegram (on with TELEGRAM_BOT_TOKEN)
require("chatgw.chat.channels.feishu").install(M) -- Feishu/Lark (on with FEISHU_APP_ID and FEISHU_APP_SECRET)
require("chatgw.ai").install(M) -- chatgw.ai, AI providers, POST /v1/tasks, /reset (lua/chatgw/ai/)
require("chatgw.notify").install(M) -- the notify API on the notify listener (lua/chatgw/notify/)
require("chatgw.registry").install(M) -- the gateway registry, /v1/gateways (lua/chatgw/registry/)
require("chatgw.admin").install(M) -- the admin page /admin and /v1/admin/* (lua/chatgw/admin/)
require("chatgw.audit").install(M) -- the audit ledger, GET /v1/audit (lua/chatgw/audit.lua); its start hook is last

return M
