-- fuzz/lua/config.lua: the config loader on the input as chatgw.yml: libyaml's events, the tree
-- with line numbers, the schema of every registered section, env overrides, listeners; then a
-- config it accepts must be one settings.c can copy (a refusal there is a schema/reader
-- disagreement, so it aborts). The file is read through io.open, answered from memory.
local config = require "chatgw.config"

local PATH = "/fuzz/chatgw.yml"
local text = ""
local real_open = io.open
io.open = function(path, mode)
  if path ~= PATH then return real_open(path, mode) end
  return { read = function() return text end, close = function() end }
end

local ENV = { CHAT_GATEWAY_LOG_LEVEL = "error" }

return function(input)
  text = input
  local cfg, errors = config.load(PATH, { explicit = true, env = ENV })
  if not cfg then
    assert(type(errors) == "table" and #errors > 0, "a refused config without a problem")
    return
  end
  local err = fuzz.settings_read(cfg)
  if err then fuzz.abort("settings.c refused a config the schema accepted: " .. err) end
end
