-- chatgw.audit.calls: which API calls the ledger counts (the runtime's call hook, after each
-- request with a token that is known).
--
--   admin.call   a call of an admin-scope route (built-in or a handler route without a scope),
--                by any token, the gateway token too, also when refused (403): one counter row
--                per token, address, route, status and hour
--   notify.call  a call of a notify-scope route (/v1/notify/*, /v1/outbox/:id): one counter row
--                per token, address, route and hour
local M = {}

local concat = table.concat

function M.hook(audit)
  return function(req, route, who, status)
    local scope = route.scope
    if scope == nil or scope == "admin" then
      local label = route.label or (req.method .. " " .. req.path)
      local addr = req.remote_addr
      audit.count("admin.call", { who = who.name, addr = addr, what = label,
        detail = { method = req.method, route = label, status = status } },
        concat({ "admin.call", who.name, addr or "", label, req.method, status }, "\0"))
    elseif scope == "notify" then
      local label = route.label or (req.method .. " " .. req.path)
      local addr = req.remote_addr
      audit.count("notify.call", { who = who.name, addr = addr, what = label,
        detail = { method = req.method, route = label } },
        concat({ "notify.call", who.name, addr or "", label, req.method }, "\0"))
    end
  end
end

return M
