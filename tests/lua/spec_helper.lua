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

return M
