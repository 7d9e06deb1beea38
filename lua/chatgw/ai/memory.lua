-- chatgw.ai.memory: conversation memory per chat (and per user in groups), in the store, so it
-- survives reloads and restarts (seed 000: max_turns 8, max_chars 12000).
--
--   local mem = chatgw.ai.memory(msg)   -- or chatgw.ai.memory{ key = "..." }
--   mem:messages()        -> { {role =, content =}, ... } oldest first (for chatgw.ai.chat)
--   mem:add(role, text)   -> true   role "user" | "assistant"
--   mem:reset()           -> true
--
-- A turn is a user message and its answer: at most max_turns turns are kept, and the oldest go
-- first while the texts together are over max_chars (characters, as UTF-8 code points).
local chatgw = chatgw
local json = require "chatgw.json"
require "chatgw.ai.store"

local type, tostring, setmetatable = type, tostring, setmetatable

local M = { max_turns = 8, max_chars = 12000 }

local Memory = {}
Memory.__index = Memory

local function ulen(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- The key of a message's memory: channel, account, chat, and the user in groups.
function M.key_of(msg)
  local key = ("%s:%s:%s"):format(msg.channel, msg.account or "default", tostring(msg.chat and msg.chat.id))
  if msg.chat and msg.chat.type == "group" and msg.user and msg.user.id then key = key .. ":" .. tostring(msg.user.id) end
  return key
end

function M.open(x)
  local fn = "chatgw.ai.memory"
  if type(x) ~= "table" then error(fn .. ": expected a message or {key = ...}, got " .. type(x), 2) end
  local key = x.key
  if key == nil then
    if type(x.chat) ~= "table" or x.channel == nil then error(fn .. ": expected a message or {key = ...}", 2) end
    key = M.key_of(x)
  end
  if type(key) ~= "string" or key == "" or #key > 512 then error(fn .. ": key must be a string of 1..512 bytes", 2) end
  return setmetatable({ key = key }, Memory)
end

function Memory:messages()
  local rows = chatgw.db.query("SELECT turns FROM ai_memory WHERE key = ?", self.key)
  local t = rows and rows[1] and json.decode(rows[1].turns)
  return type(t) == "table" and t or {}
end

local function trim(list)
  -- at most max_turns user messages (each with its answer)
  local users = 0
  local first = 1
  for i = #list, 1, -1 do
    if list[i].role == "user" then
      users = users + 1
      if users > M.max_turns then first = i + 1 break end
    end
  end
  local out = {}
  for i = first, #list do out[#out + 1] = list[i] end
  local total = 0
  for _, m in ipairs(out) do total = total + ulen(m.content) end
  while total > M.max_chars and #out > 1 do
    total = total - ulen(table.remove(out, 1).content)
  end
  while out[1] and out[1].role ~= "user" and #out > 1 do table.remove(out, 1) end -- start at a question
  return out
end

function Memory:add(role, text)
  if role ~= "user" and role ~= "assistant" then error("memory:add: role must be 'user' or 'assistant'", 2) end
  if type(text) ~= "string" then error("memory:add: text must be a string, got " .. type(text), 2) end
  local list = self:messages()
  list[#list + 1] = { role = role, content = text }
  list = trim(list)
  local ok, err = chatgw.db.exec([[INSERT INTO ai_memory (key, turns, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET turns = excluded.turns, updated_at = excluded.updated_at]],
    self.key, json.encode(list), chatgw.time())
  if not ok and err then return nil, err end
  return true
end

function Memory:reset()
  local ok, err = chatgw.db.exec("DELETE FROM ai_memory WHERE key = ?", self.key)
  if not ok and err then return nil, err end
  return true
end

return M
