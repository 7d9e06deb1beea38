-- chatgw.chat.model: the one message table every channel delivers to handlers, and its methods.
--
--   msg.channel, msg.account, msg.id                     strings
--   msg.chat = { id, type = "private"|"group", title, raw_type }
--   msg.user = { id, name, username, is_bot, ... }       (Feishu adds user_id, union_id)
--   msg.text, msg.date (epoch seconds), msg.mentioned, msg.raw
--   msg.command, msg.args, msg.argv                      (nil command: not a command)
--   msg.reply_to = { id, text, user, from_bot } | nil
--   msg.attachments = { { kind, id, name, size, mime }, ... }
--   msg:reply(text | opts) -> handle;  msg:typing();  msg:stream() -> s
--
-- Ids are strings end to end (Telegram's exceed what a Lua number keeps through lua-cjson).
local chatgw = chatgw
local commands = require "chatgw.chat.commands"
local outbox = require "chatgw.chat.outbox"
local policy = require "chatgw.chat.policy"
local texts = require "chatgw.chat.texts"

local type, tostring, ipairs, pairs, error, setmetatable = type, tostring, ipairs, pairs, error, setmetatable

local M = {}

local Msg = {}
Msg.__index = Msg
M.Msg = Msg

local REPLY_OPTIONS = { text = true, image = true, image_bytes = true, caption = true, format = true,
                        buttons = true, quote = true, link_preview = true }
local FORMATS = { plain = true, markdown = true, html = true }

local function str(v) return v ~= nil and tostring(v) or nil end

-- Builds a message from a channel's normalized fields (copied; ids made strings).
function M.new(f, bot_username)
  local chat = f.chat or {}
  local user = f.user or {}
  local m = setmetatable({
    channel = f.channel, account = f.account or "default", id = str(f.id),
    chat = { id = str(chat.id), type = chat.type == "private" and "private" or "group",
             title = chat.title, raw_type = chat.raw_type or chat.type },
    user = { id = str(user.id), name = user.name, username = user.username, is_bot = user.is_bot == true,
             user_id = str(user.user_id), union_id = str(user.union_id), open_id = str(user.open_id) },
    text = f.text or "", date = f.date or chatgw.time(), mentioned = f.mentioned == true,
    raw = f.raw, attachments = f.attachments or {}, edited = f.edited == true,
  }, Msg)
  -- an attachment knows where it came from: chatgw.chat.download(att) needs nothing else
  for _, a in ipairs(m.attachments) do
    if type(a) == "table" then
      a.channel = a.channel or m.channel
      a.account = a.account or m.account
    end
  end
  if f.reply_to then
    local r = f.reply_to
    m.reply_to = { id = str(r.id), text = r.text, from_bot = r.from_bot == true,
                   user = r.user and { id = str(r.user.id), name = r.user.name, username = r.user.username,
                                       is_bot = r.user.is_bot == true } or nil }
  end
  m._no_command = f.no_command == true -- the platform says the "/" is not a command
  local c = not m._no_command and commands.parse(m.text, bot_username)
  if c then
    m.command, m.args, m.argv, m._for_other_bot = c.name, c.args, c.argv, c.for_other_bot
  end
  return m
end

-- What a message carries for the store (its fields, no methods): dispatched after a restart.
function M.fields(m)
  return { channel = m.channel, account = m.account, id = m.id, chat = m.chat, user = m.user,
           text = m.text, date = m.date, mentioned = m.mentioned, raw = m.raw,
           attachments = m.attachments, reply_to = m.reply_to, edited = m.edited,
           no_command = m._no_command or nil }
end

-- The user's ids, for policy (Feishu: open_id, user_id and union_id all match).
function M.user_ids(m)
  local ids = { m.user.id }
  for _, k in ipairs({ "user_id", "union_id", "open_id" }) do
    if m.user[k] and m.user[k] ~= m.user.id then ids[#ids + 1] = m.user[k] end
  end
  return ids
end

local function check_buttons(b, fname)
  if b == nil then return end
  if type(b) ~= "table" then error(fname .. ": buttons must be rows of {text = , data = }", 3) end
  for _, row in ipairs(b) do
    if type(row) ~= "table" then error(fname .. ": buttons must be rows of {text = , data = }", 3) end
    for _, btn in ipairs(row) do
      if type(btn) ~= "table" or type(btn.text) ~= "string" or btn.text == "" then
        error(fname .. ": each button needs a text", 3)
      end
    end
  end
end

-- opts from reply/send: a string is the text.
function M.reply_opts(x, fname)
  if type(x) == "string" then return { text = x } end
  if type(x) ~= "table" then error(fname .. ": expected a text or a table of options, got " .. type(x), 3) end
  for k in pairs(x) do
    if not REPLY_OPTIONS[k] then error(fname .. ": unknown option '" .. tostring(k) .. "'", 3) end
  end
  if x.text ~= nil and type(x.text) ~= "string" then error(fname .. ": text must be a string", 3) end
  if x.format ~= nil and not FORMATS[x.format] then error(fname .. ": format must be plain, markdown or html", 3) end
  if x.image ~= nil and type(x.image) ~= "string" then error(fname .. ": image must be a file path", 3) end
  if x.image_bytes ~= nil and type(x.image_bytes) ~= "string" then error(fname .. ": image_bytes must be a string", 3) end
  if not x.text and not x.image and not x.image_bytes then error(fname .. ": a text or an image is required", 3) end
  check_buttons(x.buttons, fname)
  local o = {}
  for k, v in pairs(x) do o[k] = v end
  return o
end

-- The output limits of the policy decision this message was handled under (truncation says so).
local function limited(m, text)
  if not text or not m.limits then return text end
  local t, cut = policy.truncate(text, m.limits, {
    truncated = texts.get("truncated"),
    more_lines = function(n) return n == 1 and texts.get("truncated_line") or texts.get("truncated_lines", { n = n }) end })
  if cut then m._truncated = true end
  return t
end

function Msg:reply(x)
  local o = M.reply_opts(x, "msg:reply")
  local quote = o.quote
  if quote == nil then quote = self.chat.type == "group" end
  return outbox.accept{ channel = self.channel, account = self.account, chat_id = self.chat.id,
    text = limited(self, o.text), format = o.format, buttons = o.buttons, image = o.image,
    image_bytes = o.image_bytes, caption = limited(self, o.caption), reply_to = quote and self.id or nil,
    handler = self._handler, origin = "reply", group = self.chat.type == "group", link_preview = o.link_preview }
end

-- A chat action: sent when the governor has room (never before a message), else dropped;
-- never queued. true when it was sent.
function Msg:typing()
  return outbox.typing(self.channel, self.account, self.chat.id, self.chat.type == "group")
end

-- ---- streaming replies ----

local Stream = {}
Stream.__index = Stream

M.limited = limited

-- The text so far is sent at the first write, then edited as it grows (the outbox coalesces
-- edits and the governor paces them); a channel without edits gets one message at finish. A
-- channel that takes only so many edits of a message (def.limits.max_edits: Feishu 20) gets
-- at most that many: the last one is kept for the final text, and past the cap the final text
-- goes as a message of its own.
function M.edit_stream(msg)
  local def = M.channel_def and M.channel_def(msg.channel)
  return setmetatable({ msg = msg, text = "", edits = def and def.capabilities and def.capabilities.edit,
                        max_edits = def and def.limits and def.limits.max_edits, n_edits = 0,
                        handle = nil, done = false }, Stream)
end

-- A channel may stream its own way (Telegram: drafts in private chats): def.stream(msg)
-- returns a stream with write/finish/fail, or nil for the edits above.
function Msg:stream()
  local def = M.channel_def and M.channel_def(self.channel)
  if def and def.stream then
    local ok, s = pcall(def.stream, self)
    if ok and s then return s end
  end
  return M.edit_stream(self)
end

function Stream:write(delta)
  if self.done then error("stream:write: the stream has finished", 2) end
  if type(delta) ~= "string" then error("stream:write: delta must be a string, got " .. type(delta), 2) end
  self.text = self.text .. delta
  if not self.edits or not self.text:find("%S") then return true end
  local shown = limited(self.msg, self.text)
  if not self.handle then
    local h, err = self.msg:reply(shown)
    if not h then return nil, err end
    self.handle = h
    return true
  end
  if self.max_edits and self.n_edits >= self.max_edits - 1 then return true end -- the last is the final's
  local h, err = self.handle:edit(shown)
  if not h then return nil, err end
  self.n_edits = self.n_edits + 1
  return true
end

-- The final text (default: all that was written) replaces whatever was shown.
function Stream:finish(text)
  if self.done then return self.handle end
  self.done = true
  if text ~= nil then
    if type(text) ~= "string" then error("stream:finish: text must be a string, got " .. type(text), 2) end
    self.text = text
  end
  if self.text == "" then return nil end
  local final = limited(self.msg, self.text)
  if self.handle and not (self.max_edits and self.n_edits >= self.max_edits) then
    local _, err = self.handle:edit(final, { final = true }) -- a message's priority
    if err then return nil, err end
    return self.handle
  end
  self.handle = self.msg:reply(final)
  return self.handle
end

-- The text so far and a note of the failure, as the final text. Channels' own streams share it
-- (any stream with `text` and `finish`).
function Stream:fail(err)
  local note = texts.get("stream_failed", { error = tostring(err or "error") })
  return self:finish((self.text ~= "" and (self.text .. "\n") or "") .. note)
end
M.stream_fail = Stream.fail

-- ---- button presses ----

local Callback = {}
Callback.__index = Callback
M.Callback = Callback

function M.callback(f)
  return setmetatable({ channel = f.channel, account = f.account or "default", id = str(f.id),
    data = f.data, chat = f.chat, user = f.user, message = f.message, raw = f.raw,
    _answer = f.answer }, Callback)
end

-- Acknowledges the press (a toast where the platform shows one).
function Callback:answer(text)
  if self._answered then return true end
  self._answered = true
  if self._answer then return self._answer(text) end
  local def = M.channel_def and M.channel_def(self.channel)
  if def and def.answer_callback then return def.answer_callback(self.account, self.id, text) end
  return true
end

-- Replies in the chat of the pressed message.
function Callback:reply(x)
  local o = M.reply_opts(x, "cb:reply")
  local quoted = o.quote == true and self.message and self.message.id or nil -- the pressed message
  return outbox.accept{ channel = self.channel, account = self.account, chat_id = self.chat.id,
    text = o.text, format = o.format, buttons = o.buttons, image = o.image, image_bytes = o.image_bytes,
    caption = o.caption, handler = self._handler, origin = "reply", reply_to = quoted and tostring(quoted),
    link_preview = o.link_preview,
    group = self.chat and self.chat.type == "group" }
end

return M
