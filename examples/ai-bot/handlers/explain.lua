-- ai-bot: `/explain <text>`, or `/explain` as a reply to a message: a facts-only explanation,
-- streamed into the chat like /ask (no memory: each explanation stands alone). A Feishu event
-- does not carry the replied-to text; for a message the notify API sent, chatgw.notify.lookup
-- has it. handlers/explain.lua is the full one (the tasks API's prompt, alert metadata, policy).
local SYSTEM = "Explain the text you are given: what it says happened and what that means. "
  .. "Facts only: no guesses, no predictions, no risky actions. Be brief."

return {
  commands = { explain = "explain a text (reply /explain to it, or /explain <text>)" },
  on_command = function(msg, args)
    local r = msg.reply_to
    local replied = r and (r.text or (chatgw.notify.lookup(msg.channel, msg.chat.id, r.id) or {}).text)
    if args == "" and not replied then
      return msg:reply("Usage: /explain <text>, or reply /explain to a message.")
    end
    if not chatgw.ai.providers().default then
      return msg:reply("No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key).")
    end
    local text = replied and ("The message:\n" .. replied .. (args ~= "" and ("\n\nQuestion: " .. args) or ""))
      or args
    local stream = msg:stream()
    local res, err = chatgw.ai.chat{ system = SYSTEM, messages = { { role = "user", content = text } },
                                     stream = function(delta) stream:write(delta) end }
    if not res then return stream:fail(err) end
    stream:finish(res.text)
  end,
}
