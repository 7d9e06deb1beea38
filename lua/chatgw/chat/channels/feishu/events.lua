-- chatgw.chat.channels.feishu.events: the event callback (`POST /feishu/events` on the feishu
-- listener; other apps `/feishu/events/<account>`). Public: the signature and the token are the
-- authentication. In order:
--   1. decrypt first: with an encrypt key the body is {"encrypt": base64(IV + AES-256-CBC)},
--      key SHA-256(encrypt key), PKCS#7 (OpenSSL) - the challenge included
--   2. with an encrypt key, X-Lark-Signature = hex SHA-256(timestamp + nonce + encrypt key + raw
--      body), compared in constant time, and a timestamp older than 5 minutes is refused; the
--      URL verification carries no signature headers and needs none
--   3. the verification token (v1 `token`, v2 `header.token`), in constant time
--   4. url_verification is answered {"challenge": ...} at once
--   5. an event is acknowledged (200) once it is in the ledger, never after a handler: Feishu
--      retries an event it did not get a 200 for, for hours. Messages are deduped by
--      message_id, card actions by event_id.
-- Errors: 400 invalid_json, bad_encrypt; 401 bad_signature, stale_timestamp, bad_token; 503
-- verification_token_missing (the app sends, but cannot take events without it).
local chatgw = chatgw
local json = require "chatgw.json"
local chat = require "chatgw.chat"
local parse = require "chatgw.chat.channels.feishu.parse"

local type, tostring, tonumber = type, tostring, tonumber

local M = {}

M.MAX_AGE_S = 300
M.HOLD_MS = 2500 -- a card action's answer (a toast) must be in the response within 3 s

local received = chatgw.metrics.counter{ name = "chatgw_feishu_events_total",
  help = "Feishu event callbacks, by result", labels = { "account", "result" } }

local function refuse(acct, status, code, detail)
  received:inc({ account = acct and acct.name or "-", result = code })
  chatgw.log.warn("feishu: event refused", { account = acct and acct.name or "-", error = code, detail = detail })
  return status, { ok = false, error = code, detail = detail }
end

local function decrypt(acct, enc)
  if not acct.encrypt_key then return nil, "an encrypted event, but no encrypt key is set (FEISHU_ENCRYPT_KEY)" end
  if type(enc) ~= "string" then return nil, "encrypt must be a string" end
  local data = chatgw.crypto.base64_decode(enc)
  if not data then return nil, "encrypt is not base64" end
  if #data < 32 or (#data - 16) % 16 ~= 0 then return nil, "encrypt has the wrong length" end
  local key = chatgw.crypto.sha256(acct.encrypt_key)
  local plain, err = chatgw.crypto.aes_256_cbc_decrypt(key, data:sub(1, 16), data:sub(17))
  if not plain then return nil, "cannot decrypt (" .. tostring(err) .. "): a wrong encrypt key?" end
  return plain
end

local function header(req, name) return req.headers[name] end

-- The route handler. lookup(name) -> account; handle_message(acct, fields, platform_id) and
-- handle_action(acct, fields, event_id) record and dispatch.
function M.route(lookup, on_message, on_action)
  return function(req)
    local acct = lookup(req.params.account or "default")
    if not acct or not acct.app_id then return 404, { ok = false, error = "not_found" } end
    local raw = req.body or ""
    local body = json.decode(raw)
    if type(body) ~= "table" or body[1] ~= nil then
      return refuse(acct, 400, "invalid_json", "the body is not a JSON object")
    end
    local encrypted = body.encrypt ~= nil
    if encrypted then
      local plain, why = decrypt(acct, body.encrypt)
      if not plain then return refuse(acct, 400, "bad_encrypt", why) end
      body = json.decode(plain)
      -- a wrong key passes the padding check about once in 256 and gives garbage: a plaintext
      -- that is not a JSON object is a decryption failure too
      if type(body) ~= "table" or body[1] ~= nil then
        return refuse(acct, 400, "bad_encrypt", "the decrypted event is not a JSON object (a wrong encrypt key?)")
      end
    end
    local is_challenge = body.type == "url_verification"
    if acct.encrypt_key and not is_challenge then
      local ts, nonce, sig = header(req, "x-lark-request-timestamp"), header(req, "x-lark-request-nonce"),
        header(req, "x-lark-signature")
      if type(ts) ~= "string" or type(nonce) ~= "string" or type(sig) ~= "string" then
        return refuse(acct, 401, "bad_signature", "X-Lark-Signature and its timestamp and nonce are required")
      end
      local want = chatgw.crypto.sha256(ts .. nonce .. acct.encrypt_key .. raw, "hex")
      if not chatgw.crypto.constant_time_eq(sig:lower(), want) then
        return refuse(acct, 401, "bad_signature", "X-Lark-Signature does not match")
      end
      local t = tonumber(ts)
      if not t or math.abs(chatgw.time() - t) > M.MAX_AGE_S then
        return refuse(acct, 401, "stale_timestamp", "X-Lark-Request-Timestamp is over 5 minutes off")
      end
    end
    if not acct.verification_token then
      chatgw.log.error("feishu: an event came, but FEISHU_VERIFICATION_TOKEN is not set: it cannot be verified",
        { account = acct.name })
      received:inc({ account = acct.name, result = "verification_token_missing" })
      return 503, { ok = false, error = "verification_token_missing" }
    end
    local hdr = type(body.header) == "table" and body.header or {}
    local token = body.token or hdr.token
    if type(token) ~= "string" or not chatgw.crypto.constant_time_eq(token, acct.verification_token) then
      return refuse(acct, 401, "bad_token", "the verification token does not match")
    end
    if is_challenge then
      received:inc({ account = acct.name, result = "challenge" })
      return { challenge = body.challenge }
    end
    local etype = hdr.event_type or (type(body.event) == "table" and body.event.type)
    if etype == "im.message.receive_v1" then
      local ev = type(body.event) == "table" and body.event or {}
      local mentions = type(ev.message) == "table" and ev.message.mentions
      local bot = (type(mentions) == "table" and mentions[1] and acct.ensure_bot) and acct.ensure_bot() or acct.bot
      local fields, why = parse.message(body.event, bot, acct.is_ours)
      if not fields then
        received:inc({ account = acct.name, result = "ignored" })
        return { ok = true, ignored = why }
      end
      local ok, err = on_message(acct, fields, fields.id)
      if not ok and err ~= "duplicate" then
        chatgw.log.error("feishu: cannot record an event (Feishu will send it again)", { account = acct.name,
          error = tostring(err) })
        return 500, { ok = false, error = "unavailable" }
      end
      received:inc({ account = acct.name, result = err == "duplicate" and "duplicate" or "ok" })
      return { ok = true }
    elseif etype == "card.action.trigger" then
      local fields = parse.card_action(body.event)
      local answer, ok, err = on_action(acct, fields, tostring(hdr.event_id or ""))
      if not ok and err ~= "duplicate" then return 500, { ok = false, error = "unavailable" } end
      if not ok then -- a redelivery: its toast went with the first one
        received:inc({ account = acct.name, result = "duplicate" })
        return {}
      end
      received:inc({ account = acct.name, result = "action" })
      -- hold the response for the handler's cb:answer: a toast only shows if it is in here
      local text = answer(M.HOLD_MS)
      if text then return { toast = { type = "info", content = text } } end
      return {}
    end
    received:inc({ account = acct.name, result = "ignored" })
    return { ok = true }
  end
end

return M
