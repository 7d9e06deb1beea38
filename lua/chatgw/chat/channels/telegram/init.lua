-- The Telegram channel (docs/telegram.md). On when the account's token is set
-- (TELEGRAM_BOT_TOKEN for the default account); without one it is off, and /health says so.
--
-- Per account: a supervised loop holding the bot's lock (`telegram-<bot id>`) that asks getMe
-- who the bot is, publishes the handlers' commands (setMyCommands), then long-polls
-- (telegram/poll.lua) or sets the webhook (telegram/webhook.lua); the outbox sender of the
-- account (chat/sender.lua) delivers replies through telegram/deliver.lua, paced by the
-- governor with Telegram's published limits (about 1 message/s per chat with a small burst,
-- 20/min per group, 30/s per bot).
local chatgw = chatgw
local chat = require "chatgw.chat"
local handlers = require "chatgw.chat.handlers"
local supervisor = require "chatgw.supervisor"
require "chatgw.chat.channels.config" -- the channels: section
local tgconfig = require "chatgw.chat.channels.telegram.config"
local apimod = require "chatgw.chat.channels.telegram.api"
local deliver = require "chatgw.chat.channels.telegram.deliver"
local poll = require "chatgw.chat.channels.telegram.poll"
local webhook = require "chatgw.chat.channels.telegram.webhook"
local stream = require "chatgw.chat.channels.telegram.stream"
local json = require "chatgw.json"

local type, tostring, ipairs, pairs, pcall = type, tostring, ipairs, pairs, pcall

local M = {}

local bots = chatgw.shared("chatgw.telegram.bots") -- account -> JSON { id, username } (getMe)
local accounts, by_name = {}, {}                    -- this state's accounts
local settings = {}

-- A UTF-8 string cut to at most n bytes, never inside a character.
local function cut(s, n)
  if #s <= n then return s end
  local i = n
  while i > 0 and s:byte(i + 1) and s:byte(i + 1) >= 0x80 and s:byte(i + 1) < 0xC0 do i = i - 1 end
  return s:sub(1, i)
end
M.cut = cut

local function account(name) return by_name[name] end

-- The bot of an account (from getMe, kept across reloads), or what the config says.
local function bot_of(acct)
  local b = json.decode(bots:get(acct.name) or "null")
  if type(b) ~= "table" then b = { id = tgconfig.bot_id(acct.token) } end
  if acct.username then b.username = acct.username end
  return b
end

local function commands_for_menu()
  local list, names = {}, {}
  for name in pairs(handlers.commands) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local c = handlers.commands[name]
    local desc = type(c.description) == "string" and c.description ~= "" and c.description or name
    -- Telegram: 1-32 of a-z0-9_, descriptions 1-256 characters
    if #name <= 32 and name:match("^[a-z0-9_]+$") then
      list[#list + 1] = { command = name, description = cut(desc, 256) }
    end
  end
  for _, b in ipairs({ { "help", "list the commands" }, { "start", "start" } }) do
    if not handlers.commands[b[1]] then list[#list + 1] = { command = b[1], description = b[2] } end
  end
  return list
end

-- Who the bot is (getMe), and its command menu. true | nil, err
local function introduce(acct)
  local me, err, info = acct.api:call("getMe", {})
  if not me then
    if info and info.status == 401 then
      err = "telegram: the bot token was refused (401 Unauthorized): check " .. tostring(acct.token_env)
    end
    chat.set_state("telegram", acct.name, "error", err, { mode = acct.mode })
    return nil, err
  end
  local b = { id = apimod.id(me.id), username = acct.username or me.username }
  bots:set(acct.name, json.encode(b))
  acct.bot = b
  if acct.mode == "send" then return true end -- receives nothing: no command menu
  local ok, cerr = acct.api:call("setMyCommands", { commands = commands_for_menu() })
  if not ok then
    chatgw.log.warn("telegram: setMyCommands failed (the command menu is not updated)",
      { account = acct.name, error = tostring(cerr) })
  end
  return true
end

local function run_account(acct, ctx)
  if acct.bad_mode then
    chat.set_state("telegram", acct.name, "error", acct.bad_mode)
    return nil, acct.bad_mode
  end
  -- getMe until it answers: a bad token or an outage backs off here (1 s to 30 s), not in the
  -- supervisor, whose hourly restart budget a long outage would use up
  local failures = 0
  while true do
    local ok, err = introduce(acct)
    if ok then break end
    if tostring(err):find("^cancelled") then return nil, err end
    failures = failures + 1
    if failures == 1 then chatgw.log.error("telegram: " .. tostring(err):gsub("^telegram: ", ""), { account = acct.name }) end
    local _, serr = chatgw.sleep(poll.BACKOFF_MS[math.min(failures, #poll.BACKOFF_MS)])
    if serr then return nil, serr end
  end
  if acct.mode == "webhook" then return webhook.run(acct, poll.ALLOWED) end
  if acct.mode == "send" then
    -- send only: the outbox sends; no getUpdates, and a webhook someone else set is left alone
    chat.set_state("telegram", acct.name, "ok", nil, { mode = "send" })
    while true do
      local _, serr = chatgw.sleep(3600000)
      if serr then return nil, serr end
    end
  end
  local dok, derr = webhook.delete_if_set(acct)
  if not dok then
    chat.set_state("telegram", acct.name, "error", "deleteWebhook: " .. tostring(derr), { mode = "poll" })
    return nil, derr
  end
  return poll.run(acct, { timeout_s = settings.poll_timeout_s, interval_ms = settings.poll_interval_ms,
    lock = ctx and ctx.lock, lock_token = ctx and ctx.lock_token })
end

local function start(name)
  local acct = by_name[name]
  if not acct or not acct.token then return end
  if chatgw._mode == "test" then return end -- chatgw test: a simulated chat, never the platform
  acct.bot = bot_of(acct)
  chat.set_state("telegram", name, "starting", nil, { mode = acct.mode })
  local id = tgconfig.bot_id(acct.token)
  acct.loop = supervisor.internal{ name = "telegram." .. name, module = "telegram",
    lock = "telegram-" .. (id or chatgw.crypto.sha256(acct.token, "hex"):sub(1, 24)),
    run = function(ctx) return run_account(acct, ctx) end }
end

local function answer_callback(name, id, text)
  local acct = by_name[name]
  if not acct then return false end
  local params = { callback_query_id = tostring(id) }
  if text and text ~= "" then params.text = cut(tostring(text), 200) end
  local ok, err = acct.api:call("answerCallbackQuery", params, { timeout_ms = 10000 })
  if not ok then
    chatgw.log.debug("telegram: answerCallbackQuery failed", { account = name, error = tostring(err) })
    return false
  end
  return true
end

local function typing(name, chat_id)
  local acct = by_name[name]
  if not acct then return end
  acct.api:call("sendChatAction", { chat_id = deliver.target(name, chat_id), action = "typing" }, { timeout_ms = 10000 })
end

-- An attachment's bytes: getFile, then the file URL (at most opts.max_bytes; Bot API: 20 MB).
local function download(name, att, opts)
  local acct = by_name[name]
  if not acct then return nil, "not_found: no Telegram account " .. tostring(name) end
  local f, err = acct.api:call("getFile", { file_id = att.id })
  if not f then return nil, err end
  if type(f.file_path) ~= "string" then return nil, "telegram: the file has no path (over 20 MB?)" end
  local res, herr = chatgw.http.request{ url = acct.api:file_url(f.file_path), timeout_ms = 120000,
    max_body = opts.max_bytes and (opts.max_bytes + 1) or 20 * 1024 * 1024 }
  if not res then return nil, acct.api:scrub(herr) end
  if res.status ~= 200 then return nil, "telegram: file download answered " .. res.status end
  return res.body
end

M.def = {
  name = "telegram",
  accounts = function()
    local out = {}
    for _, a in ipairs(accounts) do
      out[#out + 1] = { name = a.name, off = a.token == nil, off_reason = a.off_reason, source = a.source }
    end
    return out
  end,
  deliver = function(name, op)
    local acct = by_name[name]
    if not acct then return { ok = false, kind = "retry", error = "telegram: no account " .. tostring(name) } end
    return deliver.deliver(acct, op)
  end,
  typing = typing,
  download = download,
  answer_callback = answer_callback,
  bot_username = function(name)
    local acct = by_name[name]
    return acct and (acct.username or (acct.bot and acct.bot.username) or bot_of(acct).username) or nil
  end,
  is_group = function(chat_id) return tostring(chat_id):sub(1, 1) == "-" end,
  stream = function(msg) return stream.new(msg, by_name[msg.account], M.def, settings.drafts ~= false) end,
  -- checks.channels: the poller's (or webhook setter's) loop: "running", or "waiting_lock" on a
  -- process where another one holds the bot
  health = function(name)
    local acct = by_name[name]
    if not acct or not acct.loop then return nil end
    return { poller = acct.loop.status().state, mode = acct.mode }
  end,
  capabilities = { edit = true, delete = true, buttons = true, images = true },
  -- Bot API: text 1-4096 characters after entity parsing, counted in UTF-16 code units; callback
  -- data 1-64 bytes
  limits = { button_data_max = 64, text_max = 4096, text_unit = "utf16" },
  -- the Bot FAQ's limits: about 1 message per second per chat (a short burst is tolerated), 20 per
  -- minute per group, about 30 per second per bot
  governor = { chat_rate = 1, chat_burst = 3, group_per_minute = 20, bot_rate = 30, bot_burst = 30,
              edit_interval_ms = 1000 }, -- a streamed reply's edits: at least 1 s apart per chat
  idempotent_sends = false, -- Telegram has no idempotency key: an unknown outcome is not resent
  start = start,
  stop = function(name, reason)
    local acct = by_name[name]
    if acct and acct.loop and acct.loop.stop then acct.loop.stop(reason) end
    if acct then acct.loop = nil end
  end,
}

function M.install(R)
  chat.register_channel(M.def)
  R.register_builtin_route({ method = "POST", path = "/telegram/:account", fn = webhook.route(account),
    public = true, label = "POST /telegram/:account",
    listener = function(cfg)
      local t = cfg and cfg.channels and cfg.channels.telegram
      return t and t.webhook_listener or "main"
    end })
  R.register_load_step(function(cfg, opts)
    local t = cfg.channels and cfg.channels.telegram or {}
    local problems = {}
    local listener = t.webhook_listener or "main"
    if not (cfg.listeners and cfg.listeners[listener]) then
      problems[#problems + 1] = ("%s: channels.telegram.webhook_listener: no listener named '%s'")
        :format(opts and opts.config_path or "chatgw.yml", listener)
    end
    settings = { poll_timeout_s = t.poll_timeout_s, poll_interval_ms = t.poll_interval_ms, drafts = t.drafts }
    accounts, by_name = {}, {}
    for _, a in ipairs(tgconfig.accounts(cfg)) do
      settings.api_base = a.api_base
      a.api = apimod.new(a)
      accounts[#accounts + 1] = a
      by_name[a.name] = a
    end
    M.settings = settings
    return #problems > 0 and problems or nil
  end)
end

M.accounts = function() return accounts end

-- A bot added while running (the gateway registry): { name, token, mode, webhook_url,
-- webhook_secret, username }; the same API base as the configured bots. Start it with
-- chat.start_account("telegram", name). nil, err when the name is taken.
function M.add_account(f)
  if by_name[f.name] then return nil, "a Telegram account named " .. f.name .. " exists" end
  local acct = { name = f.name, token = f.token, token_env = "(gateway registry)",
    api_base = settings.api_base or "https://api.telegram.org", mode = f.mode or "poll",
    webhook_url = f.webhook_url, webhook_secret = f.webhook_secret, username = f.username,
    source = "registry" }
  acct.api = apimod.new(acct)
  accounts[#accounts + 1] = acct
  by_name[acct.name] = acct
  return acct
end

-- Forgets a bot added by add_account (after chat.stop_account stopped it).
function M.remove_account(name)
  local acct = by_name[name]
  if not acct or acct.source ~= "registry" then return false end
  bots:delete(name) -- its getMe: another bot may take the name
  by_name[name] = nil
  for i, a in ipairs(accounts) do if a == acct then table.remove(accounts, i) break end end
  return true
end

-- getMe now (the registry's test): true, { id, username } | nil, err
function M.probe(name)
  local acct = by_name[name]
  if not acct then return nil, "no Telegram account " .. tostring(name) end
  local me, err = acct.api:call("getMe", {}, { timeout_ms = 10000 })
  if not me then return nil, err end
  return true, { id = apimod.id(me.id), username = me.username }
end

return M
