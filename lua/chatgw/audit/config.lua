-- chatgw.audit.config: the `audit:` config section. Pure: the docs spec loads it.
local config = require "chatgw.config"

config.register_section("audit", { type = "map", fields = {
  retention_days = { type = "number", default = 90, min = 0.00001, max = 36500, doc_type = "number 0.00001..36500",
    doc = "How long audit entries are kept (fractions allowed: `0.5` is 12 hours); older ones are pruned at most hourly ([operations.md](operations.md#audit))." },
} })

return {}
