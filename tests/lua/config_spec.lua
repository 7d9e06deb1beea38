-- Plain-Lua checks for lua/chatgw/config.lua. Run from the repo root:
--   luajit tests/lua/config_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local config = require "chatgw.config"

local spec = require "spec_helper"
local check = spec.check

local tmpfiles = {}

-- Write `text` to a fresh temp file and return its path.
local function yml(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end

-- Load `text` with an empty environment unless `env` is given.
local function load_text(text, env)
  local path = yml(text)
  local cfg, errors = config.load(path, { explicit = true, env = env or {} })
  return cfg, errors, path
end

local function joined(errors) return table.concat(errors or {}, " | ") end

-- Expect exactly one error, equal to path .. ":" .. suffix.
local function check_error(name, text, suffix, env)
  local cfg, errors, path = load_text(text, env)
  local want = path .. ":" .. suffix
  check(name, cfg == nil and #errors == 1 and errors[1] == want,
        "want: " .. want .. "\n     got:  " .. joined(errors))
end

---------------------------------------------------------------------------
print("# defaults")

do
  local cfg, errors = config.load(nil, { env = {} })
  check("no path gives defaults without errors", cfg ~= nil and #errors == 0, joined(errors))
  check("_source is (defaults)", cfg._source == "(defaults)")
  check("main listener host", cfg.listeners.main.host == "127.0.0.1")
  check("main listener port", cfg.listeners.main.port == 8787)
  check("only main listener", next(cfg.listeners, next(cfg.listeners)) == nil)
  check("data_dir", cfg.data_dir == "./data")
  check("log.level", cfg.log.level == "info")
  check("http.max_header_bytes", cfg.http.max_header_bytes == 16384)
  check("http.max_body_bytes", cfg.http.max_body_bytes == 1048576)
  check("http.header_timeout_ms", cfg.http.header_timeout_ms == 10000)
  check("http.body_timeout_ms", cfg.http.body_timeout_ms == 30000)
  check("http.idle_timeout_ms", cfg.http.idle_timeout_ms == 60000)
  check("http.max_connections", cfg.http.max_connections == 1024)
  check("shutdown.drain_timeout_ms", cfg.shutdown.drain_timeout_ms == 10000)
  check("shared.default_max_bytes", cfg.shared.default_max_bytes == 1048576)
  check("app is an empty table", type(cfg.app) == "table" and next(cfg.app) == nil)

  local missing = os.tmpname()
  os.remove(missing)
  cfg, errors = config.load(missing, { explicit = false, env = {} })
  check("missing non-explicit file gives defaults", cfg ~= nil and #errors == 0
        and cfg._source == "(defaults)" and cfg.http.max_body_bytes == 1048576, joined(errors))

  cfg, errors = config.load(missing, { explicit = true, env = {} })
  check("missing explicit file is an error",
        cfg == nil and #errors == 1 and errors[1] == missing .. ": cannot open: No such file or directory",
        joined(errors))

  local empties = { ["empty file"] = "", ["only comments"] = "# only a comment\n\n# another\n",
                    ["bare ---"] = "---\n", ["null document"] = "~\n" }
  for what, text in pairs(empties) do
    local c, e, path = load_text(text)
    check(what .. " gives defaults",
          c ~= nil and #e == 0 and c.listeners.main.port == 8787 and c._source == path, joined(e))
  end
end

---------------------------------------------------------------------------
print("# values from a file")

do
  local cfg, errors, path = load_text([[
# a full file
listeners:
  main:
    host: 0.0.0.0
    port: 9000
data_dir: /var/lib/chatgw
log:
  level: debug
http:
  max_header_bytes: 1024
  max_body_bytes: 2048
  header_timeout_ms: 1
  body_timeout_ms: 3600000
  idle_timeout_ms: 5000
  max_connections: 1000000
shutdown: {drain_timeout_ms: 0}
shared:
  default_max_bytes: 4096
]])
  check("full file loads", cfg ~= nil and #errors == 0, joined(errors))
  check("_source is the path", cfg._source == path)
  check("main host from file", cfg.listeners.main.host == "0.0.0.0")
  check("main port from file", cfg.listeners.main.port == 9000)
  check("data_dir from file", cfg.data_dir == "/var/lib/chatgw")
  check("log.level from file", cfg.log.level == "debug")
  check("http values from file", cfg.http.max_header_bytes == 1024 and cfg.http.max_body_bytes == 2048
        and cfg.http.header_timeout_ms == 1 and cfg.http.body_timeout_ms == 3600000
        and cfg.http.idle_timeout_ms == 5000 and cfg.http.max_connections == 1000000)
  check("drain_timeout_ms 0 allowed", cfg.shutdown.drain_timeout_ms == 0)
  check("shared.default_max_bytes from file", cfg.shared.default_max_bytes == 4096)

  cfg, errors = load_text("http:\n  max_body_bytes: 5\n")
  check("partial section keeps other defaults", cfg ~= nil and cfg.http.max_body_bytes == 5
        and cfg.http.max_header_bytes == 16384 and cfg.log.level == "info", joined(errors))

  cfg, errors = load_text("http:\nlog: ~\ndata_dir: 'x'\n")
  check("empty/null section means defaults", cfg ~= nil and cfg.http.max_body_bytes == 1048576
        and cfg.log.level == "info" and cfg.data_dir == "x", joined(errors))

  cfg, errors = load_text("listeners:\n  main: {port: 0}\n")
  check("port 0 allowed", cfg ~= nil and cfg.listeners.main.port == 0, joined(errors))

  cfg, errors = load_text("http:\n  max_body_bytes: '4096'\n")
  check("quoted integer is read by the field's type", cfg ~= nil and cfg.http.max_body_bytes == 4096,
        joined(errors))
end

---------------------------------------------------------------------------
print("# type and range errors")

check_error("integer given a word",
  "# comment\nhttp:\n  max_body_bytes: abc\n",
  "3: http.max_body_bytes: expected integer, got 'abc'")
check_error("integer given a fraction",
  "http:\n  idle_timeout_ms: 1.5\n",
  "2: http.idle_timeout_ms: expected integer, got '1.5'")
check_error("integer given hex",
  "http:\n\n\n  max_connections: 0x10\n",
  "4: http.max_connections: expected integer, got '0x10'")
check_error("integer given a mapping",
  "http:\n  max_body_bytes:\n    a: 1\n",
  "3: http.max_body_bytes: expected integer, got a mapping")
check_error("integer given a sequence",
  "shutdown:\n  drain_timeout_ms: [1, 2]\n",
  "2: shutdown.drain_timeout_ms: expected integer, got a sequence")
check_error("integer below range",
  "http:\n  max_header_bytes: 100\n",
  "2: http.max_header_bytes: expected integer 1024..1048576, got '100'")
check_error("integer above range",
  "http:\n  max_body_bytes: 1073741825\n",
  "2: http.max_body_bytes: expected integer 1..1073741824, got '1073741825'")
check_error("port out of range",
  "listeners:\n  main:\n    port: 70000\n",
  "3: listeners.main.port: expected integer 0..65535, got '70000'")
check_error("negative port",
  "listeners:\n  main:\n    port: -1\n",
  "3: listeners.main.port: expected integer 0..65535, got '-1'")
check_error("section given a scalar",
  "data_dir: d\nhttp: 5\n",
  "2: http: expected mapping, got '5'")
check_error("string given a mapping",
  "data_dir:\n  a: b\n",
  "2: data_dir: expected string, got a mapping")
check_error("empty quoted string below min length",
  "data_dir: ''\n",
  "1: data_dir: expected string of 1..1023 bytes, got ''")
check_error("enum value",
  "log:\n  level: verbose\n",
  "2: log.level: expected one of debug, info, warn, error, got 'verbose'")
check_error("top level must be a mapping",
  "# x\n- a\n- b\n",
  "2: top level must be a mapping, got a sequence")
check_error("top level scalar",
  "hello\n",
  "1: top level must be a mapping, got 'hello'")

do
  local cfg, errors, path = load_text("http:\n  max_body_bytes: abc\n  max_connections: 0\nbogus: 1\n")
  check("all errors are reported, in order", cfg == nil and #errors == 3
        and errors[1] == path .. ":2: http.max_body_bytes: expected integer, got 'abc'"
        and errors[2] == path .. ":3: http.max_connections: expected integer 1..1000000, got '0'"
        and errors[3] == path .. ":4: unknown key 'bogus'", joined(errors))
end

---------------------------------------------------------------------------
print("# unknown keys, duplicates, YAML errors")

check_error("unknown nested key has dotted path and line",
  "http:\n  max_header_bytes: 2048\n  max_body_byte: 10\n",
  "3: unknown key 'http.max_body_byte'")
check_error("unknown top-level key",
  "data_dir: x\nlisteners_x: {}\n",
  "2: unknown key 'listeners_x'")
check_error("unknown listener field",
  "listeners:\n  main:\n    hots: 0.0.0.0\n",
  "3: unknown key 'listeners.main.hots'")
check_error("duplicate key names both lines",
  "http:\n  max_body_bytes: 1\n  idle_timeout_ms: 5\n  max_body_bytes: 2\n",
  "4: duplicate key 'http.max_body_bytes' (first at line 2)")
check_error("duplicate top-level key",
  "log: {level: info}\ndata_dir: a\nlog: {level: warn}\n",
  "3: duplicate key 'log' (first at line 1)")
check_error("duplicate key inside app",
  "app:\n  x: 1\n  x: 2\n",
  "3: duplicate key 'app.x' (first at line 2)")

do
  local cfg, errors, path = load_text("http:\n  max_body_bytes: 1\n  bad: [1, 2\nlog: {}\n")
  check("YAML syntax error carries a line", cfg == nil and #errors == 1
        and errors[1]:sub(1, #path + 3) == path .. ":4:"
        and errors[1]:find("did not find expected ',' or ']'", 1, true) ~= nil, joined(errors))

  cfg, errors, path = load_text("a: b: c\n")
  check("YAML 'mapping values' error at line 1",
        cfg == nil and #errors == 1 and errors[1] == path .. ":1: mapping values are not allowed in this context",
        joined(errors))

  cfg, errors, path = load_text("log:\n  level: info\n\tdata_dir: x\n")
  check("YAML tab error line", cfg == nil and #errors == 1
        and errors[1]:sub(1, #path + 3) == path .. ":3:", joined(errors))

  cfg, errors, path = load_text("data_dir: 'unterminated\n")
  check("YAML unterminated quote", cfg == nil and #errors == 1
        and errors[1]:match("^" .. path:gsub("%p", "%%%0") .. ":%d+: found unexpected end of stream") ~= nil,
        joined(errors))
end

check_error("anchors are rejected",
  "http: &h\n  max_body_bytes: 1\n",
  "1: anchors are not supported (&h)")
check_error("aliases are rejected",
  "app:\n  a: x\n  b: *h\n",
  "3: aliases are not supported (*h)")
check_error("multiple documents are rejected",
  "data_dir: a\n---\ndata_dir: b\n",
  "2: multiple YAML documents are not supported")
check_error("tags other than !!str are rejected",
  "http:\n  max_body_bytes: !!int 5\n",
  "2: tags are not supported (tag:yaml.org,2002:int)")

---------------------------------------------------------------------------
print("# YAML 1.1 booleans")

do
  local cfg, errors = load_text("data_dir: on\nlisteners:\n  main: {host: yes}\n")
  check("'on' in a string field stays the string \"on\"", cfg ~= nil and cfg.data_dir == "on", joined(errors))
  check("'yes' in a string field stays \"yes\"", cfg ~= nil and cfg.listeners.main.host == "yes")

  cfg, errors = load_text("data_dir: 0755\n")
  check("digits in a string field stay as written", cfg ~= nil and cfg.data_dir == "0755", joined(errors))
end

---------------------------------------------------------------------------
print("# register_section")

do
  config.register_section("feature", {
    type = "map",
    fields = {
      enabled = { type = "boolean", default = false },
      verbose = { type = "boolean", default = true },
      ratio   = { type = "number", default = 0.5, min = 0, max = 1 },
      retries = { type = "integer", default = 5, min = 1, max = 10 },
      mode    = { type = "string", default = "a", enum = { "a", "b" } },
      tags    = { type = "list", items = { type = "string" } },
      peers   = { type = "dict", key_pattern = "^[a-z]+$",
                  values = { type = "map", fields = { url = { type = "string" },
                                                      weight = { type = "integer", default = 1 } } } },
      extra   = { type = "any" },
    },
  })

  local cfg, errors = config.load(nil, { env = {} })
  check("registered section gets defaults", cfg ~= nil and cfg.feature.enabled == false
        and cfg.feature.verbose == true and cfg.feature.ratio == 0.5 and cfg.feature.retries == 5
        and cfg.feature.mode == "a" and type(cfg.feature.tags) == "table" and #cfg.feature.tags == 0
        and next(cfg.feature.peers) == nil and cfg.feature.extra == nil, joined(errors))

  cfg, errors = load_text([[
feature:
  enabled: on
  verbose: off
  ratio: 0.25
  retries: 7
  mode: b
  tags: [on, "x", 3]
  peers:
    alpha: {url: "http://a"}
    beta:
      url: http://b
      weight: 3
  extra: {k: [1, two]}
]])
  local f = cfg and cfg.feature
  check("registered section loads", cfg ~= nil, joined(errors))
  check("'on' in a boolean field is true", f and f.enabled == true)
  check("'off' in a boolean field is false", f and f.verbose == false)
  check("number field", f and f.ratio == 0.25)
  check("integer field", f and f.retries == 7)
  check("enum field", f and f.mode == "b")
  check("list of strings keeps 'on' as a string", f and f.tags[1] == "on" and f.tags[2] == "x" and f.tags[3] == "3")
  check("dict entries with defaults", f and f.peers.alpha.url == "http://a" and f.peers.alpha.weight == 1
        and f.peers.beta.weight == 3)
  check("any field", f and f.extra.k[1] == 1 and f.extra.k[2] == "two")

  for _, word in ipairs({ "true", "True", "TRUE", "yes", "Yes", "on", "ON" }) do
    cfg = load_text("feature:\n  enabled: " .. word .. "\n")
    check("boolean accepts " .. word, cfg ~= nil and cfg.feature.enabled == true)
  end
  for _, word in ipairs({ "false", "no", "off", "Off", "NO" }) do
    cfg = load_text("feature:\n  verbose: " .. word .. "\n")
    check("boolean accepts " .. word, cfg ~= nil and cfg.feature.verbose == false)
  end

  check_error("boolean rejects other words", "feature:\n  enabled: maybe\n",
    "2: feature.enabled: expected boolean, got 'maybe'")
  check_error("boolean rejects 1", "feature:\n  enabled: 1\n",
    "2: feature.enabled: expected boolean, got '1'")
  check_error("number out of range", "feature:\n  ratio: 1.5\n",
    "2: feature.ratio: expected number 0..1, got '1.5'")
  check_error("number given a word", "feature:\n  ratio: half\n",
    "2: feature.ratio: expected number, got 'half'")
  check_error("list given a scalar", "feature:\n  tags: x\n",
    "2: feature.tags: expected sequence, got 'x'")
  check_error("list item type error carries its index", "feature:\n  tags:\n    - a\n    - [b]\n",
    "4: feature.tags[2]: expected string, got a sequence")
  check_error("dict key pattern", "feature:\n  peers:\n    Alpha: {}\n",
    "3: feature.peers: invalid name 'Alpha' (must match [a-z]+)")
  check_error("unknown key in registered section", "feature:\n  enable: true\n",
    "2: unknown key 'feature.enable'")

  local ok, err = pcall(config.register_section, "feature", { type = "map", fields = {} })
  check("registering a section twice raises", not ok and tostring(err):find("already exists", 1, true) ~= nil, err)
  ok, err = pcall(config.register_section, "http", { type = "map", fields = {} })
  check("registering over a built-in section raises", not ok, err)
  ok, err = pcall(config.register_section, "bad_schema", { type = "map", fields = { x = { type = "int" } } })
  check("unknown schema type raises", not ok and tostring(err):find("unknown type 'int'", 1, true) ~= nil, err)
  ok, err = pcall(config.register_section, "bad_default", { type = "integer", default = "5" })
  check("default of wrong type raises", not ok, err)
  ok, err = pcall(config.register_section, "Bad", { type = "any" })
  check("bad section name raises", not ok, err)

  -- A fresh instance of the module does not see sections registered on another.
  package.loaded["chatgw.config"] = nil
  local fresh = require "chatgw.config"
  package.loaded["chatgw.config"] = config
  local c2, e2, path = nil, nil, yml("feature:\n  enabled: true\n")
  c2, e2 = fresh.load(path, { env = {} })
  check("registry is per module instance", c2 == nil and e2[1] == path .. ":1: unknown key 'feature'", joined(e2))
end

---------------------------------------------------------------------------
print("# app section")

do
  local cfg, errors = load_text([[
app:
  name: demo
  enabled: on
  off_quoted: "off"
  count: 42
  ratio: 0.5
  hex: 0x1f
  nothing: ~
  empty:
  list: [1, "2", true, null]
  nested:
    deep:
      - {a: 1}
      - b
  version: "1.10"
]])
  local a = cfg and cfg.app
  check("app loads", cfg ~= nil, joined(errors))
  check("app string", a and a.name == "demo")
  check("app plain 'on' is a YAML boolean", a and a.enabled == true)
  check("app quoted 'off' is a string", a and a.off_quoted == "off")
  check("app integer", a and a.count == 42)
  check("app float", a and a.ratio == 0.5)
  check("app hex", a and a.hex == 31)
  check("app null is config.null", a and a.nothing == config.null and a.empty == config.null)
  check("app list", a and a.list[1] == 1 and a.list[2] == "2" and a.list[3] == true and a.list[4] == config.null)
  check("app nested", a and a.nested.deep[1].a == 1 and a.nested.deep[2] == "b")
  check("app quoted version stays a string", a and a.version == "1.10")

  check_error("app must be a mapping", "app: [1, 2]\n", "1: app: expected mapping, got a sequence")
end

---------------------------------------------------------------------------
print("# listeners")

do
  local cfg, errors = load_text("listeners:\n  feishu:\n  notify: {}\n")
  check("declared feishu/notify load", cfg ~= nil, joined(errors))
  check("feishu port defaults to main + 1", cfg and cfg.listeners.feishu.port == 8788)
  check("notify port defaults to main + 2", cfg and cfg.listeners.notify.port == 8789)
  check("extra listeners default to main's host", cfg and cfg.listeners.feishu.host == "127.0.0.1"
        and cfg.listeners.notify.host == "127.0.0.1")
  check("main still present", cfg and cfg.listeners.main.port == 8787)

  cfg, errors = load_text("listeners:\n  main: {host: 0.0.0.0, port: 9000}\n  feishu: {}\n  notify: {port: 7000}\n")
  check("derived port follows main from file", cfg and cfg.listeners.feishu.port == 9001
        and cfg.listeners.feishu.host == "0.0.0.0", joined(errors))
  check("explicit notify port kept", cfg and cfg.listeners.notify.port == 7000)

  cfg, errors = load_text("listeners:\n  main: {port: 0}\n  feishu:\n  notify:\n")
  check("main port 0 keeps derived ports 0", cfg and cfg.listeners.feishu.port == 0
        and cfg.listeners.notify.port == 0, joined(errors))

  cfg, errors = load_text("listeners:\n  admin_2: {port: 9100}\n")
  check("custom listener name with digits/underscore", cfg and cfg.listeners.admin_2.port == 9100
        and cfg.listeners.admin_2.host == "127.0.0.1", joined(errors))

  check_error("listener name with uppercase/dash rejected", "listeners:\n  Bad-Name: {port: 1}\n",
    "2: listeners: invalid name 'Bad-Name' (must match [a-z][a-z0-9_]*)")
  check_error("listener name starting with digit rejected", "listeners:\n  1st: {port: 1}\n",
    "2: listeners: invalid name '1st' (must match [a-z][a-z0-9_]*)")
  check_error("custom listener needs a port", "listeners:\n  admin:\n    host: 0.0.0.0\n",
    "2: listeners.admin.port: required")
  check_error("derived port past 65535",
    "listeners:\n  main: {port: 65535}\n  notify:\n",
    "3: listeners.notify.port: main port + 2 = 65537 is out of range; set it explicitly")
  check_error("empty host rejected", "listeners:\n  main: {host: ''}\n",
    "2: listeners.main.host: expected string of 1..255 bytes, got ''")

  local lines = { "listeners:" }
  for i = 1, 8 do lines[#lines + 1] = ("  l%d: {port: %d}"):format(i, 9000 + i) end
  check_error("at most 8 listeners including main", table.concat(lines, "\n") .. "\n",
    "2: listeners: at most 8 entries allowed, got 9")
  table.remove(lines)
  cfg, errors = load_text(table.concat(lines, "\n") .. "\n")
  check("8 listeners including main is fine", cfg ~= nil, joined(errors))
end

---------------------------------------------------------------------------
print("# environment")

do
  local env = {
    CHAT_GATEWAY_HOST = "0.0.0.0", CHAT_GATEWAY_PORT = "9999",
    CHAT_GATEWAY_DATA_DIR = "/srv/data", CHAT_GATEWAY_LOG_LEVEL = "warn",
  }
  local cfg, errors = config.load(nil, { env = env })
  check("env without file", cfg ~= nil and cfg.listeners.main.host == "0.0.0.0"
        and cfg.listeners.main.port == 9999 and cfg.data_dir == "/srv/data" and cfg.log.level == "warn",
        joined(errors))

  cfg, errors = load_text("listeners:\n  main: {host: 10.0.0.1, port: 1234}\ndata_dir: d\nlog: {level: error}\n", env)
  check("env beats file", cfg ~= nil and cfg.listeners.main.host == "0.0.0.0"
        and cfg.listeners.main.port == 9999 and cfg.data_dir == "/srv/data" and cfg.log.level == "warn",
        joined(errors))

  cfg = load_text("listeners:\n  feishu:\n  notify:\n", { CHAT_GATEWAY_PORT = "5000", CHAT_GATEWAY_HOST = "::" })
  check("derived ports follow env main port", cfg and cfg.listeners.feishu.port == 5001
        and cfg.listeners.notify.port == 5002 and cfg.listeners.feishu.host == "::")

  cfg = load_text("listeners:\n  feishu: {port: 7001}\n  notify:\n", {
    FEISHU_WEBHOOK_HOST = "0.0.0.0", FEISHU_WEBHOOK_PORT = "7100",
    INTEGRATIONS_HOST = "10.1.1.1", INTEGRATIONS_PORT = "7200",
  })
  check("FEISHU_WEBHOOK_* override feishu", cfg and cfg.listeners.feishu.host == "0.0.0.0"
        and cfg.listeners.feishu.port == 7100)
  check("INTEGRATIONS_* override notify", cfg and cfg.listeners.notify.host == "10.1.1.1"
        and cfg.listeners.notify.port == 7200)

  cfg, errors = config.load(nil, { env = { FEISHU_WEBHOOK_PORT = "7100", INTEGRATIONS_PORT = "abc" } })
  check("feishu/notify env ignored when not declared", cfg ~= nil and cfg.listeners.feishu == nil
        and cfg.listeners.notify == nil, joined(errors))

  cfg, errors = config.load(nil, { env = { CHAT_GATEWAY_PORT = "" } })
  check("empty env value is ignored", cfg ~= nil and cfg.listeners.main.port == 8787, joined(errors))

  cfg, errors = config.load(nil, { env = { CHAT_GATEWAY_PORT = "abc" } })
  check("bad env port text", cfg == nil and #errors == 1
        and errors[1] == "env CHAT_GATEWAY_PORT: expected integer 0..65535, got 'abc'", joined(errors))
  cfg, errors = config.load(nil, { env = { CHAT_GATEWAY_PORT = "70000" } })
  check("env port out of range", cfg == nil and #errors == 1
        and errors[1] == "env CHAT_GATEWAY_PORT: expected integer 0..65535, got '70000'", joined(errors))
  cfg, errors = config.load(nil, { env = { CHAT_GATEWAY_LOG_LEVEL = "loud" } })
  check("bad env log level", cfg == nil and #errors == 1
        and errors[1] == "env CHAT_GATEWAY_LOG_LEVEL: expected one of debug, info, warn, error, got 'loud'",
        joined(errors))
  cfg, errors = load_text("listeners:\n  feishu:\n", { FEISHU_WEBHOOK_PORT = "x1" })
  check("bad FEISHU_WEBHOOK_PORT", cfg == nil and #errors == 1
        and errors[1] == "env FEISHU_WEBHOOK_PORT: expected integer 0..65535, got 'x1'", joined(errors))

  local path = yml("http:\n  max_body_bytes: nope\n")
  cfg, errors = config.load(path, { env = { CHAT_GATEWAY_PORT = "abc" } })
  check("file errors and env errors together", cfg == nil and #errors == 2
        and errors[1] == path .. ":2: http.max_body_bytes: expected integer, got 'nope'"
        and errors[2] == "env CHAT_GATEWAY_PORT: expected integer 0..65535, got 'abc'", joined(errors))
end

---------------------------------------------------------------------------
print("# shipped config/chatgw.yml")

do
  local f = io.open("config/chatgw.yml", "rb")
  if f then
    f:close()
    local cfg, errors = config.load("config/chatgw.yml", { explicit = true, env = {} })
    local defaults = config.load(nil, { env = {} })
    check("shipped config loads", cfg ~= nil, joined(errors))
    local same = cfg ~= nil
    for _, section in ipairs({ "http", "shutdown", "shared", "log" }) do
      for k, v in pairs(defaults[section]) do
        if not cfg or cfg[section][k] ~= v then same = false end
      end
    end
    check("shipped config equals the built-in defaults", same and cfg.data_dir == defaults.data_dir
          and cfg.listeners.main.host == "127.0.0.1" and cfg.listeners.main.port == 8787
          and next(cfg.listeners, next(cfg.listeners)) == nil)
  else
    check("config/chatgw.yml present (run from the repo root)", false)
  end
end

for _, p in ipairs(tmpfiles) do os.remove(p) end

spec.report()
