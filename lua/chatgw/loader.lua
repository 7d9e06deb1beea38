-- Loads every DIR/*.lua handler module and validates the table it returns against the
-- registry of known keys. Problems come back as "file:line: message" strings.
local Router = require "chatgw.router"

local M = {}

-- Known handler keys -> validator(value, ctx) returning nil or a problem message (ctx has
-- file, source, line_of(needle)). Later features add keys with M.register_key.
local validators = {}
local key_order = {}

function M.register_key(name, validator)
  assert(type(name) == "string" and type(validator) == "function", "register_key(name, fn)")
  if not validators[name] then key_order[#key_order + 1] = name end
  validators[name] = validator
end

-- Checks of a whole handler table, after its keys (keys that only make sense together, like
-- commands and on_command): fn(mod, ctx) reports through ctx.problem(line, msg).
local file_checks = {}
function M.register_check(fn)
  assert(type(fn) == "function", "register_check(fn)")
  file_checks[#file_checks + 1] = fn
end


local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a") or ""
  f:close()
  return s
end

local function line_at(source, pos)
  local line = 1
  for _ in source:sub(1, pos):gmatch("\n") do line = line + 1 end
  return line
end

-- Line where needle first appears in source (a key or route string), or nil.
local function line_of(source, needle)
  local pos = source:find(needle, 1, true)
  return pos and line_at(source, pos) or nil
end

-- Line of a handler key: `key =` or `["key"] =`, else line 1.
local function key_line(ctx, key)
  local pos = ctx.source:find("%f[%w_]" .. key:gsub("%p", "%%%0") .. "%s*=")
  if pos then return line_at(ctx.source, pos) end
  return line_of(ctx.source, '["' .. key .. '"]') or line_of(ctx.source, "['" .. key .. "']") or 1
end

M.key_line = key_line -- for checks of other modules

M.line_of = line_of

local function fn_line(fn, fallback)
  local info = type(fn) == "function" and debug.getinfo(fn, "S")
  return info and info.linedefined > 0 and info.linedefined or fallback
end

M.register_key("on_shutdown", function(v)
  if type(v) ~= "function" then return "on_shutdown must be a function, got " .. type(v) end
end)

M.register_key("name", function(v)
  if type(v) ~= "string" or v == "" then return "name must be a non-empty string" end
end)

local ROUTE_OPTIONS = { public = "boolean", listener = "string", scope = "string" }

-- Routes are checked here and collected by M.load (they need every file to find duplicates).
M.register_key("routes", function(v, ctx)
  if type(v) ~= "table" then return "routes must be a table, got " .. type(v) end
  for key, spec in pairs(v) do
    local line = type(key) == "string" and line_of(ctx.source, key) or nil
    if type(key) ~= "string" then
      ctx.problem(nil, "route keys must be strings like 'GET /path'")
    else
      local method, path, segs = Router.parse_key(key)
      if not method then
        ctx.problem(line, path)
      else
        local fn, opts = spec, {}
        if type(spec) == "table" then
          fn = spec[1]
          for k, val in pairs(spec) do
            if k ~= 1 then
              if not ROUTE_OPTIONS[k] then
                ctx.problem(line, "route '" .. key .. "': unknown option '" .. tostring(k) .. "' (known: listener, public, scope)")
              elseif type(val) ~= ROUTE_OPTIONS[k] then
                ctx.problem(line, "route '" .. key .. "': " .. k .. " must be a " .. ROUTE_OPTIONS[k] .. ", got " .. type(val))
              elseif k == "scope" and not require("chatgw.auth").KNOWN[val] then
                ctx.problem(line, "route '" .. key .. "': scope must be one of "
                  .. table.concat(require("chatgw.auth").SCOPES, ", ") .. ", got '" .. val .. "'")
              else
                opts[k] = val
              end
            end
          end
        end
        if type(fn) ~= "function" then
          ctx.problem(line, "route '" .. key .. "' must be a function or { fn, public = ..., listener = ..., scope = ... }")
        else
          ctx.routes[#ctx.routes + 1] = { method = method, path = path, segs = segs, fn = fn,
            public = opts.public or false, listener = opts.listener or "main", scope = opts.scope or "admin",
            label = key, file = ctx.file, line = line or fn_line(fn, 1) }
        end
      end
    end
  end
end)

local function short_error(e)
  e = tostring(e)
  return (e:gsub("\nstack traceback:.*$", ""))
end

-- Loads one file. Returns the handler table (or nil) after adding problems to `problems`.
local load_file

-- The file's problems in line order (routes are a hash: pairs order is not the file's); a
-- stable sort, so the problems of one line keep the order they were found in.
local function load_one(path, problems, routes)
  local mine = {}
  local mod = load_file(path, mine, routes)
  local keyed = {}
  for i, p in ipairs(mine) do
    keyed[i] = { p = p, i = i, line = tonumber(p:sub(#path + 2):match("^(%d+):")) or 0 }
  end
  table.sort(keyed, function(a, b)
    if a.line ~= b.line then return a.line < b.line end
    return a.i < b.i
  end)
  for _, k in ipairs(keyed) do problems[#problems + 1] = k.p end
  return mod
end

function load_file(path, problems, routes)
  local label = chatgw._co_label
  if label then label("loading", path) end
  local chunk, err = loadfile(path)
  if not chunk then
    problems[#problems + 1] = err
    return nil
  end
  -- The chunk runs in the loading coroutine, so it may call chatgw.sleep and friends.
  local ok, mod = xpcall(chunk, debug.traceback)
  if not ok then
    problems[#problems + 1] = short_error(mod)
    return nil
  end
  local source = read_file(path)
  if type(mod) ~= "table" then
    problems[#problems + 1] = ("%s:%d: a handler must return a table, got %s"):format(path,
      line_of(source, "return") or 1, type(mod))
    return nil
  end
  local ctx = { file = path, source = source, routes = routes }
  function ctx.problem(line, msg)
    problems[#problems + 1] = ("%s:%d: %s"):format(path, line or 1, msg)
  end
  local keys = {}
  for k in pairs(mod) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local validate = validators[k]
    if not validate then
      local known = {}
      for _, name in ipairs(key_order) do known[#known + 1] = name end
      table.sort(known)
      ctx.problem(key_line(ctx, k), ("unknown key '%s' (known: %s)"):format(k, table.concat(known, ", ")))
    else
      local msg = validate(mod[k], ctx)
      if msg then ctx.problem(key_line(ctx, k), msg) end
    end
  end
  ctx.name = mod.name or path:match("([^/]+)%.lua$")
  for _, check in ipairs(file_checks) do check(mod, ctx) end
  return mod
end

-- A handler's own modules: `require "lib.util"` finds DIR/lib/util.lua, and `require "util"`
-- DIR/../lib/util.lua, whatever the working directory. They go after the runtime's own
-- directory (so chatgw.* cannot be shadowed) and before the system's.
local function add_module_dirs(dir)
  local abs = chatgw.fs and chatgw.fs.realpath(dir) or dir
  local mine = {}
  for _, d in ipairs({ abs, abs .. "/../lib" }) do
    mine[#mine + 1] = d .. "/?.lua"
    mine[#mine + 1] = d .. "/?/init.lua"
  end
  local own = package.searchpath("chatgw.loader", package.path)
  local own_dir = own and own:match("^(.*)/chatgw/loader%.lua$")
  local head, rest = {}, {}
  for entry in package.path:gmatch("[^;]+") do
    local known = false
    for _, m in ipairs(mine) do known = known or m == entry end
    if not known then
      if own_dir and entry:sub(1, #own_dir + 1) == own_dir .. "/" and #rest == 0 then
        head[#head + 1] = entry
      else
        rest[#rest + 1] = entry
      end
    end
  end
  for _, m in ipairs(mine) do head[#head + 1] = m end
  for _, e in ipairs(rest) do head[#head + 1] = e end
  package.path = table.concat(head, ";")
end

-- Loads dir/*.lua in name order. Returns handlers, routers_by_listener, problems.
-- listeners: set of configured listener names; builtin(router, listener) adds built-in routes.
function M.load(dir, listeners, builtin)
  local problems, handlers, routes = {}, {}, {}
  local files, err = chatgw._listdir(dir)
  if not files then return nil, nil, { err } end
  add_module_dirs(dir)
  for _, name in ipairs(files) do
    local path = dir:gsub("/+$", "") .. "/" .. name
    local mod = load_one(path, problems, routes)
    if mod then handlers[#handlers + 1] = { file = path, name = mod.name or name:gsub("%.lua$", ""), module = mod } end
  end
  local routers = {}
  for l in pairs(listeners) do
    routers[l] = Router.new()
    builtin(routers[l], l)
  end
  -- Stable order so duplicate reports always name the same pair.
  table.sort(routes, function(a, b)
    if a.file ~= b.file then return a.file < b.file end
    return a.line < b.line
  end)
  for _, r in ipairs(routes) do
    local router = routers[r.listener]
    if not router then
      problems[#problems + 1] = ("%s:%d: route '%s': no listener named '%s' in the config"):format(
        r.file, r.line, r.label, r.listener)
    else
      local ok, other = router:add(r)
      if not ok then
        local where = other.file and ("%s:%d"):format(other.file, other.line) or other.owner
          or "the runtime (built in)"
        problems[#problems + 1] = ("%s:%d: route '%s' is already declared by %s"):format(
          r.file, r.line, r.label, where)
      end
    end
  end
  return handlers, routers, problems
end

return M
