-- Route table: "METHOD /path/:param" keys, per listener. Static paths are a hash lookup;
-- paths with :params are matched segment by segment. HEAD falls back to GET.
local M = {}
M.__index = M

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true,
  OPTIONS = true }

local find, sub, gmatch = string.find, string.sub, string.gmatch
local unescape = require("chatgw.url").unescape

-- Parses "POST /v1/items/:id" into method, path, segments (nil for a static path).
-- Returns nil, reason on a malformed key.
function M.parse_key(key)
  local method, path = key:match("^(%u+) (/%S*)$")
  if not method then return nil, "route key must look like 'GET /path', got '" .. key .. "'" end
  if not METHODS[method] then return nil, "unknown HTTP method '" .. method .. "' in route '" .. key .. "'" end
  if not find(path, ":", 1, true) then return method, path, nil end
  local segs, seen = {}, {}
  for seg in gmatch(sub(path, 2), "[^/]*") do
    if sub(seg, 1, 1) == ":" then
      local name = sub(seg, 2)
      if not name:match("^[%a_][%w_]*$") then
        return nil, "bad parameter name ':" .. name .. "' in route '" .. key .. "'"
      end
      if seen[name] then return nil, "parameter ':" .. name .. "' repeats in route '" .. key .. "'" end
      seen[name] = true
      segs[#segs + 1] = { param = name }
    else
      segs[#segs + 1] = { lit = seg }
    end
  end
  return method, path, segs
end

function M.new()
  return setmetatable({ static = {}, dynamic = {} }, M)
end

-- route: { method, path, segs, fn, public, label, file, line }. Returns nil, existing route
-- when the same method+path is already taken.
function M:add(route)
  if route.segs then
    for _, r in ipairs(self.dynamic) do
      if r.path == route.path and r.methods[route.method] then return nil, r.methods[route.method] end
    end
    for _, r in ipairs(self.dynamic) do
      if r.path == route.path then
        r.methods[route.method] = route
        return true
      end
    end
    self.dynamic[#self.dynamic + 1] = { path = route.path, segs = route.segs,
      methods = { [route.method] = route } }
    return true
  end
  local by_method = self.static[route.path]
  if not by_method then
    by_method = {}
    self.static[route.path] = by_method
  end
  if by_method[route.method] then return nil, by_method[route.method] end
  by_method[route.method] = route
  return true
end

local function split_path(path)
  local parts, n = {}, 0
  for seg in gmatch(sub(path, 2), "[^/]*") do
    n = n + 1
    parts[n] = seg
  end
  return parts, n
end

local function allow_of(methods)
  local list = {}
  for m in pairs(methods) do list[#list + 1] = m end
  if methods.GET and not methods.HEAD then list[#list + 1] = "HEAD" end
  table.sort(list)
  return table.concat(list, ", ")
end

local function pick(methods, method)
  return methods[method] or (method == "HEAD" and methods.GET) or nil
end

-- Returns route, params (nil for a static path: no table made)  |  nil, nil, allow (path known,
-- method not)  |  nil (unknown path).
function M:match(method, path)
  local by_method = self.static[path]
  if by_method then
    local r = pick(by_method, method)
    if r then return r, nil end
  end
  local parts, n
  local allowed = by_method
  for _, d in ipairs(self.dynamic) do
    if not parts then parts, n = split_path(path) end
    local segs = d.segs
    if #segs == n then
      local params, ok = {}, true
      for i = 1, n do
        local s = segs[i]
        if s.lit then
          if s.lit ~= parts[i] then ok = false break end
        else
          if parts[i] == "" then ok = false break end
          params[s.param] = unescape(parts[i])
        end
      end
      if ok then
        local r = pick(d.methods, method)
        if r then return r, params end
        allowed = allowed or d.methods
      end
    end
  end
  if allowed then return nil, nil, allow_of(allowed) end
  return nil
end

return M
