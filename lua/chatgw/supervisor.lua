-- chatgw.supervise{name, module, run = fn, lock = name}: long-lived loops (channel adapters,
-- pollers) restarted with backoff when they fail or return, behind a circuit breaker and an
-- hourly restart cap; optionally only while this process holds a lock (one instance per
-- channel). Also installs chatgw.exec (lua/chatgw/exec.lua) and the loops' health check.
--
-- Each loop runs inside its own background coroutine (chatgw.spawn), so a reload cancels it
-- with the rest of the retired state ("cancelled: reload" at its next wait) before the new
-- state starts its own copy; at shutdown the loops are cancelled ("cancelled: shutdown") and
-- given up to shutdown.drain_timeout_ms to return. Per-loop state lives in this state: a
-- reload starts every loop afresh (backoff, circuit, hourly budget); the process-wide count of
-- restarts is the metric chatgw_supervise_restarts_total.
local chatgw = chatgw
local limits = require "chatgw.limits"
local cluster = require "chatgw.cluster"
require "chatgw.exec"

local type, pairs, ipairs, tostring, error, xpcall, pcall = type, pairs, ipairs, tostring, error, xpcall, pcall
local traceback, floor, min, max = require("chatgw.errtrace").handler, math.floor, math.min, math.max

local M = {}

local BACKOFF_MS = { 1000, 2000, 5000, 10000, 30000 } -- fixed; capped at the last step
local JITTER_MS = 250
local HOUR_MS = 3600 * 1000

M.BACKOFF_MS, M.JITTER_MS = BACKOFF_MS, JITTER_MS

-- chatgw_supervise_state values.
local STATE_CODE = { stopped = 0, running = 1, backoff = 2, circuit_open = 3, failed = 4,
                     waiting_lock = 5, starting = 6 }
M.STATE_CODE = STATE_CODE
-- A loop in one of these states is down: /health turns "degraded".
local DOWN = { backoff = true, circuit_open = true, failed = true }

local m_restarts = chatgw.metrics.counter{ name = "chatgw_supervise_restarts_total",
  help = "Restarts of supervised loops (chatgw.supervise).", labels = { "name" } }
local m_state = chatgw.metrics.gauge{ name = "chatgw_supervise_state",
  help = "Supervised loop state: 0 stopped, 1 running, 2 backoff, 3 circuit open, "
      .. "4 failed (stopped for good), 5 waiting for its lock, 6 starting.", labels = { "name" } }

local loops, order = {}, {} -- this state's loops, by name and in declaration order
local runtime               -- chatgw.runtime, set by install()
local health_registered = false

local NAME_PATTERN = "^[a-z0-9][a-z0-9_.-]*$"
local LOCK_PATTERN = "^[a-z0-9_-]+$"
local SPEC_KEYS = { name = true, module = true, run = true, lock = true, lock_scope = true }

local function set_state(st, state)
  st.state = state
  m_state:set({ name = st.name }, STATE_CODE[state])
end

local function stopping(st)
  return st.stop_reason ~= nil or chatgw._is_retired()
end

-- chatgw.sleep that never raises: false when the loop was cancelled.
local function sleep(ms)
  local ok, r = pcall(chatgw.sleep, ms)
  return ok and r == true
end

-- 0..JITTER_MS from the clock's low digits: no effect on math.random's sequence.
local function jitter()
  return floor((chatgw.now() * 1000) % (JITTER_MS + 1))
end

local function prune(history, now)
  local keep = {}
  for _, t in ipairs(history) do
    if now - t < HOUR_MS then keep[#keep + 1] = t end
  end
  return keep
end

local function fields(st, extra)
  local f = { name = st.name, module = st.module, lock = st.lock }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

local function wait_for_lock(st, s)
  local logged = false
  while true do
    if stopping(st) then return false end
    local ok, err = chatgw.lock(st.lock)
    if ok then
      st.lock_state, st.lock_error = "held", nil
      if logged then chatgw.log.info("supervised loop got its lock", fields(st)) end
      return true
    end
    st.lock_state, st.lock_error = ok == false and "waiting" or "error", err
    set_state(st, "waiting_lock")
    st.next_start_at = chatgw.time() + s.lock_retry_ms / 1000
    st.next_start_mono = chatgw.now() + s.lock_retry_ms
    if not logged then
      chatgw.log.info("supervised loop waits for its lock", fields(st, { error = err, retry_ms = s.lock_retry_ms }))
      logged = true
    end
    if not sleep(s.lock_retry_ms) then return false end
  end
end

-- ---- cluster locks (docs/cluster.md): in Redis, renewed at ttl/3, the run stopped at once
-- when a renewal fails ----

local function wait_for_cluster_lock(st, s)
  local logged = false
  while true do
    if stopping(st) then return false end
    local ok, info = cluster.lock_acquire(st.lock)
    if ok then
      st.lock_state, st.lock_error = "held", nil
      st.lock_holder, st.lock_fence, st.lock_token = cluster.node_id, info.fence, info.token
      if logged then chatgw.log.info("supervised loop got its cluster lock", fields(st, { fence = info.fence })) end
      return true
    end
    local wait
    if ok == false then
      st.lock_state, st.lock_holder = "waiting", info.holder
      st.lock_error = ("held: lock '%s' is held by node %s"):format(st.lock, tostring(info.holder))
      -- retry when the holder's lock would expire, at most every lock_retry_ms
      local ttl = tonumber(info.ttl_ms) or 0
      wait = min(s.lock_retry_ms, max(50, ttl + 20 + jitter() / 5))
    else
      st.lock_state, st.lock_error, st.lock_holder = "error", tostring(info), nil
      wait = min(s.lock_retry_ms, 1000)
    end
    set_state(st, "waiting_lock")
    st.next_start_at = chatgw.time() + wait / 1000
    st.next_start_mono = chatgw.now() + wait
    if not logged then
      chatgw.log.info("supervised loop waits for its cluster lock", fields(st, { error = st.lock_error }))
      logged = true
    end
    if not sleep(wait) then return false end
  end
end

local function renewer(st, token)
  local every = max(10, floor(cluster.lock_ttl_ms / 3))
  while st.lock_token == token do
    if not sleep(every) or st.lock_token ~= token then return end
    local ok, err = cluster.lock_renew(st.lock, token)
    if st.lock_token ~= token then return end
    if not ok then
      st.lock_token, st.lock_lost = nil, tostring(err)
      st.lock_state, st.lock_error, st.lock_holder = "lost", tostring(err), nil
      chatgw.log.warn("supervised loop lost its cluster lock: stopped", fields(st, { error = tostring(err) }))
      if st.child then chatgw._co_cancel(st.child, "lock lost") end
      return
    end
  end
end

-- The run in a coroutine of its own, so that losing the lock cancels the run and not the
-- supervisor (a cancelled coroutine cannot wait any more).
local function run_in_child(st, run, ctx)
  local box = {}
  local ev = ("chatgw.supervise.%s.%d"):format(st.name, st.runs)
  chatgw.spawn(function()
    st.child = chatgw._co_self()
    box.ok, box.err = xpcall(run, traceback, ctx)
    box.done = true
    st.child = nil
    chatgw._notify(ev)
  end)
  while not box.done do
    local r = chatgw._wait(ev, HOUR_MS)
    if r == nil then -- the supervisor is cancelled (reload, shutdown, stop): so is its run
      if st.child then chatgw._co_cancel(st.child, st.stop_reason or "reload") end
      return true
    end
  end
  return box.ok, box.err
end

local function main(st, run)
  local s = limits.resolve("supervise", st.module, chatgw.config)
  st.settings = s
  local scale = s.CHATGW_SUPERVISE_BACKOFF_SCALE or 1
  local clustered = st.lock ~= nil and st.lock_scope ~= "node" and cluster.enabled
  st.clustered = clustered
  if st.lock and not clustered and not wait_for_lock(st, s) then return end
  while not stopping(st) do
    if clustered and not st.lock_token then
      if not wait_for_cluster_lock(st, s) then return end
      chatgw.spawn(renewer, st, st.lock_token)
    end
    st.runs = st.runs + 1
    st.started_at, st.run_started_mono = chatgw.time(), chatgw.now()
    st.next_start_at, st.next_start_mono = nil, nil
    set_state(st, "running")
    local info = st.internal and chatgw.log.debug or chatgw.log.info
    if st.runs == 1 then
      info("supervised loop started", fields(st))
    else
      info("supervised loop restarted", fields(st, { restarts = st.restarts }))
    end
    -- lock_token: the cluster lock's "node|fence" this run holds (a fence for its writes)
    local ctx = { name = st.name, module = st.module, attempt = st.runs, lock = st.lock,
      lock_token = clustered and st.lock_token or nil }
    local ok, err
    if clustered then
      ok, err = run_in_child(st, run, ctx)
    else
      ok, err = xpcall(run, traceback, ctx)
    end
    local ran = chatgw.now() - st.run_started_mono
    st.run_started_mono = nil
    if stopping(st) then return end
    if clustered and st.lock_lost then
      -- Not a failure: the lock went to another node (or Redis is gone); wait for it again.
      st.lock_lost = nil
      goto continue
    end

    -- It failed or returned: restart after a backoff, unless the budget is spent.
    st.failures = (ran >= s.reset_ms) and 1 or st.failures + 1
    st.last_error = ok and "returned" or tostring(err)
    st.last_error_at = chatgw.time()
    chatgw.log.warn(ok and "supervised loop returned" or "supervised loop failed",
      fields(st, { error = st.last_error, consecutive_failures = st.failures, ran_ms = floor(ran) }))
    local now = chatgw.now()
    st.history = prune(st.history, now)
    if #st.history >= s.max_restarts_per_hour then
      set_state(st, "failed")
      chatgw.log.error("supervised loop stopped for good: restart limit reached",
        fields(st, { restarts_last_hour = #st.history, max_restarts_per_hour = s.max_restarts_per_hour,
                     last_error = st.last_error }))
      return
    end
    local delay
    if st.failures >= s.circuit_open_after then
      delay = s.circuit_open_ms
      set_state(st, "circuit_open")
      chatgw.log.warn("supervised loop circuit open: pausing",
        fields(st, { consecutive_failures = st.failures, open_ms = delay }))
    else
      delay = (BACKOFF_MS[min(st.failures, #BACKOFF_MS)] + jitter()) * scale
      set_state(st, "backoff")
    end
    st.next_start_at = chatgw.time() + delay / 1000
    st.next_start_mono = now + delay
    if not sleep(delay) then return end
    if stopping(st) then return end
    st.history[#st.history + 1] = chatgw.now()
    st.restarts = st.restarts + 1
    m_restarts:inc({ name = st.name }, 1)
    ::continue::
  end
end

-- A loop stopped for good (shutdown, stop()) gives its cluster lock up, so another node takes
-- over at once; a reload keeps it (the new state takes it back with the same token).
local releasing = 0
local function release_cluster_lock(st)
  local token = st.lock_token
  st.lock_token = nil
  if not token or chatgw._is_retired() then return end
  releasing = releasing + 1
  chatgw.spawn(function()
    pcall(cluster.lock_release, st.lock, token)
    releasing = releasing - 1
  end)
end

local function supervisor(st, run)
  st.co = chatgw._co_self()
  local ok, err = pcall(main, st, run)
  st.co = nil -- the handle is only valid while this coroutine runs
  if st.clustered then release_cluster_lock(st) end
  st.next_start_at, st.next_start_mono = nil, nil
  if not ok then
    st.last_error = tostring(err)
    set_state(st, "failed")
    chatgw.log.error("supervisor failed", fields(st, { error = st.last_error }))
  elseif st.state ~= "failed" then
    set_state(st, "stopped")
    local info = st.internal and chatgw.log.debug or chatgw.log.info
    info("supervised loop stopped", fields(st, { reason = st.stop_reason or "reload" }))
  end
  st.done = true
end

-- ---- status ----

local function status(st)
  local now = chatgw.now()
  local s = st.settings
  local failures = st.failures
  if st.state == "running" and s and st.run_started_mono and now - st.run_started_mono >= s.reset_ms then
    failures = 0
  end
  local last_hour = #prune(st.history, now)
  return {
    name = st.name,
    module = st.module,
    state = st.state,
    running = st.state == "running",
    restarts = st.restarts,
    restarts_last_hour = last_hour,
    restarts_total = m_restarts:value({ name = st.name }),
    consecutive_failures = failures,
    last_error = st.last_error,
    last_error_at = st.last_error_at,
    started_at = st.started_at,
    next_start_at = st.next_start_at,
    next_start_in_ms = st.next_start_mono and max(0, floor(st.next_start_mono - now)) or nil,
    lock = st.lock,
    lock_state = st.lock_state,
    lock_error = st.lock_error,
    lock_scope = st.lock and (st.clustered and "cluster" or "node") or nil,
    lock_holder = st.clustered and st.lock_holder or nil,
    lock_fence = st.clustered and st.lock_state == "held" and st.lock_fence or nil,
  }
end

local function is_down(st)
  if DOWN[st.state] then return true end
  return st.state == "waiting_lock" and (st.lock_state == "error" or st.lock_state == "lost")
end

local DEGRADED = { status = "degraded" }
function M.health(brief)
  if brief then -- the plain /health: the status only
    for i = 1, #order do
      local st = loops[order[i]]
      if not st.internal and is_down(st) then return DEGRADED end
    end
    return runtime.BRIEF_OK
  end
  local out, status_ = {}, "ok"
  for _, name in ipairs(order) do
    local st = loops[name]
    if not st.internal then
      out[name] = status(st)
      if is_down(st) then status_ = "degraded" end
    end
  end
  return { status = status_, loops = out }
end

local function ensure_health()
  if health_registered or not runtime then return end
  health_registered = true
  runtime.register_health("loops", M.health)
end

-- ---- the API ----

local function check_module(module, fname)
  if module == nil then return nil end
  if type(module) ~= "string" or #module > limits.MODULE_MAX_LEN or not module:find(limits.MODULE_PATTERN) then
    error(("%s: module must match [a-z][a-z0-9_]* (at most %d characters), got %s")
      :format(fname, limits.MODULE_MAX_LEN, type(module) == "string" and ("'" .. module .. "'") or type(module)), 3)
  end
  return module
end

local function start(spec, fname, internal)
  if type(spec) ~= "table" then
    error(fname .. ": expected a table like {name = ..., run = fn}, got " .. type(spec), 2)
  end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      error(fname .. ": unknown option '" .. tostring(k) .. "' (known: name, module, run, lock, lock_scope)", 2)
    end
  end
  local name = spec.name
  if type(name) ~= "string" or #name > 64 or not name:find(NAME_PATTERN) then
    error(fname .. ": name must match [a-z0-9][a-z0-9_.-]* (at most 64 characters), got "
      .. (type(name) == "string" and ("'" .. name .. "'") or type(name)), 2)
  end
  local module = check_module(spec.module, fname)
  if type(spec.run) ~= "function" then
    error(fname .. ": run must be a function, got " .. type(spec.run), 2)
  end
  local lock = spec.lock
  if lock ~= nil and (type(lock) ~= "string" or #lock > 64 or not lock:find(LOCK_PATTERN)) then
    error(fname .. ": lock must match [a-z0-9_-]+ (at most 64 characters), got "
      .. (type(lock) == "string" and ("'" .. lock .. "'") or type(lock)), 2)
  end
  local scope = spec.lock_scope
  if scope ~= nil and scope ~= "cluster" and scope ~= "node" then
    error(fname .. ": lock_scope must be \"cluster\" or \"node\", got " .. tostring(scope), 2)
  end
  if loops[name] then error(fname .. ": a loop named '" .. name .. "' already exists", 2) end
  if chatgw._is_retired() then return nil, "cancelled: reload" end
  local st = { name = name, module = module, lock = lock, lock_scope = scope, state = "starting", runs = 0,
               restarts = 0, failures = 0, history = {}, internal = internal }
  loops[name] = st
  order[#order + 1] = name
  if not internal then ensure_health() end
  chatgw.spawn(supervisor, st, spec.run)
  return { name = name, status = function() return status(st) end,
    state = function() return st.state end, -- what status().state says, without the rest

    -- Stops this loop for good (the gateway registry's stop of a bot): cancelled at its next
    -- wait, and its name free at once for a new loop.
    stop = function(reason)
      if not st.done then
        st.stop_reason = reason or "stopped"
        if st.co then chatgw._co_cancel(st.co, st.stop_reason) end
        if st.child then chatgw._co_cancel(st.child, st.stop_reason) end
      end
      if loops[name] == st then
        loops[name] = nil
        for i, n in ipairs(order) do if n == name then table.remove(order, i) break end end
      end
    end }
end

function chatgw.supervise(spec) return start(spec, "chatgw.supervise") end

-- The runtime's own loops (the outbox senders): supervised the same way, but not listed in
-- chatgw.loops() and the loops health check (their modules report them), and their start and
-- stop lines are at debug level.
function M.internal(spec) return start(spec, "supervise", true) end

-- chatgw.loops() -> { name = status, ... } for this state's loops.
function chatgw.loops()
  local out = {}
  for _, name in ipairs(order) do
    if not loops[name].internal then out[name] = status(loops[name]) end
  end
  return out
end

-- Cancel every loop ("cancelled: <reason>" at its next wait, or now if it is waiting).
function M.stop_all(reason)
  for _, name in ipairs(order) do
    local st = loops[name]
    if not st.done then
      st.stop_reason = reason
      if st.co then chatgw._co_cancel(st.co, reason) end
      if st.child then chatgw._co_cancel(st.child, reason) end
    end
  end
end

-- Wait (yielding) until every loop has returned, at most timeout_ms.
function M.wait_stopped(timeout_ms)
  local deadline = chatgw.now() + timeout_ms
  while chatgw.now() < deadline do
    local running = false
    for _, name in ipairs(order) do
      local st = loops[name]
      if (not st.done and st.co) or st.child then running = true end
    end
    if not running and releasing == 0 then return true end
    if not sleep(10) then return false end
  end
  return false
end

-- Hooks into chatgw.runtime: environment checks after a load, loops stopped at shutdown.
function M.install(R)
  runtime = R
  local load = R.load
  R.load = function(opts)
    local ok, r = load(opts)
    if ok then
      local mods = {}
      for _, name in ipairs(order) do
        if loops[name].module then mods[#mods + 1] = loops[name].module end
      end
      local problems = limits.check(chatgw.config, os.getenv, mods)
      if #problems > 0 then return false, problems end
    end
    return ok, r
  end
  local shutdown = R.shutdown
  R.shutdown = function(...)
    M.stop_all("shutdown")
    shutdown(...)
    local cfg = chatgw.config
    local limit = cfg and cfg.shutdown and cfg.shutdown.drain_timeout_ms or 10000
    M.wait_stopped(limit)
  end
  return M
end

return M
