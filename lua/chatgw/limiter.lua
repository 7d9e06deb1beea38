-- chatgw.limiter{...}: the C rate limiter (runtime/vm/lib_limiter.c), its name and options
-- remembered (lua/chatgw/known.lua) so that the admin page can list every limiter.
local chatgw = chatgw
local known = require "chatgw.known"

local new_c, pcall, error, type = chatgw.limiter, pcall, error, type

function chatgw.limiter(opts)
  local ok, l = pcall(new_c, opts)
  if not ok then error(l, 0) end -- the C message as it was, no position added
  if type(opts) == "table" then known.remember("limiter", opts.name, opts) end
  return l
end

return {}
