-- chatgw.chat.config: the `chat:` config section (pure: the docs spec loads it without the
-- runtime).
local config = require "chatgw.config"
local LANGUAGES = require("chatgw.chat.texts").LANGUAGES
local MODES = { "off", "owner_only", "auth" }

config.register_section("chat", { type = "map", fields = {
  allowlist_mode = { type = "string", enum = MODES, default = "off",
    doc = "Who may use the bots at all: `off` (everyone), `owner_only`, `auth` (chats on the list; `/auth`)." },
  channels = { type = "dict", key_pattern = "^[a-z][a-z0-9_]*$", doc = "Per channel: `allowlist_mode` overrides the one above.",
    values = { type = "map", fields = { allowlist_mode = { type = "string", enum = MODES } } } },
  owner_chats = { type = "dict", key_pattern = "^[a-z][a-z0-9_]*$", values = { type = "string", min_len = 1, max_len = 128 },
    doc = "The owner's chat id per channel (always allowed; seed 000's `gateway.owner.<channel>_chat_id`)." },
  language = { type = "string", enum = LANGUAGES, default = "en",
    doc = "Language of built-in replies; `CHAT_GATEWAY_RESPONSE_LANG` (alias `GW_RESPONSE_LANG`) wins." },
  policy = { type = "string", default = "policy.yml", min_len = 1, max_len = 1023,
    doc = "The policy file; relative to the directory of chatgw.yml. `CHAT_GATEWAY_POLICY_PATH` wins." },
  unknown_command_hint = { type = "boolean", default = true,
    doc = "Answer an unknown command in a private chat (or when mentioned) with a hint." },
  ledger_retention_hours = config.int(24, 1, 720,
    "How long inbound update ids are kept to drop redeliveries (Feishu retries for about 7 h)."),
  outbox_retention_hours = config.int(168, 1, 8760,
    "How long delivered, failed and unknown outbox messages (and long button data) are kept; a press on a button of an older message finds no handler."),
  pacing = { type = "boolean", default = true,
    doc = "The governor paces sends to each platform's limits; `false` turns pacing off (a platform's 429 still freezes)." },
  governor = { type = "dict", key_pattern = "^[a-z][a-z0-9_]*$",
    doc = "Per channel: the governor's limits over the adapter's defaults (the platform's published limits; the `ws` and `test` channels have none and are not paced).",
    values = { type = "map", fields = {
      chat_rate = { type = "number", min = 0.001, max = 100000, doc = "Messages per second to one chat." },
      chat_burst = { type = "integer", min = 1, max = 100000, doc = "Messages to one chat at once after a pause." },
      group_per_minute = { type = "integer", min = 1, max = 100000, doc = "Messages per minute to one group chat." },
      bot_rate = { type = "number", min = 0.001, max = 100000, doc = "Messages per second of the bot, all chats together." },
      bot_burst = { type = "integer", min = 2, max = 100000, doc = "Messages of the bot at once after a pause." },
    } } },
} })

return {}
