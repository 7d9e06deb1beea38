-- chatgw.admin.live: the admin page's live view over the WebSocket API. Every INTERVAL_MS,
-- when a connection holds the WebSocket scope admin.read, the admin.state event (what GET
-- /v1/admin/state answers) is broadcast to those connections only; nothing is built while none
-- is connected. A gateway change pushes one at once (changed(), a few ms later, so several
-- changes in a row make one event).
local chatgw = chatgw
local state = require "chatgw.admin.state"

local M = {}
M.SCOPE = "admin.read"
M.INTERVAL_MS = 2000

local pending = false

local function watchers()
  return #chatgw.ws.list({ scope = M.SCOPE }) > 0
end

function M.push(reason)
  if not watchers() then return 0 end
  local s = state.build()
  s.reason = reason
  return chatgw.ws.broadcast("admin.state", s, { scope = M.SCOPE })
end

-- Something the page shows changed (a gateway added, renamed, deleted): an event soon.
function M.changed(reason)
  if pending then return end
  pending = true
  chatgw.spawn(function()
    chatgw.sleep(50)
    pending = false
    M.push(reason or "changed")
  end)
end

-- At each state's start: the timer (stopped by the next reload, which starts its own).
function M.start()
  pending = false
  chatgw.every(M.INTERVAL_MS, function() M.push("tick") end)
  return true
end

return M
