-- The check harness of the Lua specs (tests/lua/*_spec.lua), run from the repo root:
--   local spec = require "spec_helper"   -- with tests/lua/?.lua on package.path
--   local check = spec.check              -- check(name, cond [, detail]): an "ok"/"FAIL" line
--   ...
--   spec.report()                         -- "N passed, M failed"; exit status 1 on a failure
local M = { passed = 0, failed = 0 }

function M.check(name, cond, detail)
  if cond then
    M.passed = M.passed + 1
    print("ok   " .. name)
  else
    M.failed = M.failed + 1
    print("FAIL " .. name .. (detail and ("\n     " .. tostring(detail)) or ""))
  end
end

function M.report()
  print(("%d passed, %d failed"):format(M.passed, M.failed))
  if M.failed > 0 then os.exit(1) end
end

-- From here on _G is strict: assigning a global or reading one that does not exist raises (a
-- module under test must create none). Returns the set of globals before, for a final check.
function M.strict_globals()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  setmetatable(_G, {
    __newindex = function(_, k) error("global assigned: " .. tostring(k), 2) end,
    __index = function(_, k) error("undefined global read: " .. tostring(k), 2) end,
  })
  return before
end

-- The specs' own UTF-8 reading (strict, RFC 3629): the code points of s as
-- { { first byte, value or -1 for an invalid byte, byte length }, ... }.
function M.code_points(s)
  local out, i = {}, 1
  while i <= #s do
    local b, v, len = s:byte(i), -1, 1
    local want, min = 0, 0
    if b < 0x80 then want, v = 0, b
    elseif b >= 0xC0 and b < 0xE0 then want, min = 1, 0x80
    elseif b >= 0xE0 and b < 0xF0 then want, min = 2, 0x800
    elseif b >= 0xF0 and b < 0xF8 then want, min = 3, 0x10000 end
    if want > 0 then
      local c, ok = b % (2 ^ (6 - want)), true
      for j = 1, want do
        local x = s:byte(i + j)
        if not x or x < 0x80 or x > 0xBF then ok = false break end
        c = c * 64 + x % 64
      end
      if ok and c >= min and c <= 0x10FFFF and not (c >= 0xD800 and c <= 0xDFFF) then
        v, len = c, want + 1
      end
    end
    out[#out + 1] = { i, v, len }
    i = i + len
  end
  return out
end

return M
