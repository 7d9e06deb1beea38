-- chatgw.known: the names of the breakers and limiters made through chatgw.breaker and
-- chatgw.limiter, with the options last given, in shared dictionaries (every state sees them,
-- a reload keeps them). The C side keeps each by name but cannot list them; the admin page
-- lists these (lua/chatgw/admin/state.lua) and reopens each by its name and options, which
-- changes nothing (the same options applied again).
local chatgw = chatgw
local json = require "chatgw.json"

local type, pairs, ipairs, sort = type, pairs, ipairs, table.sort

local M = {}
M.MAX = 2000 -- names listed per kind (the dictionary drops the least recently made beyond 1 MiB)

local dicts = {}
local function dict(kind)
  local d = dicts[kind]
  if not d then
    d = chatgw.shared("chatgw.known." .. kind)
    dicts[kind] = d
  end
  return d
end

-- kind: "breaker" or "limiter"; opts: the table given (only its numbers are kept).
function M.remember(kind, name, opts)
  if type(name) ~= "string" then return end
  local o = {}
  for k, v in pairs(opts) do if type(v) == "number" and type(k) == "string" then o[k] = v end end
  local s = json.encode(o)
  local d = dict(kind)
  if d:get(name) ~= s then d:set(name, s) end
end

-- { {name =, opts = {...}}, ... } by name.
function M.list(kind)
  local out = {}
  for _, name in ipairs(dict(kind):keys(M.MAX)) do
    local s = dict(kind):get(name)
    local o = s and json.decode(s)
    if type(o) == "table" then
      o.name = name
      out[#out + 1] = { name = name, opts = o }
    end
  end
  sort(out, function(a, b) return a.name < b.name end)
  return out
end

return M
