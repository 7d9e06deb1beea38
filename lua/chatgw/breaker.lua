-- chatgw.breaker: circuit breakers. The state lives in C (runtime/core/breaker.c, shared by name and
-- kept across reloads); this file adds br:call(fn, ...), which runs fn (it may wait) and
-- records its outcome.
--
--   local br = chatgw.breaker{ name = "openai", failures = 5, open_ms = 30000,
--                              is_failure = function(res, err) return not res or res.status >= 500 end }
--   local res, err, retry_after_ms = br:call(chatgw.http.request, { url = ... })
--
-- A failure is an error raised by fn (recorded, then raised again) or is_failure(...) being
-- true for fn's results; without is_failure, fn returning nil or false (the nil, "code: ..."
-- convention) is a failure. A result of nil, "cancelled: ..." is neither (the call does not
-- count). When the breaker is open, call returns nil, "open: ...", retry_after_ms without
-- calling fn. See docs/lua-api.md "Circuit breakers".
local chatgw = chatgw
local known = require "chatgw.known"
local new_c = chatgw._breaker
local type, error, pcall, setmetatable, getmetatable, tostring, find = type, error, pcall,
    setmetatable, getmetatable, tostring, string.find

local Breaker = {}
Breaker.__index = Breaker

local function verdict(self, ok, ...)
  if not ok then return "failure" end
  local first, second = ...
  if first == nil and type(second) == "string" and find(second, "^cancelled:") then
    return "ignore"
  end
  local is_failure = self.is_failure
  if is_failure then
    local ok2, failed = pcall(is_failure, ...)
    if not ok2 then
      error("br:call: is_failure raised: " .. tostring(failed), 0)
    end
    return failed and "failure" or "success"
  end
  if first == nil or first == false then return "failure" end
  return "success"
end

local function finish(self, ticket, ok, ...)
  local okv, v = pcall(verdict, self, ok, ...)
  if not okv then
    self._c:record(ticket, "ignore")
    error(v, 0)
  end
  self._c:record(ticket, v)
  if not ok then error((...), 0) end
  return ...
end

function Breaker:call(fn, ...)
  if type(self) ~= "table" or getmetatable(self) ~= Breaker then
    error("br:call: self must be a breaker (call it as br:call(fn, ...))", 2)
  end
  if type(fn) ~= "function" then
    error("br:call: fn must be a function, got " .. type(fn), 2)
  end
  local admitted, ticket, retry_after = self._c:acquire()
  if not admitted then return nil, ticket, retry_after end
  return finish(self, ticket, pcall(fn, ...))
end

function Breaker:state() return self._c:state() end
function Breaker:stats() return self._c:stats() end
function Breaker:reset() return self._c:reset() end
function Breaker:trip() return self._c:trip() end

-- For code that is not a single function call: ticket = br:enter() (nil, "open: ...",
-- retry_after_ms when rejected), then br:leave(ticket, ok) with ok true, false or nil (ignore).
function Breaker:enter()
  local admitted, ticket, retry_after = self._c:acquire()
  if not admitted then return nil, ticket, retry_after end
  return ticket
end

function Breaker:leave(ticket, ok)
  if type(ticket) ~= "number" then error("br:leave: ticket must be the number br:enter returned", 2) end
  self._c:record(ticket, ok == nil and "ignore" or (ok and "success" or "failure"))
end

function chatgw.breaker(opts)
  if type(opts) ~= "table" then
    error("chatgw.breaker: opts must be a table, got " .. type(opts), 2)
  end
  local is_failure = opts.is_failure
  if is_failure ~= nil and type(is_failure) ~= "function" then
    error("chatgw.breaker: is_failure must be a function, got " .. type(is_failure), 2)
  end
  local ok, c = pcall(new_c, opts)
  if not ok then error(c, 2) end
  known.remember("breaker", c.name, opts) -- listed by the admin page (lua/chatgw/known.lua)
  return setmetatable({ _c = c, name = c.name, is_failure = is_failure }, Breaker)
end

return Breaker
