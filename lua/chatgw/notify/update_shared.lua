-- chatgw.notify.update_shared: notify's update_key across cluster nodes (docs/cluster.md).
--
-- The message an update_key names lives in the outbox of the node that accepted it. Once it is
-- delivered, that node writes the platform's message id to Redis:
--   chatgw:notify:update:<channel>:<chat_id>:<key> = {"a": account, "m": message_id,
--     "ms": message_ids, "t": text}   (PX: the outbox retention, 7 days)
-- and again with the new text after each edit. A node that gets an update for a key it has no
-- row of reads it and adopts the message (a delivered row in its own outbox, chat/outbox.lua
-- M.adopt), then edits it like its own: each node's bot has the same credentials. Two nodes
-- editing one message at once: the platform keeps the last edit. While Redis cannot answer, an
-- update on another node posts a new message (as before cluster mode).
local chatgw = chatgw
local json = require "chatgw.json"
local outbox = require "chatgw.chat.outbox"
local cluster = require "chatgw.cluster"

local type, tostring, pcall = type, tostring, pcall

local M = {}

M.TTL_MS = 7 * 86400 * 1000
M.WAIT_MS = 120000 -- how long the accepting node waits for the delivery to learn the message id

local function key(channel, chat_id, update_key)
  return "chatgw:notify:update:" .. channel .. ":" .. tostring(chat_id) .. ":" .. tostring(update_key)
end

local function put(channel, chat_id, update_key, v)
  local ok, err = cluster.command("SET", key(channel, chat_id, update_key), json.encode(v), "PX", tostring(M.TTL_MS))
  if not ok then
    chatgw.log.debug("notify: the update_key's message was not shared", { channel = channel, error = tostring(err) })
  end
end

-- After an accept (h: the message's handle) or an edit (of the message h) of an update_key
-- notify: shares the message's platform id once it is known. Runs in a task of its own.
function M.share(h, channel, account, chat_id, update_key, text)
  if not cluster.enabled then return end
  chatgw.spawn(function()
    local st = h:wait(M.WAIT_MS)
    if not st or st.status ~= "delivered" or not st.message_id then return end
    put(channel, chat_id, update_key, { a = account, m = st.message_id, ms = st.message_ids, t = text })
  end)
end

-- The message another node sent for this update_key, adopted here: a handle | nil.
function M.adopt(channel, account, chat_id, update_key)
  if not cluster.enabled then return nil end
  local raw = cluster.command("GET", key(channel, chat_id, update_key))
  if type(raw) ~= "string" then return nil end
  local ok, v = pcall(json.decode, raw)
  if not ok or type(v) ~= "table" or v.m == nil or (v.a ~= nil and v.a ~= account) then return nil end
  local h, err = outbox.adopt{ channel = channel, account = account, chat_id = tostring(chat_id),
    text = type(v.t) == "string" and v.t or nil, message_id = v.m, message_ids = v.ms }
  if not h then
    chatgw.log.warn("notify: cannot adopt another node's message of an update_key", { channel = channel,
      chat_id = chat_id, error = tostring(err) })
    return nil
  end
  chatgw.log.info("notify: editing a message another node sent (update_key)", { channel = channel, chat_id = chat_id })
  return h
end

return M
