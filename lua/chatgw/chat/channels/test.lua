-- The test channel: a chat platform that lives in memory, for `chatgw test` specs and for end
-- to end tests (CHATGW_TEST_CHANNEL=1 adds POST /v1/test/inbound, POST /v1/test/press and
-- GET /v1/test/sent on the main listener). It speaks the same model as every channel: messages
-- go through the ledger and dispatch, replies through the outbox and its sender; it records
-- what it "sent", with edits and deletions, and supports buttons, images and typing.
local chatgw = chatgw
local chat = require "chatgw.chat"
local json = require "chatgw.json"

local ACCOUNTS = { { name = "default" } }
local M = {}

local sent = {}      -- chat_id -> { record, ... } in delivery order
local by_id = {}     -- message_id -> record
local typing = {}    -- chat_id -> count
local failures = {}  -- queued failures: { kind, error, retry_after, chat_id? }
local next_id = 1000

M.BOT_USERNAME = "chatgw_test_bot"

local function new_id()
  next_id = next_id + 1
  return tostring(next_id)
end

local blob = require("chatgw.chat.outbox").blob

-- CHATGW_TEST_CHANNEL_SINK=http://127.0.0.1:PORT (tests only): every delivery is a POST to
-- <sink>/deliver instead of a record in memory, and the sink's answer is the platform's: 200 {"ok":true,"message_id"} ok;
-- 429 {"retry_after","scope"} rate limited; 400 with an error mentioning "parse" bad format,
-- other 4xx permanent (403: the bot is gone from the chat); 5xx and connection errors retry;
-- a timeout or reset after the request went out is an unknown outcome.
local SINK = os.getenv("CHATGW_TEST_CHANNEL_SINK")
local SINK_TIMEOUT_MS = tonumber(os.getenv("CHATGW_TEST_CHANNEL_SINK_TIMEOUT_MS") or "") or 2000
local INSTANCE = os.getenv("CHATGW_TEST_INSTANCE") -- names the process in what the sink sees

local function sink_deliver(account, op)
  local b = op.body
  local res, err = chatgw.http.request{ method = "POST", url = SINK .. "/deliver", timeout_ms = SINK_TIMEOUT_MS,
    json = { account = account, op = op.kind, chat_id = op.chat_id, text = b.text, format = b.format,
             reply_to = b.reply_to, message_id = op.target_message_id, uuid = op.uuid, attempt = op.attempt,
             part = op.part, parts = op.parts, outbox_id = op.id, instance = INSTANCE } }
  if not res then
    if err:find("(request not sent)", 1, true) then return { ok = false, kind = "retry", error = "test sink: " .. err } end
    return { ok = false, kind = "unknown", error = "test sink: " .. err }
  end
  local j = type(res.json) == "table" and res.json or {}
  local desc = type(j.error) == "string" and j.error or ("HTTP " .. res.status)
  if res.status == 200 and j.ok then return { ok = true, message_id = j.message_id and tostring(j.message_id) } end
  if res.status == 429 then
    return { ok = false, kind = "rate_limited", retry_after = tonumber(j.retry_after) or 1,
             scope = j.scope == "bot" and "bot" or "chat", error = desc }
  end
  if res.status >= 500 then return { ok = false, kind = "retry", error = desc } end
  if res.status == 400 and desc:find("parse") then return { ok = false, kind = "bad_format", error = desc } end
  return { ok = false, kind = "permanent", error = desc, gone = res.status == 403 }
end

local function deliver(account, op)
  if SINK then -- the sink is the platform and keeps what it was sent (GET /v1/test/sent is empty)
    return sink_deliver(account, op)
  end
  for i, f in ipairs(failures) do
    if not f.chat_id or f.chat_id == op.chat_id then
      table.remove(failures, i)
      return { ok = false, kind = f.kind, error = f.error or ("test: " .. f.kind), retry_after = f.retry_after }
    end
  end
  local b = op.body
  if op.kind == "send" then
    local r = { id = new_id(), chat_id = op.chat_id, text = b.text, format = b.format, buttons = b.buttons,
                reply_to = b.reply_to, caption = b.caption, image = blob(b.image_blob), edits = {},
                outbox_id = op.id, account = account }
    sent[op.chat_id] = sent[op.chat_id] or {}
    table.insert(sent[op.chat_id], r)
    by_id[r.id] = r
    return { ok = true, message_id = r.id }
  end
  local r = by_id[op.target_message_id]
  if not r then return { ok = false, kind = "permanent", error = "test: message to edit not found" } end
  if op.kind == "edit" then
    r.edits[#r.edits + 1] = b.text
    r.text = b.text
    if b.buttons then r.buttons = b.buttons end
    return { ok = true, message_id = r.id }
  end
  r.deleted = true
  return { ok = true, message_id = r.id }
end

M.def = {
  name = "test",
  accounts = function() return ACCOUNTS end, -- one account, "default" (read only)
  deliver = deliver,
  typing = function(account, chat_id) typing[chat_id] = (typing[chat_id] or 0) + 1 end,
  download = function(account, att) return att.bytes or nil, att.bytes and nil or "test: no bytes" end,
  bot_username = function() return M.BOT_USERNAME end,
  capabilities = { edit = true, delete = true, buttons = true, images = true },
  -- like Telegram's: 4096 UTF-16 code units; pacing only when chat.governor.test says
  limits = { button_data_max = 64, text_max = 4096, text_unit = "utf16" },
  is_group = function(chat_id) return tostring(chat_id):sub(1, 1) == "-" end,
  -- CHATGW_TEST_CHANNEL_IDEMPOTENT=1: behave like Feishu, which dedupes sends by uuid
  idempotent_sends = os.getenv("CHATGW_TEST_CHANNEL_IDEMPOTENT") == "1",
}

-- ---- for specs and tests ----

function M.sent(chat_id) return sent[tostring(chat_id)] or {} end
function M.message(id) return by_id[tostring(id)] end
function M.typing_count(chat_id) return typing[tostring(chat_id)] or 0 end
function M.clear(chat_id)
  if chat_id then sent[tostring(chat_id)] = nil else sent, by_id = {}, {} end
end
-- The next delivery (to chat_id, or any) fails with kind ("permanent", "retry", "unknown",
-- "rate_limited"), as a platform would answer.
function M.fail_next(kind, opts)
  opts = opts or {}
  failures[#failures + 1] = { kind = kind, error = opts.error, retry_after = opts.retry_after,
                              chat_id = opts.chat_id and tostring(opts.chat_id) or nil }
end

local function public(r)
  return { id = r.id, chat_id = r.chat_id, text = r.text, format = r.format, buttons = r.buttons or json.empty_array,
           reply_to = r.reply_to, caption = r.caption, image_bytes = r.image and #r.image or nil,
           edits = #r.edits > 0 and r.edits or json.empty_array, deleted = r.deleted == true }
end

-- Rows of the test channel still to deliver now (not those waiting for a retry).
function M.pending()
  local rows = chatgw.db.query([[SELECT count(*) AS n FROM chat_outbox WHERE channel = 'test'
    AND status IN ('queued', 'sending') AND next_at <= ?]], chatgw.time())
  return rows and rows[1] and rows[1].n or 0
end

-- Until no handler runs and every reply due is delivered, at most timeout_ms (real time).
-- on_stuck(): called when handlers still run but nothing is left to deliver (chatgw test
-- moves its virtual clock there); clock: the real clock when chatgw.now is virtual. true, or
-- nil and why.
function M.settle(timeout_ms, on_stuck, clock)
  clock = clock or chatgw.now
  local deadline = clock() + timeout_ms
  while clock() < deadline do
    if chat.active() == 0 and M.pending() == 0 then
      chatgw._wait("chat:idle", 2) -- a last task or sender pass
      if chat.active() == 0 and M.pending() == 0 then return true end
    end
    local _, err = chatgw._wait("chat:idle", 5)
    if err then return nil, err end
    if on_stuck and chat.active() > 0 and M.pending() == 0 then on_stuck() end
  end
  return nil, "the chat did not settle within " .. timeout_ms .. " ms (a handler waiting on something that never comes?)"
end

local function inbound_route(req)
  local b = req.json
  if type(b) ~= "table" or b.chat_id == nil or type(b.text) ~= "string" then
    return 400, { ok = false, error = "invalid_request", detail = "{chat_id, text, user_id?, chat_type?, ...}" }
  end
  local id, err = chat.inbound({ channel = "test", account = b.account or "default", id = b.message_id or new_id(),
    chat = { id = tostring(b.chat_id), type = b.chat_type or "private", title = b.title },
    user = { id = tostring(b.user_id or b.chat_id), name = b.user_name or "Test User", username = b.username },
    text = b.text, mentioned = b.mentioned == true,
    reply_to = b.reply_to and { id = tostring(b.reply_to), from_bot = b.reply_to_bot ~= false,
                                text = by_id[tostring(b.reply_to)] and by_id[tostring(b.reply_to)].text } or nil,
  }, b.update_id)
  if not id then return 200, { ok = true, recorded = false, reason = err } end
  if b.wait ~= false then M.settle(5000) end
  return { ok = true, recorded = true, ledger_id = id }
end

local function sent_route(req)
  local out = {}
  for _, r in ipairs(M.sent(req.query.chat_id or "")) do out[#out + 1] = public(r) end
  if #out == 0 then out = json.empty_array end
  return { ok = true, messages = out, typing = M.typing_count(req.query.chat_id or "") }
end

local function press_route(req)
  local b = req.json or {}
  local r = by_id[tostring(b.message_id)]
  if not r then return 404, { ok = false, error = "not_found" } end
  chat.callback{ channel = "test", account = r.account, id = new_id(), data = b.data,
    chat = { id = r.chat_id, type = b.chat_type or "private" },
    user = { id = tostring(b.user_id or r.chat_id), name = b.user_name or "Test User" },
    message = { id = r.id, text = r.text } }
  if b.wait ~= false then M.settle(5000) end
  return { ok = true }
end

M.public = public

function M.enabled()
  return chatgw._mode == "test" or os.getenv("CHATGW_TEST_CHANNEL") == "1"
end

function M.install(R)
  if not M.enabled() then return end
  chat.register_channel(M.def)
  if chatgw._mode ~= "test" then
    R.register_builtin_route({ method = "POST", path = "/v1/test/inbound", fn = inbound_route, label = "POST /v1/test/inbound" })
    R.register_builtin_route({ method = "POST", path = "/v1/test/press", fn = press_route, label = "POST /v1/test/press" })
    R.register_builtin_route({ method = "GET", path = "/v1/test/sent", fn = sent_route, label = "GET /v1/test/sent" })
  end
  chat.set_state("test", "default", "ok")
end

return M
