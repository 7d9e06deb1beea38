-- chatgw.chat.channels.feishu.stream: streamed replies on Feishu.
--
-- A CardKit streaming card (channels.feishu.stream: card, the default): the card is made when
-- the first text comes (POST /open-apis/cardkit/v1/cards, streaming_mode on, one markdown
-- element), sent through the outbox as an interactive message, then its element is updated
-- with the text so far (PUT .../elements/<id>/content) with a strictly increasing `sequence`,
-- at most 5 operations a second (Feishu allows 10 per card). At finish the full text goes in
-- and streaming mode is closed (PATCH .../settings). When the card cannot be made, the stream
-- edits a text message instead (at most 20 edits, Feishu's limit per message), and past that,
-- or when the card's final update fails, the final text is sent as a message of its own. The
-- final text is always exact.
local chatgw = chatgw
local json = require "chatgw.json"
local model = require "chatgw.chat.model"
local outbox = require "chatgw.chat.outbox"

local type, tostring, setmetatable, min = type, tostring, setmetatable, math.min

local M = {}

local ELEMENT = "md_1"
local PUSH_MS = 200

-- The fallback is the chat layer's stream of edits (model.edit_stream), which keeps to
-- def.limits.max_edits (Feishu allows 20 edits of a message).
M.edits = model.edit_stream

-- ---- a CardKit streaming card ----

local Card = {}
Card.__index = Card

function M.new(msg, acct, mode)
  if not acct then return nil end
  if mode ~= "card" then return M.edits(msg) end
  return setmetatable({ msg = msg, acct = acct, text = "", seq = 0, done = false }, Card)
end

function Card:next_seq()
  self.seq = self.seq + 1
  return self.seq
end

local function card_json(text)
  return json.encode({ schema = "2.0",
    config = { streaming_mode = true, summary = { content = "…" },
               streaming_config = { print_frequency_ms = { default = 50 }, print_step = { default = 2 } } },
    body = { elements = { { tag = "markdown", content = text, element_id = ELEMENT } } } })
end

-- Makes the card and sends it. true | nil (then the stream falls back to edits)
function Card:start(first)
  local api = self.acct.api
  local data, err = api:call("POST", "/open-apis/cardkit/v1/cards", { json = { type = "card_json", data = card_json(first) } })
  local card_id = type(data) == "table" and data.card_id or nil
  if not card_id then
    chatgw.log.info("feishu: no streaming card (" .. tostring(err) .. "): streaming by edits",
      { account = self.acct.name, chat_id = self.msg.chat.id })
    return nil
  end
  self.card_id, self.shown = card_id, first
  local m = self.msg
  local h, aerr = outbox.accept{ channel = m.channel, account = m.account, chat_id = m.chat.id, card_id = card_id,
    reply_to = m.chat.type == "group" and m.id or nil, handler = m._handler, origin = "reply",
    group = m.chat.type == "group" }
  if not h then
    chatgw.log.warn("feishu: the streaming card could not be queued", { error = tostring(aerr) })
    return nil
  end
  self.handle = h
  chatgw.spawn(function() self:pump() end)
  return true
end

function Card:push(text)
  local path = ("/open-apis/cardkit/v1/cards/%s/elements/%s/content"):format(self.card_id, ELEMENT)
  local seq = self:next_seq()
  return self.acct.api:call("PUT", path, { json = { content = text, sequence = seq,
    uuid = ("%s-%d"):format(self.card_id, seq):sub(1, 64) } })
end

-- Pushes the text so far every PUSH_MS until the stream finishes; finish waits for it to stop,
-- so no update is in flight when the last one (with the highest sequence) goes.
function Card:pump()
  self.pumping = true
  while not self.done do
    local text = model.limited(self.msg, self.text) or ""
    if text ~= self.shown and text:find("%S") then
      local ok, err, info = self:push(text)
      if ok then self.shown = text
      elseif info and (info.status == 429 or info.code == 99991400) then
        chatgw.sleep(1000)
      else
        chatgw.log.debug("feishu: streaming card update failed", { error = tostring(err) })
      end
    end
    if self.done then break end
    local _, serr = chatgw._wait(self:pump_key(), PUSH_MS)
    if serr then break end
  end
  self.pumping = false
  chatgw._notify(self:pump_key() .. ":stopped")
end

function Card:pump_key() return "feishu:card:" .. tostring(self.card_id) end

-- Stops the pump and waits (bounded) until its update in flight is answered.
function Card:stop_pump()
  chatgw._notify(self:pump_key())
  local deadline = chatgw.now() + 35000
  while self.pumping and chatgw.now() < deadline do
    chatgw._wait(self:pump_key() .. ":stopped", 1000)
  end
end

function Card:write(delta)
  if self.done then error("stream:write: the stream has finished", 2) end
  if type(delta) ~= "string" then error("stream:write: delta must be a string, got " .. type(delta), 2) end
  self.text = self.text .. delta
  if self.fallback then return self.fallback:write(delta) end
  if not self.card_id and self.text:find("%S") then
    if not self:start(model.limited(self.msg, self.text)) then
      self.fallback = M.edits(self.msg)
      return self.fallback:write(self.text)
    end
  end
  return true
end

-- The full text into the card, then streaming mode off; a few tries. true | nil
function Card:close(final)
  for try = 1, 3 do
    local ok, _, info = self:push(final)
    if ok then
      self.acct.api:call("PATCH", ("/open-apis/cardkit/v1/cards/%s/settings"):format(self.card_id),
        { json = { settings = json.encode({ config = { streaming_mode = false } }), sequence = self:next_seq(),
                   uuid = ("%s-close"):format(self.card_id) } })
      return true
    end
    if not info or (info.status ~= 429 and info.code ~= 99991400 and (info.status or 0) < 500) then break end
    chatgw.sleep(min(1000 * try, 3000))
  end
  return nil
end

function Card:finish(text)
  if self.done then return self.handle end
  if text ~= nil and type(text) ~= "string" then
    error("stream:finish: text must be a string, got " .. type(text), 2)
  end
  if self.fallback then
    self.done = true
    self.handle = self.fallback:finish(text)
    return self.handle
  end
  self.done = true
  if text ~= nil then self.text = text end
  if self.text == "" then return self.handle end
  local final = model.limited(self.msg, self.text)
  if not self.card_id then -- nothing shown yet: one message
    self.handle = self.msg:reply(final)
    return self.handle
  end
  self:stop_pump()
  if self.handle then self.handle:wait(10000) end -- the card message is out before its last update
  if self:close(final) then return self.handle end
  chatgw.log.warn("feishu: the streaming card's final update failed: the text goes as a message",
    { account = self.acct.name, chat_id = self.msg.chat.id })
  self.handle = self.msg:reply(final)
  return self.handle
end

Card.fail = model.stream_fail -- the text so far and a note of the failure

return M
