-- fuzz/lua/notify_registry.lua: the notify projects registry (chatgw.notify.registry.parse:
-- YAML through chatgw.config.load_text twice, the shape schema built from the document, then
-- compilation: chat ids, overrides in list and map form, levels, on_demand), then every lookup
-- on each project of a registry it accepts, and its JSON summary.
local registry = require "chatgw.notify.registry"
local json = require "chatgw.json"

local LEVELS = { "LOW", "MEDIUM", "HIGH", "CRITICAL" }

return function(input)
  local reg, errors = registry.parse(input, "projects.yml", LEVELS)
  if not reg then
    assert(type(errors) == "table" and #errors > 0, "a refused registry without a problem")
    return
  end
  for id in pairs(reg.projects or {}) do
    for _, target in ipairs(registry.TARGETS) do
      local chats = registry.defaults(reg, id, target)
      for _, chat in ipairs(chats or {}) do registry.overrides_of(reg, id, target, chat) end
      registry.overrides_of(reg, id, target, "-1")
    end
    registry.on_demand(reg, id)
  end
  json.encode(registry.list(reg))
end
