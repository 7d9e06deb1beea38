-- chatgw.exec{argv, module, timeout_ms, cwd, env, stdin, max_output}: run a subprocess (no
-- shell) under the global and per-module concurrency caps; yields until it is done. The work
-- is in C (runtime/core/exec.c, runtime/vm/lib_exec.c); this resolves the module's limits from the
-- environment and the config (lua/chatgw/limits.lua) once per state and module.
local chatgw = chatgw
local limits = require "chatgw.limits"

local type, error = type, error
local _exec = chatgw._exec

local cache = {} -- module -> resolved limits; config and environment are fixed for a state

local function module_of(opts, fname)
  local module = opts.module
  if module == nil then return "default" end
  if type(module) ~= "string" or #module > limits.MODULE_MAX_LEN or not module:find(limits.MODULE_PATTERN) then
    error(("%s: module must match [a-z][a-z0-9_]* (at most %d characters), got %s")
      :format(fname, limits.MODULE_MAX_LEN, type(module) == "string" and ("'" .. module .. "'") or type(module)), 3)
  end
  if module == "global" then error(fname .. ": module name 'global' is reserved", 3) end
  return module
end

function chatgw.exec(opts)
  if type(opts) ~= "table" then
    error("chatgw.exec: expected a table like {argv = {...}}, got " .. type(opts), 2)
  end
  local module = module_of(opts, "chatgw.exec")
  local lim = cache[module]
  if not lim then
    lim = limits.resolve("exec", module, chatgw.config)
    cache[module] = lim
  end
  local r, err = _exec(opts, lim)
  return r, err
end

local M = {}
-- The limits chatgw.exec uses for module (for tests and tools).
function M.limits(module) return limits.resolve("exec", module or "default", chatgw.config) end
return M
