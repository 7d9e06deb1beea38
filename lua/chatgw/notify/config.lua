-- chatgw.notify.config: the `notify:` config section. Pure: the docs spec loads it.
local config = require "chatgw.config"

local int = config.int

config.register_section("notify", { type = "map", fields = {
  allow_cidrs = { type = "list", items = { type = "string", min_len = 2, max_len = 64 },
    doc = "Peers allowed on the notify listener, replacing the built-in internal ranges (loopback, 10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16, fc00::/7, fe80::/10)." },
  require_priority = { type = "boolean", default = false,
    doc = "`true`: a notify without a priority is not sent (`missing_gate_meta`, as seed 000); default: it is delivered." },
  dedupe_window_s = int(300, 1, 604800, "How long a `dedupe_key` keeps a second notify to the same chat from being sent (a request's `dedupe_window_s` wins)."),
  wait_ms = int(10000, 100, 120000, "How long `wait: true` waits for the deliveries."),
  image_dirs = { type = "list", items = { type = "string", min_len = 1, max_len = 1023 },
    doc = "Directories `image_path` must lie in (after symlinks); default: `<data_dir>/images`. Relative ones are beside chatgw.yml." },
  image_max_bytes = int(10485760, 1024, 52428800, "Largest image fetched from `image_url`."),
  registry_path = { type = "string", min_len = 1, max_len = 1023,
    doc = "The projects registry; `PROJECTS_REGISTRY_PATH` wins; default `projects.yml` beside chatgw.yml. Relative paths are beside chatgw.yml." },
  accounts = { type = "map", fields = {
    telegram = { type = "string", default = "default", min_len = 1, max_len = 64, doc = "The Telegram account notify sends as." },
    feishu = { type = "string", default = "default", min_len = 1, max_len = 64, doc = "The Feishu account notify sends as." },
  } },
  digest = { type = "map", fields = {
    threshold = int(0, 0, 100000, "More notifies than this to one chat within `window_s` are folded into one digest message (0: off)."),
    window_s = int(60, 5, 3600, "The digest window."),
  } },
} })

return {}
