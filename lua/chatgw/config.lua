-- chatgw.config: load, validate and default the chatgw YAML config.
--
--   local config = require "chatgw.config"
--   local cfg, errors = config.load(path, { explicit = bool, env = table })
--
-- The file is read with lyaml's low-level event parser so every value keeps
-- its line. The events become a small tree of nodes, which is then checked
-- against a schema. Scalars are converted by the schema's type, never by
-- YAML's implicit typing: a string field given `on` stays "on", a boolean
-- field accepts true/false/yes/no/on/off. Only the free-form `app` section
-- (type "any") uses plain YAML typing.
--
-- Errors are strings "<file>:<line>: <message>" or "env <NAME>: <message>".
-- load() never raises for bad input; register_section() raises on a bad
-- schema, since that is a programming error.
--
-- Schema DSL (also used by register_section):
--   { type = "string",  default = s, enum = {..}, min_len = n, max_len = n }
--   { type = "integer", default = n, min = n, max = n }     -- decimal digits only
--   { type = "number",  default = n, min = n, max = n }
--   { type = "boolean", default = b }                       -- true/false/yes/no/on/off
--   { type = "map",  fields = { name = schema, ... } }      -- fixed keys
--   { type = "dict", values = schema, key_pattern = luapat, max_keys = n, default = {..} }
--   { type = "list", items = schema, default = {..}, single = b }  -- single: a scalar is a 1-item list
--   { type = "any",  default = v }                          -- plain YAML typing
-- Every key is optional; a missing key, or one whose value is empty/~/null,
-- gets its default (a map: its fields' defaults; dict/list: default or {}).

local yaml = require "yaml"

local M = {}

-- YAML null inside `app` (type "any") values. cjson.null when lua-cjson is
-- present so handlers can pass app data straight to cjson.encode.
do
  local ok, cjson = pcall(require, "cjson")
  M.null = ok and cjson.null or setmetatable({}, { __tostring = function() return "null" end })
end

local MAIN_HOST, MAIN_PORT = "127.0.0.1", 8787
-- Listeners whose port defaults to main's port plus an offset.
local DERIVED_PORT = { feishu = 1, notify = 2 }
local MAX_LISTENERS = 8

local STR_TAG = "tag:yaml.org,2002:str"
local NULL_WORDS = { [""] = true, ["~"] = true, null = true, Null = true, NULL = true }
local BOOL_WORDS = { ["true"] = true, yes = true, on = true, ["false"] = false, no = false, off = false }

---------------------------------------------------------------------------
-- Schema
---------------------------------------------------------------------------

-- doc: the meaning column of docs/config.md (M.doc_rows; tests/lua/config_spec.lua checks it).
local function int(default, min, max, doc)
  return { type = "integer", default = default, min = min, max = max, doc = doc }
end
M.int = int

local function builtin_sections()
  return {
    listeners = {
      type = "dict", key_pattern = "^[a-z][a-z0-9_]*$", max_keys = MAX_LISTENERS,
      default = { main = {} },  -- main always exists; defaults filled in finish_listeners
      values = { type = "map", fields = {
        host = { type = "string", min_len = 1, max_len = 255 },
        port = int(nil, 0, 65535),
        -- TLS on this listener (runtime/net/tls_*.c); relative paths are beside chatgw.yml
        tls = { type = "map", fields = {
          cert = { type = "string", min_len = 1, max_len = 1023 },
          key = { type = "string", min_len = 1, max_len = 1023 },
        } },
      } },
    },
    data_dir = { type = "string", default = "./data", min_len = 1, max_len = 1023 },
    log = { type = "map", fields = {
      level = { type = "string", default = "info", enum = { "debug", "info", "warn", "error" } },
    } },
    http = { type = "map", fields = {
      max_header_bytes  = int(16384, 1024, 1048576, "Largest request line plus headers, in bytes."),
      max_body_bytes    = int(1048576, 1, 1073741824, "Largest request body, in bytes."),
      header_timeout_ms = int(10000, 1, 3600000, "Time allowed to receive a complete request head, in ms."),
      body_timeout_ms   = int(30000, 1, 3600000, "Time allowed to receive a complete request body, in ms."),
      idle_timeout_ms   = int(60000, 1, 3600000,
        "A keep-alive connection with no request in flight is closed after this many ms."),
      max_connections   = int(1024, 1, 1000000, "Concurrent connections over all listeners."),
      max_per_ip        = int(256, 1, 1000000, "Open connections from one client address over all "
        .. "listeners; beyond: the new connection gets `503` (Retry-After: 1) and is closed."),
      max_unsent_bytes  = int(262144, 4096, 1073741824, "A connection's unsent response bytes; beyond: "
        .. "its pipelined requests are neither parsed nor read until the client has read enough, in bytes."),
      max_buffered_body_bytes = int(67108864, 1024, 17179869184, "Request bodies held in memory over "
        .. "all connections (read so far, or with a handler); a body that would pass it gets `503` "
        .. "(Retry-After: 1), in bytes."),
    } },
    shutdown = { type = "map", fields = { drain_timeout_ms = int(10000, 0, 3600000) } },
    lua = { type = "map", fields = {
      max_memory_mb = int(1024, 0, 1048576, "Memory one Lua state (the handlers, with everything "
        .. "they keep) may use, in MB: an allocation past it raises `not enough memory` in the "
        .. "handler that asked (a request gets a 500) and the state goes on; `0`: no cap."),
    } },
    watchdog = { type = "map", fields = {
      stall_ms = int(2000, 50, 3600000, "A coroutine that runs this long without yielding "
        .. "(the loop has not turned) is logged as an ERROR and interrupted: it raises "
        .. "`watchdog: ... ran for N ms without yielding`, in ms."),
      abort_ms = int(10000, 0, 86400000, "When the loop is still stuck this long after its last "
        .. "turn (a JIT-compiled loop no hook reaches), the process exits with status 70; `0`: never. "
        .. "At least `stall_ms`, in ms."),
    } },
    shared = { type = "map", fields = { default_max_bytes = int(1048576, 1, 1073741824) } },
    -- Several nodes on one Redis (lua/chatgw/cluster.lua, docs/cluster.md).
    cluster = { type = "map", fields = {
      redis_url = { type = "string", default = "", max_len = 1023, doc = "The cluster's Redis "
        .. "(env `CHAT_GATEWAY_REDIS_URL`): `redis://[user:pass@]host:port/db` or "
        .. "`unix:///path?db=N`; `rediss://` is refused (no TLS in hiredis 0.14: use a local "
        .. "TLS tunnel). Empty: one node, no Redis ([cluster.md](cluster.md))." },
      node_id = { type = "string", default = "", max_len = 100, doc = "This node's name in "
        .. "logs (`node`), `/health` and metrics, `[A-Za-z0-9._-]`; empty: `<hostname>-<pid>`." },
      lock_ttl_ms = int(10000, 1000, 600000, "A leader lock's time to live in Redis, renewed at "
        .. "a third of it; another node takes a dead leader's lock within it, in ms."),
      connect_timeout_ms = int(2000, 100, 600000, "Resolving, connecting and authenticating to "
        .. "Redis, in ms; then reconnects back off from 100 ms to 5 s."),
      command_timeout_ms = int(2000, 10, 600000, "Every Redis command's deadline: past it the "
        .. "command fails and the connection is dropped and made again, in ms."),
    } },
    app = { type = "dict", values = { type = "any" } },
  }
end

-- The registry of this module instance: built-in sections plus registered ones.
local root = { type = "map", fields = builtin_sections() }

local KNOWN_TYPES = { string = true, integer = true, number = true, boolean = true,
                      map = true, dict = true, list = true, any = true }
local LUA_TYPE = { string = "string", integer = "number", number = "number", boolean = "boolean",
                   dict = "table", list = "table" }

-- Raise on a malformed schema node (programming error in a caller).
local function check_schema(s, where)
  local function fail(msg) error(("config schema %s: %s"):format(where, msg), 0) end
  if type(s) ~= "table" then fail("must be a table") end
  if not KNOWN_TYPES[s.type] then fail("unknown type '" .. tostring(s.type) .. "'") end
  if s.default ~= nil and LUA_TYPE[s.type] and type(s.default) ~= LUA_TYPE[s.type] then
    fail("default must be a " .. LUA_TYPE[s.type])
  end
  if s.type == "map" then
    if s.default ~= nil then fail("map takes defaults from its fields") end
    if type(s.fields) ~= "table" then fail("map needs fields") end
    for k, f in pairs(s.fields) do check_schema(f, where .. "." .. tostring(k)) end
  elseif s.type == "dict" then
    check_schema(s.values, where .. ".<values>")
    for k, f in pairs(s.reserved or {}) do check_schema(f, where .. "." .. tostring(k)) end
  elseif s.type == "list" then
    check_schema(s.items, where .. ".<items>")
  end
  if s.enum ~= nil and (s.type ~= "string" or type(s.enum) ~= "table") then
    fail("enum is only for strings and must be a list")
  end
end

function M.register_section(name, schema)
  if type(name) ~= "string" or not name:match("^[a-z][a-z0-9_]*$") then
    error("config.register_section: bad section name '" .. tostring(name) .. "'", 2)
  end
  if root.fields[name] then
    error("config.register_section: section '" .. name .. "' already exists", 2)
  end
  check_schema(schema, name)
  root.fields[name] = schema
end

---------------------------------------------------------------------------
-- Small helpers
---------------------------------------------------------------------------

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deepcopy(x) end
  return t
end

local function join(path, key)
  if path == "" then return key end
  return path .. "." .. key
end

local function default_of(s)
  if s.type == "map" then
    local t = {}
    for k, f in pairs(s.fields) do t[k] = default_of(f) end
    return t
  end
  if s.default ~= nil then return deepcopy(s.default) end
  if s.type == "dict" then -- reserved keys (providers.default) have defaults of their own
    local t = {}
    for k, f in pairs(s.reserved or {}) do t[k] = default_of(f) end
    return t
  end
  if s.type == "list" then return {} end
  return nil
end

-- "integer 0..65535", "one of debug, info", ...: what a scalar field accepts.
local function describe(s)
  if s.enum then return "one of " .. table.concat(s.enum, ", ") end
  local lo, hi = s.min, s.max
  if s.type == "string" then lo, hi = s.min_len, s.max_len end
  local range = ""
  if lo and hi then range = (" %s..%s"):format(lo, hi)
  elseif lo then range = " >= " .. lo
  elseif hi then range = " <= " .. hi end
  if s.type == "string" and range ~= "" then return "string of" .. range .. " bytes" end
  return s.type .. range
end

---------------------------------------------------------------------------
-- Scalar conversion by schema type
---------------------------------------------------------------------------

local function parse_number(text)
  -- decimal only: no hex, inf or nan (tonumber alone would take "0x10")
  if text:match("^[-+]?%d+%.?%d*$") or text:match("^[-+]?%d*%.%d+$")
     or text:match("^[-+]?%d+%.?%d*[eE][-+]?%d+$") or text:match("^[-+]?%d*%.%d+[eE][-+]?%d+$") then
    local n = tonumber(text)
    if n and n == n and n ~= math.huge and n ~= -math.huge then return n end
  end
  return nil
end

local PARSE = {
  string = function(text) return text end,
  integer = function(text)
    if text:match("^[-+]?%d+$") then
      local n = tonumber(text)
      if math.abs(n) <= 2 ^ 53 then return n end
    end
    return nil
  end,
  number = parse_number,
  boolean = function(text) return BOOL_WORDS[text:lower()] end,
}

-- text -> value, or nil and "type"/"range" telling what was wrong.
local function convert_text(s, text)
  local v = PARSE[s.type](text)
  if v == nil then return nil, "type" end
  local size = s.type == "string" and #v or v
  local lo = s.type == "string" and s.min_len or s.min
  local hi = s.type == "string" and s.max_len or s.max
  if (lo and size < lo) or (hi and size > hi) then return nil, "range" end
  if s.enum then
    local found = false
    for _, e in ipairs(s.enum) do if e == v then found = true end end
    if not found then return nil, "range" end
  end
  return v
end

-- Plain YAML typing for "any": null, YAML 1.1 booleans, decimal/hex integers,
-- floats, .inf/.nan; everything else is a string. Quoted scalars are strings.
local function resolve_plain(text)
  if NULL_WORDS[text] then return M.null end
  local b = BOOL_WORDS[text:lower()]
  if b ~= nil and (text == text:lower() or text == text:upper()
                   or text == text:sub(1, 1):upper() .. text:sub(2):lower()) then
    return b
  end
  local n = parse_number(text)
  if n then return n end
  local sign, hex = text:match("^([-+]?)0x(%x+)$")
  if hex then return (sign == "-" and -1 or 1) * tonumber(hex, 16) end
  local lower = text:lower()
  if lower == ".inf" or lower == "+.inf" then return math.huge end
  if lower == "-.inf" then return -math.huge end
  if lower == ".nan" then return 0 / 0 end
  return text
end

---------------------------------------------------------------------------
-- YAML text -> node tree
--   { kind = "scalar", value = s, quoted = bool, line = n }
--   { kind = "map", line = n, entries = { { key = s, line = n, value = node }, ... } }
--   { kind = "seq", line = n, items = { node, ... } }
---------------------------------------------------------------------------

-- libyaml errors look like
--   "<problem> at document: 1, line: 3, column: 2\n<context> at line: 1, column: 1\n"
-- (the problem position is left out when it is line 1, column 1).
local function yaml_error(err)
  err = tostring(err)
  local first, rest = err:match("^([^\n]*)\n?(.*)$")
  local problem = first:gsub(" at document: .*$", "")
  local line = first:match(", line: (%d+)")
  local context, cline = rest:match("^(.-) at line: (%d+)")
  local msg = problem
  if context then msg = ("%s (%s at line %s)"):format(problem, context, cline) end
  return tonumber(line or cline or 1), msg
end

local function read_events(text)
  local events = {}
  local ok, err = pcall(function()
    for ev in yaml.parser(text) do events[#events + 1] = ev end
  end)
  if not ok then return nil, yaml_error(err) end
  return events
end

-- Build the tree of the single document. Returns root node (or nil for an
-- empty stream); reports structural problems through err(line, msg).
local function build_tree(events, err)
  local pos = 1
  local function next_event()
    local ev = events[pos]
    pos = pos + 1
    return ev, ev.start_mark.line + 1
  end

  -- anchors/aliases are rejected (one config file should read top to bottom);
  -- "!!str" and "!" tags mean "string"; other tags are rejected.
  local function props(ev, line)
    if ev.anchor then err(line, ("anchors are not supported (&%s)"):format(ev.anchor)) end
    if ev.tag and ev.tag ~= STR_TAG and ev.tag ~= "!" then
      err(line, ("tags are not supported (%s)"):format(ev.tag))
    end
  end

  local node
  function node(path)
    local ev, line = next_event()
    local t = ev.type
    if t == "ALIAS" then
      err(line, ("aliases are not supported (*%s)"):format(ev.anchor))
      return { kind = "scalar", value = "", quoted = false, line = line }
    end
    props(ev, line)
    if t == "SCALAR" then
      return { kind = "scalar", value = ev.value, line = line,
               quoted = ev.style ~= "PLAIN" or ev.tag ~= nil }
    elseif t == "SEQUENCE_START" then
      local n = { kind = "seq", line = line, items = {} }
      while events[pos].type ~= "SEQUENCE_END" do
        n.items[#n.items + 1] = node(("%s[%d]"):format(path, #n.items + 1))
      end
      pos = pos + 1
      return n
    elseif t == "MAPPING_START" then
      local n = { kind = "map", line = line, entries = {} }
      local seen = {}
      while events[pos].type ~= "MAPPING_END" do
        local key = node(path)
        local value = node(key.kind == "scalar" and join(path, key.value) or path)
        if key.kind ~= "scalar" then
          err(key.line, ("%s: mapping keys must be scalars"):format(path == "" and "(top level)" or path))
        else
          local full = join(path, key.value)
          if seen[key.value] then
            err(key.line, ("duplicate key '%s' (first at line %d)"):format(full, seen[key.value]))
          else
            seen[key.value] = key.line
            n.entries[#n.entries + 1] = { key = key.value, line = key.line, value = value }
          end
        end
      end
      pos = pos + 1
      return n
    end
    err(line, "unexpected YAML event " .. tostring(t))
    return { kind = "scalar", value = "", quoted = false, line = line }
  end

  next_event()                                  -- STREAM_START
  if events[pos].type == "STREAM_END" then return nil end
  next_event()                                  -- DOCUMENT_START
  local tree = node("")
  next_event()                                  -- DOCUMENT_END
  if events[pos].type == "DOCUMENT_START" then
    local _, line = next_event()
    err(line, "multiple YAML documents are not supported")
  end
  return tree
end

---------------------------------------------------------------------------
-- Tree + schema -> Lua values
---------------------------------------------------------------------------

local function is_null(node)
  return node.kind == "scalar" and not node.quoted and NULL_WORDS[node.value] == true
end

local function shown(node)
  if node.kind == "map" then return "a mapping" end
  if node.kind == "seq" then return "a sequence" end
  return "'" .. node.value .. "'"
end

local function convert_any(node)
  if node.kind == "scalar" then
    if node.quoted then return node.value end
    return resolve_plain(node.value)
  elseif node.kind == "seq" then
    local t = {}
    for i, item in ipairs(node.items) do t[i] = convert_any(item) end
    return t
  end
  local t = {}
  for _, e in ipairs(node.entries) do t[e.key] = convert_any(e.value) end
  return t
end

-- ctx = { err = function(line, msg), lines = { [dotted path] = line } }
local convert

local CONVERT = {}

function CONVERT.map(s, node, path, ctx)
  local out = {}
  for _, e in ipairs(node.entries) do
    local sub = join(path, e.key)
    local f = s.fields[e.key]
    if f == nil then
      ctx.err(e.line, ("unknown key '%s'"):format(sub))
    else
      ctx.lines[sub] = e.line
      out[e.key] = convert(f, e.value, sub, ctx)
    end
  end
  for k, f in pairs(s.fields) do
    if out[k] == nil then out[k] = default_of(f) end
  end
  return out
end

function CONVERT.dict(s, node, path, ctx)
  local out = default_of(s)
  local reserved = s.reserved or {}
  for _, e in ipairs(node.entries) do
    local sub = join(path, e.key)
    if reserved[e.key] then -- a key with a schema of its own among the named entries
      ctx.lines[sub] = e.line
      out[e.key] = convert(reserved[e.key], e.value, sub, ctx)
    elseif s.key_pattern and not e.key:match(s.key_pattern) then
      ctx.err(e.line, ("%s: invalid name '%s' (must match %s)")
        :format(path, e.key, s.key_pattern:gsub("^%^", ""):gsub("%$$", "")))
    else
      ctx.lines[sub] = e.line
      out[e.key] = convert(s.values, e.value, sub, ctx)
    end
  end
  if s.max_keys then
    local n = 0
    for k in pairs(out) do if not reserved[k] then n = n + 1 end end
    if n > s.max_keys then
      ctx.err(node.line, ("%s: at most %d entries allowed, got %d"):format(path, s.max_keys, n))
    end
  end
  return out
end

function CONVERT.list(s, node, path, ctx)
  local out = {}
  for i, item in ipairs(node.items) do
    local sub = ("%s[%d]"):format(path, i)
    ctx.lines[sub] = item.line
    out[i] = convert(s.items, item, sub, ctx)
  end
  return out
end

local NODE_KIND = { map = "map", dict = "map", list = "seq" }
local KIND_NAME = { map = "mapping", seq = "sequence" }

function convert(s, node, path, ctx)
  if node == nil then return default_of(s) end
  if s.type == "any" then return convert_any(node) end
  if is_null(node) then return default_of(s) end

  local want = NODE_KIND[s.type]
  if s.type == "list" and s.single and node.kind == "scalar" then
    return { convert(s.items, node, path, ctx) }
  end
  if want then
    if node.kind ~= want then
      local what = KIND_NAME[want]
      if s.type == "list" and s.single then what = s.items.type .. " or " .. what end
      ctx.err(node.line, ("%s: expected %s, got %s"):format(path, what, shown(node)))
      return nil
    end
    return CONVERT[s.type](s, node, path, ctx)
  end

  if node.kind ~= "scalar" then
    ctx.err(node.line, ("%s: expected %s, got %s"):format(path, s.type, shown(node)))
    return nil
  end
  local v, why = convert_text(s, node.value)
  if why == "type" then
    ctx.err(node.line, ("%s: expected %s, got %s"):format(path, s.type, shown(node)))
  elseif why == "range" then
    ctx.err(node.line, ("%s: expected %s, got %s"):format(path, describe(s), shown(node)))
  end
  return v
end

---------------------------------------------------------------------------
-- Environment overrides and listener defaults
---------------------------------------------------------------------------

-- { variable, listener name or nil, key path }. `listener` means: apply only
-- when that listener is declared (main always is).
local ENV = {
  { "CHAT_GATEWAY_HOST",      "main",   { "listeners", "main", "host" } },
  { "CHAT_GATEWAY_PORT",      "main",   { "listeners", "main", "port" } },
  { "CHAT_GATEWAY_DATA_DIR",  nil,      { "data_dir" } },
  { "CHAT_GATEWAY_LOG_LEVEL", nil,      { "log", "level" } },
  { "CHAT_GATEWAY_REDIS_URL", nil,      { "cluster", "redis_url" } },
  { "FEISHU_WEBHOOK_HOST",    "feishu", { "listeners", "feishu", "host" } },
  { "FEISHU_WEBHOOK_PORT",    "feishu", { "listeners", "feishu", "port" } },
  { "INTEGRATIONS_HOST",      "notify", { "listeners", "notify", "host" } },
  { "INTEGRATIONS_PORT",      "notify", { "listeners", "notify", "port" } },
}

local function schema_at(keys)
  local s = root
  for _, k in ipairs(keys) do
    if s.type == "map" then s = s.fields[k] else s = s.values end
  end
  return s
end

-- Listeners that exist without a declaration when their channel is on (seed 000 runs the
-- Feishu webhook server whenever Feishu is configured): name -> fn(cfg, getenv) -> boolean.
local auto_listeners = {}
-- A variable's value, or nil when it is unset or empty (an empty variable is ignored, as the
-- config's own overrides do). getenv: os.getenv, or a test's.
function M.env_value(getenv, name)
  local v = name and getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

function M.register_auto_listener(name, fn)
  for _, a in ipairs(auto_listeners) do if a.name == name then a.fn = fn return end end
  auto_listeners[#auto_listeners + 1] = { name = name, fn = fn }
end

local function add_auto_listeners(cfg, getenv)
  for _, a in ipairs(auto_listeners) do
    if not cfg.listeners[a.name] then
      local ok, on = pcall(a.fn, cfg, getenv)
      if ok and on then cfg.listeners[a.name] = {} end
    end
  end
end

-- An unset or empty variable is ignored.
local function apply_env(cfg, getenv, errors)
  for _, e in ipairs(ENV) do
    local name, listener, keys = e[1], e[2], e[3]
    local text = getenv(name)
    if text ~= nil and text ~= "" and (listener == nil or cfg.listeners[listener]) then
      local s = schema_at(keys)
      local v = convert_text(s, text)
      if v == nil then
        errors[#errors + 1] = ("env %s: expected %s, got '%s'"):format(name, describe(s), text)
      else
        local t = cfg
        for i = 1, #keys - 1 do t = t[keys[i]] end
        t[keys[#keys]] = v
      end
    end
  end
end

-- A listener's tls: both files or neither; relative paths are beside the config file (dir).
local function finish_tls(name, l, dir, lines, err)
  local t = l.tls
  if t == nil or (t.cert == nil and t.key == nil) then
    l.tls = nil
    return
  end
  local line = lines["listeners." .. name .. ".tls"] or lines["listeners." .. name] or 1
  for _, k in ipairs({ "cert", "key" }) do
    if t[k] == nil then
      err(line, ("listeners.%s.tls.%s: required with tls (a PEM file)"):format(name, k))
    elseif t[k]:sub(1, 1) ~= "/" then
      t[k] = dir .. "/" .. t[k]
    end
  end
end

-- Runs after env overrides so derived defaults follow the effective main.
local function finish_listeners(listeners, lines, err, dir)
  local main = listeners.main
  main.host = main.host or MAIN_HOST
  main.port = main.port or MAIN_PORT
  for name, l in pairs(listeners) do
    finish_tls(name, l, dir, lines, err)
    if name ~= "main" then
      local line = lines["listeners." .. name] or 1
      l.host = l.host or main.host
      if l.port == nil then
        local offset = DERIVED_PORT[name]
        if offset == nil then
          err(line, ("listeners.%s.port: required"):format(name))
        elseif main.port == 0 then
          l.port = 0
        elseif main.port + offset > 65535 then
          err(line, ("listeners.%s.port: main port + %d = %d is out of range; set it explicitly")
            :format(name, offset, main.port + offset))
        else
          l.port = main.port + offset
        end
      end
    end
  end
end

---------------------------------------------------------------------------
-- load
---------------------------------------------------------------------------

-- Returns text, or nil (missing, not explicit), or false + error string.
local function read_file(path, explicit)
  local f, msg, code = io.open(path, "rb")
  if not f then
    if code == 2 and not explicit then return nil end
    if msg:sub(1, #path + 2) == path .. ": " then msg = msg:sub(#path + 3) end
    return false, ("%s: cannot open: %s"):format(path, msg)
  end
  local text, rmsg = f:read("*a")
  f:close()
  if not text then return false, ("%s: cannot read: %s"):format(path, tostring(rmsg)) end
  return text
end

-- Parse and validate one YAML text. Returns cfg without env/listener
-- finishing, node lines, and errors (appended to `errors`).
local function from_text(text, file, errors, schema)
  schema = schema or root
  local function err(line, msg) errors[#errors + 1] = ("%s:%d: %s"):format(file, line, msg) end
  local ctx = { err = err, lines = {} }

  local events, line, msg = read_events(text)
  if not events then
    err(line, msg)
    return nil, ctx
  end
  local tree = build_tree(events, err)
  if #errors > 0 then return nil, ctx end
  if tree == nil or is_null(tree) then return default_of(schema), ctx end
  local want = NODE_KIND[schema.type]
  if want and tree.kind ~= want then
    err(tree.line, ("top level must be a %s, got %s"):format(KIND_NAME[want], shown(tree)))
    return nil, ctx
  end
  return convert(schema, tree, "", ctx), ctx
end

-- The line-numbered YAML machinery for other files (chatgw.chat.policy, ...):
--   local value, errors, lines = config.load_text(text, file, schema)
-- Parses `text` (named `file` in errors) and converts it by `schema` (the DSL above; raises on a
-- bad schema). On success: value, {}, lines; on any problem: nil, { "<file>:<line>: <msg>", ... },
-- lines. lines maps the dotted path of every key and list item ("rules[2].match.user_id") to its line.
function M.load_text(text, file, schema)
  check_schema(schema, tostring(file))
  local errors = {}
  local value, ctx = from_text(text, file, errors, schema)
  if #errors > 0 then return nil, errors, ctx.lines end
  return value, errors, ctx.lines
end

function M.load(path, opts)
  opts = opts or {}
  local getenv = os.getenv
  if opts.env then getenv = function(name) return opts.env[name] end end

  local errors = {}
  local cfg, ctx, source = nil, { lines = {} }, "(defaults)"
  local text, open_err = nil, nil
  if path ~= nil then text, open_err = read_file(path, opts.explicit) end
  if open_err then return nil, { open_err } end

  if text then
    source = path
    cfg, ctx = from_text(text, path, errors)
    if not cfg then return nil, errors end
  else
    cfg = default_of(root)
  end

  add_auto_listeners(cfg, getenv) -- before the env, so FEISHU_WEBHOOK_* apply to them
  apply_env(cfg, getenv, errors)
  finish_listeners(cfg.listeners, ctx.lines, function(line, msg)
    errors[#errors + 1] = ("%s:%d: %s"):format(source, line, msg)
  end, (text and path or ""):match("^(.*)/[^/]*$") or ".")
  if #errors > 0 then return nil, errors end
  cfg._source = source
  cfg._lines = ctx.lines -- "tokens.x.scopes" -> its line, for the problems of later load steps
  return cfg, errors
end

---------------------------------------------------------------------------
-- Documentation rows: the schema is the one table of keys, types, ranges and
-- defaults; docs/config.md shows these rows (tests/lua/config_spec.lua).
---------------------------------------------------------------------------

local function fmt_value(v)
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
    return tostring(v)
  end
  if type(v) == "string" then return '"' .. v .. '"' end
  if type(v) == "table" then return next(v) == nil and "[]" or "{...}" end
  return tostring(v)
end

local doc_type
function doc_type(s)
  if s.doc_type then return s.doc_type end
  if s.type == "integer" or s.type == "number" then
    if s.min and s.max then return ("%s %s..%s"):format(s.type, fmt_value(s.min), fmt_value(s.max)) end
    if s.min then return ("%s >= %s"):format(s.type, fmt_value(s.min)) end
    return s.type
  end
  if s.type == "string" then
    if s.enum then
      local names = {}
      for i, e in ipairs(s.enum) do names[i] = "`" .. e .. "`" end
      return "string: " .. table.concat(names, ", ")
    end
    if s.min_len and s.max_len then return ("string (%d..%d bytes)"):format(s.min_len, s.max_len) end
    return "string"
  end
  if s.type == "list" then
    local it = s.items
    if it.type == "string" and it.enum then
      local names = {}
      for i, e in ipairs(it.enum) do names[i] = "`" .. e .. "`" end
      return "list of " .. table.concat(names, ", ")
    end
    if it.type == "string" then return "list of strings" end
    return "list"
  end
  if s.type == "dict" then
    local v = s.values
    if v.type == "map" then return "mapping: name -> settings" end
    return "mapping: name -> " .. doc_type(v)
  end
  return s.type
end

local function doc_default(s)
  if s.doc_default then return s.doc_default end
  local d = s.default
  if s.type == "dict" and (d == nil or next(d) == nil) then return "`{}`" end
  if d == nil and s.type == "list" then d = {} end
  if d == nil then return "" end
  return "`" .. fmt_value(d) .. "`"
end

-- Rows "| `key` | type | default | meaning |" of a section, sorted by key: maps are walked
-- into, a list of maps adds its items' keys as `key[].field`.
function M.doc_rows(section)
  local rows = {}
  local function walk(s, path)
    if s.type == "map" then
      for k, f in pairs(s.fields) do walk(f, path .. "." .. k) end
      return
    end
    local d = doc_default(s)
    rows[#rows + 1] = { key = path, row = ("| `%s` | %s | %s| %s |"):format(path, doc_type(s),
      d ~= "" and d .. " " or "", s.doc or "") }
    if s.type == "list" and s.items.type == "map" then
      for k, f in pairs(s.items.fields) do walk(f, path .. "[]." .. k) end
    end
  end
  local function walk_dict(s, path) -- its reserved keys, then (doc_values) its entries' keys
    for k, f in pairs(s.reserved or {}) do walk(f, path .. "." .. k) end
    if s.doc_values and s.values.type == "map" then
      for k, f in pairs(s.values.fields) do walk(f, path .. ".<name>." .. k) end
    end
  end
  local s = root.fields[section]
  if s.type == "map" then
    for k, f in pairs(s.fields) do walk(f, section .. "." .. k) end
  elseif s.type == "dict" and (s.reserved or s.doc_values) then
    walk_dict(s, section)
  else
    walk(s, section)
  end
  table.sort(rows, function(a, b) return a.key < b.key end)
  return rows
end

return M
