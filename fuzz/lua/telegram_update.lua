-- fuzz/lua/telegram_update.lua: a Telegram Update as getUpdates or the webhook delivers it:
-- the JSON (chatgw.json over lua-cjson, big integers kept exact) and
-- chatgw.chat.channels.telegram.parse.update (messages, edits, captions, entities in UTF-16
-- offsets, mentions of the bot, commands, attachments, replies, callbacks, membership,
-- migrations), as seen by a bot with a user name and without one.
local json = require "chatgw.json"
local parse = require "chatgw.chat.channels.telegram.parse"

local BOTS = { { id = "123456789", username = "fuzz_bot" }, nil }

return function(input)
  local ok, u = pcall(json.decode, input)
  if not ok then return end
  for i = 1, 2 do
    local kind, f = parse.update(u, BOTS[i])
    if kind ~= nil then
      assert(type(kind) == "string" and type(f) == "table", "update() answers kind, fields")
    end
  end
end
