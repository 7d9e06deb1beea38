-- Plain-Lua checks for lua/chatgw/notify/registry.lua: seed 000's projects registry
-- (config/projects.yml) with file:line errors and warnings. Run from the repo root:
--   luajit tests/lua/notify_registry_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path
chatgw = { _ws = {} } -- chatgw.config reads it at load

local spec = require "spec_helper"
local check = spec.check
local json = require "chatgw.json"
require "chatgw.config"
local globals_before = spec.strict_globals()
local registry = require "chatgw.notify.registry"

local F = "config/projects.yml"
local function joined(list) return table.concat(list or {}, " | ") end
local function has(list, needle)
  for _, m in ipairs(list or {}) do if m:find(needle, 1, true) then return true end end
  return false
end
local function same(a, b) return joined(a) == joined(b) end

-- Text that must parse; returns reg (and checks it has no warnings unless allowed).
local function must(name, text, levels)
  local reg, errors = registry.parse(text, F, levels)
  check(name .. ": parses", reg ~= nil, joined(errors))
  return reg or registry.empty()
end

-- Text that must fail; returns the errors.
local function fails(name, text, levels)
  local reg, errors = registry.parse(text, F, levels)
  check(name .. ": refused", reg == nil and type(errors) == "table" and #errors > 0,
        reg and ("accepted; warnings: " .. joined(reg.warnings)))
  return errors or {}
end

---------------------------------------------------------------------------
-- The seed's own file (config/projects.yml at WalkingNL/CHAT-GATEWAY 844c8ad), verbatim
---------------------------------------------------------------------------
local SEED = [[
# Project notify defaults for integrations /v1/notify/*
projects:
  crypto_agent:
    on_demand:
      url: "http://127.0.0.1:8799"
      token_env: "CRYPTO_AGENT_ON_DEMAND_TOKEN"
      window_spec_id: "ws_1bdd62d14831e7b6" # default window_spec_id (interval=1m)
    notify:
      telegram_chat_ids:
        - "-5242302064"
      feishu_chat_ids:
        - "oc_d69f1c419652e849c85e6d15cf467c2f"
    notify_overrides:
      # - target: telegram
      #   chat_id: "-5242302064"
      #   min_priority: "CRITICAL"
]]
local reg = must("seed file", SEED)
check("seed: no warnings", #reg.warnings == 0, joined(reg.warnings))
check("seed: telegram defaults", same(registry.defaults(reg, "crypto_agent", "telegram"), { "-5242302064" }))
check("seed: feishu defaults", same(registry.defaults(reg, "crypto_agent", "feishu"), { "oc_d69f1c419652e849c85e6d15cf467c2f" }))
check("seed: no overrides (notify_overrides: null)", registry.overrides_of(reg, "crypto_agent", "telegram", "-5242302064") == nil)
local od = registry.on_demand(reg, "crypto_agent")
check("seed: on_demand", od and od.url == "http://127.0.0.1:8799" and od.token_env == "CRYPTO_AGENT_ON_DEMAND_TOKEN"
  and od.window_spec_id == "ws_1bdd62d14831e7b6" and od.token == nil)
check("unknown project: nil defaults", registry.defaults(reg, "nope", "telegram") == nil)
check("unknown project: nil overrides", registry.overrides_of(reg, "nope", "telegram", "-5242302064") == nil)
check("unknown project: nil on_demand", registry.on_demand(reg, "nope") == nil)
check("nil project: nil", registry.defaults(reg, nil, "feishu") == nil)
check("defaults: tg/fs aliases", same(registry.defaults(reg, "crypto_agent", "tg"), { "-5242302064" }))
check("defaults: a bad target raises", not pcall(registry.defaults, reg, "crypto_agent", "both"))
local copy = registry.defaults(reg, "crypto_agent", "telegram")
copy[1] = "changed"
check("defaults: a copy", registry.defaults(reg, "crypto_agent", "telegram")[1] == "-5242302064")

-- list: JSON-able, sorted, no token
local listed = registry.list(reg)
local enc = json.encode(listed)
check("list: encodes", type(enc) == "string" and enc:find('"id":"crypto_agent"', 1, true), enc)
check("list: count and levels", listed.count == 1 and joined(listed.levels) == "LOW | MEDIUM | HIGH | CRITICAL")
check("list: empty warnings encode as []", enc:find('"warnings":[]', 1, true), enc)
check("list: on_demand without a token", listed.projects[1].on_demand.has_token == false
  and listed.projects[1].on_demand.window_spec_id == "ws_1bdd62d14831e7b6")

---------------------------------------------------------------------------
-- A realistic file: both override forms, numbers, scalars, aliases
---------------------------------------------------------------------------
local FULL = [[
projects:
  crypto_agent:
    notify:
      telegram_chat_ids:
        - -5242302064          # a number: the same id as "-5242302064"
        - "-1001234567890"
        - 12345678901234567890 # past 2^53: kept exactly
      feishu_chat_ids: oc_d69f1c419652e849c85e6d15cf467c2f   # one scalar
    notify_overrides:
      - target: telegram
        chat_id: -5242302064
        min_priority: critical
      - channel: TG
        chatId: "-1001234567890"
        minPriority: " high "
      - provider: fs
        chat: oc_d69f1c419652e849c85e6d15cf467c2f
        priority: Medium
    on_demand:
      url: "http://127.0.0.1:8799"
      token: "s3cret"
  ops:
    notify:
      telegram_chat_ids: 42
      feishu_chat_ids: []
    notify_overrides:
      telegram:
        "42": HIGH
      feishu:
        oc_ops: { min_priority: low }
    on_demand_url: "http://10.0.0.5:8799"
    on_demand_window_spec_id: " ws_flat "
  layered:
    notify:
      telegram_chat_ids: ["1", "2"]
      overrides:
        - { target: telegram, chat_id: 2, min_priority: CRITICAL }
    notify_overrides:
      - { target: telegram, chat_id: 1, min_priority: LOW }
      - { target: telegram, chat_id: 2, min_priority: LOW }
]]
reg = must("full file", FULL)
check("full: no warnings", #reg.warnings == 0, joined(reg.warnings))
check("numbers become strings, kept as written",
  same(registry.defaults(reg, "crypto_agent", "telegram"), { "-5242302064", "-1001234567890", "12345678901234567890" }),
  joined(registry.defaults(reg, "crypto_agent", "telegram")))
check("a single scalar is a list of one", same(registry.defaults(reg, "crypto_agent", "feishu"), { "oc_d69f1c419652e849c85e6d15cf467c2f" }))
check("a single number is a list of one", same(registry.defaults(reg, "ops", "telegram"), { "42" }))
check("an empty list", #registry.defaults(reg, "ops", "feishu") == 0)
check("list form: level upper-cased", registry.overrides_of(reg, "crypto_agent", "telegram", "-5242302064") == "CRITICAL")
check("list form: number chat id matches the string", registry.overrides_of(reg, "crypto_agent", "telegram", -5242302064) == "CRITICAL")
check("list form: channel/chatId/minPriority aliases, TG, trimmed level",
  registry.overrides_of(reg, "crypto_agent", "telegram", "-1001234567890") == "HIGH")
check("list form: provider/chat/priority aliases, fs",
  registry.overrides_of(reg, "crypto_agent", "feishu", "oc_d69f1c419652e849c85e6d15cf467c2f") == "MEDIUM")
check("overrides are per target", registry.overrides_of(reg, "crypto_agent", "feishu", "-5242302064") == nil)
check("map form: a level", registry.overrides_of(reg, "ops", "telegram", "42") == "HIGH")
check("map form: { min_priority }", registry.overrides_of(reg, "ops", "feishu", "oc_ops") == "LOW")
check("notify.overrides over notify_overrides", registry.overrides_of(reg, "layered", "telegram", "2") == "CRITICAL"
  and registry.overrides_of(reg, "layered", "telegram", "1") == "LOW")
od = registry.on_demand(reg, "ops")
check("flat on_demand_* keys, trimmed", od and od.url == "http://10.0.0.5:8799" and od.window_spec_id == "ws_flat")
check("no on_demand: nil", registry.on_demand(reg, "layered") == nil)
listed = registry.list(reg)
local ids = {}
for i, p in ipairs(listed.projects) do ids[i] = p.id end
check("list: ids sorted", joined(ids) == "crypto_agent | layered | ops", joined(ids))
check("list: the token is not shown", listed.projects[1].on_demand.has_token == true
  and listed.projects[1].on_demand.token == nil and not json.encode(listed):find("s3cret", 1, true))
check("list: overrides", listed.projects[3].overrides.telegram["42"] == "HIGH"
  and listed.projects[3].overrides.feishu.oc_ops == "LOW")
enc = json.encode(listed)
check("list: empty chat id list encodes as []", enc:find('"feishu_chat_ids":[]', 1, true), enc)
check("list: 20-digit id stays a string", enc:find('"12345678901234567890"', 1, true), enc)

-- A reg is plain data: it survives JSON (chatgw.notify keeps it in shared memory that way)
local round = json.decode(json.encode(reg))
check("JSON round trip: defaults", same(registry.defaults(round, "crypto_agent", "telegram"),
  { "-5242302064", "-1001234567890", "12345678901234567890" }))
check("JSON round trip: overrides", registry.overrides_of(round, "ops", "feishu", "oc_ops") == "LOW"
  and registry.overrides_of(round, "crypto_agent", "telegram", "-5242302064") == "CRITICAL")
check("JSON round trip: an empty id list", same(registry.defaults(round, "ops", "feishu"), {}))
local function deep_eq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
check("JSON round trip: list", deep_eq(registry.list(round), registry.list(reg)))
local bare = { projects = {} }
check("a bare { projects = {} }", registry.list(bare).count == 0 and registry.defaults(bare, "x", "telegram") == nil
  and registry.overrides_of(bare, "x", "telegram", "1") == nil and json.encode(registry.list(bare)):find('"projects":[]', 1, true))
check("nil reg", registry.defaults(nil, "x", "telegram") == nil and registry.overrides_of(nil, "x", "tg", "1") == nil
  and registry.list(nil).count == 0)

-- notify.target_overrides (alias of notify.overrides), map form nested
reg = must("target_overrides", [[
projects:
  p:
    notify:
      feishu_chat_ids: [oc_a]
      target_overrides:
        feishu: { oc_a: CRITICAL }
]])
check("target_overrides is read", registry.overrides_of(reg, "p", "feishu", "oc_a") == "CRITICAL")

-- custom levels (CHAT_GATEWAY_PRIORITY_LEVELS)
reg = must("custom levels", [[
projects:
  p:
    notify_overrides:
      - { target: telegram, chat_id: 1, min_priority: p1 }
]], { "P3", "P2", "P1" })
check("custom levels: normalised", registry.overrides_of(reg, "p", "telegram", "1") == "P1")
check("custom levels listed", joined(registry.list(reg).levels) == "P3 | P2 | P1")
reg = must("levels as a string", "projects: { p: { notify_overrides: [ { target: tg, chat_id: 1, min_priority: warn } ] } }\n",
  "info, warn crit")
check("levels as a string", registry.overrides_of(reg, "p", "telegram", "1") == "WARN")
local e = fails("default level under custom levels", "projects: { p: { notify_overrides: [ { target: tg, chat_id: 1, min_priority: HIGH } ] } }\n",
  { "P3", "P2", "P1" })
check("custom levels: the error lists them", has(e, "one of P3, P2, P1"), joined(e))

---------------------------------------------------------------------------
-- Empty registries
---------------------------------------------------------------------------
for _, t in ipairs({ "", "\n", "# only a comment\n", "~\n", "projects:\n", "projects: {}\n", "---\n" }) do
  local name = "empty '" .. t:gsub("\n", "\\n") .. "'"
  reg = must(name, t)
  check(name .. ": no projects", #reg.ids == 0 and registry.list(reg).count == 0)
end
local empty = registry.empty()
check("registry.empty()", #empty.ids == 0 and json.encode(registry.list(empty)):find('"projects":[]', 1, true))
reg = must("a null project", "projects:\n  quiet:\n")
check("a null project exists with no ids", same(registry.defaults(reg, "quiet", "telegram"), {}))

---------------------------------------------------------------------------
-- Errors, with their lines
---------------------------------------------------------------------------
e = fails("bad level", [[
projects:
  crypto_agent:
    notify_overrides:
      - target: telegram
        chat_id: "-5242302064"
        min_priority: URGENT
]])
check("bad level: line and key", e[1] == F .. ":6: projects.crypto_agent.notify_overrides[1].min_priority: unknown priority 'URGENT' (one of LOW, MEDIUM, HIGH, CRITICAL)", e[1])

e = fails("bad level, map form", [[
projects:
  p:
    notify_overrides:
      telegram:
        "-100": HIGH
        "-200": SEVERE
]])
check("map form bad level: line", e[1] == F .. ":6: projects.p.notify_overrides.telegram.-200: unknown priority 'SEVERE' (one of LOW, MEDIUM, HIGH, CRITICAL)", e[1])

e = fails("bad level, map form { min_priority }", [[
projects:
  p:
    notify_overrides:
      feishu:
        oc_a:
          min_priority: nope
]])
check("map form nested: line", e[1] == F .. ":6: projects.p.notify_overrides.feishu.oc_a.min_priority: unknown priority 'nope' (one of LOW, MEDIUM, HIGH, CRITICAL)", e[1])

e = fails("missing level", [[
projects:
  p:
    notify_overrides:
      feishu:
        oc_a: ~
        oc_b: {}
]])
check("map form null level", has(e, F .. ":5: projects.p.notify_overrides.feishu.oc_a: missing min_priority"), joined(e))
check("map form {} level", has(e, F .. ":6: projects.p.notify_overrides.feishu.oc_b: missing min_priority"), joined(e))
e = fails("a list under a target", "projects:\n  p:\n    notify_overrides:\n      telegram:\n        - x\n")
check("map form: a list under a target", has(e, F .. ":5: projects.p.notify_overrides.telegram: expected mapping, got a sequence"), joined(e))

e = fails("list item problems", [[
projects:
  p:
    notify_overrides:
      - target: slack
        chat_id: 1
        min_priority: HIGH
      - chat_id: 2
        min_priority: HIGH
      - target: telegram
        min_priority: HIGH
      - target: telegram
        chat_id: 3
      - target: telegram
        chat_id: "  "
        min_priority: HIGH
]])
check("unknown target", has(e, F .. ":4: projects.p.notify_overrides[1].target: unknown target 'slack'"), joined(e))
check("missing target", has(e, F .. ":7: projects.p.notify_overrides[2]: missing target"), joined(e))
check("missing chat_id", has(e, F .. ":9: projects.p.notify_overrides[3]: missing chat_id"), joined(e))
check("missing min_priority", has(e, F .. ":11: projects.p.notify_overrides[4]: missing min_priority"), joined(e))
check("blank chat_id", has(e, F .. ":14: projects.p.notify_overrides[5].chat_id: missing chat_id"), joined(e))
-- A wrong shape is reported first (the file is not compiled further until it is fixed).
e = fails("an item that is not a mapping", "projects:\n  p:\n    notify_overrides:\n      - { target: tg, chat_id: 1, min_priority: X }\n      - just a string\n")
check("an item that is not a mapping", e[1] == F .. ":5: projects.p.notify_overrides[2]: expected mapping, got 'just a string'", joined(e))

e = fails("overrides that are a scalar", "projects:\n  p:\n    notify_overrides: yes\n")
check("a scalar override section", has(e, F .. ":3: projects.p.notify_overrides: expected a list of {target, chat_id, min_priority} or a map"), joined(e))

e = fails("chat ids that are not scalars", [[
projects:
  p:
    notify:
      telegram_chat_ids:
        - "1"
        - { id: 2 }
      feishu_chat_ids:
        - ~
]])
check("a mapping as a chat id", has(e, F .. ":6: projects.p.notify.telegram_chat_ids[2]: expected string, got a mapping"), joined(e))
e = fails("a null chat id", "projects:\n  p:\n    notify:\n      feishu_chat_ids:\n        - oc_1\n        -\n")
check("a null chat id", has(e, F .. ":6: projects.p.notify.feishu_chat_ids[2]: expected a chat id"), joined(e))

e = fails("duplicate project ids", [[
projects:
  crypto_agent:
    notify: { telegram_chat_ids: ["1"] }
  crypto_agent:
    notify: { telegram_chat_ids: ["2"] }
]])
check("duplicate project id: line of the second, first named", has(e, F .. ":4: duplicate key 'projects.crypto_agent' (first at line 2)"), joined(e))

e = fails("duplicate chat key in the map form", "projects:\n  p:\n    notify_overrides:\n      telegram:\n        '1': HIGH\n        '1': LOW\n")
check("duplicate map-form chat", has(e, F .. ":6: duplicate key"), joined(e))

e = fails("garbage YAML", "projects:\n  p:\n    notify: [unclosed\n  q: 1\n")
check("garbage YAML: a file:line error", e[1] and e[1]:match("^" .. F:gsub("%p", "%%%0") .. ":%d+: "), joined(e))
e = fails("bad indentation", "projects:\n  p:\n    notify:\n      telegram_chat_ids:\n        - 1\n     feishu_chat_ids: x\n")
check("bad indentation: line 6", e[1] and e[1]:find(F .. ":6:", 1, true), joined(e))
e = fails("a tab", "projects:\n\tp: {}\n")
check("a tab: line 2", e[1] and e[1]:find(F .. ":2:", 1, true), joined(e))

e = fails("top level a list", "- projects\n")
check("top level must be a mapping", has(e, F .. ":1: top level must be a mapping"), joined(e))
e = fails("projects a list", "projects:\n  - crypto_agent\n")
check("projects must be a mapping", has(e, F .. ":2: projects: expected mapping, got a sequence"), joined(e))
e = fails("a project that is a scalar", "projects:\n  p: hello\n")
check("project must be a mapping", has(e, F .. ":2: projects.p: expected mapping, got 'hello'"), joined(e))
e = fails("notify a list", "projects:\n  p:\n    notify: [1]\n")
check("notify must be a mapping", has(e, F .. ":3: projects.p.notify: expected mapping, got a sequence"), joined(e))
e = fails("on_demand a scalar", "projects:\n  p:\n    on_demand: http://x\n")
check("on_demand must be a mapping", has(e, F .. ":3: projects.p.on_demand: expected mapping"), joined(e))
e = fails("aliases", "projects:\n  a:\n    notify: &n { telegram_chat_ids: [1] }\n  b:\n    notify: *n\n")
check("anchors are refused with a line", has(e, F .. ":3: anchors are not supported"), joined(e))
e = fails("two documents", "projects: {}\n---\nprojects: {}\n")
check("two documents", has(e, "multiple YAML documents"), joined(e))
check("not a string", select(2, registry.parse(nil, F))[1]:find(F .. ":1:", 1, true))

-- all errors at once, sorted by line
e = fails("several errors", [[
projects:
  b:
    notify_overrides:
      - { target: telegram, chat_id: 1, min_priority: X }
  a:
    notify_overrides:
      - { target: nope, chat_id: 1, min_priority: HIGH }
]])
check("several errors, by line", #e == 2 and e[1]:find(":4:", 1, true) and e[2]:find(":7:", 1, true), joined(e))

---------------------------------------------------------------------------
-- Warnings: accepted, reported
---------------------------------------------------------------------------
reg = must("warnings", [[
version: 2
on_demand:
  window_spec_id: ws_top
projects:
  p:
    display_name: "P"
    notify:
      telegram_chat_id: "typo"
      telegram_chat_ids: ["1", "", "1", 2]
      overrides:
        - { target: telegram, chat_id: 2, min_priority: HIGH }
      target_overrides:
        - { target: telegram, chat_id: 2, min_priority: LOW }
    notify_overrides:
      - { target: telegram, channel: feishu, chat_id: 1, min_priority: HIGH, note: x }
      - { target: telegram, chat_id: 1, min_priority: CRITICAL }
    on_demand:
      url: http://x
      extra: 1
  q:
    notify_overrides:
      tg: { "1": HIGH }
      telegram: { "1": LOW }
      slack: {}
]])
local w = reg.warnings
check("unknown top-level key", has(w, F .. ":1: version: unknown key, ignored"), joined(w))
check("top-level on_demand: a hint", has(w, F .. ":2: on_demand: ignored at the top level"), joined(w))
check("unknown project key", has(w, F .. ":6: projects.p.display_name: unknown key, ignored"), joined(w))
check("a typo'd key is warned about", has(w, F .. ":8: projects.p.notify.telegram_chat_id: unknown key"), joined(w))
check("empty chat id dropped", has(w, F .. ":9: projects.p.notify.telegram_chat_ids[2]: empty chat id, ignored"), joined(w))
check("repeated chat id kept once", has(w, "telegram_chat_ids[3]: chat id '1' repeated (first at line 9)"), joined(w))
check("ids after warnings", same(registry.defaults(reg, "p", "telegram"), { "1", "2" }), joined(registry.defaults(reg, "p", "telegram")))
check("target_overrides shadowed by overrides", has(w, F .. ":12: projects.p.notify.target_overrides: ignored: notify.overrides is given (line 10)"), joined(w))
check("notify.overrides used, target_overrides not", registry.overrides_of(reg, "p", "telegram", "2") == "HIGH")
check("an alias shadowed", has(w, "notify_overrides[1].channel: ignored: target is given"), joined(w))
check("first alias wins (target: telegram)", registry.overrides_of(reg, "p", "feishu", "1") == nil)
check("unknown item key", has(w, "notify_overrides[1].note: unknown key, ignored"), joined(w))
check("a repeated override: the later wins", has(w, "notify_overrides[2]: override for telegram chat '1' repeated (first at line 15)")
  and registry.overrides_of(reg, "p", "telegram", "1") == "CRITICAL", joined(w))
check("unknown on_demand key", has(w, "projects.p.on_demand.extra: unknown key, ignored"), joined(w))
check("map form 'tg' ignored with a hint", has(w, "projects.q.notify_overrides.tg: ignored: the map form takes 'telegram'")
  and registry.overrides_of(reg, "q", "telegram", "1") == "LOW", joined(w))
check("map form unknown key", has(w, "projects.q.notify_overrides.slack: unknown key, ignored"), joined(w))
local sorted = true
for i = 2, #w do
  if tonumber(w[i]:match(":(%d+):")) < tonumber(w[i - 1]:match(":(%d+):")) then sorted = false end
end
check("warnings sorted by line", sorted, joined(w))
check("list shows the warnings", #registry.list(reg).warnings == #w)

-- no globals created
local leaked = {}
for k in pairs(_G) do if not globals_before[k] then leaked[#leaked + 1] = tostring(k) end end
check("no globals created", #leaked == 0, table.concat(leaked, ", "))

spec.report()
