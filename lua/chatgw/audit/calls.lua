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

-- The row keys of the calls seen, by their parts, so that the common call makes no string and no
-- table: cache[kind][token][address][route][method][status]. Emptied when it holds MAX_KEYS (a
-- client choosing addresses cannot grow it).
local MAX_KEYS = 4096
local cache, nkeys = {}, 0
local function sub(t, k)
  local s = t[k]
  if not s then
    s = {}
    t[k] = s
  end
  return s
end
local function key_of(kind, name, addr, label, method, status) -- status: false for notify.call
  local by_status = sub(sub(sub(sub(sub(cache, kind), name), addr), label), method)
  local k = by_status[status]
  if not k then
    if nkeys >= MAX_KEYS then
      cache, nkeys = {}, 0
      return key_of(kind, name, addr, label, method, status)
    end
    nkeys = nkeys + 1
    k = status and concat({ kind, name, addr, label, method, status }, "\0")
      or concat({ kind, name, addr, label, method }, "\0")
    by_status[status] = k
  end
  return k
end

function M.hook(audit)
  return function(req, route, who, status)
    local scope = route.scope
    if scope == nil or scope == "admin" then
      local label = route.label or (req.method .. " " .. req.path)
      local addr = req.remote_addr
      audit.count_call("admin.call", key_of("admin.call", who.name, addr or "", label, req.method, status),
        who.name, addr, label, req.method, status)
    elseif scope == "notify" then
      local label = route.label or (req.method .. " " .. req.path)
      local addr = req.remote_addr
      audit.count_call("notify.call", key_of("notify.call", who.name, addr or "", label, req.method, false),
        who.name, addr, label, req.method, nil)
    end
  end
end

return M
