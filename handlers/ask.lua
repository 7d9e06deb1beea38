-- ask: `/ask <question>`: an answer from the AI provider, streamed into the chat, with the
-- conversation's memory (per chat, per user in groups; kept in the store; the built-in /reset
-- forgets it).
return {
  commands = { ask = "ask the AI (remembers the conversation; /reset forgets it)" },
  on_command = function(msg, question)
    if question == "" then return msg:reply("Usage: /ask <question>") end
    if not chatgw.ai.providers().default then
      return msg:reply("No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key) to use /ask.")
    end
    local memory = chatgw.ai.memory(msg)
    local messages = memory:messages()
    messages[#messages + 1] = { role = "user", content = question }
    local stream = msg:stream()
    local r, err = chatgw.ai.chat{ messages = messages, stream = function(delta) stream:write(delta) end }
    if not r then return stream:fail(err) end
    stream:finish(r.text)
    memory:add("user", question)
    memory:add("assistant", r.text)
  end,
}
