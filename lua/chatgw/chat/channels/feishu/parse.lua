-- chatgw.chat.channels.feishu.parse: a Feishu event (schema 2.0) -> what the chat layer takes.
--
--   parse.message(event, bot, is_ours) -> fields | nil, why   im.message.receive_v1
--   parse.card_action(event)           -> fields              card.action.trigger
--   bot: { open_id, user_id, name }; is_ours(message_id): whether the bot sent that message
--
-- `content` is a JSON string inside the JSON. Text and rich text (`post`) become plain text;
-- images and files become attachments (with the message id their download needs). A mention
-- of the bot (by open_id, user_id or name) sets msg.mentioned and its "@_user_N" key is taken
-- out of the text; other mentions read "@name". Messages from apps and bots are not for
-- handlers.
local json = require "chatgw.json"

local type, tostring, ipairs, concat = type, tostring, ipairs, table.concat

local M = {}

local function str(v) return v ~= nil and tostring(v) or nil end

local function is_bot_mention(m, bot)
  if type(m) ~= "table" or not bot then return false end
  local id = type(m.id) == "table" and m.id or {}
  if bot.open_id and id.open_id == bot.open_id then return true end
  if bot.user_id and id.user_id == bot.user_id then return true end
  if bot.name and m.name == bot.name then return true end
  return false
end

-- Rich text: its runs of text, links and @mentions, a line per paragraph.
local function post_text(c)
  if type(c) ~= "table" then return "" end
  if type(c.content) ~= "table" then -- a locale wrapper: { zh_cn = { title, content }, ... }
    for _, v in pairs(c) do if type(v) == "table" and type(v.content) == "table" then c = v break end end
  end
  local lines = {}
  if type(c.title) == "string" and c.title ~= "" then lines[#lines + 1] = c.title end
  for _, para in ipairs(type(c.content) == "table" and c.content or {}) do
    local parts = {}
    for _, el in ipairs(type(para) == "table" and para or {}) do
      if type(el) == "table" then
        if el.tag == "text" or el.tag == "a" or el.tag == "md" then parts[#parts + 1] = el.text or ""
        elseif el.tag == "at" then -- its user_id is the mention's key ("@_user_1"): mentions resolve it
          local key = type(el.user_id) == "string" and el.user_id:find("^@_user_%d+$") and el.user_id
          parts[#parts + 1] = key or ("@" .. tostring(el.user_name or el.user_id or ""))
        elseif el.tag == "code_block" then parts[#parts + 1] = el.text or "" end
      end
    end
    lines[#lines + 1] = concat(parts)
  end
  return concat(lines, "\n")
end

local function images_of(c, message_id, out)
  if type(c) ~= "table" then return end
  if type(c.content) ~= "table" then
    for _, v in pairs(c) do if type(v) == "table" and type(v.content) == "table" then c = v break end end
  end
  for _, para in ipairs(type(c.content) == "table" and c.content or {}) do
    for _, el in ipairs(type(para) == "table" and para or {}) do
      if type(el) == "table" and el.tag == "img" and el.image_key then
        out[#out + 1] = { kind = "image", id = el.image_key, message_id = message_id, resource_type = "image" }
      end
    end
  end
end

-- The text without the bot's mention key: at a line's start or end it goes with its spaces,
-- between words it leaves one ("@_user_1" is not the start of "@_user_10").
local function strip_key(text, key)
  local k = "[ \t]*" .. key:gsub("%p", "%%%0") .. "%f[%D][ \t]*"
  text = text:gsub("^" .. k, ""):gsub("\n" .. k, "\n"):gsub(k .. "\n", "\n"):gsub(k .. "$", "")
  return (text:gsub(k, " "))
end

function M.message(ev, bot, is_ours)
  if type(ev) ~= "table" or type(ev.message) ~= "table" then return nil, "no message" end
  local sender = type(ev.sender) == "table" and ev.sender or {}
  if sender.sender_type and sender.sender_type ~= "user" then return nil, "not from a user" end
  local m = ev.message
  local sid = type(sender.sender_id) == "table" and sender.sender_id or {}
  local content = type(m.content) == "string" and json.decode(m.content) or nil
  content = type(content) == "table" and content or {}
  local kind = m.message_type or m.msg_type
  local text, attachments = "", {}
  if kind == "text" then
    text = type(content.text) == "string" and content.text or ""
  elseif kind == "post" then
    text = post_text(content)
    images_of(content, m.message_id, attachments)
  elseif kind == "image" then
    attachments[1] = { kind = "image", id = content.image_key, message_id = m.message_id, resource_type = "image" }
  elseif kind == "file" or kind == "audio" or kind == "media" then
    attachments[1] = { kind = kind == "audio" and "audio" or kind == "media" and "video" or "file",
                       id = content.file_key, name = content.file_name, message_id = m.message_id,
                       resource_type = "file" }
  end
  local mentioned = false
  for _, mn in ipairs(type(m.mentions) == "table" and m.mentions or {}) do
    if type(mn) == "table" and type(mn.key) == "string" and mn.key ~= "" then
      if is_bot_mention(mn, bot) then
        mentioned = true
        text = strip_key(text, mn.key)
      else -- "@_user_2" -> "@Ann"
        local name = ("@" .. tostring(mn.name or "")):gsub("%%", "%%%%")
        text = text:gsub(mn.key:gsub("%p", "%%%0") .. "%f[%D]", name)
      end
    end
  end
  text = text:gsub("^%s+", ""):gsub("%s+$", "")
  local f = {
    id = str(m.message_id),
    chat = { id = str(m.chat_id), type = m.chat_type == "p2p" and "private" or "group", raw_type = m.chat_type },
    user = { id = str(sid.open_id or sid.user_id), open_id = str(sid.open_id), user_id = str(sid.user_id),
             union_id = str(sid.union_id) },
    text = text, mentioned = mentioned, attachments = attachments,
    date = tonumber(m.create_time) and math.floor(tonumber(m.create_time) / 1000) or nil,
  }
  if m.parent_id and m.parent_id ~= "" then
    f.reply_to = { id = str(m.parent_id), from_bot = is_ours and is_ours(m.parent_id) or false }
  end
  return f
end

-- A button of a card (card.action.trigger): the button's value.data is the press's data.
function M.card_action(ev)
  if type(ev) ~= "table" then return nil end
  local op = type(ev.operator) == "table" and ev.operator or {}
  local ctx = type(ev.context) == "table" and ev.context or {}
  local action = type(ev.action) == "table" and ev.action or {}
  local value = action.value
  local data = type(value) == "table" and value.data or value
  return {
    data = data ~= nil and (type(data) == "string" and data or json.encode(data)) or "",
    chat = { id = str(ctx.open_chat_id), type = "group" },
    user = { id = str(op.open_id or op.user_id), open_id = str(op.open_id), user_id = str(op.user_id),
             union_id = str(op.union_id) },
    message = { id = str(ctx.open_message_id) },
    card_token = ev.token,
  }
end

return M
