-- chatgw.chat.channels.config: the `channels:` config section, where seed 000 kept each
-- channel's settings: one map per channel, each defined beside its adapter. Pure: the docs
-- spec loads it.
local config = require "chatgw.config"
local telegram = require "chatgw.chat.channels.telegram.config"
local feishu = require "chatgw.chat.channels.feishu.config"

config.register_section("channels", { type = "map", fields = {
  telegram = telegram.schema,
  feishu = feishu.schema,
} })

return { telegram = telegram, feishu = feishu }
