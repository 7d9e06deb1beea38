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
    health_flags = function() return false, false end,
    req_header = function() return false end,
    req_headers = function() return nil end,
    req_new = function() return nil end,
  }
end
chatgw._ffi = nil

local host = ffi.cast("const void *", P.host)
local c_auth = ffi.cast("int (*)(const void *, const char *, size_t)", P.auth)
local c_co_label = ffi.cast("void (*)(const char *, const char *)", P.co_label)
local c_incr = ffi.cast("int (*)(const void *, void *, const char *, size_t, double, int, double, double *)",
  P.shared_incr)

local c_header = ffi.cast("const char *(*)(uint64_t, const char *, size_t, size_t *, int *)", P.req_header)
local c_header_at = ffi.cast("int (*)(uint64_t, size_t, const char **, size_t *, const char **, size_t *)",
  P.req_header_at)

ffi.cdef[[
typedef struct {
  const char *method, *path, *query, *body, *remote_addr, *id, *listener;
  size_t method_len, path_len, query_len, body_len, remote_len, id_len, listener_len;
  int remote_port;
} chatgw_req_view_t;
]]
local c_view = ffi.cast("const chatgw_req_view_t *(*)(uint64_t)", P.req_view)

local M = {}

-- ---- a running request's fields and headers (runtime/vm/request.c): h is the handle C gave the dispatcher ----

local vlen, count = ffi.new("size_t[1]"), ffi.new("int[1]")
local np, nl, vp, vl = ffi.new("const char *[1]"), ffi.new("size_t[1]"), ffi.new("const char *[1]"),
  ffi.new("size_t[1]")
local fstring = ffi.string

-- The request table of the running request h as C built it before (runtime/vm/request.c), without
-- its headers; nil when h names none.
function M.req_new(h)
  local v = c_view(h)
  if v == nil then return nil end
  return {
    method = fstring(v.method, v.method_len),
    path = fstring(v.path, v.path_len),
    query_string = fstring(v.query, v.query_len),
    body = fstring(v.body, v.body_len),
    remote_addr = fstring(v.remote_addr, v.remote_len),
    remote_port = v.remote_port,
    id = fstring(v.id, v.id_len),
    listener = fstring(v.listener, v.listener_len),
    -- room for what the dispatcher and the lazy fields add (no rehash on the way)
    headers = nil, query = nil, params = nil, auth = nil, json = nil,
  }
end

-- The value of header name (lower case), nil when absent, false when it repeats (then its value
-- is the values joined, from the table) or the request is answered.
function M.req_header(h, name)
  local p = c_header(h, name, #name, vlen, count)
  local n = count[0]
  if n == 1 then return fstring(p, vlen[0]) end
  if n == 0 then return nil end
  return false
end

-- All its headers as req.headers has them (names in lower case, repeated ones joined with ", "),
-- or nil when the request is answered.
function M.req_headers(h)
  local t, i = {}, 0
  while true do
    local r = c_header_at(h, i, np, nl, vp, vl)
    if r ~= 1 then
      if r < 0 then return nil end
      return t
    end
    local k, v = fstring(np[0], nl[0]), fstring(vp[0], vl[0])
    local old = t[k]
    if old then t[k] = old .. ", " .. v else t[k] = v end
    i = i + 1
  end
end

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

-- chatgw.time() and chatgw.now() (no arguments: nothing to check), for handlers too.
local c_time = ffi.cast("double (*)(void)", P.time)
local c_now = ffi.cast("double (*)(void)", P.now)
function M.time() return c_time() end
function M.now() return c_now() end
chatgw.time, chatgw.now = M.time, M.now

-- The plain /health's reload and TLS checks: reload_failed, tls_failed (booleans).
local c_health_flags = ffi.cast("int (*)(const void *)", P.health_flags)
function M.health_flags()
  local f = c_health_flags(host)
  return f % 2 == 1, f >= 2
end

-- d:get(key) through the FFI (a non-empty string key; anything else through the C method).
do
  local methods, dict_ptr = P.shared_methods, P.shared_ptr
  local slow_get = methods.get
  local c_get = ffi.cast("int (*)(const void *, void *, const char *, size_t, const char **, size_t *, double *)",
    P.shared_get)
  local ptrs = setmetatable({}, { __mode = "k" })
  local sp, sl, num = ffi.new("const char *[1]"), ffi.new("size_t[1]"), ffi.new("double[1]")
  methods.get = function(self, key)
    local d = ptrs[self]
    if d == nil then
      local p = dict_ptr(self)
      if p == nil then return slow_get(self, key) end
      d = ffi.cast("void *", p)
      ptrs[self] = d
    end
    if type(key) ~= "string" or key == "" then return slow_get(self, key) end
    local t = c_get(host, d, key, #key, sp, sl, num)
    if t == 1 then return fstring(sp[0], sl[0]) end
    if t == 2 then return num[0] end
    if t == 0 then return nil end
    if t == 3 then return num[0] ~= 0 end
    return slow_get(self, key)
  end
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

-- lim:take(key[, n]): a string key through the FFI; a number key, a bad n, out of memory and
-- every other case through the C method (its checks and messages). Taken or refused, the answer
-- is the C method's: true, or false and the retry in whole milliseconds.
do
  local methods, lim_ptr = P.limiter_methods, P.limiter_ptr
  local slow_take = methods.take
  local c_take = ffi.cast("int (*)(void *, const char *, size_t, double, double *)", P.limiter_take)
  local ptrs = setmetatable({}, { __mode = "k" }) -- limiter object -> its C limiter
  local retry = ffi.new("double[1]")
  -- lim:method without a lua_CFunction call (C's __index stays for lim.name and anything else)
  local mt = P.limiter_mt
  local c_index = mt.__index
  mt.__index = function(self, k)
    local m = methods[k]
    if m ~= nil then return m end
    return c_index(self, k)
  end
  methods.take = function(self, key, n)
    local l = ptrs[self]
    if l == nil then
      local p = lim_ptr(self)
      if p == nil then return slow_take(self, key, n) end
      l = ffi.cast("void *", p)
      ptrs[self] = l
    end
    if type(key) ~= "string" or (n ~= nil and type(n) ~= "number") then return slow_take(self, key, n) end
    local r = c_take(l, key, #key, n or 1, retry)
    if r == 1 then return true end
    if r == 0 then return false, retry[0] end
    return slow_take(self, key, n)
  end
end

return M
