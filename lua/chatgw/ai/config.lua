-- chatgw.ai.config: the `ai:` config section (chat rate limits, memory, the tasks API's
-- limit), with seed 000's defaults. Pure: the docs spec loads it.
local config = require "chatgw.config"

local int = config.int

config.register_section("ai", { type = "map", fields = {
  rate_limit = { type = "map", fields = {
    per_user_per_min = int(10, 0, 100000, "AI calls per user per minute from chat (seed 000's `rate_limit.per_user_per_min`; 0: none)."),
    global_per_min = int(30, 0, 1000000, "AI calls per minute from chat, all users together (0: none)."),
  } },
  memory = { type = "map", fields = {
    max_turns = int(8, 1, 1000, "Turns (a message and its answer) kept per conversation."),
    max_chars = int(12000, 100, 10000000, "Characters kept per conversation, oldest dropped first."),
  } },
  tasks = { type = "map", fields = {
    per_min = int(0, 0, 100000000, "Tasks API requests per minute, all callers together (0: no limit, as seed 000)."),
  } },
} })

return {}
