-- chatgw.chat.channels.telegram.updates: what one Update does, for the poller and the webhook
-- alike. A message or a button press goes into the ledger (its update_id is the platform id, so
-- a redelivery is a duplicate) and is then dispatched; the bot's own membership changes and
-- group migrations change how messages are sent.
--
--   updates.handle(acct, u) -> true | nil, err   (err: the update could not be recorded: do
--                                                 not confirm it to Telegram)
local chatgw = chatgw
local chat = require "chatgw.chat"
local governor = require "chatgw.chat.governor"
local parse = require "chatgw.chat.channels.telegram.parse"
local deliver = require "chatgw.chat.channels.telegram.deliver"

local tostring = tostring

local M = {}

local GONE = { kicked = true, left = true }
local BACK = { member = true, administrator = true, creator = true, restricted = true }

function M.handle(acct, u)
  local kind, f = parse.update(u, acct.bot)
  local platform_id = tostring(u.update_id)
  if kind == "message" or kind == "callback" then
    f.channel, f.account = "telegram", acct.name
    local id, err
    if kind == "message" then
      id, err = chat.inbound(f, platform_id)
    else
      id, err = chat.callback(f, platform_id)
    end
    if not id and err ~= "duplicate" then return nil, err end
    return true
  elseif kind == "member" and f.chat_id then
    local gov = governor.get(chat.channel("telegram"), acct.name)
    if GONE[f.status] then
      gov:mark_gone(f.chat_id, "the bot was " .. (f.status == "kicked" and "removed or blocked" or "removed") ..
        " (my_chat_member: " .. f.status .. ")")
      chatgw.log.info("telegram: the bot left a chat; messages to it fail until it is back",
        { account = acct.name, chat_id = f.chat_id, status = f.status })
    elseif BACK[f.status] then
      gov:back(f.chat_id)
    end
  elseif kind == "migrate" then
    deliver.record_migration(acct.name, f.from, f.to)
  end
  return true
end

return M
