-- chatgw.errtrace: the message handler of every xpcall around user code.
--
-- debug.traceback returns an error value that is not a string as it is, with no traceback,
-- so `error({ code = 1 })` used to be logged as "table: 0x...". Here any value becomes text
-- first (its __tostring, else JSON, else tostring), then gets the traceback. The same text
-- function serves coroutines that die in C (vm.c reads it from the registry).
local json = require "chatgw.json"
local type, tostring, pcall, getmetatable = type, tostring, pcall, getmetatable
local traceback = debug.traceback

local M = {}

function M.text(e)
  if type(e) == "string" then return e end
  if type(e) == "table" then
    local mt = getmetatable(e)
    if not (mt and mt.__tostring) then
      local ok, s = pcall(json.encode, e)
      if ok then return "error object: " .. s end
    end
  end
  local ok, s = pcall(tostring, e)
  return ok and s or "(an error object that cannot be shown)"
end

-- For xpcall: the error as text with the stack of where it was raised.
function M.handler(e) return traceback(M.text(e), 2) end

-- A handler that ends in a tail call (`return chatgw.http.request{...}`) leaves no frame of
-- its own, so neither the message nor the traceback names the user's file. Then the position
-- of the function that was called (fn: the route's or command's function) is put in front.
function M.locate(text, fn)
  local info = type(fn) == "function" and debug.getinfo(fn, "S")
  if not info or info.what ~= "Lua" or info.linedefined <= 0 then return text end
  local src = info.short_src
  if text:find(src .. ":", 1, true) then return text end
  return ("%s:%d: (in a tail call from the function defined here) %s"):format(src, info.linedefined, text)
end

debug.getregistry()["chatgw.error_text"] = M.text

return M
