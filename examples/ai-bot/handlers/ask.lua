-- ai-bot: answers with an AI provider, streamed into the chat as it is written (a Telegram
-- draft, a Feishu streaming card, or edits of one message), and remembers the conversation
-- (per chat, per user in groups; /reset forgets it). Needs a provider: DEEPSEEK_API_KEY (the
-- default, as in seed 000), or OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY,
-- OLLAMA_HOST, ... (docs/ai.md). Without one, chatgw.ai.chat returns nil, "unavailable: no AI
-- provider is configured (...)" and stream:fail(err) puts that in the chat.
return {
  commands = { ask = "ask the AI (the answer is streamed)" },
  on_command = function(msg, question)
    if question == "" then return msg:reply("Usage: /ask <question>") end
    local memory = chatgw.ai.memory(msg)
    local messages = memory:messages()
    messages[#messages + 1] = { role = "user", content = question }
    local stream = msg:stream()
    -- the one line that streams: every delta goes into the chat as it comes
    local r, err = chatgw.ai.chat{ messages = messages, system = "Answer briefly.",
                                   stream = function(delta) stream:write(delta) end }
    if not r then return stream:fail(err) end
    stream:finish(r.text)
    memory:add("user", question)
    memory:add("assistant", r.text)
  end,
}
