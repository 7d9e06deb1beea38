-- Plain-Lua checks for lua/chatgw/limits.lua (exec and supervisor settings) and for
-- docs/config.md showing exactly its table. Run from the repo root:
--   luajit tests/lua/limits_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local limits = require "chatgw.limits"
local config = require "chatgw.config"

local spec = require "spec_helper"
local check = spec.check

local function env(t) return function(name) return t[name] end end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

---------------------------------------------------------------------------
print("# docs/config.md lists the one table")

do
  local doc = read("docs/config.md")
  check("docs/config.md present (run from the repo root)", doc ~= nil)
  doc = doc or ""
  local table_md = limits.markdown()
  check("docs/config.md contains limits.markdown() verbatim (regenerate it: see limits.lua)",
        doc:find(table_md, 1, true) ~= nil)
  for _, name in ipairs(limits.names()) do
    check("docs/config.md names " .. name, doc:find(name, 1, true) ~= nil)
  end
  -- the names of the Node.js gateway's README, exactly
  for _, name in ipairs({
    "CHAT_GATEWAY_EXEC_MAX_GLOBAL", "CHAT_GATEWAY_EXEC_MAX_TELEGRAM", "CHAT_GATEWAY_EXEC_MAX_FEISHU",
    "CHAT_GATEWAY_EXEC_MAX_NOTIFY", "CHAT_GATEWAY_EXEC_MAX_CHARTS", "CHAT_GATEWAY_EXEC_WARN_QUEUE",
    "CHAT_GATEWAY_EXEC_WARN_WAIT_MS", "CHAT_GATEWAY_EXEC_LOG_INTERVAL_MS", "CHAT_GATEWAY_EXEC_TIMEOUT_MS",
    "CHAT_GATEWAY_EXEC_TIMEOUT_TELEGRAM_MS", "CHAT_GATEWAY_EXEC_TIMEOUT_FEISHU_MS",
    "CHAT_GATEWAY_EXEC_TIMEOUT_NOTIFY_MS", "CHAT_GATEWAY_EXEC_TIMEOUT_CHARTS_MS",
    "CHAT_GATEWAY_CIRCUIT_OPEN_AFTER", "CHAT_GATEWAY_CIRCUIT_OPEN_MS",
    "CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_TELEGRAM", "CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_FEISHU",
    "CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_NOTIFY", "CHAT_GATEWAY_CIRCUIT_OPEN_MS_TELEGRAM",
    "CHAT_GATEWAY_CIRCUIT_OPEN_MS_FEISHU", "CHAT_GATEWAY_CIRCUIT_OPEN_MS_NOTIFY",
    "CHAT_GATEWAY_MAX_RESTARTS_PER_HOUR", "CHAT_GATEWAY_MAX_RESTARTS_TELEGRAM_PER_HOUR",
    "CHAT_GATEWAY_MAX_RESTARTS_FEISHU_PER_HOUR", "CHAT_GATEWAY_MAX_RESTARTS_NOTIFY_PER_HOUR",
    "CHAT_GATEWAY_SUPERVISE_RESET_MS", "CHAT_GATEWAY_SUPERVISE_RESET_MS_TELEGRAM",
    "CHAT_GATEWAY_SUPERVISE_RESET_MS_FEISHU", "CHAT_GATEWAY_SUPERVISE_RESET_MS_NOTIFY" }) do
    local found = false
    for _, n in ipairs(limits.names()) do if n == name then found = true end end
    check("the table has the seed name " .. name, found)
  end
end

---------------------------------------------------------------------------
print("# defaults")

do
  local e = limits.resolve("exec", "telegram", nil, env {})
  check("exec global cap 8", e.max_global == 8)
  check("exec telegram cap 4", e.max == 4)
  check("exec timeout 60000", e.timeout_ms == 60000)
  check("exec feishu 4, notify 3, charts 1",
        limits.resolve("exec", "feishu", nil, env {}).max == 4 and
        limits.resolve("exec", "notify", nil, env {}).max == 3 and
        limits.resolve("exec", "charts", nil, env {}).max == 1)
  check("exec other module: the global cap", limits.resolve("exec", "other", nil, env {}).max == 8)
  local s = limits.resolve("supervise", "telegram", nil, env {})
  check("supervise defaults 5 / 60000 / 30 / 60000",
        s.circuit_open_after == 5 and s.circuit_open_ms == 60000 and s.max_restarts_per_hour == 30
        and s.reset_ms == 60000, require("chatgw.json") and "")
  check("backoff scale 1", s.CHATGW_SUPERVISE_BACKOFF_SCALE == 1)
end

---------------------------------------------------------------------------
print("# precedence: env > config > built-in")

do
  local cfg = { exec = { max_global = 6, timeout_ms = 1000, modules = { charts = { max = 2 }, x = { timeout_ms = 7 } } },
                supervise = { circuit_open_after = 9, modules = { feishu = { reset_ms = 5 } } } }
  local e = limits.resolve("exec", "charts", cfg, env {})
  check("config global cap", e.max_global == 6)
  check("config module cap beats the built-in module default", e.max == 2)
  check("module timeout falls back to the config global", e.timeout_ms == 1000)
  check("config module timeout", limits.resolve("exec", "x", cfg, env {}).timeout_ms == 7)
  check("unknown module cap: the config global", limits.resolve("exec", "x", cfg, env {}).max == 6)
  e = limits.resolve("exec", "charts", cfg, env { CHAT_GATEWAY_EXEC_MAX_CHARTS = "3", CHAT_GATEWAY_EXEC_MAX_GLOBAL = "4",
                                                  CHAT_GATEWAY_EXEC_TIMEOUT_CHARTS_MS = "250" })
  check("env module cap", e.max == 3)
  check("env global cap", e.max_global == 4)
  check("env module timeout", e.timeout_ms == 250)
  check("module env applies to its module only",
        limits.resolve("exec", "x", cfg, env { CHAT_GATEWAY_EXEC_MAX_CHARTS = "3" }).max == 6)
  local s = limits.resolve("supervise", "feishu", cfg, env { CHAT_GATEWAY_MAX_RESTARTS_FEISHU_PER_HOUR = "2",
                                                          CHAT_GATEWAY_CIRCUIT_OPEN_MS = "100" })
  check("supervise config global", s.circuit_open_after == 9)
  check("supervise config module", s.reset_ms == 5)
  check("supervise env module (MAX_RESTARTS_<MODULE>_PER_HOUR)", s.max_restarts_per_hour == 2)
  check("supervise env global", s.circuit_open_ms == 100)
  s = limits.resolve("supervise", "telegram", nil, env { CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_TELEGRAM = "2",
    CHAT_GATEWAY_CIRCUIT_OPEN_MS_TELEGRAM = "3", CHAT_GATEWAY_SUPERVISE_RESET_MS_TELEGRAM = "4" })
  check("supervise env module names", s.circuit_open_after == 2 and s.circuit_open_ms == 3 and s.reset_ms == 4)
  check("empty env is ignored", limits.resolve("exec", nil, nil, env { CHAT_GATEWAY_EXEC_MAX_GLOBAL = "" }).max_global == 8)
  check("bad env falls back at use", limits.resolve("exec", nil, nil, env { CHAT_GATEWAY_EXEC_MAX_GLOBAL = "x" }).max_global == 8)
  check("scale is a number", limits.resolve("supervise", nil, nil, env { CHATGW_SUPERVISE_BACKOFF_SCALE = "0.05" })
        .CHATGW_SUPERVISE_BACKOFF_SCALE == 0.05)
end

---------------------------------------------------------------------------
print("# check(): bad values are load errors")

do
  local p = limits.check(nil, env {})
  check("clean env: no problems", #p == 0, table.concat(p, " | "))
  p = limits.check(nil, env { CHAT_GATEWAY_EXEC_MAX_GLOBAL = "abc", CHAT_GATEWAY_CIRCUIT_OPEN_MS_NOTIFY = "0",
                               CHAT_GATEWAY_EXEC_MAX_CHARTS = "1.5" })
  check("three problems", #p == 3, table.concat(p, " | "))
  check("message names the variable and the range",
        p[3] == "env CHAT_GATEWAY_EXEC_MAX_GLOBAL: expected integer 1..1024, got 'abc'", p[3])
  p = limits.check({ exec = { modules = { pdf = {} } } }, env { CHAT_GATEWAY_EXEC_MAX_PDF = "-1" })
  check("modules of the config are checked", #p == 1 and p[1]:find("CHAT_GATEWAY_EXEC_MAX_PDF", 1, true), p[1])
  p = limits.check(nil, env { CHAT_GATEWAY_SUPERVISE_RESET_MS_OPS = "no" }, { "ops" })
  check("modules in use are checked", #p == 1, table.concat(p, " | "))
end

---------------------------------------------------------------------------
print("# config sections")

do
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write("exec:\n  max_global: 3\n  modules:\n    charts:\n      max: 2\n      timeout_ms: 9\n" ..
          "supervise:\n  circuit_open_after: 2\n  lock_retry_ms: 50\n  modules:\n    telegram:\n      reset_ms: 100\n")
  f:close()
  local cfg, errors = config.load(path, { explicit = true, env = {} })
  check("exec/supervise sections load", cfg ~= nil, table.concat(errors or {}, " | "))
  if cfg then
    check("exec.max_global", cfg.exec.max_global == 3)
    check("exec defaults filled", cfg.exec.timeout_ms == 60000 and cfg.exec.queue_max == 1000)
    check("exec.modules.charts", cfg.exec.modules.charts.max == 2 and cfg.exec.modules.charts.timeout_ms == 9)
    check("supervise values", cfg.supervise.circuit_open_after == 2 and cfg.supervise.lock_retry_ms == 50)
    check("supervise module", cfg.supervise.modules.telegram.reset_ms == 100)
    local s = limits.resolve("supervise", "telegram", cfg, env {})
    check("resolved from the file", s.reset_ms == 100 and s.circuit_open_after == 2 and s.max_restarts_per_hour == 30)
  end
  f = assert(io.open(path, "wb"))
  f:write("exec:\n  max_global: 0\n  modules:\n    Bad:\n      max: 1\n")
  f:close()
  cfg, errors = config.load(path, { explicit = true, env = {} })
  check("range and module-name errors", cfg == nil and #errors == 2, table.concat(errors or {}, " | "))
  os.remove(path)
  cfg = config.load(nil, { env = {} })
  check("defaults without a file", cfg.exec.max_global == 8 and cfg.supervise.max_restarts_per_hour == 30)
end

spec.report()
