-- The Feishu/Lark channel (docs/feishu.md). On when FEISHU_APP_ID and FEISHU_APP_SECRET are set
-- (then the `feishu` listener exists, seed 000's webhook server: FEISHU_WEBHOOK_HOST and
-- FEISHU_WEBHOOK_PORT, by default the main host and port + 1); off otherwise, and /health says
-- so.
--
-- Events come to POST <event_path> (the default app) and <event_path>/<account> on that
-- listener (telegram-like accounts, each app its own keys): feishu/events.lua verifies and
-- decrypts them, the ledger records them, and only then they are acknowledged. Per app a
-- supervised loop under its lock checks the app's credentials (the tenant token) and learns who
-- the bot is (bot info) when FEISHU_BOT_* does not say. Replies go through the outbox and
-- feishu/deliver.lua, paced by the governor with Feishu's limits (5 per second per chat, 50 per
-- second per app); a send's uuid makes Feishu drop a repeat (idempotent_sends).
local chatgw = chatgw
local chat = require "chatgw.chat"
local json = require "chatgw.json"
local supervisor = require "chatgw.supervisor"
require "chatgw.chat.channels.config" -- the channels: section
local fsconfig = require "chatgw.chat.channels.feishu.config"
local apimod = require "chatgw.chat.channels.feishu.api"
local events = require "chatgw.chat.channels.feishu.events"
local deliver = require "chatgw.chat.channels.feishu.deliver"
local stream = require "chatgw.chat.channels.feishu.stream"
local outbox = require "chatgw.chat.outbox"

local type, tostring, ipairs = type, tostring, ipairs

local M = {}

local bots = chatgw.shared("chatgw.feishu.bots") -- account -> JSON { open_id, name } (bot info)
local accounts, by_name = {}, {}
local settings = {} -- from the config at the load: what an app added at run time shares
local answers = chatgw.shared("chatgw.feishu.answers") -- event id -> a card action's toast
local CHECK_MS = 600000
local chat_types = chatgw.shared("chatgw.feishu.chat_types") -- chat_id -> "p2p" | "group" (as events said)

local function lookup(name) return by_name[name] end

local function bot_of(acct)
  local b = json.decode(bots:get(acct.name) or "null")
  b = type(b) == "table" and b or {}
  b.open_id = acct.bot_open_id or b.open_id
  b.user_id = acct.bot_user_id or b.user_id
  b.name = acct.bot_name or b.name
  return b
end

local function known(b) return b and (b.open_id or b.user_id or b.name) and true or false end

-- Who the bot is, from GET /open-apis/bot/v3/info, when FEISHU_BOT_* does not say.
local function learn_bot(acct)
  if not (acct.bot_open_id or acct.bot_user_id or acct.bot_name) then
    local info = acct.api:call("GET", "/open-apis/bot/v3/info", {})
    local b = type(info) == "table" and (info.bot or info) or nil
    if type(b) == "table" and b.open_id then
      bots:set(acct.name, json.encode({ open_id = b.open_id, name = b.app_name }))
    end
  end
  acct.bot = bot_of(acct)
  return acct.bot
end

-- The bot, for an event with mentions: an event that comes before the account's loop has
-- learnt it (just after a start) asks the platform itself.
local function ensure_bot(acct)
  if known(acct.bot) then return acct.bot end
  acct.bot = bot_of(acct)
  if known(acct.bot) or chatgw._mode == "test" or not acct.app_secret then return acct.bot end
  return learn_bot(acct)
end

-- The app's credentials and its bot. true | nil, err
local function check(acct)
  local tok, err = acct.api:token()
  if not tok then
    chat.set_state("feishu", acct.name, "error", err)
    return nil, err
  end
  learn_bot(acct)
  local extra = { event_path = acct.event_path }
  if not acct.verification_token then
    extra.warning = "FEISHU_VERIFICATION_TOKEN is not set: sending works, events are refused (503)"
  end
  chat.set_state("feishu", acct.name, "ok", nil, extra)
  return true
end

local function run_account(acct)
  local failures = 0
  while true do
    local ok, err = check(acct)
    if ok then failures = 0 else
      if tostring(err):find("^cancelled") then return nil, err end
      failures = failures + 1
      if failures == 1 then chatgw.log.error(tostring(err), { account = acct.name }) end
    end
    local wait = ok and CHECK_MS or ({ 1000, 2000, 5000, 10000, 30000 })[math.min(failures, 5)]
    local _, serr = chatgw.sleep(wait)
    if serr then return nil, serr end
  end
end

local function start(name)
  local acct = by_name[name]
  if not acct or not acct.app_secret then return end
  if chatgw._mode == "test" then return end -- chatgw test: a simulated chat, never the platform
  acct.bot = bot_of(acct)
  if not acct.verification_token then
    chatgw.log.warn("feishu: FEISHU_VERIFICATION_TOKEN is not set: messages can be sent, but events are refused "
      .. "(503 verification_token_missing) until it is", { account = name })
  end
  acct.loop = supervisor.internal{ name = "feishu." .. name, module = "feishu",
    lock = "feishu-" .. chatgw.crypto.sha256(acct.app_id, "hex"):sub(1, 24),
    run = function() return run_account(acct) end }
end

-- An event's message: recorded (platform id: message_id), dispatched.
local function on_message(acct, fields)
  fields.channel, fields.account = "feishu", acct.name
  if fields.chat.id and fields.chat.raw_type then chat_types:set(fields.chat.id, fields.chat.raw_type, 7 * 86400000) end
  local id, err = chat.inbound(fields, fields.id)
  if not id then return nil, err end
  return true
end

-- A card action: recorded (platform id: event_id) and dispatched; answer(ms) waits up to ms for
-- the handler's cb:answer and returns its text (the response's toast). An answer that comes
-- after the response went out cannot be a toast any more: it becomes the delayed card update
-- (POST /open-apis/interactive/v1/card/update with the action's token, valid 30 minutes), the
-- pressed card again with the answer under it.
local function late_answer(acct, fields, text)
  if not fields.card_token or text == nil or text == "" then return true end
  local row = outbox.find_by_message("feishu", acct.name, fields.chat.id, fields.message.id)
  local body = row and json.decode(row.body or "null") or nil
  body = type(body) == "table" and body or {}
  local card = deliver.card(body.text, body.buttons)
  card.elements[#card.elements + 1] = { tag = "note", elements = { { tag = "plain_text", content = tostring(text) } } }
  local _, err = acct.api:call("POST", "/open-apis/interactive/v1/card/update",
    { json = { token = fields.card_token, card = card } })
  if err then
    chatgw.log.warn("feishu: the delayed card update failed", { account = acct.name, error = tostring(err) })
    return nil, err
  end
  return true
end

local function on_action(acct, fields, event_id)
  fields.channel, fields.account, fields.id = "feishu", acct.name, event_id
  if fields.chat.id and chat_types:get(fields.chat.id) == "p2p" then fields.chat.type = "private" end
  local key = "feishu:answer:" .. event_id
  local responded = false
  fields.answer = function(text)
    if responded then return late_answer(acct, fields, text) end
    answers:set(event_id, text ~= nil and tostring(text) or "", 60000)
    chatgw._notify(key)
    return true
  end
  local id, err = chat.callback(fields, event_id ~= "" and event_id or nil)
  local function answer(ms)
    local deadline = chatgw.now() + ms
    while chatgw.now() < deadline do
      local text = answers:get(event_id)
      if text then
        answers:delete(event_id)
        responded = true
        return text ~= "" and text or nil
      end
      local _, werr = chatgw._wait(key, math.max(0, deadline - chatgw.now()))
      if werr then break end
    end
    responded = true
    return nil
  end
  if not id then return answer, nil, err end
  return answer, true
end

local function download(name, att, opts)
  local acct = by_name[name]
  if not acct then return nil, "not_found: no Feishu account " .. tostring(name) end
  if not att.message_id or not att.id then return nil, "feishu: the attachment has no message or key" end
  local bytes, err = acct.api:call("GET", ("/open-apis/im/v1/messages/%s/resources/%s"):format(att.message_id, att.id),
    { query = { type = att.resource_type or (att.kind == "image" and "image" or "file") }, raw = true,
      max_body = opts.max_bytes and (opts.max_bytes + 1) or 100 * 1024 * 1024, timeout_ms = 120000 })
  if not bytes then return nil, err end
  return bytes
end

M.def = {
  name = "feishu",
  accounts = function()
    local out = {}
    for _, a in ipairs(accounts) do out[#out + 1] = { name = a.name, off = a.app_secret == nil or a.app_id == nil,
                                                       off_reason = a.off_reason, source = a.source } end
    return out
  end,
  deliver = function(name, op)
    local acct = by_name[name]
    if not acct then return { ok = false, kind = "retry", error = "feishu: no account " .. tostring(name) } end
    return deliver.deliver(acct, op)
  end,
  download = download,
  bot_username = function(name)
    local acct = by_name[name]
    return acct and (acct.bot or bot_of(acct)).name or nil
  end,
  -- p2p chats have oc_ ids too: what the chat's events said, else a chat id is taken for a group
  is_group = function(chat_id)
    local t = chat_types:get(tostring(chat_id))
    if t then return t == "group" end
    return tostring(chat_id):sub(1, 3) == "oc_"
  end,
  capabilities = { edit = true, delete = true, buttons = true, images = true },
  -- text content up to 150 KB, post and card 30 KB (bytes of the request's content)
  limits = { button_data_max = 1024, text_max = 28000, text_unit = "bytes", max_edits = 20,
             text_max_for = function(body)
               if body.buttons or body.format == "markdown" then return 28000 end
               return 140000
             end },
  -- 5 messages a second per chat, 50 per app (the open platform's frequency limits)
  governor = { chat_rate = 5, chat_burst = 5, bot_rate = 50, bot_burst = 50 },
  idempotent_sends = true, -- Feishu drops a send whose uuid it has seen: an unknown outcome is sent again
  start = start,
  stop = function(name, reason)
    local acct = by_name[name]
    if acct and acct.loop and acct.loop.stop then acct.loop.stop(reason) end
    if acct then acct.loop = nil end
  end,
  stream = function(msg) return stream.new(msg, by_name[msg.account], by_name[msg.account] and by_name[msg.account].stream) end,
  health = function(name)
    local acct = by_name[name]
    if not acct or not acct.loop then return nil end
    return { checker = acct.loop.status().state }
  end,
}

function M.install(R)
  chat.register_channel(M.def)
  local route = events.route(lookup, on_message, on_action)
  local function on_feishu(cfg) return cfg and cfg.listeners and cfg.listeners.feishu and "feishu" or "-" end
  local function path(cfg)
    local f = cfg and cfg.channels and cfg.channels.feishu
    return f and f.event_path or "/feishu/events"
  end
  -- the paths come from the config at the load (event_path): routes read it through a function
  R.register_builtin_route({ method = "POST", path = "/feishu/events", fn = route, public = true,
    label = "POST /feishu/events", listener = on_feishu, path_fn = path })
  R.register_builtin_route({ method = "POST", path = "/feishu/events/:account", fn = route, public = true,
    label = "POST /feishu/events/:account", listener = on_feishu,
    path_fn = function(cfg) return path(cfg) .. "/:account" end })
  R.register_load_step(function(cfg)
    accounts, by_name = {}, {}
    for _, a in ipairs(fsconfig.accounts(cfg)) do
      settings.api_base, settings.event_path, settings.stream = a.api_base, path(cfg), a.stream
      settings.listener = on_feishu(cfg)
      a.api = apimod.new(a)
      a.is_ours = function(message_id) return deliver.is_ours(a.name, message_id) end
      a.ensure_bot = function() return ensure_bot(a) end
      accounts[#accounts + 1] = a
      by_name[a.name] = a
    end
    return nil
  end)
end

-- An app added while running (the gateway registry): { name, app_id, app_secret,
-- verification_token, encrypt_key, stream }; events at <event_path>/<name> on the feishu
-- listener (when there is one). Start it with chat.start_account("feishu", name).
function M.add_account(f)
  if by_name[f.name] then return nil, "a Feishu account named " .. f.name .. " exists" end
  local a = { name = f.name, api_base = settings.api_base or fsconfig.FEISHU, app_id = f.app_id,
    app_secret = f.app_secret, app_id_env = "(gateway registry)", app_secret_env = "(gateway registry)",
    verification_token = f.verification_token, encrypt_key = f.encrypt_key,
    event_path = (settings.event_path or "/feishu/events") .. "/" .. f.name,
    stream = f.stream or settings.stream or "card", source = "registry" }
  a.api = apimod.new(a)
  a.is_ours = function(message_id) return deliver.is_ours(a.name, message_id) end
  a.ensure_bot = function() return ensure_bot(a) end
  accounts[#accounts + 1] = a
  by_name[a.name] = a
  return a
end

function M.accounts() return accounts end

function M.remove_account(name)
  local a = by_name[name]
  if not a or a.source ~= "registry" then return false end
  a.api:forget()
  by_name[name] = nil
  for i, x in ipairs(accounts) do if x == a then table.remove(accounts, i) break end end
  return true
end

-- Whether events can arrive: the feishu listener exists (declared, or made for an app with
-- credentials in the environment at the load).
function M.has_listener() return settings.listener == "feishu" end

-- A tenant token fetched now (the registry's test): true | nil, err
function M.probe(name)
  local a = by_name[name]
  if not a then return nil, "no Feishu account " .. tostring(name) end
  local tok, err = a.api:fetch_token()
  if not tok then return nil, err end
  return true, {}
end

return M
