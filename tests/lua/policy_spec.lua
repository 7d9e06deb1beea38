-- Plain-Lua checks for lua/chatgw/chat/policy.lua (and config.load_text, which it builds on).
-- Run from the repo root: luajit tests/lua/policy_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local config = require "chatgw.config"
local policy = require "chatgw.chat.policy"

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

local function joined(list) return table.concat(list or {}, " | ") end

-- Load `text` (explicit, with `env` or an empty environment); returns policy, problems, path.
-- The runtime hashes with chatgw.crypto (OpenSSL); plain Lua gets a stand-in with the same shape.
local function fake_sha256_hex(t)
  local h = 0
  for i = 1, #t do h = (h * 31 + t:byte(i)) % 4294967296 end
  return ("%08x%08x"):format(h, #t) .. ("0"):rep(48)
end

local function load(text, env)
  local path = yml(text)
  local p, problems = policy.load(path, { explicit = true, env = env or {}, sha256_hex = fake_sha256_hex })
  return p, problems, path
end

-- Load text that must be valid.
local function must(text, env)
  local p, problems = load(text, env)
  if not p then error("policy did not load: " .. joined(problems), 2) end
  return p
end

-- Expect exactly one problem, equal to path .. ":" .. suffix.
local function check_error(name, text, suffix, env)
  local p, problems, path = load(text, env)
  local want = path .. ":" .. suffix
  check(name, p == nil and #problems == 1 and problems[1] == want,
        "want: " .. want .. "\n     got:  " .. joined(problems))
end

local function show(d)
  return ("allowed=%s reason=%s deny_message=%s rule=%s rule_name=%s limits=%s/%s/%s")
    :format(tostring(d.allowed), tostring(d.reason), tostring(d.deny_message), tostring(d.rule),
            tostring(d.rule_name), tostring(d.limits and d.limits.rpm),
            tostring(d.limits and d.limits.max_lines), tostring(d.limits and d.limits.max_chars))
end

-- check(name) that decision `d` has every field of `want` (limits compared field by field).
local function expect(name, d, want)
  local ok = true
  for k, v in pairs(want) do
    if k == "limits" then
      for lk, lv in pairs(v) do
        if d.limits == nil or d.limits[lk] ~= lv then ok = false end
      end
    elseif v == "nil" then
      if d[k] ~= nil then ok = false end
    elseif d[k] ~= v then
      ok = false
    end
  end
  check(name, ok, show(d))
end

local function tg(extra)
  local ctx = { channel = "telegram", chat_id = "-100123", chat_type = "group",
                user_ids = { "42" }, capability = "alerts.explain", mentioned = true, is_reply = true }
  for k, v in pairs(extra or {}) do ctx[k] = v end
  return ctx
end

---------------------------------------------------------------------------
print("# the seed's example file")

local SEED = [[
defaults:            # optional
  rate_limit: { rpm: 30 }
  output_limits: { max_lines: 60, max_chars: 6000 }
rules:
  - name: owner-everything          # optional
    match: { channel: telegram, user_id: "${ENV:OWNER_TELEGRAM_USER_ID}" }
    allow: ["*"]
  - match: { channel: telegram, chat_type: group, capability: [alerts.explain] }
    allow: [alerts.explain]
    require: { mention_bot_for_explain: true, reply_required_for_explain: true }
    rate_limit: { rpm: 10 }
    output_limits: { max_lines: 30, max_chars: 3000 }
  - match: { channel: feishu }
    allow: []
    deny_message: "not allowed here"
]]

do
  local p = must(SEED, { OWNER_TELEGRAM_USER_ID = "7" })
  check("three rules", #p.rules == 3)
  expect("owner: anything", p:decide(tg { user_ids = { "7" }, capability = "ops.restart" }),
         { allowed = true, reason = "allowed", rule = 1, rule_name = "owner-everything",
           deny_message = "nil", limits = { rpm = 30, max_lines = 60, max_chars = 6000 } })
  expect("group explain with mention and reply", p:decide(tg()),
         { allowed = true, reason = "allowed", rule = 2, rule_name = "nil",
           limits = { rpm = 10, max_lines = 30, max_chars = 3000 } })
  expect("group explain without mention", p:decide(tg { mentioned = false }),
         { allowed = false, reason = "mention_required", rule = 2, deny_message = "nil" })
  expect("group: another capability matches no rule", p:decide(tg { capability = "alerts.ack" }),
         { allowed = false, reason = "no_rule", deny_message = "not allowed", rule = "nil",
           limits = { rpm = 30, max_lines = 60, max_chars = 6000 } })
  expect("feishu: deny_message", p:decide { channel = "feishu", user_ids = { "ou_1" }, capability = "x" },
         { allowed = false, reason = "not_allowed", deny_message = "not allowed here", rule = 3 })
  check("no warnings with the owner set", #p.warnings == 0, joined(p.warnings))

  local q, problems, path = load(SEED, {})
  check("owner unset: loads", q ~= nil, joined(problems))
  expect("owner unset: owner rule never matches", q:decide(tg { user_ids = { "7" }, capability = "ops.restart" }),
         { allowed = false, reason = "no_rule" })
  check("owner unset: a warning with its line",
        #q.warnings == 1 and q.warnings[1] == path .. ":6: rules[1].match.user_id: OWNER_TELEGRAM_USER_ID is not set; this rule never matches",
        joined(q.warnings))
end

---------------------------------------------------------------------------
print("# rule order and match values")

do
  local p = must [[
rules:
  - name: first
    match: { channel: telegram }
    allow: [a]
  - name: second
    match: { channel: telegram }
    allow: ["*"]
]]
  expect("first match wins (allows a)", p:decide(tg { capability = "a" }), { allowed = true, rule = 1, rule_name = "first" })
  expect("first match wins (denies b, not tried further)", p:decide(tg { capability = "b" }),
         { allowed = false, reason = "not_allowed", rule = 1, deny_message = "nil" })
end

do
  local p = must [[
rules:
  - match: { channel: [slack, feishu], chat_id: "c1" }
    allow: ["*"]
    name: list
  - match: { channel: telegram, chat_id: [-100123, "-100999"] }
    allow: ["*"]
    name: numbers
  - match:
      user_id: 123456789012345678901
    allow: ["*"]
    name: big
  - match: { user_id: 12345 }
    allow: ["*"]
    name: small
  - match: { capability: explain.* }
    allow: ["*"]
    name: literal
]]
  expect("list value: first item", p:decide { channel = "slack", chat_id = "c1", capability = "x" }, { rule = 1 })
  expect("list value: second item", p:decide { channel = "feishu", chat_id = "c1", capability = "x" }, { rule = 1 })
  expect("string value must match: other chat", p:decide { channel = "feishu", chat_id = "c2", capability = "x" },
         { reason = "no_rule" })
  expect("every key of match must fit", p:decide { channel = "telegram", chat_id = "c1", capability = "x" },
         { reason = "no_rule" })
  expect("a plain negative number matches its string", p:decide(tg { capability = "x" }), { rule = 2 })
  expect("a quoted number in a list", p:decide(tg { chat_id = "-100999", capability = "x" }), { rule = 2 })
  expect("numbers are compared as written ('-100123.0' is another id)",
         p:decide(tg { chat_id = "-100123.0", capability = "x", user_ids = {} }), { reason = "no_rule" })
  expect("an id of 21 digits stays exact", p:decide { user_ids = { "123456789012345678901" }, capability = "x" },
         { rule = 3, rule_name = "big" })
  expect("an id of 21 digits: neighbour does not match",
         p:decide { user_ids = { "123456789012345678900" }, capability = "x" }, { reason = "no_rule" })
  expect("a small number", p:decide { user_id = "12345", capability = "x" }, { rule = 4 })
  expect("a numeric ctx id is compared as its string", p:decide { user_id = 12345, capability = "x" }, { rule = 4 })
  expect("capability in match is a literal", p:decide { capability = "explain.*" }, { rule = 5 })
  expect("capability in match: no wildcard", p:decide { capability = "explain.x" }, { reason = "no_rule" })
  check("the parsed set holds the exact string", p.rules[3].match.user_id["123456789012345678901"] == true)
end

do
  local p = must [[
rules:
  - match: {}
    allow: [a]
  - allow: ["*"]
]]
  expect("empty match matches everything", p:decide { capability = "a" }, { allowed = true, rule = 1 })
  expect("empty match: a capability not allowed is denied by it", p:decide { capability = "b" },
         { allowed = false, reason = "not_allowed", rule = 1 })
  local q = must "rules:\n  - allow: [\"*\"]\n"
  expect("absent match matches everything", q:decide { channel = "anything", capability = "z" }, { allowed = true, rule = 1 })
  local r = must "rules:\n  - match:\n    allow: [a]\n"
  expect("null match matches everything", r:decide { capability = "a" }, { allowed = true, rule = 1 })
end

---------------------------------------------------------------------------
print("# ${ENV:NAME}")

do
  local text = [[
rules:
  - name: env
    match: { chat_id: "${ENV:OPS_CHAT}", channel: telegram }
    allow: ["*"]
  - name: env-list
    match: { user_id: ["1", "${ENV:OPS_USER}"] }
    allow: ["*"]
  - name: fallback
    allow: []
    deny_message: "nope"
]]
  local p = must(text, { OPS_CHAT = "-100123", OPS_USER = "99" })
  expect("set: the variable's value matches", p:decide(tg { capability = "x", user_ids = {} }), { rule = 1, allowed = true })
  expect("set: the literal text does not", p:decide(tg { chat_id = "${ENV:OPS_CHAT}", capability = "x", user_ids = {} }),
         { rule = 3, deny_message = "nope" })
  expect("set, in a list", p:decide { user_ids = { "99" }, capability = "x" }, { rule = 2, allowed = true })
  expect("set, other item of the list", p:decide { user_ids = { "1" }, capability = "x" }, { rule = 2 })

  local q, _, path = load(text, { OPS_CHAT = "-100123" })
  expect("unset in a list: the whole rule never matches", q:decide { user_ids = { "1" }, capability = "x" },
         { rule = 3, allowed = false })
  check("unset in a list: warning names the item's line",
        q.warnings[1] == path .. ":6: rules[2].match.user_id[2]: OPS_USER is not set; this rule never matches",
        joined(q.warnings))

  local r = must(text, { OPS_CHAT = "", OPS_USER = "" })
  expect("empty variable counts as unset", r:decide(tg { capability = "x", user_ids = { "1" } }), { rule = 3 })

  local os_env = policy.load(yml("rules:\n  - match: { user_id: \"${ENV:HOME}\" }\n    allow: [\"*\"]\n"))
  expect("default lookup is os.getenv", os_env:decide { user_id = os.getenv("HOME"), capability = "x" },
         { allowed = true, rule = 1 })
end

---------------------------------------------------------------------------
print("# allow, deny_message and require")

do
  local p = must [[
rules:
  - match: { channel: telegram, chat_type: private }
    allow: ["*"]
  - match: { channel: telegram, chat_id: "g1" }
    allow: [alerts.explain, status]
    deny_message: "only explain and status here"
  - match: { channel: telegram, chat_id: "g2" }
    allow: [status]
  - match: { channel: telegram, chat_id: "g3" }
    allow: []
    deny_message: ""
]]
  expect("* allows any capability", p:decide(tg { chat_type = "private", capability = "anything.at_all" }),
         { allowed = true, rule = 1, reason = "allowed" })
  expect("named capability allowed", p:decide(tg { chat_id = "g1", capability = "status" }), { allowed = true, rule = 2 })
  expect("other capability: deny_message", p:decide(tg { chat_id = "g1", capability = "ops.restart" }),
         { allowed = false, reason = "not_allowed", deny_message = "only explain and status here", rule = 2 })
  expect("no deny_message: silent deny", p:decide(tg { chat_id = "g2", capability = "ops.restart" }),
         { allowed = false, reason = "not_allowed", deny_message = "nil", rule = 3 })
  expect("empty deny_message: silent deny", p:decide(tg { chat_id = "g3", capability = "status" }),
         { allowed = false, reason = "not_allowed", deny_message = "nil", rule = 4 })
end

do
  local p = must [[
rules:
  - match: { chat_id: mention }
    allow: ["*"]
    require: { mention_bot_for_explain: true }
  - match: { chat_id: reply }
    allow: ["*"]
    require: { reply_required_for_explain: true }
  - match: { chat_id: both }
    allow: ["*"]
    require: { mention_bot_for_explain: yes, reply_required_for_explain: on }
  - match: { chat_id: off }
    allow: ["*"]
    require: { mention_bot_for_explain: false, reply_required_for_explain: false }
  - match: { chat_id: generic }
    allow: ["*"]
    require: { mention: true, reply: true }
  - match: { chat_id: generic-mention }
    allow: [status]
    deny_message: "status only"
    require: { mention: true }
]]
  local function ctx(chat, mentioned, is_reply, cap)
    return { channel = "telegram", chat_type = "group", chat_id = chat, user_ids = { "42" },
             capability = cap or "alerts.explain", mentioned = mentioned, is_reply = is_reply }
  end
  expect("explain mention: mentioned", p:decide(ctx("mention", true, false)), { allowed = true })
  expect("explain mention: not mentioned", p:decide(ctx("mention", false, true)),
         { allowed = false, reason = "mention_required", deny_message = "nil", rule = 1 })
  expect("explain mention: nil mentioned counts as not", p:decide(ctx("mention", nil, true)),
         { reason = "mention_required" })
  expect("explain mention: other capability not affected", p:decide(ctx("mention", false, false, "status")),
         { allowed = true })
  expect("explain reply: a reply", p:decide(ctx("reply", false, true)), { allowed = true })
  expect("explain reply: not a reply", p:decide(ctx("reply", true, false)),
         { allowed = false, reason = "reply_required", deny_message = "nil", rule = 2 })
  expect("explain reply: other capability not affected", p:decide(ctx("reply", false, false, "status")),
         { allowed = true })
  expect("explain both: mentioned reply", p:decide(ctx("both", true, true)), { allowed = true })
  expect("explain both: mention missing", p:decide(ctx("both", false, true)), { reason = "mention_required" })
  expect("explain both: reply missing", p:decide(ctx("both", true, false)), { reason = "reply_required" })
  expect("explain both: both missing -> mention first", p:decide(ctx("both", false, false)),
         { reason = "mention_required" })
  expect("explain both false: not required", p:decide(ctx("off", false, false)), { allowed = true })
  expect("generic: any capability needs mention", p:decide(ctx("generic", false, true, "status")),
         { allowed = false, reason = "mention_required", deny_message = "nil" })
  expect("generic: any capability needs reply", p:decide(ctx("generic", true, false, "status")),
         { allowed = false, reason = "reply_required" })
  expect("generic: explain too", p:decide(ctx("generic", true, false)), { reason = "reply_required" })
  expect("generic: both given", p:decide(ctx("generic", true, true, "status")), { allowed = true })
  expect("generic mention alone: reply not needed", p:decide(ctx("generic-mention", true, false, "status")),
         { allowed = true })
  expect("not allowed comes before require", p:decide(ctx("generic-mention", false, false, "ops")),
         { reason = "not_allowed", deny_message = "status only" })
end

---------------------------------------------------------------------------
print("# no rule, no capability")

do
  local p = must "rules: []\n"
  expect("no rules: denied 'not allowed'", p:decide(tg()),
         { allowed = false, reason = "no_rule", deny_message = "not allowed", rule = "nil", rule_name = "nil",
           limits = { rpm = 30, max_lines = 60, max_chars = 6000 } })
  local nocap = tg()
  nocap.capability = nil
  expect("no capability: allowed without rules", p:decide(nocap),
         { allowed = true, reason = "no_capability", rule = "nil", deny_message = "nil",
           limits = { rpm = 30, max_lines = 60, max_chars = 6000 } })
  local q = must [[
defaults: { rate_limit: { rpm: 5 } }
rules:
  - allow: []
    deny_message: "everything denied"
]]
  expect("no capability: rules are not consulted", q:decide { channel = "telegram" },
         { allowed = true, reason = "no_capability", limits = { rpm = 5 } })
  expect("with a capability the deny-all rule decides", q:decide { channel = "telegram", capability = "x" },
         { allowed = false, deny_message = "everything denied" })
  expect("empty ctx", q:decide(), { allowed = true, reason = "no_capability" })

  local e = policy.empty()
  check("empty(): no rules, source (none), no hash", #e.rules == 0 and e.source == "(none)" and e.hash == nil)
  expect("empty(): a capability is denied", e:decide { capability = "x" }, { allowed = false, reason = "no_rule",
         deny_message = "not allowed", limits = { rpm = 30, max_lines = 60, max_chars = 6000 } })
  expect("empty(): no capability allowed", e:decide {}, { allowed = true, reason = "no_capability" })
end

---------------------------------------------------------------------------
print("# limits")

do
  local p = must [[
defaults:
  rate_limit: { rpm: 20 }
  output_limits: { max_lines: 40 }
rules:
  - match: { chat_id: plain }
    allow: ["*"]
  - match: { chat_id: rpm }
    allow: ["*"]
    rate_limit: { rpm: 3 }
  - match: { chat_id: out }
    allow: []
    output_limits: { max_chars: 500 }
  - match: { chat_id: all }
    allow: ["*"]
    rate_limit: { rpm: 100 }
    output_limits: { max_lines: 5, max_chars: 50 }
]]
  expect("file defaults over built-in (max_chars stays built-in)", p:decide { chat_id = "plain", capability = "x" },
         { limits = { rpm = 20, max_lines = 40, max_chars = 6000 } })
  expect("rule rpm over file defaults", p:decide { chat_id = "rpm", capability = "x" },
         { limits = { rpm = 3, max_lines = 40, max_chars = 6000 } })
  expect("rule limits apply to its denials too", p:decide { chat_id = "out", capability = "x" },
         { allowed = false, limits = { rpm = 20, max_lines = 40, max_chars = 500 } })
  expect("rule overrides all three", p:decide { chat_id = "all", capability = "x" },
         { limits = { rpm = 100, max_lines = 5, max_chars = 50 } })
  expect("no rule: file defaults", p:decide { chat_id = "none", capability = "x" },
         { reason = "no_rule", limits = { rpm = 20, max_lines = 40, max_chars = 6000 } })
  expect("no capability: file defaults", p:decide {}, { limits = { rpm = 20, max_lines = 40, max_chars = 6000 } })
  local d1 = p:decide { chat_id = "rpm", capability = "x" }
  d1.limits.rpm = 999
  expect("decision limits are a copy", p:decide { chat_id = "rpm", capability = "x" }, { limits = { rpm = 3 } })
  local q = must "rules:\n  - allow: [\"*\"]\n"
  expect("no defaults section: built-in", q:decide { capability = "x" },
         { limits = { rpm = 30, max_lines = 60, max_chars = 6000 } })
  local r = must "rules:\n  - allow: [\"*\"]\n    rate_limit: { rpm: \"7\" }\n"
  expect("a quoted integer is read by the schema", r:decide { capability = "x" }, { limits = { rpm = 7 } })
end

---------------------------------------------------------------------------
print("# supergroup and several user ids")

do
  local p = must [[
rules:
  - match: { channel: telegram, chat_type: supergroup }
    allow: [a]
  - match: { channel: telegram, chat_type: [group] }
    allow: [b]
  - match: { channel: feishu, user_id: [ou_owner, on_owner] }
    allow: ["*"]
    name: feishu-owner
]]
  expect("rule supergroup matches a group message", p:decide(tg { capability = "a" }), { allowed = true, rule = 1 })
  expect("rule supergroup matches a raw supergroup message", p:decide(tg { chat_type = "supergroup", capability = "a" }),
         { allowed = true, rule = 1 })
  expect("rule supergroup is the first of the group rules", p:decide(tg { capability = "b" }),
         { allowed = false, rule = 1 })
  expect("private does not match supergroup or group", p:decide(tg { chat_type = "private", capability = "a" }),
         { reason = "no_rule" })
  local q = must "rules:\n  - match: { chat_type: group }\n    allow: [\"*\"]\n"
  expect("rule group matches a raw supergroup message", q:decide(tg { chat_type = "supergroup", capability = "x" }),
         { allowed = true })

  local function feishu(ids, single)
    return { channel = "feishu", chat_id = "oc_1", chat_type = "private", user_ids = ids, user_id = single,
             capability = "ops.restart" }
  end
  expect("any of several ids: the second", p:decide(feishu { "ou_x", "on_owner", "un_x" }),
         { allowed = true, rule_name = "feishu-owner" })
  expect("any of several ids: the first", p:decide(feishu { "ou_owner", "u_x" }), { allowed = true })
  expect("none of the ids", p:decide(feishu { "ou_x", "u_x", "on_x" }), { reason = "no_rule" })
  expect("user_id alone", p:decide(feishu(nil, "ou_owner")), { allowed = true })
  expect("user_id and user_ids together", p:decide(feishu({ "x" }, "on_owner")), { allowed = true })
  expect("no user ids: a user_id rule does not match", p:decide(feishu(nil, nil)), { reason = "no_rule" })
end

---------------------------------------------------------------------------
print("# load errors")

check_error("unknown top-level key", "defaults: {}\nrulez: []\n", "2: unknown key 'rulez'")
check_error("unknown rule key", "rules:\n  - match: {}\n    alow: [a]\n", "3: unknown key 'rules[1].alow'")
check_error("unknown match key", "rules:\n  - allow: []\n  - match:\n      channel: t\n      chat: x\n",
            "5: unknown key 'rules[2].match.chat'")
check_error("unknown require key", "rules:\n  - require: { mention_bot: true }\n",
            "2: unknown key 'rules[1].require.mention_bot'")
check_error("unknown rate_limit key", "rules:\n  - allow: []\n    rate_limit:\n      rps: 3\n",
            "4: unknown key 'rules[1].rate_limit.rps'")
check_error("unknown output_limits key", "defaults:\n  output_limits: { max_bytes: 3 }\n",
            "2: unknown key 'defaults.output_limits.max_bytes'")
check_error("unknown defaults key", "defaults:\n  rpm: 3\n", "2: unknown key 'defaults.rpm'")
check_error("allow must be a list", "rules:\n  - allow: \"*\"\n", "2: rules[1].allow: expected sequence, got '*'")
check_error("allow items are strings", "rules:\n  - allow:\n      - a\n      - { b: 1 }\n",
            "4: rules[1].allow[2]: expected string, got a mapping")
check_error("rules must be a list", "rules:\n  a: 1\n", "2: rules: expected sequence, got a mapping")
check_error("a rule must be a mapping", "rules:\n  - allow: []\n  - just a string\n",
            "3: rules[2]: expected mapping, got 'just a string'")
check_error("match must be a mapping", "rules:\n  - match: [telegram]\n", "2: rules[1].match: expected mapping, got a sequence")
check_error("match value: mapping", "rules:\n  - match:\n      channel: { a: b }\n",
            "3: rules[1].match.channel: expected string or sequence, got a mapping")
check_error("match value: nested list", "rules:\n  - match:\n      user_id:\n        - 1\n        - [2, 3]\n",
            "5: rules[1].match.user_id[2]: expected string, got a sequence")
check_error("match value: empty list", "rules:\n  - match:\n      chat_id: []\n",
            "3: rules[1].match.chat_id: expected a string or a non-empty list of strings")
check_error("match value: null", "rules:\n  - match:\n      chat_id:\n",
            "3: rules[1].match.chat_id: expected a string or a non-empty list of strings")
check_error("match value: empty string", "rules:\n  - match: { chat_id: \"\" }\n",
            "2: rules[1].match.chat_id: expected string of 1..1024 bytes, got ''")
check_error("require value: not a boolean", "rules:\n  - require: { mention: maybe }\n",
            "2: rules[1].require.mention: expected boolean, got 'maybe'")
check_error("name: not a string", "rules:\n  - name: [a]\n", "2: rules[1].name: expected string, got a sequence")
check_error("deny_message: not a string", "rules:\n  - deny_message: { a: 1 }\n",
            "2: rules[1].deny_message: expected string, got a mapping")
check_error("rpm: not an integer", "rules:\n  - rate_limit: { rpm: fast }\n",
            "2: rules[1].rate_limit.rpm: expected integer, got 'fast'")
check_error("rpm: a fraction", "defaults:\n  rate_limit: { rpm: 1.5 }\n",
            "2: defaults.rate_limit.rpm: expected integer, got '1.5'")
check_error("rpm: zero", "rules:\n  - rate_limit: { rpm: 0 }\n",
            "2: rules[1].rate_limit.rpm: expected integer 1..100000, got '0'")
check_error("max_lines: negative", "rules:\n  - output_limits: { max_lines: -1 }\n",
            "2: rules[1].output_limits.max_lines: expected integer 1..100000, got '-1'")
check_error("max_chars: too big", "defaults:\n  output_limits:\n    max_chars: 99999999999\n",
            "3: defaults.output_limits.max_chars: expected integer 1..10000000, got '99999999999'")
check_error("rate_limit: not a mapping", "rules:\n  - rate_limit: 10\n",
            "2: rules[1].rate_limit: expected mapping, got '10'")
check_error("${ENV:} without a name", "rules:\n  - match: { user_id: \"${ENV:}\" }\n",
            "2: rules[1].match.user_id: bad environment reference '${ENV:}' (write the whole value as ${ENV:NAME}, NAME of letters, digits and _)")
check_error("${ENV:...} not closed", "rules:\n  - allow: []\n  - match:\n      user_id:\n        - \"1\"\n        - \"${ENV:OWNER\"\n",
            "6: rules[2].match.user_id[2]: bad environment reference '${ENV:OWNER' (write the whole value as ${ENV:NAME}, NAME of letters, digits and _)")
check_error("${ENV:...} inside a longer value", "rules:\n  - match: { chat_id: \"-100${ENV:X}\" }\n",
            "2: rules[1].match.chat_id: bad environment reference '-100${ENV:X}' (write the whole value as ${ENV:NAME}, NAME of letters, digits and _)",
            { X = "1" })
check_error("${FOO} is not an env reference", "rules:\n  - match: { chat_id: \"${OWNER}\" }\n",
            "2: rules[1].match.chat_id: bad environment reference '${OWNER}' (write the whole value as ${ENV:NAME}, NAME of letters, digits and _)")
check_error("${ENV:bad-name}", "rules:\n  - match: { chat_id: \"${ENV:A-B}\" }\n",
            "2: rules[1].match.chat_id: bad environment reference '${ENV:A-B}' (write the whole value as ${ENV:NAME}, NAME of letters, digits and _)")
check_error("top level must be a mapping", "- a\n- b\n", "1: top level must be a mapping, got a sequence")
check_error("duplicate key", "rules: []\nrules: []\n", "2: duplicate key 'rules' (first at line 1)")

do
  local p, problems, path = load("rules:\n  - match: { channel: telegram\n    allow: [a]\n  - bad\n")
  check("bad YAML: one problem with its line", p == nil and #problems == 1
        and problems[1]:match("^" .. path:gsub("%p", "%%%0") .. ":(%d+): ") ~= nil, joined(problems))
  local line = tonumber(problems[1]:match(":(%d+): "))
  check("bad YAML: the line is that of the flow mapping (2..4)", line and line >= 2 and line <= 4, problems[1])

  p, problems, path = load("rules:\n  - allow: [a]\n    deny_message: \"unterminated\n")
  check("bad YAML: unterminated quote: the end of the text, naming the quote's line",
        p == nil and #problems == 1 and problems[1]:find(path .. ":4: ", 1, true) == 1
        and problems[1]:find("quoted scalar at line 3", 1, true), joined(problems))

  p, problems, path = load("rules:\n  - allow: [a]\n\tmatch: {}\n")
  check("bad YAML: a tab", p == nil and #problems == 1 and problems[1]:find(path .. ":3: ", 1, true) == 1,
        joined(problems))

  p, problems = load("rules:\n  - alow: []\n    match: { chanel: x }\n  - allow: x\n")
  check("several problems are all reported", p == nil and #problems == 3, joined(problems))
end

---------------------------------------------------------------------------
print("# files, source and hash")

do
  local missing = os.tmpname()
  os.remove(missing)
  local p, problems = policy.load(missing, { explicit = false })
  check("missing file, not explicit: an empty policy", p ~= nil and problems == nil and #p.rules == 0
        and p.source == "(none)" and p.hash == nil, joined(problems))
  expect("missing file, not explicit: every capability denied", p:decide { capability = "status" },
         { allowed = false, reason = "no_rule", deny_message = "not allowed" })
  p = policy.load(missing)
  check("missing file, no opts: an empty policy", p ~= nil and #p.rules == 0)
  p, problems = policy.load(missing, { explicit = true })
  check("missing file, explicit: an error",
        p == nil and #problems == 1 and problems[1] == missing .. ": cannot open: No such file or directory",
        joined(problems))
  p = policy.load(nil, { explicit = true })
  check("no path: an empty policy", p ~= nil and #p.rules == 0 and p.source == "(none)")

  local dir = os.tmpname()
  os.remove(dir)
  p, problems = policy.load(dir .. "/sub/policy.yml", { explicit = true })
  check("missing directory, explicit: an error", p == nil and #problems == 1, joined(problems))

  local text = "rules:\n  - allow: [\"*\"]\n"
  local q, _, path = load(text)
  check("source is the path", q.source == path)
  check("hash: 12 hex characters", type(q.hash) == "string" and q.hash:match("^%x+$") and #q.hash == 12, tostring(q.hash))
  check("hash: the start of the text's hash", q.hash == fake_sha256_hex(text):sub(1, 12))
  check("no hash function (plain Lua, no chatgw.crypto): no hash",
        policy.parse(text, "x.yml", { env = {} }).hash == nil)
  local r = must(text .. "# a comment\n")
  check("hash: changes with the text", r.hash ~= q.hash)
  check("hash: same text, same hash", must(text).hash == q.hash)

  for what, t in pairs { ["empty file"] = "", ["only comments"] = "# nothing\n", ["null document"] = "~\n",
                         ["empty rules"] = "rules:\n", ["only defaults"] = "defaults:\n  rate_limit: { rpm: 9 }\n" } do
    local e, errs = load(t)
    check(what .. ": loads with no rules", e ~= nil and #e.rules == 0, joined(errs))
  end
  local d = must("defaults:\n  rate_limit: { rpm: 9 }\n"):decide { capability = "x" }
  expect("only defaults: denied with the file's limits", d, { reason = "no_rule", limits = { rpm = 9 } })

  local s = policy.parse("rules:\n  - allow: [x]\n", "inline", {})
  expect("parse(): from text", s:decide { capability = "x" }, { allowed = true })
  check("parse(): source is the given name", s.source == "inline")
  local _, perr = policy.parse("rules:\n  - alow: [x]\n", "inline")
  check("parse(): problems are named by source", perr and perr[1] == "inline:2: unknown key 'rules[1].alow'",
        joined(perr))
end

---------------------------------------------------------------------------
print("# config.load_text")

do
  local schema = { type = "map", fields = {
    ids = { type = "list", single = true, items = { type = "string" } },
    n = { type = "integer", min = 1 },
  } }
  local v, errors, lines = config.load_text("n: 2\nids:\n  - 007\n  - 12345678901234567890\n", "t.yml", schema)
  check("load_text: value", v and v.n == 2 and v.ids[1] == "007" and v.ids[2] == "12345678901234567890",
        joined(errors))
  check("load_text: no errors", errors and #errors == 0)
  check("load_text: lines of keys and list items", lines.n == 1 and lines.ids == 2 and lines["ids[1]"] == 3
        and lines["ids[2]"] == 4)
  v = config.load_text("ids: 0x10\n", "t.yml", schema)
  check("load_text: single turns a scalar into a one-item list", v and #v.ids == 1 and v.ids[1] == "0x10")
  local none, errs = config.load_text("n: 0\nx: 1\n", "t.yml", schema)
  check("load_text: errors in file:line form", none == nil and #errs == 2
        and errs[1] == "t.yml:1: n: expected integer >= 1, got '0'" and errs[2] == "t.yml:2: unknown key 'x'",
        joined(errs))
  none, errs = config.load_text("a: [\n", "t.yml", schema)
  check("load_text: YAML error", none == nil and #errs == 1 and errs[1]:find("t.yml:", 1, true) == 1, joined(errs))
  v = config.load_text("", "t.yml", schema)
  check("load_text: an empty text gives the defaults", v and type(v.ids) == "table" and #v.ids == 0 and v.n == nil)
  check("load_text: a bad schema raises", not pcall(config.load_text, "", "t.yml", { type = "nope" }))
  local lst = config.load_text("ids: [a]\n", "t.yml", { type = "map", fields = {
    ids = { type = "list", items = { type = "string" } } } })
  check("load_text: a list without single still takes a list", lst and lst.ids[1] == "a")
  none, errs = config.load_text("ids: a\n", "t.yml", { type = "map", fields = {
    ids = { type = "list", items = { type = "string" } } } })
  check("load_text: a list without single rejects a scalar",
        none == nil and errs[1] == "t.yml:1: ids: expected sequence, got 'a'", joined(errs))
end

---------------------------------------------------------------------------
print("# truncate")

local ulen = policy._ulen

-- Valid UTF-8 throughout (no sequence cut).
local function valid_utf8(s)
  local i = 1
  while i <= #s do
    local b = s:byte(i)
    local n = b < 0x80 and 0 or (b >= 0xF0 and 3) or (b >= 0xE0 and 2) or (b >= 0xC0 and 1) or -1
    if n < 0 then return false end
    for j = 1, n do
      local c = s:byte(i + j)
      if not c or c < 0x80 or c > 0xBF then return false end
    end
    i = i + n + 1
  end
  return true
end

local function nlines(s)
  local n = 1
  for _ in s:gmatch("\n") do n = n + 1 end
  return n
end

do
  local t, cut = policy.truncate("short\ntext", { max_lines = 5, max_chars = 100 })
  check("under the limits: unchanged", t == "short\ntext" and cut == false)
  t, cut = policy.truncate("a\nb\nc\n", { max_lines = 3, max_chars = 6 })
  check("exactly at the limits (trailing newline is not a line): unchanged", t == "a\nb\nc\n" and cut == false)
  t, cut = policy.truncate("", { max_lines = 1, max_chars = 1 })
  check("empty text", t == "" and cut == false)

  local ten = {}
  for i = 1, 10 do ten[i] = "line " .. i end
  local text = table.concat(ten, "\n")
  t, cut = policy.truncate(text, { max_lines = 3, max_chars = 1000 })
  check("by lines: three kept and a note", cut == true and t == "line 1\nline 2\nline 3\n… (truncated: 7 more lines)", t)
  t = policy.truncate(text .. "\n", { max_lines = 9, max_chars = 1000 })
  check("by lines: singular note", t == table.concat(ten, "\n", 1, 9) .. "\n… (truncated: 1 more line)", t)
  t, cut = policy.truncate(text, { max_lines = 3, max_chars = 40 })
  check("by lines, and the note does not fit: char cut with the short note",
        cut == true and ulen(t) <= 40 and t:sub(-#"\n… (truncated)") == "\n… (truncated)", t)
  t = policy.truncate(text, {})
  check("no limits given: built-in defaults (10 lines fit)", t == text)
  local many = ("x\n"):rep(100)
  t = policy.truncate(many, nil)
  check("nil limits: built-in 60 lines", nlines(t) == 61 and t:find("(truncated: 40 more lines)", 1, true), t:sub(-40))

  local long = ("abcdefghij"):rep(10)
  t, cut = policy.truncate(long, { max_lines = 10, max_chars = 50 })
  check("by chars: exactly max_chars with the note", cut == true and ulen(t) == 50
        and t == long:sub(1, 50 - 14) .. "\n… (truncated)", t)
  t = policy.truncate("12345678901234567890", { max_lines = 1, max_chars = 19 })
  check("by chars: one line over by one", t == "12345\n… (truncated)", t)
  check("the short note is 13 characters", ulen("… (truncated)") == 13)
  t = policy.truncate(("a"):rep(100), { max_chars = 13 })
  check("max_chars just fits the note", t == "… (truncated)", t)
  t = policy.truncate(("a"):rep(100), { max_chars = 15 })
  check("max_chars fits one character, the newline and the note", t == "a\n… (truncated)", t)
  t = policy.truncate(("a"):rep(100), { max_chars = 5 })
  check("max_chars too small for the note: plain cut", t == "aaaaa", t)
  t = policy.truncate("abc\n\n\n\nxyz" .. ("q"):rep(50), { max_lines = 10, max_chars = 20 })
  check("a char cut does not leave empty lines before the note", t == "abc\n… (truncated)", t)

  local cjk = ("汉字测试。"):rep(40)            -- 200 characters, 600 bytes
  check("CJK: counted as characters", ulen(cjk) == 200)
  t, cut = policy.truncate(cjk, { max_lines = 5, max_chars = 100 })
  check("CJK: 100 characters at most", cut == true and ulen(t) == 100 and valid_utf8(t), ("%d chars"):format(ulen(t)))
  check("CJK: the kept text is a prefix", cjk:sub(1, #t - #"\n… (truncated)") == t:sub(1, #t - #"\n… (truncated)"))
  t, cut = policy.truncate(cjk, { max_chars = 200 })
  check("CJK: 600 bytes but 200 characters fit", t == cjk and cut == false)

  local emoji = ("😀👍🏽🚀"):rep(30)             -- 4 code points of 4 bytes each, 120 characters
  check("emoji: 4-byte sequences counted once", ulen(emoji) == 120)
  t = policy.truncate(emoji, { max_chars = 33 })
  check("emoji: never cut inside a sequence", valid_utf8(t) and ulen(t) <= 33, t)
  check("emoji: 19 characters and the note", ulen(t) == 33 and t:find("\n… (truncated)", 1, true) == #t - 16 + 1, t)

  local mixed = "ok: 结果\n" .. ("ß€😀 "):rep(20) .. "\n" .. ("行\n"):rep(30)
  t = policy.truncate(mixed, { max_lines = 3, max_chars = 60 })
  check("mixed: both limits", valid_utf8(t) and ulen(t) <= 60 and nlines(t) <= 4, t)

  -- Never over max_chars, never an invalid UTF-8 cut, never more than max_lines lines of text.
  local pieces = { "a", "é", "汉", "😀", "\n", " ", "👍🏽", "\n\n" }
  local seed = 12345
  local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
  local bad, runs = nil, 0
  for _ = 1, 400 do
    local parts = {}
    for i = 1, rnd(120) do parts[i] = pieces[rnd(#pieces)] end
    local s = table.concat(parts)
    local lim = { max_lines = rnd(12), max_chars = rnd(80) }
    local out, was_cut = policy.truncate(s, lim)
    runs = runs + 1
    local content_lines = nlines(out) - (was_cut and out:find("… (truncated", 1, true) and 1 or 0)
    if ulen(out) > lim.max_chars or not valid_utf8(out) or content_lines > lim.max_lines
       or (not was_cut and out ~= s) or (was_cut and out == s) then
      bad = ("max_lines=%d max_chars=%d in=%q out=%q"):format(lim.max_lines, lim.max_chars, s, out)
      break
    end
  end
  check("fuzz: 400 texts never over max_chars or max_lines, always valid UTF-8", bad == nil and runs == 400, bad)
end

for _, path in ipairs(tmpfiles) do os.remove(path) end
spec.report()
