-- chatgw.admin.state: what GET /v1/admin/state answers and the admin.state event carries: the
-- breakers and limiters (lua/chatgw/known.lua), the exec pools (their metrics), the outbox per
-- account, the tasks API's tasks and the supervised loops. Cheap enough to build every 2 s.
local chatgw = chatgw
local json = require "chatgw.json"
local known = require "chatgw.known"
local metrics = require "chatgw.admin.metrics"

local type, pairs, ipairs, pcall, tostring, floor = type, pairs, ipairs, pcall, tostring, math.floor

local M = {}

local EMPTY = json.empty_array
local function list_or_empty(t) return #t > 0 and t or EMPTY end

local function breakers()
  local out = {}
  for _, k in ipairs(known.list("breaker")) do
    local ok, b = pcall(chatgw._breaker, k.opts)
    if ok then
      local s = b:stats()
      out[#out + 1] = { name = s.name, state = s.state, consecutive_failures = s.consecutive_failures,
        failures = s.failures, successes = s.successes, rejections = s.rejections, opens = s.opens,
        window_calls = s.window_calls, window_failures = s.window_failures, open_ms = s.open_ms,
        retry_after_ms = s.retry_after_ms,
        next_half_open_at = s.state == "open" and chatgw.time() + s.retry_after_ms / 1000 or json.null,
        config = s.config }
    end
  end
  return list_or_empty(out)
end

local rejections -- the limiters' refusals counter (registered by C on the first limiter)
local function limiters()
  local out = {}
  for _, k in ipairs(known.list("limiter")) do
    local ok, l = pcall(chatgw.limiter, k.opts)
    if ok then
      if not rejections then
        rejections = chatgw.metrics.counter{ name = "chatgw_limiter_rejections_total",
          help = "Rate limiter takes refused (lim:take returned false).", labels = { "name" } }
      end
      local o = k.opts
      out[#out + 1] = { name = k.name, kind = o.rate and "bucket" or "window", rate = o.rate,
        burst = o.burst or (o.rate and (o.rate < 1 and 1 or o.rate)) or nil, limit = o.limit,
        window_ms = o.window_ms, keys = l:count(), rejections = rejections:value({ name = k.name }) }
    end
  end
  return list_or_empty(out)
end

-- Per module: inflight, queued, calls by result, waits (count, mean, the bucket of the slowest).
local function exec()
  local mods, order = {}, {}
  local function mod(name)
    local m = mods[name]
    if not m then
      m = { module = name, inflight = 0, queued = 0, results = {}, waits = 0, wait_sum_s = 0 }
      mods[name], order[#order + 1] = m, name
    end
    return m
  end
  for _, s in ipairs(metrics.samples("chatgw_exec_")) do
    local name = s.labels.module
    if name then
      local m = mod(name)
      if s.name == "chatgw_exec_inflight" then m.inflight = s.value
      elseif s.name == "chatgw_exec_queue_length" then m.queued = s.value
      elseif s.name == "chatgw_exec_total" then m.results[s.labels.result or "?"] = s.value
      elseif s.name == "chatgw_exec_wait_seconds_count" then m.waits = s.value
      elseif s.name == "chatgw_exec_wait_seconds_sum" then m.wait_sum_s = s.value
      end
    end
  end
  local out = {}
  table.sort(order)
  for _, name in ipairs(order) do
    local m = mods[name]
    m.wait_mean_ms = m.waits > 0 and floor(m.wait_sum_s / m.waits * 1000 * 10 + 0.5) / 10 or 0
    out[#out + 1] = m
  end
  local g = chatgw._exec_stats()
  return { inflight = g.inflight, queued = g.queued, modules = list_or_empty(out) }
end

-- Per channel account: depth (queued + sending), failed and unknown rows kept, deliveries in
-- the last minute (the rate).
local function outbox()
  local since = chatgw.time() - 60
  local rows = chatgw.db.query([[SELECT channel, account,
      sum(status = 'queued') AS queued, sum(status = 'sending') AS sending,
      sum(status = 'failed') AS failed, sum(status = 'unknown') AS unknown, sum(status = 'dropped') AS dropped,
      sum(status = 'delivered' AND updated_at >= ?) AS delivered_1m
    FROM chat_outbox GROUP BY channel, account ORDER BY channel, account]], since)
  local out = {}
  for _, r in ipairs(rows or {}) do
    out[#out + 1] = { channel = r.channel, account = r.account, depth = (r.queued or 0) + (r.sending or 0),
      queued = r.queued or 0, sending = r.sending or 0, failed = r.failed or 0, unknown = r.unknown or 0,
      dropped = r.dropped or 0,
      delivered_1m = r.delivered_1m or 0, rate_per_min = r.delivered_1m or 0 }
  end
  return { accounts = list_or_empty(out) }
end

local function tasks()
  local counts = {}
  for _, r in ipairs(chatgw.db.query("SELECT state, count(*) AS n FROM ai_tasks GROUP BY state") or {}) do
    counts[r.state] = r.n
  end
  local recent = {}
  for _, r in ipairs(chatgw.db.query([[SELECT task_id, stage, state, claimed_at, done_at FROM ai_tasks
      ORDER BY claimed_at DESC LIMIT 20]]) or {}) do
    recent[#recent + 1] = { task_id = r.task_id, stage = r.stage, state = r.state, claimed_at = r.claimed_at,
      done_at = r.done_at or json.null,
      duration_ms = r.done_at and floor((r.done_at - r.claimed_at) * 1000 + 0.5) or json.null }
  end
  return { running = counts.running or 0, done = counts.done or 0, recent = list_or_empty(recent) }
end

local function loops()
  local out = {}
  local ok, all = pcall(chatgw.loops)
  if ok and type(all) == "table" then
    for name, s in pairs(all) do
      out[#out + 1] = { name = name, state = s.state, restarts = s.restarts_total or s.restarts,
        last_error = s.last_error or json.null }
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return list_or_empty(out)
end

-- The overview: what /health?verbose=1 says in short (each check's status), the channels as
-- GET /v1/channels, the gateways as GET /v1/gateways.
local function health()
  local h = chatgw.health()
  local checks = {}
  for name, c in pairs(h.checks or {}) do checks[name] = type(c) == "table" and c.status or tostring(c) end
  return { status = h.status, version = h.version, uptime_s = h.uptime_s, started_at = h.started_at,
    generation = h.generation, reloads = h.reloads, connections = h.connections, inflight = h.inflight,
    checks = checks }
end

local function channels() return list_or_empty(require("chatgw.chat").channels_snapshot()) end
local function gateways() return list_or_empty(require("chatgw.registry").snapshot()) end

-- Each part on its own: a part that fails says so and the others are still answered.
local PARTS = { health = health, channels = channels, gateways = gateways, breakers = breakers,
  limiters = limiters, exec = exec, outbox = outbox, tasks = tasks, loops = loops }

function M.build()
  local out = { ok = true, at = chatgw.time() }
  for name, fn in pairs(PARTS) do
    local ok, v = pcall(fn)
    if ok then out[name] = v else
      chatgw.log.warn("admin state: a part failed", { part = name, error = tostring(v) })
      out[name] = { error = "unavailable" }
    end
  end
  return out
end

return M
