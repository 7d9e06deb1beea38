-- chatgw.chat.channels.telegram.deliver: outbox operations as Bot API calls, and the
-- platform's answers as outbox results (chat/sender.lua says what each result kind does).
--
--   send    sendMessage (text; markdown goes as plain text + entities, so no escaping can
--           fail; html as parse_mode HTML), or sendPhoto (multipart) for an image, sendDocument
--           when Telegram will not take it as a photo (over 10 MB, or its dimensions)
--   edit    editMessageText ("message is not modified" is success)
--   delete  deleteMessage (a message already gone is success)
--
-- Answers: 429 rate_limited with its retry_after (Telegram does not say which limit: the chat's
-- when the governor's count for the chat was at its limit, else the whole bot's); 400 "can't parse entities"
-- bad_format; 400 "chat not found" and 403 (blocked, kicked) permanent and gone; a group that
-- became a supergroup (migrate_to_chat_id) is recorded and the message goes again to the new
-- id; other 4xx permanent; 401/404 (a bad token) and 5xx retry; a transport error unknown once
-- the request was written, else retry.
local chatgw = chatgw
local json = require "chatgw.json"
local chatstore = require "chatgw.chat.store"
local governor = require "chatgw.chat.governor"
local split = require "chatgw.chat.split"

local type, tostring, tonumber, ipairs = type, tostring, tonumber, ipairs

local M = {}

local PHOTO_MAX = 10 * 1024 * 1024
local DOCUMENT_MAX = 50 * 1024 * 1024
local CAPTION_MAX = 1024 -- UTF-16 code units, like the text

local migrated = chatgw.shared("chatgw.telegram.migrated") -- "<account>:<old chat id>" -> new id
local last429 = {} -- account -> { chat_id, t }: two chats within a second mean the bot's limit

local markdown -- loaded on first use (pure Lua)
local function md() markdown = markdown or require "chatgw.chat.channels.telegram.markdown" return markdown end

-- The chat id a message goes to: a migrated group's new id.
function M.target(account, chat_id)
  local to = migrated:get(account .. ":" .. tostring(chat_id))
  if to then return to end
  local v = chatstore.state_get("telegram:migrated:" .. account .. ":" .. tostring(chat_id))
  if v then migrated:set(account .. ":" .. tostring(chat_id), v) end
  return v or chat_id
end

function M.record_migration(account, from, to)
  if not from or not to or from == to then return end
  if migrated:get(account .. ":" .. from) == to then return end -- both service messages say it
  migrated:set(account .. ":" .. from, to)
  chatstore.state_set("telegram:migrated:" .. account .. ":" .. from, to)
  -- the queued rows and the allowlist follow too, so a restart reads them with the new id
  chatgw.db.exec([[UPDATE chat_outbox SET chat_id = ? WHERE channel = 'telegram' AND account = ?
    AND chat_id = ? AND status = 'queued']], to, account, from)
  chatgw.db.exec([[INSERT OR IGNORE INTO chat_allowlist (channel, account, chat_id, added_by, added_at)
    SELECT channel, account, ?, 'migration', added_at FROM chat_allowlist
    WHERE channel = 'telegram' AND account = ? AND chat_id = ?]], to, account, from)
  chatgw.log.warn("telegram: the group became a supergroup: messages go to its new id (and its /auth "
    .. "entry moved with it); config files (policy.yml, projects.yml, chat.owner_chats) that name the old "
    .. "id need the new one", { account = account, old_chat_id = from, new_chat_id = to })
end

local function keyboard(buttons)
  if type(buttons) ~= "table" or #buttons == 0 then return nil end
  local rows = {}
  for r, row in ipairs(buttons) do
    rows[r] = {}
    for c, b in ipairs(row) do
      rows[r][c] = b.url and { text = b.text, url = b.url } or { text = b.text, callback_data = b.data }
    end
  end
  return { inline_keyboard = rows }
end

-- text fields of a request: text (or caption) and its formatting
local function formatted(params, key, text, format)
  if format == "markdown" then
    local t, ents = md().to_entities(text)
    params[key] = t
    if #ents > 0 then params[key == "text" and "entities" or "caption_entities"] = ents end
  elseif format == "html" then
    params[key] = text
    params.parse_mode = "HTML"
  else
    params[key] = text
  end
end

local function msg_id(v) return tonumber(v) or v end

-- The result for an answer that was not ok. kind of op, chat the op's chat.
function M.classify(acct, op, err, info)
  local st, desc = info and info.status or 0, (info and info.description) or tostring(err)
  if st == 0 then
    if info and info.sent == false then return { ok = false, kind = "retry", error = err } end
    return { ok = false, kind = "unknown", error = err }
  end
  if st == 429 then
    -- Telegram does not say which limit: the bot's when the chat had room by the governor's
    -- count, or when two chats got one within a second; else the chat's
    local now, prev = chatgw.now(), last429[acct.name]
    local gov = governor.get(require("chatgw.chat").channel("telegram"), acct.name)
    local scope = ((prev and prev.chat_id ~= op.chat_id and now - prev.t < 1000)
      or gov:chat_had_room(op.chat_id, tostring(op.chat_id):sub(1, 1) == "-")) and "bot" or "chat"
    last429[acct.name] = { chat_id = op.chat_id, t = now }
    return { ok = false, kind = "rate_limited", retry_after = info.retry_after or 1, scope = scope, error = err }
  end
  if info.migrate_to_chat_id then
    M.record_migration(acct.name, tostring(op.chat_id), info.migrate_to_chat_id)
    return { ok = false, kind = "retry", error = err }
  end
  local d = desc:lower()
  if st == 400 then
    if d:find("message is not modified", 1, true) and op.kind == "edit" then
      return { ok = true, message_id = op.target_message_id }
    end
    if d:find("message to delete not found", 1, true) and op.kind == "delete" then
      return { ok = true, message_id = op.target_message_id }
    end
    if d:find("can't parse entities", 1, true) or d:find("can't find end of", 1, true) then
      return { ok = false, kind = "bad_format", error = err }
    end
    if d:find("chat not found", 1, true) then return { ok = false, kind = "permanent", gone = true, error = err } end
    return { ok = false, kind = "permanent", error = err }
  end
  if st == 403 then return { ok = false, kind = "permanent", gone = true, error = err } end
  if st == 401 or st == 404 then -- the token: nothing goes until it is fixed
    require("chatgw.chat").set_state("telegram", acct.name, "error", err)
    return { ok = false, kind = "retry", error = err }
  end
  if st >= 500 then return { ok = false, kind = "retry", error = err } end
  return { ok = false, kind = "permanent", error = err }
end

local blob = require("chatgw.chat.outbox").blob

local function utf16_len(s)
  local n = 0
  for c in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do n = n + (#c == 4 and 2 or 1) end
  return n
end

-- The first n UTF-16 units of s (never half a character), and the rest.
local function utf16_cut(s, n)
  local units, i = 0, 1
  for c in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    local u = #c == 4 and 2 or 1
    if units + u > n then break end
    units = units + u
    i = i + #c
  end
  return s:sub(1, i - 1), s:sub(i)
end

local function send_image(acct, op, chat_id, b)
  local bytes = blob(b.image_blob)
  if not bytes then return { ok = false, kind = "permanent", error = "image: the bytes are gone" } end
  local caption, rest = b.caption, nil
  if caption and utf16_len(caption) > CAPTION_MAX then caption, rest = utf16_cut(caption, CAPTION_MAX) end
  local function form(field, filename)
    local f = { { name = "chat_id", value = tostring(chat_id) },
                { name = field, data = bytes, filename = filename } }
    if caption then
      local p = {}
      formatted(p, "caption", caption, b.format)
      f[#f + 1] = { name = "caption", value = p.caption }
      if p.caption_entities then f[#f + 1] = { name = "caption_entities", value = json.encode(p.caption_entities) } end
      if p.parse_mode then f[#f + 1] = { name = "parse_mode", value = p.parse_mode } end
    end
    if b.reply_to then
      f[#f + 1] = { name = "reply_parameters", value = json.encode({ message_id = msg_id(b.reply_to),
        allow_sending_without_reply = true }) }
    end
    local kb = keyboard(b.buttons)
    if kb then f[#f + 1] = { name = "reply_markup", value = json.encode(kb) } end
    return f
  end
  local result, err, info
  if #bytes <= PHOTO_MAX then
    result, err, info = acct.api:call("sendPhoto", nil, { form = form("photo", "image"), timeout_ms = 120000 })
    local d = info and info.description and info.description:lower() or ""
    if not result and info and info.status == 400
        and (d:find("photo_invalid_dimensions", 1, true) or d:find("too big", 1, true)
             or d:find("photo_save_file_invalid", 1, true) or d:find("image_process_failed", 1, true)) then
      result = nil -- Telegram will not take it as a photo: as a file
    elseif not result then
      return M.classify(acct, op, err, info)
    end
  end
  if not result then
    if #bytes > DOCUMENT_MAX then
      return { ok = false, kind = "permanent", error = ("image: %d bytes is over Telegram's 50 MB for a file"):format(#bytes) }
    end
    result, err, info = acct.api:call("sendDocument", nil, { form = form("document", "image"), timeout_ms = 300000 })
    if not result then return M.classify(acct, op, err, info) end
  end
  local ids = { M.id(result.message_id) }
  if rest and rest ~= "" then -- the caption's rest, as text under the photo (split like any text)
    for _, part in ipairs(split.split(rest, 4096, { unit = "utf16", format = b.format })) do
      local p = { chat_id = chat_id, link_preview_options = { is_disabled = true } }
      formatted(p, "text", part, b.format)
      local r2, e2 = acct.api:call("sendMessage", p)
      if not r2 then
        -- the photo is out, so the message is delivered; the rest is lost: say so in the log
        chatgw.log.warn("telegram: the rest of a long caption could not be sent", { account = acct.name,
          chat_id = tostring(op.chat_id), id = op.id, error = tostring(e2) })
        break
      end
      ids[#ids + 1] = M.id(r2.message_id)
    end
  end
  return { ok = true, message_id = ids[1], message_ids = #ids > 1 and ids or nil }
end

M.id = require("chatgw.chat.channels.telegram.api").id

function M.deliver(acct, op)
  local chat_id = M.target(acct.name, op.chat_id)
  local b = op.body or {}
  if op.kind == "send" then
    if b.image_blob then return send_image(acct, op, chat_id, b) end
    local p = { chat_id = chat_id, link_preview_options = { is_disabled = not b.link_preview } }
    formatted(p, "text", b.text or "", b.format)
    if b.reply_to then p.reply_parameters = { message_id = msg_id(b.reply_to), allow_sending_without_reply = true } end
    p.reply_markup = keyboard(b.buttons)
    local result, err, info = acct.api:call("sendMessage", p)
    if not result then return M.classify(acct, op, err, info) end
    return { ok = true, message_id = M.id(result.message_id) }
  elseif op.kind == "edit" then
    local p = { chat_id = chat_id, message_id = msg_id(op.target_message_id),
                link_preview_options = { is_disabled = not b.link_preview } }
    formatted(p, "text", b.text or "", b.format)
    p.reply_markup = keyboard(b.buttons)
    local result, err, info = acct.api:call("editMessageText", p)
    if not result then return M.classify(acct, op, err, info) end
    return { ok = true, message_id = op.target_message_id }
  elseif op.kind == "delete" then
    local result, err, info = acct.api:call("deleteMessage", { chat_id = chat_id, message_id = msg_id(op.target_message_id) })
    if not result then return M.classify(acct, op, err, info) end
    return { ok = true, message_id = op.target_message_id }
  end
  return { ok = false, kind = "permanent", error = "telegram: unknown operation " .. tostring(op.kind) }
end

return M
