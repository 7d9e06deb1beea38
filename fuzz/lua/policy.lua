-- fuzz/lua/policy.lua: the chat policy loader (chatgw.chat.policy.parse: YAML through
-- chatgw.config.load_text, the policy schema, ${ENV:...} references, rule compilation), then a
-- policy it accepts deciding a few messages and truncating a reply by the limits it gives.
local policy = require "chatgw.chat.policy"

local ENV = { OWNER_TELEGRAM_USER_ID = "42", EMPTY = "" }
local CTXS = {
  { channel = "telegram", chat_id = "-100123", chat_type = "supergroup", user_ids = { "42" },
    capability = "alerts.explain", mentioned = true, is_reply = false },
  { channel = "feishu", chat_id = "oc_1", chat_type = "p2p", user_id = "ou_1", capability = "ai.ask" },
  { channel = "ws", chat_id = "room", chat_type = "private", user_id = "7" },
}
local REPLY = ("line\n"):rep(80) .. ("é"):rep(7000)

return function(input)
  local p, problems = policy.parse(input, "policy.yml", { env = ENV })
  if not p then
    assert(type(problems) == "table" and #problems > 0, "a refused policy without a problem")
    return
  end
  for _, ctx in ipairs(CTXS) do
    local d = p:decide(ctx)
    assert(type(d) == "table" and type(d.allowed) == "boolean" and type(d.limits) == "table")
    policy.truncate(REPLY, d.limits, {})
  end
end
