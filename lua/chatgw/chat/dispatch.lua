-- chatgw.chat.dispatch: what happens to an inbound message once it is in the ledger.
--
--   1. the allowlist (chat.allowlist_mode) - refused: a short reply in private chats, silence
--      in groups
--   2. a command: "/cmd@otherbot" is ignored; the handler declaring it (or a built-in: /help,
--      /start, /auth); an unknown command gets a hint in private chats and silence in groups
--      unless the bot was mentioned
--   3. the policy for the handler's capability (none: open to all), then its rpm per user and
--      chat; the decision's output limits apply to every reply of the handler
--   4. not a command: the handlers with on_message, in file order, while none returns true;
--      in groups only when the bot is mentioned or the message replies to it, unless the
--      handler says groups = "all"
-- A handler that raises is logged with its traceback and the user gets a short error reply.
local chatgw = chatgw
local handlers = require "chatgw.chat.handlers"
local allowlist = require "chatgw.chat.allowlist"
local outbox = require "chatgw.chat.outbox"
local texts = require "chatgw.chat.texts"
local model = require "chatgw.chat.model"
local audit = require "chatgw.audit"
local json = require "chatgw.json"

local errtrace = require "chatgw.errtrace"
local type, tostring, ipairs, pairs, xpcall, traceback = type, tostring, ipairs, pairs, xpcall, errtrace.handler
local sort, concat, ceil = table.sort, table.concat, math.ceil

local M = {
  policy = nil,        -- the loaded chatgw.chat.policy (set by chat/init.lua)
  unknown_hint = true,
  rate = nil,          -- function(key, rpm) -> true | false, retry_after_ms (set by init)
}

local denials = chatgw.metrics.counter{ name = "chatgw_policy_denials_total",
  help = "Chat commands and messages refused, by capability and reason", labels = { "capability", "reason" } }
local seconds = chatgw.metrics.histogram{ name = "chatgw_chat_handler_seconds",
  help = "Time a chat handler took", labels = { "channel" },
  buckets = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120 } }

local function deny(capability, reason)
  denials:inc({ capability = capability or "-", reason = reason })
end

local function decide(msg, capability, relaxed)
  return M.policy:decide{ channel = msg.channel, chat_id = msg.chat.id, chat_type = msg.chat.raw_type or msg.chat.type,
    user_ids = model.user_ids(msg), capability = capability,
    mentioned = relaxed or msg.mentioned, is_reply = relaxed or msg.reply_to ~= nil }
end

local function short_id()
  return chatgw.crypto.hex(chatgw.crypto.random_bytes(4))
end

-- The message (or press) each running handler coroutine serves: chatgw.ai.chat applies the
-- chat rate limits to calls made from one (M.current_msg()).
local serving = setmetatable({}, { __mode = "k" })
function M.current_msg() return serving[coroutine.running()] end

-- Runs a handler function with msg (or cb); a raise is logged, and answered with a short error.
local function invoke(entry, what, fn, msg, ...)
  local t0 = chatgw.now()
  local co = coroutine.running()
  local outer = serving[co]
  serving[co] = msg
  local ok, r = xpcall(fn, traceback, msg, ...)
  serving[co] = outer
  seconds:observe({ channel = msg.channel }, (chatgw.now() - t0) / 1000)
  if ok then return r end
  local id = short_id()
  chatgw.log.error("chat handler failed", { handler = entry and entry.name or "-", file = entry and entry.file or "-",
    ["function"] = what, channel = msg.channel, chat_id = msg.chat and msg.chat.id or "-", error_id = id,
    error = errtrace.locate(tostring(r), fn) })
  if msg.reply then pcall(msg.reply, msg, texts.get("handler_error", { id = id })) end
  return nil
end

local function serves(entry, msg)
  return not entry.channels or entry.channels[msg.channel] == true
end

-- The rpm of the decision, per capability, user and chat (each capability has its own budget).
-- A handler without a capability is open and has no rpm. true | false after answering.
local function within_rate(msg, capability, d)
  local rpm = d.limits and d.limits.rpm
  if not rpm or not M.rate or not capability then return true end
  local key = concat({ capability, msg.channel, msg.account, msg.chat.id, msg.user.id or "-" }, "|")
  local ok, retry_ms = M.rate(key, rpm)
  if ok then return true end
  deny(capability, "rate_limited")
  msg:reply(texts.get("rate_limited", { seconds = ceil((retry_ms or 1000) / 1000) }))
  return false
end

-- ---- built-in commands ----

local builtins = {}

local function usable_commands(msg)
  local list = {}
  local function add(name, desc, capability, entry)
    if entry and not serves(entry, msg) then return end
    local d = decide(msg, capability, true)
    if d.allowed then list[#list + 1] = { name = name, desc = desc } end
  end
  for name, c in pairs(handlers.commands) do add(name, c.description, c.capability, c.handler) end
  for name, b in pairs(builtins) do
    if not handlers.commands[name] and (not b.visible or b.visible(msg)) then
      add(name, texts.get(b.desc), nil, nil)
    end
  end
  sort(list, function(a, b) return a.name < b.name end)
  return list
end

builtins.help = { desc = "help_desc", fn = function(msg)
  local list = usable_commands(msg)
  if #list == 0 then return msg:reply(texts.get("help_none")) end
  local lines = { texts.get("help_header") }
  for _, c in ipairs(list) do
    lines[#lines + 1] = "/" .. c.name .. (c.desc ~= nil and c.desc ~= "" and (" - " .. c.desc) or "")
  end
  return msg:reply(concat(lines, "\n"))
end }
builtins.start = { desc = "start_desc", fn = function(msg) return builtins.help.fn(msg) end }

-- An /auth add or del in the audit ledger (who: the owner as chat:<channel>:<user id>).
local function audit_allowlist(msg, sub, id, changed)
  audit.record("allowlist." .. sub, { who = ("chat:%s:%s"):format(msg.channel, tostring(msg.user.id)),
    what = ("/auth %s %s"):format(sub, tostring(id)),
    detail = { channel = msg.channel, account = msg.account, chat_id = tostring(id), from_chat = msg.chat.id,
      changed = changed } })
end

builtins.auth = { desc = "auth_desc", visible = function(msg) return allowlist.is_owner(msg) end,
  fn = function(msg)
    if not allowlist.is_owner(msg) then return msg:reply(texts.get("auth_owner_only")) end
    local sub, id = msg.argv[1], msg.argv[2]
    if sub == "list" then
      local rows = allowlist.list(msg.channel, msg.account) or {}
      local mode = allowlist.mode(msg.channel)
      local lines = {}
      for cid in pairs(allowlist.owner_chats(msg.channel)) do
        lines[#lines + 1] = texts.get("auth_owner_chat", { chat_id = cid })
      end
      for _, r in ipairs(rows) do lines[#lines + 1] = r.chat_id end
      if #lines == 0 then return msg:reply(texts.get("auth_list_empty", { channel = msg.channel, mode = mode })) end
      return msg:reply(texts.get("auth_list", { channel = msg.channel, mode = mode }) .. "\n" .. concat(lines, "\n"))
    end
    if (sub ~= "add" and sub ~= "del") then return msg:reply(texts.get("auth_usage")) end
    id = id or msg.chat.id
    if sub == "add" then
      local ok, err = allowlist.add(msg.channel, msg.account, id, msg.user.id)
      if not ok then error(err) end
      chatgw.log.info("allowlist: chat added", { channel = msg.channel, account = msg.account, chat_id = id, by = msg.user.id })
      audit_allowlist(msg, "add", id, ok > 0)
      return msg:reply(texts.get("auth_added", { chat_id = id }))
    end
    local n, err = allowlist.remove(msg.channel, msg.account, id)
    if not n then error(err) end
    chatgw.log.info("allowlist: chat removed", { channel = msg.channel, account = msg.account, chat_id = id, by = msg.user.id })
    audit_allowlist(msg, "del", id, n > 0)
    return msg:reply(texts.get(n > 0 and "auth_removed" or "auth_not_found", { chat_id = id }))
  end }

M.builtins = builtins

-- ---- messages ----

local function run_command(msg)
  local c = handlers.commands[msg.command]
  if c and not serves(c.handler, msg) then c = nil end
  if not c then
    local b = builtins[msg.command]
    if b then
      msg.limits = decide(msg, nil).limits
      return invoke(nil, "/" .. msg.command, b.fn, msg)
    end
    if M.unknown_hint and (msg.chat.type == "private" or msg.mentioned) then
      msg:reply(texts.get("unknown_command", { command = msg.command }))
    end
    return
  end
  local d = decide(msg, c.capability)
  if not d.allowed then
    deny(c.capability, d.reason)
    -- no rule: the built-in "not allowed", in the configured language
    local text = d.reason == "no_rule" and texts.get("not_allowed") or d.deny_message
    if text then msg:reply(text) end
    return
  end
  if not within_rate(msg, c.capability, d) then return end
  msg.limits, msg._handler = d.limits, c.handler.name
  return invoke(c.handler, "on_command", c.handler.mod.on_command, msg, msg.args)
end

local function addressed(entry, msg)
  if msg.chat.type == "private" then return true end
  if entry.groups == "all" then return true end
  return msg.mentioned or (msg.reply_to ~= nil and msg.reply_to.from_bot)
end

local function run_messages(msg)
  for _, entry in ipairs(handlers.message_handlers) do
    if serves(entry, msg) and addressed(entry, msg) and (not msg.edited or entry.edits) then
      local d = decide(msg, entry.message_capability)
      if d.allowed then
        msg.limits, msg._handler = d.limits, entry.name
        if within_rate(msg, entry.message_capability, d) then
          if invoke(entry, "on_message", entry.mod.on_message, msg) == true then return end
        else
          return
        end
      else
        deny(entry.message_capability, d.reason)
      end
    end
  end
end

-- Handles one inbound message (in a task of its own).
function M.handle(msg)
  if msg._for_other_bot then return end
  if msg.edited and not msg.command then
    -- only handlers that asked for edits see them (run_messages checks)
  elseif msg.edited then
    return -- an edited command is not run again
  end
  local ok = allowlist.allowed(msg)
  if not ok then
    deny(nil, "allowlist")
    if msg.chat.type == "private" then msg:reply(texts.get("allowlist_denied")) end
    return
  end
  if msg.command then return run_command(msg) end
  return run_messages(msg)
end

-- A button press: the handler that sent the message gets it (else every on_callback in order,
-- until one returns true). The press is answered in any case.
function M.callback(cb)
  cb.data = outbox.button_data(cb.data)
  local probe = { channel = cb.channel, account = cb.account, chat = cb.chat or {}, user = cb.user or {},
                  mentioned = true, text = "" }
  probe.chat.type = probe.chat.type or "private"
  if not allowlist.allowed(probe) then
    cb:answer(texts.get("allowlist_denied"))
    return
  end
  local target
  if cb.message and cb.message.id and cb.chat then
    local row = outbox.find_by_message(cb.channel, cb.account, cb.chat.id, cb.message.id)
    target = row and row.handler and handlers.by_name[row.handler]
    if row and cb.message.text == nil then -- a channel whose press carries only the id (ws)
      local body = type(row.body) == "string" and json.decode(row.body)
      cb.message.text = type(body) == "table" and type(body.text) == "string" and body.text or nil
    end
  end
  local list = (target and target.mod.on_callback) and { target } or handlers.callback_handlers
  for _, entry in ipairs(list) do
    if serves(entry, cb) then
      cb._handler = entry.name
      if invoke(entry, "on_callback", entry.mod.on_callback, cb) == true then break end
    end
  end
  cb:answer()
end

return M
