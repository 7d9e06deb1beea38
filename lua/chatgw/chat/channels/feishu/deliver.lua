-- chatgw.chat.channels.feishu.deliver: outbox operations as open-platform calls, and their
-- answers as outbox results.
--
--   send    POST /open-apis/im/v1/messages?receive_id_type=... (or .../:id/reply when quoting):
--           text; markdown as a post with an `md` element; buttons as an interactive card whose
--           buttons carry {data}; an image uploaded once per content (the image_key is kept by
--           its SHA-256) and sent by key, its caption as a text after it; a CardKit card by id
--   edit    PUT /open-apis/im/v1/messages/:id (text, post), PATCH for a card
--   delete  DELETE /open-apis/im/v1/messages/:id
-- Every send carries the row's uuid: Feishu drops a repeated one, so an unknown outcome is sent
-- again safely (the channel declares idempotent_sends).
--
-- The receive id's prefix says what it is: oc_ a chat, ou_ an open_id, on_ a union_id, one with
-- "@" an email; anything else a chat_id.
local chatgw = chatgw
local json = require "chatgw.json"
local chatstore = require "chatgw.chat.store"
local outbox = require "chatgw.chat.outbox"

local type, tostring, tonumber = type, tostring, tonumber

local M = {}

local sent_ids = chatgw.shared("chatgw.feishu.sent") -- "<account>:<message_id>" -> 1: replies to the bot

-- Feishu codes: the per-app frequency limit, the per-chat one, the bot not (any more) in the
-- chat or unable to reach the user, and content too long.
local RATE_APP, RATE_CHAT = 99991400, 230020
local GONE = { [230002] = true, [230013] = true, [230017] = true, [232010] = true }

function M.receive_id_type(id)
  id = tostring(id)
  if id:find("@", 1, true) then return "email" end
  local p = id:sub(1, 3)
  if p == "ou_" then return "open_id" end
  if p == "on_" then return "union_id" end
  return "chat_id"
end

function M.is_ours(account, message_id)
  return sent_ids:get(account .. ":" .. tostring(message_id)) ~= nil
end

local function remember(account, message_id)
  if message_id then sent_ids:set(account .. ":" .. message_id, 1, 3 * 86400000) end
end

-- A card v1 with the text and its buttons (each button's value.data is the press's data).
function M.card(text, buttons, format)
  local elements = { { tag = "div", text = { tag = "lark_md", content = text or "" } } }
  for _, row in ipairs(buttons or {}) do
    local actions = {}
    for _, b in ipairs(row) do
      if b.url then
        actions[#actions + 1] = { tag = "button", text = { tag = "plain_text", content = b.text }, type = "default",
                                  url = b.url }
      else
        actions[#actions + 1] = { tag = "button", text = { tag = "plain_text", content = b.text }, type = "default",
                                  value = { data = b.data } }
      end
    end
    elements[#elements + 1] = { tag = "action", actions = actions }
  end
  return { config = { wide_screen_mode = true }, elements = elements }
end

-- msg_type and content (a JSON string) of a body.
function M.content(b)
  if b.card_id then
    return "interactive", json.encode({ type = "card", data = { card_id = b.card_id } })
  end
  if b.buttons and #b.buttons > 0 then return "interactive", json.encode(M.card(b.text, b.buttons)) end
  if b.format == "markdown" then
    return "post", json.encode({ zh_cn = { title = "", content = { { { tag = "md", text = b.text or "" } } } } })
  end
  return "text", json.encode({ text = b.text or "" })
end

-- The result of a refused call.
function M.classify(op, err, info)
  local st, code = info and info.status or 0, info and info.code
  if st == 0 then
    if info and info.sent == false then return { ok = false, kind = "retry", error = err } end
    return { ok = false, kind = "unknown", error = err } -- the uuid makes a repeat safe
  end
  if st == 429 or code == RATE_APP or code == RATE_CHAT then
    local h = info.headers or {}
    local reset = tonumber(h["x-ogw-ratelimit-reset"]) or 1
    return { ok = false, kind = "rate_limited", retry_after = reset > 0 and reset or 1,
             scope = code == RATE_CHAT and "chat" or "bot", error = err }
  end
  if code and GONE[code] then return { ok = false, kind = "permanent", gone = true, error = err } end
  if st >= 500 then return { ok = false, kind = "retry", error = err } end
  if st == 401 or st == 403 then return { ok = false, kind = "retry", error = err } end
  return { ok = false, kind = "permanent", error = err }
end

-- The image_key of bytes: uploaded once per content (SHA-256), kept in chat_state.
local function image_key(acct, bytes)
  local sha = chatgw.crypto.sha256(bytes, "hex")
  local key = "feishu:img:" .. acct.name .. ":" .. sha
  local k = chatstore.state_get(key)
  if k then return k end
  local data, err, info = acct.api:call("POST", "/open-apis/im/v1/images", { timeout_ms = 120000,
    form = { { name = "image_type", value = "message" }, { name = "image", data = bytes, filename = "image" } } })
  if not data then return nil, err, info end
  if type(data.image_key) ~= "string" then return nil, "feishu: the upload answered no image_key", { status = 200 } end
  chatstore.state_set(key, data.image_key)
  return data.image_key
end

local function post_message(acct, op, receive_id, msg_type, content, uuid, reply_to)
  local path, query = "/open-apis/im/v1/messages", nil
  local body = { msg_type = msg_type, content = content, uuid = uuid }
  if reply_to then
    path = "/open-apis/im/v1/messages/" .. reply_to .. "/reply"
  else
    query = { receive_id_type = M.receive_id_type(receive_id) }
    body.receive_id = tostring(receive_id)
  end
  local data, err, info = acct.api:call("POST", path, { query = query, json = body })
  if not data then return nil, M.classify(op, err, info) end
  local id = type(data) == "table" and data.message_id or nil
  remember(acct.name, id)
  return id
end

function M.deliver(acct, op)
  local b = op.body or {}
  local uuid = op.uuid and op.uuid:sub(1, 50) -- Feishu takes at most 50 characters
  if op.kind == "send" then
    if b.image_blob then
      local bytes = outbox.blob(b.image_blob)
      if not bytes then return { ok = false, kind = "permanent", error = "image: the bytes are gone" } end
      local key, err, info = image_key(acct, bytes)
      if not key then return M.classify(op, err, info) end
      local id, res = post_message(acct, op, op.chat_id, "image", json.encode({ image_key = key }), uuid, b.reply_to)
      if not id then return res end
      local ids = { id }
      if b.caption and b.caption ~= "" then -- an image message has no caption: a text under it
        local cid = post_message(acct, op, op.chat_id, "text", json.encode({ text = b.caption }),
          uuid and (uuid:sub(1, 46) .. "-cap"), nil)
        if cid then ids[2] = cid end
      end
      return { ok = true, message_id = id, message_ids = #ids > 1 and ids or nil }
    end
    local msg_type, content = M.content(b)
    local id, res = post_message(acct, op, op.chat_id, msg_type, content, uuid, b.reply_to)
    if not id then return res end
    return { ok = true, message_id = id }
  elseif op.kind == "edit" then
    local msg_type, content = M.content(b)
    local data, err, info
    if msg_type == "interactive" then
      data, err, info = acct.api:call("PATCH", "/open-apis/im/v1/messages/" .. op.target_message_id, { json = { content = content } })
    else
      data, err, info = acct.api:call("PUT", "/open-apis/im/v1/messages/" .. op.target_message_id,
        { json = { msg_type = msg_type, content = content } })
    end
    if not data then return M.classify(op, err, info) end
    return { ok = true, message_id = op.target_message_id }
  elseif op.kind == "delete" then
    local data, err, info = acct.api:call("DELETE", "/open-apis/im/v1/messages/" .. op.target_message_id, {})
    if not data then return M.classify(op, err, info) end
    return { ok = true, message_id = op.target_message_id }
  end
  return { ok = false, kind = "permanent", error = "feishu: unknown operation " .. tostring(op.kind) }
end

return M
