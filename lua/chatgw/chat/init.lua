-- chatgw.chat: the chat layer. Channels (Telegram, Feishu, WebSocket, the test channel) are thin
-- adapters that register here; everything beneath them is shared: the message model, the
-- inbound ledger, dispatch (allowlist, commands, policy, handlers), the outbox and its senders,
-- health and metrics.
--
--   chatgw.chat.send{ channel, account, chat_id, text, ... }  -> handle | nil, err
--   chatgw.chat.status(id)                                     -> { status, message_id, ... }
--   chatgw.chat.download(attachment, { max_bytes })            -> bytes | nil, err
--
-- Adapters: chat.register_channel(def), chat.inbound(fields, platform_id),
-- chat.callback(fields), chat.set_state(channel, account, state, err).
local chatgw = chatgw
local config = require "chatgw.config"
local json = require "chatgw.json"
require "chatgw.chat.store"
local handlers = require "chatgw.chat.handlers"
local model = require "chatgw.chat.model"
local outbox = require "chatgw.chat.outbox"
local sender = require "chatgw.chat.sender"
local governor = require "chatgw.chat.governor"
local ledger = require "chatgw.chat.ledger"
local dispatch = require "chatgw.chat.dispatch"
local allowlist = require "chatgw.chat.allowlist"
local policy = require "chatgw.chat.policy"
local texts = require "chatgw.chat.texts"
local supervisor = require "chatgw.supervisor"
local cluster = require "chatgw.cluster"
local audit = require "chatgw.audit"

local type, tostring, pairs, ipairs, error, pcall = type, tostring, pairs, ipairs, error, pcall

local M = { handlers = handlers, model = model, outbox = outbox, ledger = ledger }
local R -- chatgw.runtime

require "chatgw.chat.config" -- the chat: config section

-- ---- channels ----

local channels = {} -- name -> def
local channel_order = {}
outbox.bind(channels)
model.channel_def = function(name) return channels[name] end

local states = chatgw.shared("chatgw.channels") -- "<channel>:<account>" -> JSON state; survives reloads
local senders = {} -- "<channel>:<account>" -> the supervised sender's handle (this state)

-- def: { name, accounts = fn() -> { {name = "default"}, ... }, deliver(account, op), typing?(account,
-- chat_id), download?(account, att, opts), bot_username?(account), is_group?(chat_id),
-- capabilities = { edit, delete, buttons, images }, limits = { button_data_max, text_max,
-- text_unit = "utf16"|"codepoints"|"bytes" }, governor = { chat_rate, chat_burst,
-- group_per_minute, bot_rate, bot_burst } (the platform's limits), idempotent_sends?,
-- lock? (default true: one sender per account across processes), start?(account) }
function M.register_channel(def)
  assert(type(def) == "table" and type(def.name) == "string" and type(def.deliver) == "function",
    "register_channel{ name, deliver, ... }")
  if not channels[def.name] then channel_order[#channel_order + 1] = def.name end
  channels[def.name] = def
end

function M.channel(name) return channels[name] end

-- What an account's adapter last reported ({ state, last_ok_at, last_error, ... }), or nil.
function M.account_state(channel, account)
  local s = states:get(channel .. ":" .. account)
  return s and json.decode(s) or nil
end

local DEFAULT_ACCOUNTS = { { name = "default" } } -- read only
local function default_accounts() return DEFAULT_ACCOUNTS end
local function accounts_of(def)
  local ok, list = pcall(def.accounts or default_accounts)
  if not ok or type(list) ~= "table" then return {} end
  return list
end

-- Adapters report their state: "off" | "starting" | "ok" | "error" (with err).
-- extra: fields the adapter adds to its entry in checks.channels (mode, last_poll_at, ...).
function M.set_state(channel, account, state, err, extra)
  local key = channel .. ":" .. account
  local cur = json.decode(states:get(key) or "{}") or {}
  cur.state = state
  local t = chatgw.time()
  if state == "ok" then cur.last_ok_at = t end
  if err then
    cur.last_error = tostring(err)
    cur.last_error_at = t
  end
  for k, v in pairs(extra or {}) do cur[k] = v end
  states:set(key, json.encode(cur))
end

-- The plain GET /health (brief): only the status, as channel_health decides it (an account in
-- "error", a sender failed or with its circuit open), without building the entries: no outbox
-- depth (a store query), no JSON decode of a state seen before, no adapter fields (they add
-- detail, never the state).
local brief_seen = {} -- key -> { raw, state } of the last state string decoded
local brief_keys = {} -- channel -> account -> "channel:account"
local function channel_status_brief()
  for _, name in ipairs(channel_order) do
    local def = channels[name]
    local keys = brief_keys[name]
    if not keys then
      keys = {}
      brief_keys[name] = keys
    end
    for _, a in ipairs(accounts_of(def)) do
      local key = keys[a.name]
      if not key then
        key = name .. ":" .. a.name
        keys[a.name] = key
      end
      local raw = states:get(key)
      if raw then
        local seen = brief_seen[key]
        if not seen or seen[1] ~= raw then
          local d = json.decode(raw)
          seen = { raw, type(d) == "table" and d.state or nil }
          brief_seen[key] = seen
        end
        if seen[2] == "error" then return "degraded" end
      end
      local h = senders[key]
      if h then
        local st = h.state and h.state() or h.status().state
        if st == "failed" or st == "circuit_open" then return "degraded" end
      end
    end
  end
  return "ok"
end

local function channel_health(brief)
  if brief then
    local st = channel_status_brief()
    return st == "ok" and R.BRIEF_OK or { status = st }
  end
  local out, degraded = {}, false
  for _, name in ipairs(channel_order) do
    local def = channels[name]
    for _, a in ipairs(accounts_of(def)) do
      local key = name .. ":" .. a.name
      local raw = states:get(key)
      local s = raw and json.decode(raw) or {}
      s.state = s.state or "starting"
      s.outbox_depth = outbox.depth(name, a.name)
      local h = senders[key]
      if h then
        local st = h.state and h.state() or h.status().state
        s.sender = st -- "running", or "waiting_lock" on a standby process
        if st == "failed" or st == "circuit_open" then degraded = true end
      end
      if def.health then -- the adapter's own fields (Telegram: its poller's loop state)
        local ok, extra = pcall(def.health, a.name)
        if ok and type(extra) == "table" then for k, v in pairs(extra) do s[k] = v end end
      end
      if s.state == "error" then degraded = true end
      out[key] = s
    end
  end
  return { status = degraded and "degraded" or "ok", channels = out }
end

-- GET /v1/channels: seed 001's runtime snapshot (getRuntimeSnapshot), one entry per channel
-- account, from the adapters' real state (their last poll, event or send), not a timer.
local STATUS = { ok = "connected", starting = "connecting", off = "disconnected", error = "error" }
local function channels_route()
  local list = {}
  for key, s in pairs(channel_health().channels) do
    local channel, account = key:match("^([^:]+):(.*)$")
    list[#list + 1] = {
      channelId = channel, accountId = account, running = s.state == "ok" or s.state == "starting",
      status = STATUS[s.state] or "disconnected", state = s.state,
      lastError = s.last_error, last_error = s.last_error, last_error_at = s.last_error_at,
      last_connected_at = s.last_ok_at, outbox_depth = s.outbox_depth, mode = s.mode,
      source = s.source or "config" }
  end
  table.sort(list, function(a, b)
    if a.channelId ~= b.channelId then return a.channelId < b.channelId end
    return a.accountId < b.accountId
  end)
  if #list == 0 then list = json.empty_array end
  return { ok = true, channels = list }
end

-- ---- inbound ----

local function bot_username(channel, account)
  local def = channels[channel]
  if def and def.bot_username then
    local ok, u = pcall(def.bot_username, account)
    if ok then return u end
  end
  return nil
end

local active = 0 -- dispatches running in this state (chatgw test waits for them)

local busy = chatgw.shared("chatgw.chat.running") -- ledger rows a task of this process runs (any state)

-- Runs fn for ledger row row_id (nil: not in the ledger) read in state `from` (nil: 'recorded'),
-- unless another task has the row: marked running, then dispatched when fn returns; the
-- messages fn accepts are keyed by position (chat/outbox.lua), for a second run after a crash.
local function run_row(row_id, from, fn)
  active = active + 1
  local go = true
  if row_id then
    busy:set(tostring(row_id), 1, 86400000)
    go = ledger.mark_running(row_id, from)
  end
  if go then
    outbox.run_begin(row_id)
    fn()
    outbox.run_end()
    if row_id then ledger.mark_dispatched(row_id) end
  end
  if row_id then busy:delete(tostring(row_id)) end
  active = active - 1
  if active == 0 then chatgw._notify("chat:idle") end
end

local function run_dispatch(row_id, msg, from)
  run_row(row_id, from, function()
    local ok, err = pcall(dispatch.handle, msg)
    if not ok then chatgw.log.error("chat dispatch failed", { channel = msg.channel, error = tostring(err) }) end
  end)
end

-- An inbound message from an adapter: recorded in the ledger (nil, "duplicate" when seen), then
-- dispatched in a task of its own. Acknowledge the platform once this returns an id (or
-- "duplicate": seen before; the third value is the message id of that first delivery).
function M.inbound(fields, platform_id)
  if type(fields) ~= "table" or not channels[fields.channel] then
    error("chat.inbound: fields.channel must be a registered channel", 2)
  end
  fields.account = fields.account or "default"
  local msg = model.new(fields, bot_username(fields.channel, fields.account))
  local id, err, first_id = ledger.record(msg.channel, msg.account, platform_id or msg.id, model.fields(msg))
  if not id then return nil, err, first_id end
  -- a new message from a chat the bot had been removed from: it is back (not a redelivery)
  if msg.chat.id then governor.get(channels[msg.channel], msg.account):back(msg.chat.id) end
  active = active + 1 -- counted from now on, so a waiter never sees idle before the task starts
  chatgw._spawn_task(function()
    if M.test_dispatch_delay_ms then chatgw.sleep(M.test_dispatch_delay_ms) end
    active = active - 1
    run_dispatch(id, msg)
  end)
  return id
end

-- Rows recorded before a restart and never dispatched: by the account's sender loop.
M.ANSWER_WITHIN_MS = 5000 -- a press not answered by its handler by then is answered empty

local function run_callback(row_id, cb, from)
  run_row(row_id, from, function()
    -- the platform shows a spinner until the press is answered: answer it in time whatever
    -- the handler does
    chatgw.spawn(function()
      chatgw.sleep(M.ANSWER_WITHIN_MS)
      if not cb._answered then pcall(cb.answer, cb) end
    end)
    local ok, err = pcall(dispatch.callback, cb)
    if not ok then chatgw.log.error("chat callback failed", { channel = cb.channel, error = tostring(err) }) end
  end)
end

-- Ledger rows to dispatch now, each in a task (a replay, or updates taken over from a dead node).
local function dispatch_rows(channel, account, rows)
  for _, r in ipairs(rows or {}) do
    local f = r.message
    active = active + 1
    chatgw._spawn_task(function()
      active = active - 1
      if f.kind == "callback" then
        run_callback(r.id, model.callback(f), r.state)
      else
        run_dispatch(r.id, model.new(f, bot_username(channel, account)), r.state)
      end
    end)
  end
end

local function replay(channel, account)
  local rows = ledger.pending(channel, account, function(id) return busy:get(tostring(id)) ~= nil end)
  for _, r in ipairs(rows or {}) do
    chatgw.log.info(r.state == "running" and "chat: running a handler again: the process stopped while it ran"
      or "chat: dispatching an update recorded before the restart", { channel = channel, account = account, id = r.id })
  end
  dispatch_rows(channel, account, rows)
end

-- Cluster mode: every lock_ttl_ms/3, the started accounts' stream entries that a dead node left
-- pending (its heartbeat gone) are taken over and dispatched here (chat/ledger_redis.lua).
M.CLAIM_MIN_IDLE_MS = 1000 -- an own entry younger than this is still on its way to dispatch
local function claim_loop()
  while true do
    local keys = {} -- a copy: accounts may start or stop while a claim waits on Redis
    for key in pairs(senders) do keys[#keys + 1] = key end
    for _, key in ipairs(keys) do
      local channel, account = key:match("^([^:]+):(.*)$")
      local rows, err = ledger.claim_stale(channel, account, M.CLAIM_MIN_IDLE_MS)
      if rows then
        dispatch_rows(channel, account, rows)
      else
        chatgw.log.debug("chat: cannot look for stale ledger entries", { channel = channel, error = tostring(err) })
      end
    end
    chatgw.sleep(math.max(100, math.floor((cluster.lock_ttl_ms or 10000) / 3)))
  end
end

-- A button press from an adapter. With platform_id it goes through the ledger like a message
-- (nil, "duplicate" for a redelivery); without (the test and ws channels) it is dispatched at
-- once. fields.answer: how to answer it, else the adapter's answer_callback(account, id, text).
function M.callback(fields, platform_id)
  fields.account = fields.account or "default"
  local cb = model.callback(fields)
  local id
  if platform_id then
    local stored = {}
    for k, v in pairs(fields) do if type(v) ~= "function" then stored[k] = v end end
    stored.kind = "callback"
    local err, first_id
    id, err, first_id = ledger.record(cb.channel, cb.account, platform_id, stored)
    if not id then return nil, err, first_id end
  end
  active = active + 1
  chatgw._spawn_task(function()
    active = active - 1
    run_callback(id, cb)
  end)
  return id or true
end

function M.active() return active end

-- ---- the public API ----

local chat = {}

function chat.send(spec)
  if type(spec) ~= "table" then error("chatgw.chat.send: expected a table of options, got " .. type(spec), 2) end
  local o = {}
  for k, v in pairs(spec) do
    if k ~= "channel" and k ~= "account" and k ~= "chat_id" and k ~= "reply_to" then o[k] = v end
  end
  if o.quote ~= nil then
    error("chatgw.chat.send: quote needs a message to quote; give reply_to = the platform message id", 2)
  end
  if spec.reply_to ~= nil and type(spec.reply_to) ~= "string" and type(spec.reply_to) ~= "number" then
    error("chatgw.chat.send: reply_to must be a platform message id (string)", 2)
  end
  o = model.reply_opts(o, "chatgw.chat.send")
  if type(spec.channel) ~= "string" or not channels[spec.channel] then
    error("chatgw.chat.send: channel must be one of the registered channels, got " .. tostring(spec.channel), 2)
  end
  if spec.chat_id == nil then error("chatgw.chat.send: chat_id is required", 2) end
  -- an account that does not exist or is off would keep the message queued for ever
  local acct, known = spec.account or "default", false
  for _, a in ipairs(accounts_of(channels[spec.channel])) do
    if a.name == acct then
      if a.off then return nil, "off: the " .. spec.channel .. " account '" .. acct .. "' is off (" .. tostring(a.off_reason) .. ")" end
      known = true
    end
  end
  if not known then return nil, "not_found: no " .. spec.channel .. " account '" .. acct .. "'" end
  return outbox.accept{ channel = spec.channel, account = spec.account or "default", chat_id = tostring(spec.chat_id),
    text = o.text, format = o.format, buttons = o.buttons, image = o.image, image_bytes = o.image_bytes,
    caption = o.caption, origin = "send", reply_to = spec.reply_to ~= nil and tostring(spec.reply_to) or nil,
    link_preview = o.link_preview }
end

function chat.status(id)
  if type(id) ~= "number" then error("chatgw.chat.status: id must be a number (handle.id)", 2) end
  return outbox.status(id)
end

function chat.handle(id) -- a handle for an id kept elsewhere
  local st, err = outbox.status(id)
  if not st then return nil, err end
  return outbox.handle(st.id, st.channel, st.account, st.chat_id)
end

function chat.download(att, opts)
  if type(att) ~= "table" or type(att.channel) ~= "string" then
    error("chatgw.chat.download: expected an attachment of msg.attachments", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("chatgw.chat.download: opts must be a table", 2) end
  opts = opts or {}
  local max = opts.max_bytes
  if max ~= nil and (type(max) ~= "number" or max < 1) then
    error("chatgw.chat.download: max_bytes must be a number >= 1", 2)
  end
  local def = channels[att.channel]
  if not def or not def.download then return nil, "unsupported: the channel cannot download attachments" end
  if max and type(att.size) == "number" and att.size > max then
    return nil, ("too_large: the attachment has %d bytes, max_bytes is %d"):format(att.size, max)
  end
  local bytes, err = def.download(att.account or "default", att, opts)
  if not bytes then return nil, err end
  if max and #bytes > max then -- the adapter should stop early; this is the guarantee
    return nil, ("too_large: the attachment has over %d bytes (max_bytes)"):format(max)
  end
  return bytes
end

-- MarkdownV2 escaping, for handlers that write Telegram's own markup (format = "markdown" needs
-- none: it is sent as entities)
function chat.telegram_escape(s)
  if type(s) ~= "string" then error("chatgw.chat.telegram_escape: s must be a string, got " .. type(s), 2) end
  return require("chatgw.chat.channels.telegram.markdown").escape(s)
end

chatgw.chat = chat

-- ---- install ----

local function rate_limiter()
  local limiters = {}
  return function(key, rpm)
    local l = limiters[rpm]
    if not l then
      l = chatgw.limiter{ name = "chatgw.chat.rpm." .. rpm, limit = rpm, window_ms = 60000, max_keys = 100000 }
      limiters[rpm] = l
    end
    return l:take(key)
  end
end

-- The policy file: CHAT_GATEWAY_POLICY_PATH (explicit: must exist), else chat.policy beside
-- chatgw.yml (a missing file is an empty policy: capabilities denied, open handlers open).
local function load_policy(cfg, opts)
  local env = os.getenv("CHAT_GATEWAY_POLICY_PATH")
  local path, explicit = cfg.chat.policy, false
  if env and env ~= "" then path, explicit = env, true end
  if path:sub(1, 1) ~= "/" then
    local dir = (opts.config_path or ""):match("^(.*)/[^/]*$") or "."
    path = dir .. "/" .. path
  end
  return policy.load(path, { explicit = explicit })
end

-- The sender's lock: "outbox-<channel>-<account>", in the characters a lock name may have
-- ([a-z0-9_-], at most 64); an account name with others gets a hash of it instead.
local lock_name

-- One account: its outbox sender, then the adapter's own loop. An account without credentials
-- is shown (off, and why), not started.
local function start_account(name, def, a)
  local acct = a.name
  if a.off then
    M.set_state(name, acct, "off", a.off_reason)
    chatgw.log.info("chat channel off", { channel = name, account = acct, reason = a.off_reason })
    return
  end
  senders[name .. ":" .. acct] = supervisor.internal{ name = ("outbox.%s.%s"):format(name, acct),
    module = "chat", lock = def.lock ~= false and lock_name(name, acct) or nil, lock_scope = "node",
    run = function()
      replay(name, acct)
      return sender.run(def, acct)
    end }
  if def.start then def.start(acct) end
end

-- An account the adapter gained after start (the gateway registry): started now. nil, err
-- when the channel or the account is unknown.
function M.start_account(channel, account)
  local def = channels[channel]
  if not def then return nil, "no channel " .. tostring(channel) end
  for _, a in ipairs(accounts_of(def)) do
    if a.name == account then
      if senders[channel .. ":" .. account] then return nil, "already started" end
      start_account(channel, def, a)
      return true
    end
  end
  return nil, ("no %s account %s"):format(channel, tostring(account))
end

-- Stops an account's sender and the adapter's loop (the gateway registry's delete and update).
-- Its queued messages stay in the outbox for the next start of the same account.
function M.stop_account(channel, account, reason)
  local def = channels[channel]
  local key = channel .. ":" .. account
  local h = senders[key]
  senders[key] = nil
  if h and h.stop then h.stop(reason or "stopped") end
  if def and def.stop then pcall(def.stop, account, reason or "stopped") end
  states:delete(key)
end

function lock_name(channel, account)
  local n = ("outbox-%s-%s"):format(channel, account)
  if #n <= 64 and n:match("^[a-z0-9_-]+$") then return n end
  return ("outbox-%s-%s"):format(channel:gsub("[^a-z0-9_-]", "_"):sub(1, 20),
    chatgw.crypto.sha256(account, "hex"):sub(1, 32))
end

function M.install(runtime)
  R = runtime
  R.register_load_step(function(cfg, opts)
    local p, problems = load_policy(cfg, opts)
    if not p then return problems end
    for _, w in ipairs(p.warnings or {}) do chatgw.log.warn("policy: " .. w) end
    dispatch.policy = p
    M.policy = p
    audit.reload("policy.reload", { source = p.source, hash = p.hash }) -- recorded once started
    dispatch.unknown_hint = cfg.chat.unknown_command_hint
    allowlist.configure(cfg.chat, cfg.channels)
    texts.configure(cfg.chat.language)
    ledger.retention_s = cfg.chat.ledger_retention_hours * 3600
    M.outbox_retention_s = cfg.chat.outbox_retention_hours * 3600
    governor.pacing = cfg.chat.pacing
    governor.overrides = cfg.chat.governor or {}
    governor.reset()
    dispatch.rate = rate_limiter()
    -- tests only (with the test channel): a pause between the ledger and dispatch, to kill the
    -- process in between
    local delay = tonumber(os.getenv("CHATGW_TEST_DISPATCH_DELAY_MS") or "")
    M.test_dispatch_delay_ms = delay and os.getenv("CHATGW_TEST_CHANNEL") == "1" and delay or nil
    return nil
  end)
  R.register_start("chat", function()
    for _, name in ipairs(channel_order) do
      local def = channels[name]
      for _, a in ipairs(accounts_of(def)) do start_account(name, def, a) end
    end
    if cluster.enabled then supervisor.internal{ name = "chat.ledger_claims", module = "chat", run = claim_loop } end
    chatgw.every(600000, function()
      ledger.prune()
      outbox.prune(M.outbox_retention_s or 7 * 86400)
    end)
    return true
  end)
  R.register_health("channels", channel_health)
  R.register_builtin_route({ method = "GET", path = "/v1/channels", fn = channels_route, scope = "read",
    label = "GET /v1/channels" })
  -- A stop lets deliveries in flight finish (within the drain time): a message whose request
  -- is out gets its answer recorded instead of becoming unknown. Queued ones wait for the next
  -- start; running handlers finish on their own (they are tasks) while the drain lasts.
  local shutdown = R.shutdown
  R.shutdown = function(...)
    shutdown(...)
    local cfg = chatgw.config
    local limit = cfg and cfg.shutdown and cfg.shutdown.drain_timeout_ms or 10000
    local deadline = chatgw.now() + limit
    while (sender.inflight() > 0 or active > 0) and chatgw.now() < deadline do
      local _, err = chatgw._wait("chat:idle", 20)
      if err then break end
    end
    if sender.inflight() > 0 then
      chatgw.log.warn("stopping with outbox deliveries in flight (their outcome is unknown)",
        { deliveries = sender.inflight() })
    end
  end
end

M.channels_snapshot = function() return channels_route().channels end -- the admin page's live view
M.texts = texts
M.dispatch = dispatch
M.allowlist = allowlist

return M
