-- chatgw.chat.policy: the chat policy engine (config/policy.yml) — who may use which capability,
-- where, and with which rate and output limits. Pure Lua; the YAML is read with chatgw.config's
-- line-numbered loader (config.load_text), so every problem is reported as "<file>:<line>: <msg>".
--
--   local policy = require "chatgw.chat.policy"
--   local p, problems = policy.load("config/policy.yml", { explicit = false, env = nil })
--   local d = p:decide{ channel = "telegram", chat_id = "-100123", chat_type = "group",
--                       user_ids = { "42" }, capability = "alerts.explain",
--                       mentioned = true, is_reply = false }
--   -- d = { allowed, reason, deny_message, rule, rule_name, limits = { rpm, max_lines, max_chars } }
--   local text, cut = policy.truncate(reply, d.limits)
--
-- File format (seed 000's, plus chatgw's additions):
--   defaults:                                   # optional
--     rate_limit: { rpm: 30 }
--     output_limits: { max_lines: 60, max_chars: 6000 }
--   rules:
--     - name: owner                             # optional
--       match: { channel: telegram, user_id: "${ENV:OWNER_TELEGRAM_USER_ID}" }
--       allow: ["*"]
--     - match: { channel: telegram, chat_type: group, capability: [alerts.explain] }
--       allow: [alerts.explain]
--       require: { mention_bot_for_explain: true, reply_required_for_explain: true }
--       rate_limit: { rpm: 10 }
--       output_limits: { max_lines: 30, max_chars: 3000 }
--     - match: { channel: feishu }
--       allow: []
--       deny_message: "not allowed here"
--
-- Semantics:
-- * Rules are tried in order; the first whose match fits decides. match keys: channel, chat_id,
--   chat_type, user_id, capability; each a string or a list of strings (any one matches), compared
--   as strings exactly as written in the file (`user_id: 12345678901234567890` stays exact).
--   An absent or empty match matches everything.
-- * A whole value "${ENV:NAME}" is that environment variable (read at load); when it is unset or
--   empty the rule never matches (p.warnings says so).
-- * chat_type supergroup is an alias of group (on both sides). A message may carry several user
--   ids (ctx.user_ids, and/or ctx.user_id); user_id matches when any of them is one of the values.
-- * The matching rule allows when allow has "*" or the capability, else denies with its
--   deny_message (none: silent, reason not_allowed). Then, for alerts.explain,
--   require.mention_bot_for_explain / reply_required_for_explain, and for any capability
--   require.mention / require.reply, deny silently (mention_required, then reply_required).
-- * No rule: denied, deny_message "not allowed", reason no_rule, default limits.
-- * ctx.capability nil (a handler without a capability): allowed, reason no_capability, default
--   limits, rules not consulted.
-- * Limits: built-in rpm 30, max_lines 60, max_chars 6000 < the file's defaults < the rule's own.

local config = require "chatgw.config"

local M = {}

local BUILTIN = { rpm = 30, max_lines = 60, max_chars = 6000 }
M.DEFAULT_LIMITS = { rpm = BUILTIN.rpm, max_lines = BUILTIN.max_lines, max_chars = BUILTIN.max_chars }

local MATCH_KEYS = { "channel", "chat_id", "chat_type", "user_id", "capability" }

---------------------------------------------------------------------------
-- Schema (chatgw.config's DSL)
---------------------------------------------------------------------------

local function int(min, max) return { type = "integer", min = min, max = max } end
local function bool() return { type = "boolean" } end

local function limit_fields(fields)
  fields.rate_limit = { type = "map", fields = { rpm = int(1, 100000) } }
  fields.output_limits = { type = "map", fields = {
    max_lines = int(1, 100000),
    max_chars = int(1, 10000000),
  } }
  return fields
end

-- A match value: a string or a list of strings, kept as written (no YAML number typing).
local MATCH_VALUE = { type = "list", single = true, items = { type = "string", min_len = 1, max_len = 1024 } }

local SCHEMA = { type = "map", fields = {
  defaults = { type = "map", fields = limit_fields({}) },
  rules = { type = "list", items = { type = "map", fields = limit_fields({
    name = { type = "string", min_len = 1, max_len = 256 },
    match = { type = "map", fields = {
      channel = MATCH_VALUE, chat_id = MATCH_VALUE, chat_type = MATCH_VALUE,
      user_id = MATCH_VALUE, capability = MATCH_VALUE,
    } },
    allow = { type = "list", items = { type = "string", min_len = 1, max_len = 256 } },
    deny_message = { type = "string", max_len = 4096 },
    require = { type = "map", fields = {
      mention_bot_for_explain = bool(), reply_required_for_explain = bool(),
      mention = bool(), reply = bool(),
    } },
  }) } },
} }

---------------------------------------------------------------------------
-- SHA-256 (LuaJIT's bit library; hash stays nil without it)
---------------------------------------------------------------------------

-- The content hash shown in logs and health: OpenSSL's SHA-256 through chatgw.crypto (absent in
-- plain-Lua specs, which may pass opts.sha256_hex instead; then there is no hash).
local function sha256_hex(text, opts)
  local f = opts and opts.sha256_hex
  if not f and chatgw and chatgw.crypto then
    f = function(t) return chatgw.crypto.sha256(t, "hex") end
  end
  return f and f(text) or nil
end

---------------------------------------------------------------------------
-- Compiling the converted file
---------------------------------------------------------------------------

local Policy = {}
Policy.__index = Policy

local function copy_limits(l)
  return { rpm = l.rpm, max_lines = l.max_lines, max_chars = l.max_chars }
end

-- Section values (rate_limit/output_limits maps, fields nil when not given) over base limits.
local function merge_limits(base, section)
  local out = copy_limits(base)
  if section then
    local rl, ol = section.rate_limit or {}, section.output_limits or {}
    out.rpm = rl.rpm or out.rpm
    out.max_lines = ol.max_lines or out.max_lines
    out.max_chars = ol.max_chars or out.max_chars
  end
  return out
end

local function chat_type_of(v)
  if v == "supergroup" then return "group" end
  return v
end

local function new_policy(source, hash, defaults, rules, warnings)
  return setmetatable({ source = source, hash = hash, defaults = defaults,
                        rules = rules, warnings = warnings or {} }, Policy)
end

function M.empty()
  return new_policy("(none)", nil, copy_limits(BUILTIN), {}, {})
end

-- A whole-value "${ENV:NAME}" gives NAME; any other "${" is a problem.
local function env_ref(value)
  if not value:find("${", 1, true) then return nil end
  local name = value:match("^%${ENV:([A-Za-z_][A-Za-z0-9_]*)}$")
  if name then return name end
  return false
end

-- Parse and compile `text` (named `source` in problems). Returns policy, or nil + problems.
function M.parse(text, source, opts)
  opts = opts or {}
  source = source or "(text)"
  local getenv = os.getenv
  if opts.env then getenv = function(name) return opts.env[name] end end

  local doc, errors, lines = config.load_text(text, source, SCHEMA)
  if not doc then return nil, errors end
  local problems, warnings = {}, {}
  local function at(path) return lines[path] or 1 end

  local defaults = merge_limits(BUILTIN, doc.defaults)
  local rules = {}
  for i, r in ipairs(doc.rules) do
    local rpath = ("rules[%d]"):format(i)
    local rule = { index = i, name = r.name, match = {}, never = false, allow = {},
                   allow_all = false, require = r.require,
                   deny_message = (r.deny_message ~= "" and r.deny_message) or nil,
                   limits = merge_limits(defaults, r) }
    for _, key in ipairs(MATCH_KEYS) do
      local kpath = rpath .. ".match." .. key
      local values = r.match[key]
      if lines[kpath] and #values == 0 then
        problems[#problems + 1] = ("%s:%d: %s: expected a string or a non-empty list of strings")
          :format(source, at(kpath), kpath)
      elseif lines[kpath] then
        local set = {}
        for j, v in ipairs(values) do
          local vpath = ("%s[%d]"):format(kpath, j)
          local line = lines[vpath] or at(kpath)
          local name = env_ref(v)
          if name == false then
            problems[#problems + 1] = ("%s:%d: %s: bad environment reference '%s' (write the whole value as ${ENV:NAME}, NAME of letters, digits and _)")
              :format(source, line, lines[vpath] and vpath or kpath, v)
          elseif name then
            local got = getenv(name)
            if got == nil or got == "" then
              rule.never = true
              warnings[#warnings + 1] = ("%s:%d: %s: %s is not set; this rule never matches")
                :format(source, line, lines[vpath] and vpath or kpath, name)
            else
              v = got
            end
          end
          if key == "chat_type" then v = chat_type_of(v) end
          set[v] = true
        end
        rule.match[key] = set
      end
    end
    for _, a in ipairs(r.allow) do
      if a == "*" then rule.allow_all = true end
      rule.allow[a] = true
    end
    rules[i] = rule
  end
  if #problems > 0 then return nil, problems end
  local hash = sha256_hex(text, opts)
  return new_policy(source, hash and hash:sub(1, 12) or nil, defaults, rules, warnings)
end

-- Returns policy, or nil + problems. A missing file is an empty policy unless opts.explicit.
function M.load(path, opts)
  opts = opts or {}
  if path == nil then return M.empty() end
  local f, msg, code = io.open(path, "rb")
  if not f then
    if code == 2 and not opts.explicit then return M.empty() end
    msg = tostring(msg)
    if msg:sub(1, #path + 2) == path .. ": " then msg = msg:sub(#path + 3) end
    return nil, { ("%s: cannot open: %s"):format(path, msg) }
  end
  local text, rmsg = f:read("*a")
  f:close()
  if not text then return nil, { ("%s: cannot read: %s"):format(path, tostring(rmsg)) } end
  return M.parse(text, path, opts)
end

---------------------------------------------------------------------------
-- decide
---------------------------------------------------------------------------

local function str(v)
  if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return ("%d"):format(v)
  end
  if v == nil then return nil end
  return tostring(v)
end

local function fits(set, value)
  return set == nil or (value ~= nil and set[value] == true)
end

function Policy:decide(ctx)
  ctx = ctx or {}
  if ctx.capability == nil then
    return { allowed = true, reason = "no_capability", limits = copy_limits(self.defaults) }
  end
  local cap = str(ctx.capability)
  local channel, chat_id = str(ctx.channel), str(ctx.chat_id)
  local chat_type = chat_type_of(str(ctx.chat_type))
  local users = {}
  if ctx.user_id ~= nil then users[#users + 1] = str(ctx.user_id) end
  for _, id in ipairs(ctx.user_ids or {}) do users[#users + 1] = str(id) end

  for i, r in ipairs(self.rules) do
    local m = r.match
    local ok = not r.never and fits(m.channel, channel) and fits(m.chat_id, chat_id)
      and fits(m.chat_type, chat_type) and fits(m.capability, cap)
    if ok and m.user_id then
      ok = false
      for _, id in ipairs(users) do
        if m.user_id[id] then ok = true break end
      end
    end
    if ok then
      local d = { allowed = false, rule = i, rule_name = r.name, limits = copy_limits(r.limits) }
      local req = r.require
      local explain = cap == "alerts.explain"
      if not (r.allow_all or r.allow[cap]) then
        d.reason, d.deny_message = "not_allowed", r.deny_message
      elseif ((explain and req.mention_bot_for_explain) or req.mention) and not ctx.mentioned then
        d.reason = "mention_required"
      elseif ((explain and req.reply_required_for_explain) or req.reply) and not ctx.is_reply then
        d.reason = "reply_required"
      else
        d.allowed, d.reason = true, "allowed"
      end
      return d
    end
  end
  return { allowed = false, reason = "no_rule", deny_message = "not allowed",
           limits = copy_limits(self.defaults) }
end

---------------------------------------------------------------------------
-- truncate
---------------------------------------------------------------------------

-- UTF-8 characters: every byte that is not a continuation byte (0x80..0xBF) starts one.
local function ulen(s)
  local n = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 0x80 or b > 0xBF then n = n + 1 end
  end
  return n
end

-- The first n characters of s (never ends inside a UTF-8 sequence).
local function uprefix(s, n)
  if n <= 0 then return "" end
  local count = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 0x80 or b > 0xBF then
      count = count + 1
      if count > n then return s:sub(1, i - 1) end
    end
  end
  return s
end
M._ulen = ulen

-- Keep at most max_lines lines and max_chars UTF-8 characters of text. A cut appends a line
-- "… (truncated: N more lines)" (when only whole lines were dropped) or "… (truncated)"; the
-- result, note included, never has more than max_chars characters (the note is dropped when
-- max_chars is too small for it). The note line is not counted in max_lines. notes (optional)
-- translates the notes: { truncated = "… (truncated)", more_lines = function(n) -> "… (truncated:
-- n more lines)" }. Returns text, truncated.
function M.truncate(text, limits, notes)
  text = text == nil and "" or tostring(text)
  limits = limits or {}
  local max_lines = math.max(0, math.floor(tonumber(limits.max_lines) or BUILTIN.max_lines))
  local max_chars = math.max(0, math.floor(tonumber(limits.max_chars) or BUILTIN.max_chars))

  local lines, pos = {}, 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    if not nl then lines[#lines + 1] = text:sub(pos) break end
    lines[#lines + 1] = text:sub(pos, nl - 1)
    pos = nl + 1
  end
  local chars = ulen(text)
  if #lines <= max_lines and chars <= max_chars then return text, false end

  local keep = math.min(#lines, max_lines)
  local content = table.concat(lines, "\n", 1, keep)
  local function with(note)
    if content == "" then return note end
    return content .. "\n" .. note
  end
  if keep < #lines then
    local more = #lines - keep
    local note = notes and notes.more_lines and notes.more_lines(more)
      or ("… (truncated: %d more line%s)"):format(more, more == 1 and "" or "s")
    local out = with(note)
    if ulen(out) <= max_chars then return out, true end
  end
  local note = notes and notes.truncated or "… (truncated)"
  local room = max_chars - ulen(note) - 1     -- content, "\n", note
  if room <= 0 then
    if ulen(note) <= max_chars then return note, true end
    return uprefix(content, max_chars), true
  end
  content = uprefix(content, room):gsub("\n+$", "")
  return with(note), true
end

return M
