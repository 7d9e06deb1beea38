-- chatgw.chat.channels.telegram.parse: a Bot API Update -> what the chat layer takes.
--
--   parse.update(u, bot) -> kind, fields
--     "message"   fields for chat.inbound (message, or edited_message with edited = true)
--     "callback"  fields for chat.callback (callback_query)
--     "member"    { chat_id, status, chat_type }: my_chat_member (the bot added, removed, blocked)
--     "migrate"   { from, to }: a group became a supergroup
--     nil         an update chatgw does not handle (channel posts, polls, ...)
--   bot: { id, username } of the account
--
-- Ids become strings (see api.id). Entity offsets are in UTF-16 code units, as Telegram counts
-- them; the text is cut with utf16_sub to read a mention.
local api = require "chatgw.chat.channels.telegram.api"

local type, ipairs, lower, byte = type, ipairs, string.lower, string.byte

local M = {}

local id = api.id

-- The byte range [start, stop] of s from UTF-16 unit offset `from` (0-based), `len` units
-- long; nil when the offset is past the end.
local function utf16_range(s, from, len)
  local units, i, n = 0, 1, #s
  local start, stop
  while i <= n do
    if units == from and not start then start = i end
    if units == from + len then stop = i - 1 break end
    local c = byte(s, i)
    local size = c < 0x80 and 1 or c < 0xE0 and 2 or c < 0xF0 and 3 or 4
    units = units + (size == 4 and 2 or 1)
    i = i + size
  end
  if not start then return nil end
  return start, stop or n
end

-- The UTF-8 bytes of s from UTF-16 unit offset `from` (0-based), `len` units long.
local function utf16_sub(s, from, len)
  local start, stop = utf16_range(s, from, len)
  return start and s:sub(start, stop) or ""
end
M.utf16_sub = utf16_sub

local function user_of(u)
  if type(u) ~= "table" then return {} end
  local name = u.first_name or ""
  if u.last_name and u.last_name ~= "" then name = name .. " " .. u.last_name end
  return { id = id(u.id), name = name ~= "" and name or u.username, username = u.username,
           is_bot = u.is_bot == true }
end

local function chat_of(c)
  c = type(c) == "table" and c or {}
  return { id = id(c.id), type = c.type == "private" and "private" or "group", raw_type = c.type,
           title = c.title }
end

-- Whether the message names the bot: a `mention` entity "@username", a `text_mention` of it,
-- or a leading command addressed to it ("/explain@alerts_bot", Telegram's own way to name the
-- bot in a group). Also returns the byte ranges of the "@username" mentions.
local function mentions_bot(text, entities, bot)
  if type(entities) ~= "table" or not bot then return false, {} end
  local uname = bot.username and lower(bot.username)
  local found, ranges = false, {}
  for _, e in ipairs(entities) do
    if e.type == "mention" and uname then
      local a, b = utf16_range(text, e.offset or 0, e.length or 0)
      if a and lower(text:sub(a, b)) == "@" .. uname then
        found = true
        ranges[#ranges + 1] = { a, b }
      end
    elseif e.type == "text_mention" and type(e.user) == "table" and id(e.user.id) == bot.id then
      found = true
    elseif e.type == "bot_command" and (e.offset or -1) == 0 and uname then
      local cmd = lower(utf16_sub(text, 0, e.length or 0))
      if cmd:match("@(.*)$") == uname then found = true end
    end
  end
  return found, ranges
end

-- A command's text without the "@bot" mentions that only address it: "/explain @alerts_bot"
-- asks the default question, not "@alerts_bot" (ranges in text order, as entities come).
local function without_mentions(text, ranges)
  for i = #ranges, 1, -1 do
    text = text:sub(1, ranges[i][1] - 1) .. text:sub(ranges[i][2] + 1)
  end
  return (text:gsub("%s%s+", " "):gsub("%s+$", ""))
end

local function command_at_start(entities)
  if type(entities) ~= "table" then return false end
  for _, e in ipairs(entities) do
    if e.type == "bot_command" and (e.offset or -1) == 0 then return true end
  end
  return false
end

local function attachments(m)
  local out = {}
  if type(m.photo) == "table" and #m.photo > 0 then
    local best = m.photo[#m.photo] -- sizes come smallest first
    out[#out + 1] = { kind = "image", id = best.file_id, size = best.file_size, mime = "image/jpeg",
                      width = best.width, height = best.height }
  end
  if type(m.document) == "table" then
    local d = m.document
    out[#out + 1] = { kind = "file", id = d.file_id, name = d.file_name, size = d.file_size, mime = d.mime_type }
  end
  for _, k in ipairs({ "audio", "voice" }) do
    if type(m[k]) == "table" then
      out[#out + 1] = { kind = "audio", id = m[k].file_id, name = m[k].file_name, size = m[k].file_size,
                        mime = m[k].mime_type }
    end
  end
  for _, k in ipairs({ "video", "video_note", "animation" }) do
    if type(m[k]) == "table" then
      out[#out + 1] = { kind = "video", id = m[k].file_id, name = m[k].file_name, size = m[k].file_size,
                        mime = m[k].mime_type }
    end
  end
  return out
end

local function message_fields(m, bot, edited)
  local text = m.text or m.caption or ""
  local entities = m.entities or m.caption_entities
  local mentioned, ranges = mentions_bot(text, entities, bot)
  local is_command = command_at_start(entities)
  if is_command and #ranges > 0 then text = without_mentions(text, ranges) end
  local f = {
    id = id(m.message_id), chat = chat_of(m.chat), user = user_of(m.from), text = text,
    date = m.date, mentioned = mentioned, edited = edited,
    attachments = attachments(m),
    -- a "/" that Telegram did not mark as a command (e.g. "/ path") is not one
    no_command = text:sub(1, 1) == "/" and not is_command,
  }
  local r = m.reply_to_message
  if type(r) == "table" then
    f.reply_to = { id = id(r.message_id), text = r.text or r.caption, user = user_of(r.from),
                   from_bot = type(r.from) == "table" and bot ~= nil and id(r.from.id) == bot.id }
  end
  return f
end

function M.update(u, bot)
  if type(u) ~= "table" then return nil end
  local m = u.message or u.edited_message
  if type(m) == "table" then
    if m.migrate_to_chat_id then
      return "migrate", { from = id(m.chat and m.chat.id), to = id(m.migrate_to_chat_id) }
    end
    if m.migrate_from_chat_id then
      return "migrate", { from = id(m.migrate_from_chat_id), to = id(m.chat and m.chat.id) }
    end
    if type(m.chat) ~= "table" then return nil end
    local f = message_fields(m, bot, u.edited_message ~= nil)
    f.raw = u
    return "message", f
  end
  local q = u.callback_query
  if type(q) == "table" then
    local msg = type(q.message) == "table" and q.message or {}
    return "callback", { id = q.id, data = q.data, chat = chat_of(msg.chat), user = user_of(q.from),
                         message = { id = id(msg.message_id), text = msg.text or msg.caption }, raw = u }
  end
  local cm = u.my_chat_member
  if type(cm) == "table" and type(cm.new_chat_member) == "table" then
    return "member", { chat_id = id(cm.chat and cm.chat.id), status = cm.new_chat_member.status,
                       chat_type = cm.chat and cm.chat.type }
  end
  return nil
end

return M
