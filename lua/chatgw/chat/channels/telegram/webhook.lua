-- chatgw.chat.channels.telegram.webhook: webhook mode. `POST /telegram/<account>` is public
-- (no bearer token: Telegram cannot send one); the secret header is the authentication, checked
-- in constant time. The route answers 200 once the update is in the ledger, never after the
-- handler, so a handler's failure never becomes a redelivery; an update that cannot be
-- recorded gets a 500, which Telegram retries.
--
-- The account's loop calls setWebhook (url, secret_token, allowed_updates) and then watches
-- getWebhookInfo. The secret is TELEGRAM_WEBHOOK_SECRET (or the account's webhook_secret_env),
-- else one generated once and kept in the store (chat_state, in the 0700 data dir).
local chatgw = chatgw
local chat = require "chatgw.chat"
local chatstore = require "chatgw.chat.store"
local updates = require "chatgw.chat.channels.telegram.updates"
local poll = require "chatgw.chat.channels.telegram.poll"

local type, tostring = type, tostring

local M = {}

local CHECK_MS = 300000

function M.secret_key(account) return "telegram:" .. account .. ":webhook_secret" end
function M.set_key(account) return "telegram:" .. account .. ":webhook_url" end

-- The secret of an account: configured, else stored, else generated and stored.
function M.secret(acct)
  if acct.webhook_secret then return acct.webhook_secret end
  local s = chatstore.state_get(M.secret_key(acct.name))
  if s then return s end
  s = chatgw.crypto.hex(chatgw.crypto.random_bytes(32)) -- [0-9a-f]: within Telegram's A-Za-z0-9_-
  local ok, err = chatstore.state_set(M.secret_key(acct.name), s)
  if not ok then return nil, err end
  return s
end

-- The account's loop in webhook mode (supervised, under the bot's lock).
function M.run(acct, allowed)
  if not acct.webhook_url then
    local err = "telegram: webhook mode needs TELEGRAM_WEBHOOK_URL (the public https URL of POST /telegram/"
      .. acct.name .. ")"
    chat.set_state("telegram", acct.name, "error", err, { mode = "webhook" })
    return nil, err
  end
  local secret, serr = M.secret(acct)
  if not secret then return nil, serr end
  acct.expected_secret = secret
  local ok, err, info = acct.api:call("setWebhook", { url = acct.webhook_url, secret_token = secret,
    allowed_updates = allowed })
  if not ok then
    err = info and info.status == 401 and ("telegram: the bot token was refused (401 Unauthorized): check "
      .. tostring(acct.token_env)) or err
    chat.set_state("telegram", acct.name, "error", "setWebhook: " .. tostring(err), { mode = "webhook" })
    return nil, err
  end
  chatstore.state_set(M.set_key(acct.name), acct.webhook_url)
  chat.set_state("telegram", acct.name, "ok", nil, { mode = "webhook", webhook_url = acct.webhook_url })
  while true do
    local _, werr = chatgw.sleep(CHECK_MS)
    if werr then return nil, werr end
    local wi = acct.api:call("getWebhookInfo", {})
    if type(wi) == "table" and wi.url ~= acct.webhook_url then
      return nil, "telegram: the webhook was changed elsewhere (now '" .. tostring(wi.url) .. "'): setting it again"
    end
  end
end

-- Poll mode after webhook mode: the webhook this process set goes first.
function M.delete_if_set(acct)
  if not chatstore.state_get(M.set_key(acct.name)) then return true end
  local ok, err = acct.api:call("deleteWebhook", { drop_pending_updates = false })
  if not ok then return nil, err end
  chatgw.db.exec("DELETE FROM chat_state WHERE k = ?", M.set_key(acct.name))
  chatgw.log.info("telegram: webhook deleted for poll mode", { account = acct.name })
  return true
end

-- The route. accounts(name) -> the account object (or nil).
function M.route(accounts)
  return function(req)
    local acct = accounts(req.params.account)
    if not acct or acct.mode ~= "webhook" then return 404, { ok = false, error = "not_found" } end
    local expected = acct.expected_secret or M.secret(acct)
    local got = req.headers["x-telegram-bot-api-secret-token"]
    if type(got) ~= "string" or not expected or not chatgw.crypto.constant_time_eq(got, expected) then
      return 403, { ok = false, error = "forbidden", detail = "missing or wrong X-Telegram-Bot-Api-Secret-Token" }
    end
    local u = req.json
    if type(u) ~= "table" or u.update_id == nil then
      return 400, { ok = false, error = "invalid_request", detail = "an Update with update_id" }
    end
    local ok, err = updates.handle(acct, u)
    if not ok then
      chatgw.log.error("telegram: cannot record a webhook update (Telegram will send it again)",
        { account = acct.name, error = tostring(err) })
      return 500, { ok = false, error = "unavailable" }
    end
    local n = poll.count(acct.name, "webhook")
    chat.set_state("telegram", acct.name, "ok", nil, { mode = "webhook", last_update_at = chatgw.time(), updates = n })
    return { ok = true }
  end
end

return M
