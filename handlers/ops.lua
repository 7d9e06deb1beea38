-- ops: the operator's commands, for the owner only (the policy's job: config/policy.yml allows
-- ops.status, ops.logs and ops.ps to the owner; this file only declares the capabilities).
--
--   /status              the gateway's health as the handlers see it: channels and their
--                        outboxes, AI providers, circuit breakers, loops, exec, version, uptime
--   /logs <service> [n]  the last n (1..500, default 50) log lines of a service on the allowlist
--   /ps                  the processes, busiest first
--
-- /logs and /ps run configured commands through chatgw.exec (module "ops": its cap and
-- timeout), never a shell; "{service}" and "{n}" in an argument are replaced:
--
--   app:
--     ops:
--       services: [api, worker]     # /logs accepts only these (default: none)
--       logs_argv: [journalctl, -u, "{service}", -n, "{n}", --no-pager]
--       ps_argv: [ps, -eo, "pid,user,%cpu,%mem,etime,cmd", --sort=-%cpu]
--       timeout_ms: 20000           # default: the ops module's (CHAT_GATEWAY_EXEC_TIMEOUT_OPS_MS)
--
-- Replies keep within the policy's output limits, saying how much was cut.
local chatgw = chatgw

local LOGS_ARGV = { "journalctl", "-u", "{service}", "-n", "{n}", "--no-pager" }
local PS_ARGV = { "ps", "-eo", "pid,user,%cpu,%mem,etime,cmd", "--sort=-%cpu" }

local function settings()
  local app = chatgw.config.app
  return type(app) == "table" and type(app.ops) == "table" and app.ops or {}
end

-- ---- fitting a reply to the output limits ----

local function ulen(s) local _, n = s:gsub("[^\128-\191]", "") return n end
local function uprefix(s, n) -- the first n UTF-8 characters
  local count = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 128 or b > 191 then
      count = count + 1
      if count > n then return s:sub(1, i - 1) end
    end
  end
  return s
end

local function plural(n, word) return ("%d %s%s"):format(n, word, n == 1 and "" or "s") end

-- head, then as many lines of body as the limits take (the last ones when tail), then a note of
-- what was cut: "… (141 more lines cut)". The result is within max_lines and max_chars, so the
-- runtime does not cut it again.
local function fit(msg, head, body, tail, extra)
  local lim = msg.limits or {}
  local max_lines, max_chars = tonumber(lim.max_lines) or 60, tonumber(lim.max_chars) or 6000
  body = body:gsub("%s+$", "")
  if body == "" then body = "(no output)" end
  local lines = {}
  for l in (body .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local extra_len = extra and ulen(extra) + 1 or 0
  if #lines + 1 + (extra and 1 or 0) <= max_lines and ulen(head) + 1 + ulen(body) + extra_len <= max_chars then
    return head .. "\n" .. body .. (extra and "\n" .. extra or "")
  end
  local line_room = max_lines - 2 - (extra and 1 or 0)       -- the head, the note, extra
  local char_room = max_chars - ulen(head) - 1 - 50 - extra_len -- 50: the note
  local kept, used, cut_chars = {}, 0, 0
  for k = 1, #lines do
    if #kept >= line_room then break end
    local l = lines[tail and (#lines - k + 1) or k]
    local n = ulen(l) + 1
    if used + n > char_room then
      if #kept == 0 and char_room > 1 then -- one long line: a part of it
        local part = char_room - 2
        cut_chars = n - 1 - part
        kept[1] = tail and ("…" .. l:sub(#uprefix(l, cut_chars) + 1)) or (uprefix(l, part) .. "…")
      end
      break
    end
    kept[#kept + 1] = l
    used = used + n
  end
  local dropped = #lines - #kept
  if tail then -- back in order
    for i = 1, math.floor(#kept / 2) do kept[i], kept[#kept - i + 1] = kept[#kept - i + 1], kept[i] end
  end
  local what = {}
  if dropped > 0 then what[1] = plural(dropped, tail and "earlier line" or "more line") end
  if cut_chars > 0 then what[#what + 1] = plural(cut_chars, "character") end
  local note = ("… (%s cut)"):format(table.concat(what, " and "))
  local out = { head }
  if tail then out[2] = note end
  for _, l in ipairs(kept) do out[#out + 1] = l end
  if not tail then out[#out + 1] = note end
  if extra then out[#out + 1] = extra end
  return table.concat(out, "\n")
end

-- ---- running a configured command ----

local function argv_of(key, default, vars)
  local conf = settings()[key]
  local src = default
  if type(conf) == "table" and #conf > 0 then src = conf end
  local argv = {}
  for i, a in ipairs(src) do
    argv[i] = tostring(a):gsub("{(%w+)}", function(k) return vars[k] end)
  end
  return argv
end

local function run(msg, what, argv, tail)
  local opts = { argv = argv, module = "ops", timeout_ms = tonumber(settings().timeout_ms) }
  local r, err = chatgw.exec(opts)
  local prog = argv[1]
  if not r then
    local code = err:match("^(%a+):") or ""
    if code == "timeout" then return msg:reply(("%s: %s did not finish in time and was stopped (%s)."):format(what, prog, err)) end
    if code == "busy" then return msg:reply(("%s: too many commands are running; try again shortly."):format(what)) end
    if code == "spawn" then return msg:reply(("%s: could not run %s (%s)."):format(what, prog, err)) end
    return msg:reply(("%s: %s failed (%s)."):format(what, prog, err))
  end
  local extra = r.truncated and "(the command wrote more than the output cap; the rest was dropped)" or nil
  if r.code ~= 0 then
    local out = r.stderr ~= "" and (r.stderr .. (r.stdout ~= "" and "\n" .. r.stdout or "")) or r.stdout
    local why = r.signal and ("was killed by " .. r.signal) or ("exited with code " .. r.code)
    return msg:reply(fit(msg, ("%s: %s %s:"):format(what, prog, why), out, tail, extra))
  end
  return msg:reply(fit(msg, what .. ":", r.stdout, tail, extra))
end

-- ---- /status: what the chatgw.* API shows a handler ----

-- chatgw.metrics.render() as { name = { { labels = {...}, value = n }, ... } }
local function metrics()
  local out = {}
  for line in chatgw.metrics.render():gmatch("[^\n]+") do
    local name, labels, value = line:match("^([%w_:]+){(.*)} (%S+)$")
    if not name then name, value = line:match("^([%w_:]+) (%S+)$") end
    if name and not name:find("^#") then
      local l = {}
      for k, v in (labels or ""):gmatch('([%w_]+)="([^"]*)"') do l[k] = v end
      out[name] = out[name] or {}
      table.insert(out[name], { labels = l, value = tonumber(value) })
    end
  end
  return out
end

local function uptime_s() -- the process's age, from /proc (Linux); nil elsewhere
  local f = io.open("/proc/self/stat")
  local stat = f and f:read("*a")
  if f then f:close() end
  local g = io.open("/proc/uptime")
  local up = g and tonumber((g:read("*a") or ""):match("^(%S+)"))
  if g then g:close() end
  local fields = {}
  for x in (stat and stat:match("%) (.*)$") or ""):gmatch("%S+") do fields[#fields + 1] = x end
  local start = tonumber(fields[20]) -- field 22 of stat: start time after boot, in 1/100 s
  if not up or not start then return nil end
  return up - start / 100
end

local function duration(s)
  s = math.floor(s)
  if s < 60 then return s .. "s" end
  if s < 3600 then return ("%dm %ds"):format(math.floor(s / 60), s % 60) end
  if s < 86400 then return ("%dh %dm"):format(math.floor(s / 3600), math.floor(s % 3600 / 60)) end
  return ("%dd %dh"):format(math.floor(s / 86400), math.floor(s % 86400 / 3600))
end

local LOOP_STATES = { [0] = "stopped", "running", "backoff", "circuit_open", "failed", "waiting_lock", "starting" }
local BREAKER_STATES = { [0] = "closed", "open", "half_open" }

local function by(list, labels)
  for _, s in ipairs(list or {}) do
    local ok = true
    for k, v in pairs(labels) do if s.labels[k] ~= v then ok = false end end
    if ok then return s.value end
  end
end

local function status_text()
  local m, lines, problems = metrics(), {}, {}
  local up = uptime_s()
  local function add(s) lines[#lines + 1] = s end

  -- channels: their states (chatgw.health(), as /health?verbose=1), outbox depth and sender
  -- (metrics)
  add("Channels:")
  local chans, seen = {}, {}
  local h = chatgw.health() -- what /health?verbose=1 shows
  local cc = h.checks and h.checks.channels and h.checks.channels.channels or {}
  for key, st in pairs(cc) do
    chans[#chans + 1] = key
    seen[key] = st
  end
  for _, s in ipairs(m.chatgw_outbox_depth or {}) do
    local key = s.labels.channel .. ":" .. s.labels.account
    if not seen[key] then chans[#chans + 1] = key; seen[key] = {} end
  end
  table.sort(chans)
  for _, key in ipairs(chans) do
    local st = seen[key]
    local ch, acct = key:match("^(.-):(.*)$")
    local parts = { st.state or "?" }
    local depth = by(m.chatgw_outbox_depth, { channel = ch, account = acct })
    if depth then parts[#parts + 1] = "outbox " .. depth end
    local sender = by(m.chatgw_supervise_state, { name = ("outbox.%s.%s"):format(ch, acct) })
    if sender and sender ~= 1 then parts[#parts + 1] = "sender " .. (LOOP_STATES[sender] or sender) end
    if st.state == "error" then problems[#problems + 1] = key end
    local why = st.state ~= "ok" and st.last_error and (" (" .. st.last_error .. ")") or ""
    add(("  %s: %s%s"):format(key, table.concat(parts, ", "), why))
  end
  if #chans == 0 then add("  (none)") end

  -- AI providers
  local ok, ai = pcall(chatgw.ai.providers)
  local names = {}
  for name in pairs(ok and type(ai) == "table" and ai.providers or {}) do names[#names + 1] = name end
  table.sort(names)
  if #names == 0 then add("AI providers: none configured") else
    add("AI providers" .. (ai.default and (" (default " .. ai.default .. ")") or "") .. ":")
    for _, name in ipairs(names) do
      local p = ai.providers[name]
      add(("  %s: %s%s%s"):format(name, p.state or "?", p.breaker and (", breaker " .. p.breaker) or "",
        p.reason and (" (" .. p.reason .. ")") or ""))
    end
  end

  -- circuit breakers
  local brs = {}
  for _, s in ipairs(m.chatgw_breaker_state or {}) do brs[#brs + 1] = s end
  table.sort(brs, function(a, b) return a.labels.name < b.labels.name end)
  local open = {}
  for _, s in ipairs(brs) do
    if s.value ~= 0 then
      open[#open + 1] = ("%s %s"):format(s.labels.name, BREAKER_STATES[s.value] or s.value)
      problems[#problems + 1] = "breaker " .. s.labels.name
    end
  end
  add(("Breakers: %d, %s"):format(#brs, #open == 0 and "all closed" or table.concat(open, "; ")))

  -- supervised loops that are not running
  local loops, bad = 0, {}
  for _, s in ipairs(m.chatgw_supervise_state or {}) do
    loops = loops + 1
    if s.value ~= 1 and s.value ~= 5 then
      bad[#bad + 1] = s.labels.name .. " " .. (LOOP_STATES[s.value] or s.value)
      if s.value == 2 or s.value == 3 or s.value == 4 then problems[#problems + 1] = "loop " .. s.labels.name end
    end
  end
  add(("Loops: %d, %s"):format(loops, #bad == 0 and "all running" or table.concat(bad, "; ")))

  -- exec
  local running, waiting, results = 0, 0, {}
  for _, s in ipairs(m.chatgw_exec_inflight or {}) do running = running + (s.value or 0) end
  for _, s in ipairs(m.chatgw_exec_queue_length or {}) do waiting = waiting + (s.value or 0) end
  for _, s in ipairs(m.chatgw_exec_total or {}) do
    results[s.labels.result] = (results[s.labels.result] or 0) + (s.value or 0)
  end
  local rs = {}
  for k, v in pairs(results) do rs[#rs + 1] = ("%s %d"):format(k, v) end
  table.sort(rs)
  add(("Exec: %d running, %d waiting%s"):format(running, waiting, #rs > 0 and ("; done: " .. table.concat(rs, ", ")) or ""))
  local store = by(m.chatgw_store_queue_jobs, {})
  if store then add(("Store: %d jobs queued"):format(store)) end

  table.insert(lines, 1, ("chatgw %s, up %s: %s"):format(chatgw.version, up and duration(up) or "?",
    #problems == 0 and "ok" or ("degraded (" .. table.concat(problems, ", ") .. ")")))
  return table.concat(lines, "\n")
end

return {
  commands = {
    status = "gateway health: channels, providers, breakers, outbox, exec",
    logs = "the last log lines of a service: /logs <service> [n]",
    ps = "the busiest processes",
  },
  capability = { status = "ops.status", logs = "ops.logs", ps = "ops.ps" },

  on_command = function(msg, args)
    if msg.command == "status" then
      local text = status_text()
      local head, body = text:match("^([^\n]*)\n(.*)$")
      return msg:reply(fit(msg, head or text, body or "", false))
    end
    if msg.command == "ps" then
      return run(msg, "ps", argv_of("ps_argv", PS_ARGV, {}), false)
    end
    -- /logs <service> [n]
    local services = settings().services
    if type(services) ~= "table" or #services == 0 then
      return msg:reply("/logs has no services to show: list them in app.ops.services in chatgw.yml (e.g. services: [api, worker]).")
    end
    local allowed = {}
    for i, s in ipairs(services) do allowed[i] = tostring(s) end
    local service, n = msg.argv[1], msg.argv[2]
    if not service or msg.argv[3] then
      return msg:reply("Usage: /logs <service> [n], n 1..500 (default 50). Services: " .. table.concat(allowed, ", "))
    end
    local known = false
    for _, s in ipairs(allowed) do if s == service then known = true end end
    if not known then
      return msg:reply(("/logs: %s is not on the list of services (app.ops.services): %s."):format(service, table.concat(allowed, ", ")))
    end
    local count = 50
    if n then
      count = n:match("^%d+$") and tonumber(n)
      if not count or count < 1 or count > 500 then
        return msg:reply("/logs: n must be a whole number from 1 to 500, got " .. n)
      end
    end
    local argv = argv_of("logs_argv", LOGS_ARGV, { service = service, n = tostring(count) })
    return run(msg, ("logs of %s (last %d lines)"):format(service, count), argv, true)
  end,
}
