-- chatgw.cffi: the per-request C calls of the runtime's own Lua layer through LuaJIT's FFI, as
-- lua-resty-core does for nginx (docs/architecture.md, "FFI hot paths"). A lua_CFunction call
-- ends a JIT trace (the trace "stitches" around it); an FFI call is compiled into it.
--
-- The executable exports no symbols, so ffi.C cannot find these functions: C hands their
-- addresses over as lightuserdata in chatgw._ffi (runtime/vm/lib_core.c, lib_shared.c), this
-- module casts them to function pointers and removes chatgw._ffi. It is required before the
-- sandbox takes ffi from handlers (lua/chatgw/sandbox.lua), so only the runtime's Lua layer
-- holds them; the C side checks its arguments besides.
local ffi = require "ffi"
local chatgw = chatgw
local type, tostring, setmetatable = type, tostring, setmetatable

local P = chatgw and chatgw._ffi
if type(P) ~= "table" then
  -- A state without the bindings (a unit test reading the config schema): the plain functions.
  local c = chatgw or {}
  return {
    auth = function(h) return c._auth and c._auth(h) or false end,
    co_label = function(what, file) if c._co_label then c._co_label(what, file) end end,
  }
end
chatgw._ffi = nil

local host = ffi.cast("const void *", P.host)
local c_auth = ffi.cast("int (*)(const void *, const char *, size_t)", P.auth)
local c_co_label = ffi.cast("void (*)(const char *, const char *)", P.co_label)
local c_incr = ffi.cast("int (*)(const void *, void *, const char *, size_t, double, int, double, double *)",
  P.shared_incr)

local M = {}

-- chatgw._auth(header): the gateway token's bearer check (the header as a string, or nil).
local lua_auth = chatgw._auth
function M.auth(header)
  if type(header) ~= "string" then return lua_auth(header) end
  return c_auth(host, header, #header) ~= 0
end

-- chatgw._co_label(what[, file]): what the running coroutine does (the watchdog's message).
local lua_co_label = chatgw._co_label
function M.co_label(what, file)
  if type(what) ~= "string" or (file ~= nil and type(file) ~= "string") then
    return lua_co_label(what, file) -- its error, or its conversion of a number
  end
  c_co_label(what, file)
end

-- d:incr(key, by[, init[, init_ttl_ms]]): the common call (string key, number by, number or no
-- init, no ttl) through the FFI; anything else, and every failure, through the C method (its
-- checks and messages; a failed incr changes nothing, so asking again answers the same).
do
  local methods, dict_ptr = P.shared_methods, P.shared_ptr
  local slow_incr = methods.incr
  local ptrs = setmetatable({}, { __mode = "k" }) -- dict object -> its C dictionary
  local out = ffi.new("double[1]")
  methods.incr = function(self, key, by, init, ttl)
    local d = ptrs[self]
    if d == nil then
      local p = dict_ptr(self)
      if p == nil then return slow_incr(self, key, by, init, ttl) end
      d = ffi.cast("void *", p)
      ptrs[self] = d
    end
    if type(key) ~= "string" or key == "" or type(by) ~= "number" or ttl ~= nil then
      return slow_incr(self, key, by, init, ttl)
    end
    local has_init = 0
    if init ~= nil then
      if type(init) ~= "number" then return slow_incr(self, key, by, init, ttl) end
      has_init = 1
    end
    if c_incr(host, d, key, #key, by, has_init, init or 0, out) == 0 then return out[0] end
    return slow_incr(self, key, by, init, ttl)
  end
end

return M
