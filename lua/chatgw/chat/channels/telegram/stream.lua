-- chatgw.chat.channels.telegram.stream: streamed replies in private chats through message
-- drafts (sendMessageDraft, Bot API 9.5: an ephemeral preview of about 30 s, private chats
-- only). While the stream runs, the text so far is shown as the draft, at most once a second
-- and within the governor, and shown again every 20 s so the preview does not lapse; at finish
-- the final text is sent as a message through the outbox (so it is never lost, and a long one
-- continues in new messages). The first refusal (400) of drafts in a chat switches that chat to
-- edits for good (chatgw.shared), and this stream goes on by edits. Groups, and
-- channels.telegram.drafts: false, always stream by edits (model.edit_stream).
local chatgw = chatgw
local model = require "chatgw.chat.model"
local governor = require "chatgw.chat.governor"
local deliver = require "chatgw.chat.channels.telegram.deliver"

local type, tostring, setmetatable, min = type, tostring, setmetatable, math.min

local M = {}

local PUSH_MS, REFRESH_MS = 1000, 20000
local DRAFT_MAX = 4096 -- UTF-16 code units, as a message

local no_drafts = chatgw.shared("chatgw.telegram.no_drafts") -- "<account>:<chat id>" -> 1

local Draft = {}
Draft.__index = Draft

-- The last DRAFT_MAX units of s (a draft shows where the text is going).
local function tail(s)
  local units = 0
  for c in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do units = units + (#c == 4 and 2 or 1) end
  if units <= DRAFT_MAX then return s end
  local drop, i = units - (DRAFT_MAX - 1), 1
  for c in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    if drop <= 0 then break end
    drop = drop - (#c == 4 and 2 or 1)
    i = i + #c
  end
  return "…" .. s:sub(i)
end

-- acct: the account object; def: the channel def; enabled: channels.telegram.drafts
function M.new(msg, acct, def, enabled)
  if not enabled or msg.chat.type ~= "private" or not acct then return nil end
  if no_drafts:get(acct.name .. ":" .. msg.chat.id) then return nil end
  return setmetatable({ msg = msg, acct = acct, def = def, text = "", shown = nil, done = false,
                        draft_id = math.random(1, 2147483646), running = false }, Draft)
end

function Draft:switch_to_edits(why)
  no_drafts:set(self.acct.name .. ":" .. self.msg.chat.id, 1)
  chatgw.log.info("telegram: drafts refused in this chat: streaming by edits", { account = self.acct.name,
    chat_id = self.msg.chat.id, error = tostring(why) })
  self.fallback = model.edit_stream(self.msg)
  if self.text ~= "" and not self.done then self.fallback:write(self.text) end
end

function Draft:pump()
  local gov = governor.get(self.def, self.acct.name)
  local chat_id = deliver.target(self.acct.name, self.msg.chat.id)
  local pushed_at = -REFRESH_MS
  while not self.done and not self.fallback do
    local text = tail(model.limited(self.msg, self.text) or "")
    local now = chatgw.now()
    if text:find("%S") and (text ~= self.shown or now - pushed_at >= REFRESH_MS) then
      local ok, wait = gov:admit(self.msg.chat.id, false, "edit")
      if ok then
        local r, err, info = self.acct.api:call("sendMessageDraft",
          { chat_id = chat_id, draft_id = self.draft_id, text = text }, { timeout_ms = 10000 })
        if r then
          self.shown, pushed_at = text, now
        elseif info and info.status == 400 then
          return self:switch_to_edits(err)
        elseif info and info.status == 429 then
          gov:freeze("chat", self.msg.chat.id, info.retry_after or 1)
        end
      elseif wait > 0 then
        local _, serr = chatgw.sleep(min(wait, PUSH_MS))
        if serr then return end
      end
    end
    local _, serr = chatgw.sleep(PUSH_MS)
    if serr then return end
  end
end

function Draft:write(delta)
  if self.done then error("stream:write: the stream has finished", 2) end
  if type(delta) ~= "string" then error("stream:write: delta must be a string, got " .. type(delta), 2) end
  self.text = self.text .. delta
  if self.fallback then return self.fallback:write(delta) end
  if not self.running then
    self.running = true
    chatgw.spawn(function() self:pump() end)
  end
  return true
end

-- The final text (default: all that was written), as a message through the outbox.
function Draft:finish(text)
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
  if self.text == "" then return nil end
  self.handle = self.msg:reply(self.text)
  return self.handle
end

Draft.fail = model.stream_fail -- the text so far and a note of the failure

return M
