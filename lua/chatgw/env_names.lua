-- chatgw.env_names: the CHAT_GATEWAY_* environment variables the gateway reads, and the boot
-- warning for one it does not (CHAT_GATEWAY_PROT: a typo that silently kept the default port).
local M = {}

-- Names read as they are (docs/config.md; seed 000's CHAT_GATEWAY_INTERNAL_URL is accepted and
-- ignored, docs/migrating.md). The exec and supervise limits come from chatgw.limits.
M.fixed = {
  "CHAT_GATEWAY_TOKEN", "CHAT_GATEWAY_HOST", "CHAT_GATEWAY_PORT", "CHAT_GATEWAY_DATA_DIR",
  "CHAT_GATEWAY_LOG_LEVEL", "CHAT_GATEWAY_POLICY_PATH", "CHAT_GATEWAY_PRIORITY_LEVELS",
  "CHAT_GATEWAY_RESPONSE_LANG", "CHAT_GATEWAY_INTERNAL_URL", "CHAT_GATEWAY_ENCRYPTION_KEY",
  "CHAT_GATEWAY_REDIS_URL",
}
-- Names with a module or channel in them: { Lua pattern, the name as the docs write it }.
M.patterns = { { "^CHAT_GATEWAY_OWNER_[%u%d_]+_ID$", "CHAT_GATEWAY_OWNER_<CHANNEL>_ID" } }

for _, s in ipairs(require("chatgw.limits").SETTINGS) do
  if s.env:find("<MODULE>", 1, true) then
    local pat = "^" .. s.env:gsub("<MODULE>", "\0"):gsub("_", "%%_"):gsub("%z", "[%%u%%d_]+") .. "$"
    M.patterns[#M.patterns + 1] = { pat, s.env }
  else
    M.fixed[#M.fixed + 1] = s.env
  end
end

local fixed_set = {}
for _, n in ipairs(M.fixed) do fixed_set[n] = true end

function M.known(name)
  if fixed_set[name] then return true end
  for _, p in ipairs(M.patterns) do
    if name:match(p[1]) then return true end
  end
  return false
end

-- Levenshtein distance, bounded work: names are short.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ai = a:byte(i)
    for j = 1, #b do
      local cost = ai == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The known name (or pattern) closest to name.
function M.nearest(name)
  local best, best_d
  local function try(candidate)
    local d = distance(name, candidate)
    if not best_d or d < best_d then best, best_d = candidate, d end
  end
  for _, n in ipairs(M.fixed) do try(n) end
  for _, p in ipairs(M.patterns) do try(p[2]) end
  return best
end

-- The unknown names set in this environment, each with its nearest known one.
function M.unknown(names)
  local out = {}
  for _, n in ipairs(names) do
    if not M.known(n) then out[#out + 1] = { name = n, nearest = M.nearest(n) } end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

return M
