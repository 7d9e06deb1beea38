-- alertmanager-bridge: /ack. Reply /ack to an alert message in the chat and the bot answers
-- who is on it. chatgw.notify.lookup finds the notify a platform message was (the alert's
-- text and project), so /ack as a reply to anything else is refused.
local function who(user)
  if user.username and user.username ~= "" then return "@" .. user.username end
  return user.name or tostring(user.id)
end

return {
  commands = { ack = "reply /ack to an alert: say you are on it" },
  on_command = function(msg)
    local n = msg.reply_to and chatgw.notify.lookup(msg.channel, msg.chat.id, msg.reply_to.id)
    if not n then return msg:reply("Reply /ack to an alert message.") end
    local first = (n.text or ""):match("^[^\n]*")
    return msg:reply(("%s is on it: %s"):format(who(msg.user), first))
  end,
}
