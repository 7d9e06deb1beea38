-- explain: `/explain <text>`, or `/explain` as a reply to a message (an alert the bot posted,
-- or any text): a facts-only explanation from the AI provider, streamed into the chat.
-- The prompt is the tasks API's `analyze` (seed 000's facts-only system prompt), with the
-- replied-to text and, for an alert the notify API sent, its project and metadata as
-- context. In groups the policy's `require` rules apply (config/policy.yml: an @mention and a
-- reply). Output keeps within the policy's limits (msg:stream cuts to them).
local function context_of(msg)
  local r = msg.reply_to
  if not r then return nil end
  local ctx = { replied_text = r.text, replied_from_bot = r.from_bot }
  local alert = chatgw.notify.lookup(msg.channel, msg.chat.id, r.id)
  if alert then
    if not ctx.replied_text or ctx.replied_text == "" then ctx.replied_text = alert.text end
    ctx.alert = { project_id = alert.project_id, priority = alert.priority, meta = alert.meta, text = alert.text }
  end
  return ctx
end

return {
  commands = { explain = "explain an alert or a text (reply to it, or /explain <text>)" },
  capability = "alerts.explain",
  on_command = function(msg, args)
    local ctx = context_of(msg)
    if args == "" and not (ctx and ctx.replied_text) then
      return msg:reply("Usage: /explain <text>, or reply /explain to a message.")
    end
    if not chatgw.ai.providers().default then
      return msg:reply("No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key) to use /explain.")
    end
    local question = args ~= "" and args or "Explain this message: what happened, and what it means."
    local system, user = chatgw.ai.analyze_prompt(question, ctx or {})
    local stream = msg:stream()
    local r, err = chatgw.ai.chat{ system = system, messages = { { role = "user", content = user } },
                                   stream = function(delta) stream:write(delta) end }
    if not r then return stream:fail(err) end
    return stream:finish(r.text)
  end,
}
