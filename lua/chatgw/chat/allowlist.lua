-- chatgw.chat.allowlist: which chats may use a bot at all (seed 000's semantics), checked before
-- any command, message or policy rule.
--
-- Modes (chat.allowlist_mode, per channel chat.channels.<name>.allowlist_mode):
--   off         everyone (the default: a fresh bot answers everyone)
--   owner_only  in a group only the owner user passes; in a private chat only the owner chat
--               (or the owner themself)
--   auth        the chat is on the list (or is an owner chat), or the user is the owner
-- The list holds chat ids per channel account (table chat_allowlist); the owner chats are always
-- on it. Owners: OWNER_<CHANNEL>_USER_ID (seed 000: OWNER_TELEGRAM_USER_ID,
-- OWNER_FEISHU_USER_ID) or CHAT_GATEWAY_OWNER_<CHANNEL>_ID, comma-separated; owner chats:
-- chat.owner_chats.<channel> in the config.
local chatgw = chatgw

local M = {}

local cfg = { mode = "off", channels = {}, owner_chats = {} }

-- seed_channels: the `channels:` section, where seed 000 kept channels.<name>.allowlist_mode
-- (chat.channels.<name>.allowlist_mode wins).
function M.configure(chat_cfg, seed_channels)
  cfg.mode = chat_cfg.allowlist_mode or "off"
  cfg.channels = {}
  for name, c in pairs(seed_channels or {}) do
    if type(c) == "table" and c.allowlist_mode then cfg.channels[name] = { allowlist_mode = c.allowlist_mode } end
  end
  for name, c in pairs(chat_cfg.channels or {}) do
    if c.allowlist_mode then cfg.channels[name] = { allowlist_mode = c.allowlist_mode } end
  end
  cfg.owner_chats = chat_cfg.owner_chats or {}
end

function M.mode(channel)
  local c = cfg.channels[channel]
  return (c and c.allowlist_mode) or cfg.mode
end

local function split(v)
  local out = {}
  for id in tostring(v or ""):gmatch("[^,%s]+") do out[id] = true end
  return out
end

function M.owners(channel)
  local up = channel:upper()
  local set = split(os.getenv("OWNER_" .. up .. "_USER_ID"))
  for id in pairs(split(os.getenv("CHAT_GATEWAY_OWNER_" .. up .. "_ID"))) do set[id] = true end
  return set
end

function M.owner_chats(channel)
  local v = cfg.owner_chats[channel]
  local set = {}
  if type(v) == "table" then
    for _, id in ipairs(v) do set[tostring(id)] = true end
  elseif v ~= nil then
    set[tostring(v)] = true
  end
  return set
end

function M.is_owner(msg)
  local owners = M.owners(msg.channel)
  for _, id in ipairs({ msg.user.id, msg.user.user_id, msg.user.union_id, msg.user.open_id }) do
    if id and owners[id] then return true end
  end
  return false
end

local function listed(msg)
  if M.owner_chats(msg.channel)[msg.chat.id] then return true end
  local rows = chatgw.db.query("SELECT 1 AS x FROM chat_allowlist WHERE channel = ? AND account = ? AND chat_id = ?",
    msg.channel, msg.account, msg.chat.id)
  return rows ~= nil and rows[1] ~= nil
end

-- true | false (and the mode that refused it).
function M.allowed(msg)
  local mode = M.mode(msg.channel)
  if mode == "off" then return true end
  if M.is_owner(msg) then return true end
  if mode == "owner_only" then
    return msg.chat.type == "private" and M.owner_chats(msg.channel)[msg.chat.id] == true, mode
  end
  return listed(msg), mode
end

function M.add(channel, account, chat_id, by)
  return chatgw.db.exec([[INSERT INTO chat_allowlist (channel, account, chat_id, added_by, added_at)
    VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING]], channel, account, tostring(chat_id), by, chatgw.time())
end

function M.remove(channel, account, chat_id)
  return chatgw.db.exec("DELETE FROM chat_allowlist WHERE channel = ? AND account = ? AND chat_id = ?",
    channel, account, tostring(chat_id))
end

function M.list(channel, account)
  local rows, err = chatgw.db.query([[SELECT chat_id, added_by, added_at FROM chat_allowlist
    WHERE channel = ? AND account = ? ORDER BY added_at, chat_id]], channel, account)
  if not rows then return nil, err end
  return rows
end

return M
