-- chatgw.limits: the one table of subprocess (exec) and supervised-loop settings: their
-- environment variables (the names of the Node.js CHAT-GATEWAY), config keys, defaults and
-- ranges. lua/chatgw/exec.lua and lua/chatgw/supervisor.lua resolve their settings here; the
-- config sections `exec:` and `supervise:` are built from it; docs/config.md shows the table
-- that M.markdown() prints (tests/lua/limits_spec.lua checks that they agree).
--
-- Precedence, per setting: the environment variable (set and non-empty) > the config file >
-- the built-in default. A per-module setting (`<MODULE>` in the name: the module name in
-- upper case) falls back to the module's built-in default, then to its global setting.
local config = require "chatgw.config"

local M = {}

local ENV_MODULE = "<MODULE>"

-- kind: "integer" (decimal digits) or "number". default: a number; for a per-module setting
-- the key of the global setting it falls back to. module_defaults: built-in per-module values.
-- modules: the module names docs/config.md spells out for a per-module setting.
M.SETTINGS = {
  -- ---- exec ----
  { env = "CHAT_GATEWAY_EXEC_MAX_GLOBAL", section = "exec", key = "max_global", default = 8,
    min = 1, max = 1024, doc = "Children running at once, over all modules." },
  { env = "CHAT_GATEWAY_EXEC_MAX_<MODULE>", section = "exec", key = "max", per_module = true,
    default = "max_global", module_defaults = { telegram = 4, feishu = 4, notify = 3, charts = 1 },
    modules = { "telegram", "feishu", "notify", "charts" }, min = 1, max = 1024,
    doc = "Children of one module running at once." },
  { env = "CHAT_GATEWAY_EXEC_TIMEOUT_MS", section = "exec", key = "timeout_ms", default = 60000,
    min = 1, max = 86400000,
    doc = "Per-call timeout, ms: the process group gets SIGTERM, then SIGKILL after the kill grace." },
  { env = "CHAT_GATEWAY_EXEC_TIMEOUT_<MODULE>_MS", section = "exec", key = "timeout_ms",
    per_module = true, default = "timeout_ms", modules = { "telegram", "feishu", "notify", "charts" },
    min = 1, max = 86400000, doc = "Per-call timeout of one module, ms." },
  { env = "CHAT_GATEWAY_EXEC_QUEUE_MAX", section = "exec", key = "queue_max", default = 1000,
    min = 0, max = 1000000,
    doc = "Calls that may wait for a slot (all modules); beyond it a call gets `nil, \"busy: ...\"`." },
  { env = "CHAT_GATEWAY_EXEC_WARN_QUEUE", section = "exec", key = "warn_queue", default = 10,
    min = 1, max = 1000000, doc = "WARN when this many calls wait for a slot." },
  { env = "CHAT_GATEWAY_EXEC_WARN_WAIT_MS", section = "exec", key = "warn_wait_ms", default = 5000,
    min = 0, max = 86400000, doc = "WARN when a call waited this long for its slot, ms." },
  { env = "CHAT_GATEWAY_EXEC_LOG_INTERVAL_MS", section = "exec", key = "log_interval_ms",
    default = 10000, min = 10, max = 86400000,
    doc = "An `exec stats` line this often while calls wait, ms; also the least time between two WARNs of one kind." },
  { env = "CHAT_GATEWAY_EXEC_KILL_GRACE_MS", section = "exec", key = "kill_grace_ms", default = 2000,
    min = 0, max = 600000, doc = "SIGTERM to SIGKILL, ms (timeout, cancellation, shutdown)." },
  { env = "CHAT_GATEWAY_EXEC_OUTPUT_MAX_BYTES", section = "exec", key = "output_max_bytes",
    default = 1048576, min = 0, max = 1073741824,
    doc = "Default `max_output`: bytes kept of stdout and of stderr each." },
  -- ---- supervise ----
  { env = "CHAT_GATEWAY_CIRCUIT_OPEN_AFTER", section = "supervise", key = "circuit_open_after",
    default = 5, min = 1, max = 1000000, doc = "Consecutive failures that open a loop's circuit." },
  { env = "CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_<MODULE>", section = "supervise",
    key = "circuit_open_after", per_module = true, default = "circuit_open_after",
    modules = { "telegram", "feishu", "notify" }, min = 1, max = 1000000,
    doc = "The same for the loops of one module." },
  { env = "CHAT_GATEWAY_CIRCUIT_OPEN_MS", section = "supervise", key = "circuit_open_ms",
    default = 60000, min = 1, max = 86400000,
    doc = "How long an open circuit pauses the loop, ms." },
  { env = "CHAT_GATEWAY_CIRCUIT_OPEN_MS_<MODULE>", section = "supervise", key = "circuit_open_ms",
    per_module = true, default = "circuit_open_ms", modules = { "telegram", "feishu", "notify" },
    min = 1, max = 86400000, doc = "The same for the loops of one module, ms." },
  { env = "CHAT_GATEWAY_MAX_RESTARTS_PER_HOUR", section = "supervise", key = "max_restarts_per_hour",
    default = 30, min = 0, max = 1000000,
    doc = "Restarts allowed in any hour; one more stops the loop for good (ERROR log)." },
  { env = "CHAT_GATEWAY_MAX_RESTARTS_<MODULE>_PER_HOUR", section = "supervise",
    key = "max_restarts_per_hour", per_module = true, default = "max_restarts_per_hour",
    modules = { "telegram", "feishu", "notify" }, min = 0, max = 1000000,
    doc = "The same for the loops of one module." },
  { env = "CHAT_GATEWAY_SUPERVISE_RESET_MS", section = "supervise", key = "reset_ms",
    default = 60000, min = 1, max = 86400000,
    doc = "A run that lasted this long resets the backoff and the failure count, ms." },
  { env = "CHAT_GATEWAY_SUPERVISE_RESET_MS_<MODULE>", section = "supervise", key = "reset_ms",
    per_module = true, default = "reset_ms", modules = { "telegram", "feishu", "notify" },
    min = 1, max = 86400000, doc = "The same for the loops of one module, ms." },
  { env = "CHAT_GATEWAY_LOCK_RETRY_MS", section = "supervise", key = "lock_retry_ms",
    default = 5000, min = 10, max = 3600000,
    doc = "A loop with `lock =` retries a lock held elsewhere this often, ms." },
  { env = "CHATGW_SUPERVISE_BACKOFF_SCALE", section = "supervise", key = nil, kind = "number",
    default = 1, min = 0.001, max = 1,
    doc = "Tests only: multiplies the fixed backoff steps (1 s, 2 s, 5 s, 10 s, 30 s) and the jitter. Leave unset." },
}

M.MODULE_PATTERN = "^[a-z][a-z0-9_]*$"
M.MODULE_MAX_LEN = 48

local by_section = { exec = {}, supervise = {} }
for _, s in ipairs(M.SETTINGS) do
  s.kind = s.kind or "integer"
  local t = by_section[s.section]
  t[#t + 1] = s
end

-- ---- config sections, built from the table ----

local function schema_of(s, with_default)
  return { type = s.kind, default = with_default and s.default or nil, min = s.min, max = s.max }
end

local function register(section)
  local fields, module_fields = {}, {}
  for _, s in ipairs(by_section[section]) do
    if s.key then
      if s.per_module then
        module_fields[s.key] = schema_of(s, false)
      else
        fields[s.key] = schema_of(s, true)
      end
    end
  end
  fields.modules = { type = "dict", key_pattern = M.MODULE_PATTERN,
                     values = { type = "map", fields = module_fields } }
  config.register_section(section, { type = "map", fields = fields })
end

-- The sections `exec:` and `supervise:` exist in every state that loads this module.
register("exec")
register("supervise")

-- ---- resolution ----

local function env_name(s, module)
  if not s.per_module then return s.env end
  return (s.env:gsub(ENV_MODULE, module:upper()))
end

-- The value of text for s, or nil when it is not acceptable.
local function parse(s, text)
  local v
  if s.kind == "integer" then
    if not text:match("^%s*%-?%d+%s*$") then return nil end
    v = tonumber(text)
  else
    v = tonumber(text)
  end
  if v == nil or v ~= v or v < s.min or v > s.max then return nil end
  return v
end

local function describe(s)
  return ("%s %s..%s"):format(s.kind, tostring(s.min), tostring(s.max))
end

local warned = {}
local function warn_bad(name, s, text)
  if warned[name] then return end
  warned[name] = true
  if chatgw and chatgw.log then
    chatgw.log.warn("ignoring a bad environment value: using the default",
      { variable = name, value = text, expected = describe(s) })
  end
end

local function from_env(s, name, getenv)
  local text = getenv(name)
  if text == nil or text == "" then return nil end
  local v = parse(s, text)
  if v == nil then warn_bad(name, s, text) end
  return v
end

local function section_cfg(cfg, section)
  local t = cfg and cfg[section]
  return type(t) == "table" and t or {}
end

-- Resolves every setting of section ("exec" or "supervise") for module (nil: globals only).
-- Returns a table key -> value (per-module settings under their key, overriding the global
-- one: exec's `timeout_ms` is the module's timeout). cfg: the config table; getenv: os.getenv.
function M.resolve(section, module, cfg, getenv)
  getenv = getenv or os.getenv
  local c = section_cfg(cfg, section)
  local out = {}
  for _, s in ipairs(by_section[section]) do
    if not s.per_module then
      local v = from_env(s, s.env, getenv)
      if v == nil and s.key then v = c[s.key] end
      if v == nil then v = s.default end
      out[s.key or s.env] = v
    end
  end
  if module then
    local mc = type(c.modules) == "table" and c.modules[module] or {}
    for _, s in ipairs(by_section[section]) do
      if s.per_module then
        local v = from_env(s, env_name(s, module), getenv)
        if v == nil then v = mc[s.key] end
        if v == nil and s.module_defaults then v = s.module_defaults[module] end
        if v == nil then v = out[s.default] end
        out[s.key] = v
      end
    end
  end
  out.module = module
  return out
end

-- Every variable of the table that is set to a bad value, for the built-in modules, the
-- modules of the config and `extra` (names): { "env NAME: expected integer 1..1024, got 'x'" }.
function M.check(cfg, getenv, extra)
  getenv = getenv or os.getenv
  local problems = {}
  local function test(s, name)
    local text = getenv(name)
    if text ~= nil and text ~= "" and parse(s, text) == nil then
      problems[#problems + 1] = ("env %s: expected %s, got '%s'"):format(name, describe(s), text)
    end
  end
  for section, list in pairs(by_section) do
    local mods, seen = {}, {}
    local function add(m) if m and not seen[m] then seen[m] = true; mods[#mods + 1] = m end end
    for _, s in ipairs(list) do for _, m in ipairs(s.modules or {}) do add(m) end end
    local c = section_cfg(cfg, section)
    if type(c.modules) == "table" then for m in pairs(c.modules) do add(m) end end
    for _, m in ipairs(extra or {}) do add(m) end
    table.sort(mods)
    for _, s in ipairs(list) do
      if s.per_module then
        for _, m in ipairs(mods) do test(s, env_name(s, m)) end
      else
        test(s, s.env)
      end
    end
  end
  table.sort(problems)
  return problems
end

-- Every variable name the docs must list: global names, and per-module names expanded for
-- the modules each entry spells out (plus the <MODULE> pattern itself).
function M.names()
  local out = {}
  for _, s in ipairs(M.SETTINGS) do
    out[#out + 1] = s.env
    for _, m in ipairs(s.modules or {}) do out[#out + 1] = env_name(s, m) end
  end
  return out
end

local function fmt_num(v)
  if v == math.floor(v) then return ("%d"):format(v) end
  return tostring(v)
end

-- The table of docs/config.md, generated: `luajit -e 'package.path="lua/?.lua;"..package.path
-- print(require("chatgw.limits").markdown())'` from the repository root.
function M.markdown()
  local rows = {
    "| variable | config key | default | range | meaning |",
    "| --- | --- | --- | --- | --- |",
  }
  for _, s in ipairs(M.SETTINGS) do
    local var, key, default = "`" .. s.env .. "`", "", ""
    if s.per_module then
      local names = {}
      for _, m in ipairs(s.modules or {}) do names[#names + 1] = "`" .. env_name(s, m) .. "`" end
      var = var .. " (" .. table.concat(names, ", ") .. ")"
      key = "`" .. s.section .. ".modules.<name>." .. s.key .. "`"
      local parts = {}
      if s.module_defaults then
        for _, m in ipairs(s.modules) do
          if s.module_defaults[m] then parts[#parts + 1] = m .. " " .. fmt_num(s.module_defaults[m]) end
        end
      end
      local global
      for _, g in ipairs(M.SETTINGS) do
        if g.section == s.section and g.key == s.default and not g.per_module then global = g.env end
      end
      if #parts > 0 then
        default = table.concat(parts, ", ") .. "; other modules: `" .. global .. "`"
      else
        default = "`" .. global .. "`"
      end
    else
      key = s.key and ("`" .. s.section .. "." .. s.key .. "`") or "(none)"
      default = "`" .. fmt_num(s.default) .. "`"
    end
    local range = s.kind .. " " .. fmt_num(s.min) .. ".." .. fmt_num(s.max)
    rows[#rows + 1] = ("| %s | %s | %s | %s | %s |"):format(var, key, default, range, s.doc)
  end
  return table.concat(rows, "\n")
end

return M
