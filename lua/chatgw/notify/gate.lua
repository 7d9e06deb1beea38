-- chatgw.notify.gate: seed 000's priority gate. Pure.
--
--   local g = gate.new(levels)      -- levels low to high; default LOW, MEDIUM, HIGH, CRITICAL
--   g:normalize(v [, fallback])     -> "HIGH" | nil (unknown or absent: nil)
--   g:info(body)                    -> { skip_gate, delivery_priority, global_min_priority,
--                                        channel_min_priority } | nil (no known priority)
--   g:decide(info, override, require_priority) -> { allowed, effective_min, skip_reason }
--
-- The delivery priority is meta.delivery_priority, else body.delivery_priority, else
-- body.priority; global_min_priority (default the lowest) and channel_min_priority (default the
-- global one) come from meta or the body. Effective minimum = the highest of global, channel and
-- the chat's override; delivered when the priority is at least that (below: skip_reason
-- "below_min_priority"). meta.skip_gate delivers with skip_reason "skip_gate". A notify with no
-- (known) priority: delivered (chatgw departs from the seed, which skips it as
-- "missing_gate_meta"; notify.require_priority: true restores that).
local type, tostring = type, tostring

local M = {}

M.DEFAULT = { "LOW", "MEDIUM", "HIGH", "CRITICAL" }

local Gate = {}
Gate.__index = Gate

-- CHAT_GATEWAY_PRIORITY_LEVELS (or GW_PRIORITY_LEVELS): names separated by commas or spaces
function M.levels_from(text)
  if type(text) ~= "string" then return M.DEFAULT end
  local out, seen = {}, {}
  for name in text:gmatch("[^%s,]+") do
    name = name:upper()
    if not seen[name] then out[#out + 1] = name; seen[name] = true end
  end
  return #out > 0 and out or M.DEFAULT
end

function M.new(levels)
  levels = levels or M.DEFAULT
  local rank = {}
  for i, l in ipairs(levels) do rank[l] = i end
  return setmetatable({ levels = levels, rank = rank, lowest = levels[1] }, Gate)
end

function Gate:normalize(v, fallback)
  if type(v) == "string" or type(v) == "number" then
    local s = tostring(v):match("^%s*(.-)%s*$"):upper()
    if self.rank[s] then return s end
  end
  if fallback ~= nil then return self:normalize(fallback) end
  return nil
end

function Gate:info(body)
  local meta = type(body.meta) == "table" and body.meta or {}
  local skip = meta.skip_gate == true or (meta.skip_gate ~= nil and meta.skip_gate ~= false
    and meta.skip_gate ~= 0 and meta.skip_gate ~= "" and type(meta.skip_gate) ~= "userdata")
  local raw = meta.delivery_priority
  if raw == nil then raw = body.delivery_priority end
  if raw == nil then raw = body.priority end
  local p = self:normalize(raw)
  if not p then return skip and { skip_gate = true } or nil end
  local gmin = meta.global_min_priority
  if gmin == nil then gmin = body.global_min_priority end
  gmin = self:normalize(gmin, self.lowest) or self.lowest
  local cmin = meta.channel_min_priority
  if cmin == nil then cmin = body.channel_min_priority end
  cmin = self:normalize(cmin, gmin) or gmin
  return { skip_gate = skip, delivery_priority = p, global_min_priority = gmin, channel_min_priority = cmin }
end

function Gate:max(...)
  local best
  for i = 1, select("#", ...) do
    local l = self:normalize((select(i, ...)))
    if l and (not best or self.rank[l] > self.rank[best]) then best = l end
  end
  return best or self.lowest
end

function Gate:decide(info, override, require_priority)
  if not info then
    if require_priority then return { allowed = false, skip_reason = "missing_gate_meta" } end
    return { allowed = true } -- chatgw: no priority at all is delivered
  end
  if info.skip_gate then return { allowed = true, skip_reason = "skip_gate" } end
  local eff = self:max(info.global_min_priority, info.channel_min_priority, override)
  local ok = self.rank[info.delivery_priority] >= self.rank[eff]
  return { allowed = ok, effective_min = eff, skip_reason = (not ok) and "below_min_priority" or nil }
end

return M
