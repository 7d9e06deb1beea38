-- The handler sandbox: functions that would stall or kill the event loop are replaced, and
-- coroutine.resume/wrap are wrapped so a runtime wait (chatgw.sleep, ...) inside a user
-- coroutine suspends the whole request coroutine instead of returning to the user's resumer.
local chatgw = chatgw
local M = {}

local function refuse(name, why)
  return function()
    error(name .. " is disabled in chatgw: " .. why, 2)
  end
end

function M.apply()
  os.exit = refuse("os.exit", "it would kill the gateway; return from the handler instead")
  os.execute = refuse("os.execute", "it blocks the event loop")
  io.popen = refuse("io.popen", "it blocks the event loop")
  io.read = refuse("io.read", "stdin would block the event loop")
  local lines = io.lines
  io.lines = function(path, ...)
    if path == nil then error("io.lines() on stdin is disabled in chatgw: it would block the event loop", 2) end
    return lines(path, ...)
  end
  -- The watchdog (docs/operations.md) must not be disarmed: no hooks, no JIT control, no raw
  -- memory. The runtime's own modules are loaded before this runs and keep what they took.
  local hook_why = "the watchdog's hook must stay in place"
  debug.sethook = refuse("debug.sethook", hook_why)
  for _, name in ipairs({ "getregistry", "getupvalue", "setupvalue", "upvaluejoin", "setlocal" }) do
    debug[name] = refuse("debug." .. name, "it reaches into the runtime's internals")
  end
  local status = jit.status
  local safe_jit = { status = status, version = jit.version, version_num = jit.version_num,
                     os = jit.os, arch = jit.arch }
  jit = safe_jit
  package.loaded.jit = safe_jit
  for _, name in ipairs({ "jit.util", "jit.profile", "jit.opt", "ffi" }) do
    package.loaded[name] = nil
    local why = name == "ffi" and "raw memory access would bypass the watchdog and the memory cap"
      or "the JIT is the runtime's to control"
    package.preload[name] = function()
      error(name .. " is disabled in chatgw: " .. why, 3)
    end
  end
  print = function(...)
    local n, parts = select("#", ...), {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    chatgw.log.info(table.concat(parts, "\t"), { source = "print" })
  end

  local MARK = chatgw._yield_marker
  local raw_resume, raw_yield, raw_create, status = coroutine.resume, coroutine.yield,
      coroutine.create, coroutine.status
  -- A runtime wait inside co yields MARK: pass it up, then hand the results back down.
  local function pass(co, ok, first, ...)
    if ok and first == MARK and status(co) == "suspended" then
      return pass(co, raw_resume(co, raw_yield(MARK)))
    end
    return ok, first, ...
  end
  coroutine.resume = function(co, ...)
    return pass(co, raw_resume(co, ...))
  end
  coroutine.wrap = function(fn)
    local co = raw_create(fn)
    return function(...)
      local function unwrap(ok, ...)
        if not ok then error((...), 2) end
        return ...
      end
      return unwrap(coroutine.resume(co, ...))
    end
  end
end

return M
