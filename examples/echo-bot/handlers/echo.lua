-- echo-bot: repeats what it is told, on every chat channel that is on (the ws chat channel:
-- `chat.send` over /ws; Telegram when TELEGRAM_BOT_TOKEN is set). Its specs run with
-- `chatgw test`.
return {
  commands = { echo = "repeat the text", count = "count the words" },
  on_command = function(msg, args)
    if msg.command == "count" then return msg:reply(("%d words"):format(#msg.argv)) end
    if args == "" then return msg:reply("Usage: /echo <text>") end
    return msg:reply(args)
  end,
  on_message = function(msg) -- private chats, or when mentioned in a group
    msg:reply("You said: " .. msg.text)
  end,
}
