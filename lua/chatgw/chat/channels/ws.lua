-- The ws chat channel: WebSocket clients of /ws chat with the handlers, so a web page can be a
-- chat client with nothing else (docs/websocket.md, "Chat").
--
--   chat.send  {chat_id, text, client_msg_id?}  scope chat.write: a message from this client
--              (it joins the chat); res { id } once the message is in the ledger
--   chat.join  {chat_id} / chat.leave {chat_id}   scope chat.read
--   chat.press {chat_id, message_id, data}       scope chat.write: a button of a bot message
--   event chat.message {chat_id, id, text, format, buttons, from = {id, name}, bot}
--              to every connection in the chat holding chat.read: the bot's replies, and the
--              other members' messages (bot = false)
--
-- A chat.send becomes a message of channel "ws", chat type "private"; its user is the
-- client's device.id (else the connection id). Membership lives in chatgw.shared (it survives
-- reloads, like the connections) and in the connection's data (for the clean-up at close).
local chatgw = chatgw
local chat = require "chatgw.chat"
local json = require "chatgw.json"
local wsmod = require "chatgw.ws"
local cluster = require "chatgw.cluster"

local ACCOUNTS = { { name = "default" } }
local M = {}

local rooms = chatgw.shared("chatgw.ws.rooms") -- chat_id -> JSON array of connection ids
-- "<chat_id>\0<message id>" -> the text of a bot message sent with buttons, for a press's
-- cb.message.text (the outbox row learns the message id after the client may already press)
local pressable = chatgw.shared("chatgw.ws.pressable", { max_bytes = 4 * 1024 * 1024 })
local ROOMS_KEY = "chat.rooms"                  -- conn.data: { [chat_id] = true }
local MAX_CHAT_ID = 128

local function members(chat_id)
  return json.decode(rooms:get(chat_id) or "[]") or {}
end

local function set_members(chat_id, list)
  if #list == 0 then rooms:delete(chat_id) else rooms:set(chat_id, json.encode(list)) end
end

local function join(conn, chat_id)
  local list = members(chat_id)
  for _, id in ipairs(list) do if id == conn.id then return end end
  list[#list + 1] = conn.id
  set_members(chat_id, list)
  local mine = conn.data[ROOMS_KEY] or {}
  mine[chat_id] = true
  conn.data[ROOMS_KEY] = mine
end

local function leave(conn_id, chat_id)
  local list, out = members(chat_id), {}
  for _, id in ipairs(list) do if id ~= conn_id then out[#out + 1] = id end end
  set_members(chat_id, out)
end

-- Sends chat.message to the members of chat_id holding chat.read (except `except`) on this
-- node; with `publish`, the other nodes of a cluster send it to their own members.
local function fan_out(chat_id, payload, except, publish)
  if publish and cluster.enabled then cluster.publish("chat", { c = chat_id, p = payload }) end
  local include = {}
  for _, id in ipairs(members(chat_id)) do
    if id ~= except then include[#include + 1] = id end
  end
  if #include == 0 then return 0 end
  return chatgw.ws.broadcast("chat.message", payload, { scope = "chat.read", include = include })
end
cluster.on("chat", function(m)
  if type(m) == "table" and type(m.c) == "string" and type(m.p) == "table" then fan_out(m.c, m.p) end
end)

local function user_of(conn)
  return conn.device or conn.id
end

local function check_chat_id(params)
  if type(params) ~= "table" then return nil, "invalid_request: params must be an object" end
  local id = params.chat_id
  if type(id) == "number" then id = tostring(id) end
  if type(id) ~= "string" or id == "" or #id > MAX_CHAT_ID then
    return nil, "invalid_request: chat_id must be a string of 1.." .. MAX_CHAT_ID .. " characters"
  end
  return id
end

local function m_send(conn, params)
  local chat_id, err = check_chat_id(params)
  if not chat_id then return nil, err end
  if type(params.text) ~= "string" or params.text == "" then return nil, "invalid_request: text must be a non-empty string" end
  if #params.text > 65536 then return nil, "invalid_request: text is longer than 65536 bytes" end
  join(conn, chat_id)
  local user = user_of(conn)
  local mid = chatgw.crypto.hex(chatgw.crypto.random_bytes(8))
  local platform_id = params.client_msg_id and (user .. ":" .. tostring(params.client_msg_id)) or mid
  local id, rerr, first_id = chat.inbound({ channel = "ws", account = "default", id = mid,
    chat = { id = chat_id, type = "private" },
    user = { id = user, name = conn.client and conn.client.id or user },
    text = params.text, mentioned = true, raw = { conn = conn.id, params = params } }, platform_id)
  if not id then
    if rerr == "duplicate" then return { id = first_id or platform_id, duplicate = true } end
    return nil, rerr
  end
  fan_out(chat_id, { chat_id = chat_id, id = mid, text = params.text, format = "plain",
    from = { id = user, name = conn.client and conn.client.id or user }, bot = false }, conn.id, true)
  return { id = mid }
end

local function m_join(conn, params)
  local chat_id, err = check_chat_id(params)
  if not chat_id then return nil, err end
  join(conn, chat_id)
  return { chat_id = chat_id }
end

local function m_leave(conn, params)
  local chat_id, err = check_chat_id(params)
  if not chat_id then return nil, err end
  leave(conn.id, chat_id)
  local mine = conn.data[ROOMS_KEY] or {}
  mine[chat_id] = nil
  conn.data[ROOMS_KEY] = mine
  return { chat_id = chat_id }
end

local function m_press(conn, params)
  local chat_id, err = check_chat_id(params)
  if not chat_id then return nil, err end
  if type(params.message_id) ~= "string" then return nil, "invalid_request: message_id must be a string" end
  chat.callback{ channel = "ws", account = "default", id = chatgw.crypto.hex(chatgw.crypto.random_bytes(8)),
    data = params.data, chat = { id = chat_id, type = "private" },
    user = { id = user_of(conn), name = conn.client and conn.client.id or user_of(conn) },
    message = { id = params.message_id, text = pressable:get(chat_id .. "\0" .. params.message_id) } }
  return { ok = true }
end

local function deliver(account, op)
  local b = op.body
  if op.kind ~= "send" then
    -- no edits over the ws channel (streams are sent whole at finish); deletes are notices
    return { ok = false, kind = "permanent", error = "unsupported: the ws channel cannot " .. op.kind }
  end
  local id = "ws-" .. tostring(op.id)
  if b.buttons then pressable:set(op.chat_id .. "\0" .. id, b.text or b.caption or "", 86400000) end
  fan_out(op.chat_id, { chat_id = op.chat_id, id = id, text = b.text or b.caption or "", format = b.format or "plain",
    buttons = b.buttons, reply_to = b.reply_to, from = { id = "bot", name = "bot" }, bot = true }, nil, true)
  return { ok = true, message_id = id }
end

M.def = {
  name = "ws",
  accounts = function() return ACCOUNTS end, -- one account, "default" (read only)
  deliver = deliver,
  capabilities = { edit = false, delete = false, buttons = true, images = false },
  limits = { button_data_max = 1024 },
}

function M.install(R)
  chat.register_channel(M.def)
  wsmod.register_builtin_method("chat.send", m_send, "chat.write")
  wsmod.register_builtin_method("chat.press", m_press, "chat.write")
  wsmod.register_builtin_method("chat.join", m_join, "chat.read")
  wsmod.register_builtin_method("chat.leave", m_leave, "chat.read")
  wsmod.register_disconnect(function(info)
    local mine = info.data and info.data[ROOMS_KEY]
    if type(mine) == "table" then
      for chat_id in pairs(mine) do leave(info.id, chat_id) end
    end
  end)
  chat.set_state("ws", "default", "ok")
end

return M
