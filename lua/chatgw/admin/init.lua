-- chatgw.admin: the admin page (/admin, issue 16) and the data API it reads.
--
--   GET  /admin, /admin/                   the page (public: it holds no secret), no-store, CSP
--   GET  /admin/assets/:file               its files by hashed name, cached a year (admin/assets.lua)
--   GET  /v1/admin/state                   breakers, limiters, exec pools, outbox, tasks, loops
--   GET  /v1/admin/outbox/failed           failed messages (admin/outbox.lua)
--   POST /v1/admin/outbox/:id/retry|drop
--   the admin.state WebSocket event every 2 s to connections holding admin.read (admin/live.lua)
--
-- The page asks for a token (kept in the tab's sessionStorage), reads GET /v1/whoami and shows
-- what the token's scopes open; everything else it shows comes from the API (/health,
-- /v1/channels, /v1/gateways, /v1/audit) with that token. See docs/registry.md "Admin page".
local assets = require "chatgw.admin.assets"
local outbox = require "chatgw.admin.outbox"
local state = require "chatgw.admin.state"
local live = require "chatgw.admin.live"

local M = { live = live, assets = assets }

function M.install(R)
  local function route(method, path, fn, public)
    R.register_builtin_route({ method = method, path = path, fn = fn, public = public or false,
      scope = not public and "admin" or nil, label = method .. " " .. path })
  end
  route("GET", "/admin", assets.page, true)
  route("GET", "/admin/", assets.page, true)
  route("GET", "/admin/assets/:file", assets.asset, true)
  route("GET", "/v1/admin/state", function() return state.build() end)
  route("GET", "/v1/admin/outbox/failed", outbox.failed)
  route("POST", "/v1/admin/outbox/:id/retry", outbox.retry)
  route("POST", "/v1/admin/outbox/:id/drop", outbox.drop)
  R.register_start("admin", function()
    if chatgw._mode == "test" then return true end
    return live.start()
  end)
end

return M
