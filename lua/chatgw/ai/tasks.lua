-- chatgw.ai.tasks: seed 000's tasks API (docs/tasks.md), from HTTP and from Lua.
--
--   POST /v1/tasks {task_id, stage: "analyze"|"suggest", prompt, context}   (main listener, bearer)
--   GET  /v1/tasks/:id                                                      the stored answer, or 404
--   chatgw.ai.task{ task_id =, stage =, prompt =, context = }  -> the same answer table
--
-- The body is JSON whatever its Content-Type (an empty body is {}); errors 400 invalid_json,
-- missing_task_id, unsupported_stage, missing_prompt, in that order. An answer (a provider
-- failure included: 200 {ok:false, error:"llm_failed: ..."}) is stored under its task_id; the
-- id seen again returns it with "cached": true and calls no model. Concurrent requests with one
-- new id make one call: the first claims the id in the store (a row in state `running`), the
-- others wait for its answer (woken in this process, and reading the store every 250 ms for
-- another process's) and get the same answer. A claim older than twice the provider timeout
-- (its process died) is taken over.
local chatgw = chatgw
local json = require "chatgw.json"
local providers = require "chatgw.providers"
local suggest = require "chatgw.ai.suggest"
require "chatgw.ai.store"

local type, tostring, floor = type, tostring, math.floor

local M = {}

M.ANALYZE_SYSTEM = "You are a rigorous engineering assistant. Facts-only. No predictions. No risky actions."
M.CONTEXT_MAX = 8000
M.TASK_ID_MAX = 256
M.per_min = 0 -- ai.tasks.per_min (0: no limit)

local STAGES = { analyze = true, suggest = true }

local function ts_utc()
  local t = chatgw.time()
  return os.date("!%Y-%m-%dT%H:%M:%S", floor(t)) .. (".%03dZ"):format(floor((t % 1) * 1000))
end

-- JSON.stringify(context), first 8000 characters (code points), as the seed builds it
local function context_text(context)
  local s = json.encode(context == nil and json.null or context) or "null"
  if #s <= M.CONTEXT_MAX then return s end
  local n, i = 0, 1
  while i <= #s do
    local b = s:byte(i)
    local len = b < 0x80 and 1 or b >= 0xF0 and 4 or b >= 0xE0 and 3 or b >= 0xC0 and 2 or 1
    n = n + 1
    if n > M.CONTEXT_MAX then return s:sub(1, i - 1) end
    i = i + len
  end
  return s
end

function M.analyze_prompt(prompt, context)
  return "CONTEXT:\n" .. context_text(context) .. "\n\nPROMPT:\n" .. prompt
end

-- Checks a request body (a table). nil | status, error code
function M.validate(b)
  if type(b) ~= "table" or b[1] ~= nil then return 400, "invalid_json" end
  if b.task_id == nil or b.task_id == json.null or b.task_id == "" then return 400, "missing_task_id" end
  if type(b.task_id) ~= "string" and type(b.task_id) ~= "number" then return 400, "missing_task_id" end
  if #tostring(b.task_id) > M.TASK_ID_MAX then return 400, "task_id_too_long" end
  if not STAGES[b.stage] then return 400, "unsupported_stage" end
  if type(b.prompt) ~= "string" or b.prompt == "" then return 400, "missing_prompt" end
  return nil
end

-- The model's answer for a task. answer table (stored as is)
local function run(b)
  local id, stage = tostring(b.task_id), b.stage
  local t0 = chatgw.now()
  local args
  if stage == "analyze" then
    args = { system = M.ANALYZE_SYSTEM, messages = { { role = "user", content = M.analyze_prompt(b.prompt, b.context) } } }
  else
    args = { system = suggest.SYSTEM, messages = { { role = "user", content = suggest.user_prompt(b.prompt, b.context) } } }
  end
  local r, err = providers.chat(args)
  local latency = floor((chatgw.now() - t0) * 10 + 0.5) / 10
  if not r then
    return { ok = false, task_id = id, stage = stage, error = "llm_failed: " .. tostring(err), ts_utc = ts_utc() }
  end
  if stage == "analyze" then
    return { ok = true, task_id = id, stage = stage, ts_utc = ts_utc(), latency_ms = latency, summary = r.text }
  end
  local c = suggest.for_json(suggest.check(r.text))
  local out = { task_id = id, stage = stage, ts_utc = ts_utc(), latency_ms = latency }
  for k, v in pairs(c) do out[k] = v end
  return out
end

local function load(id)
  local rows, err = chatgw.db.query("SELECT state, result, claimed_at FROM ai_tasks WHERE task_id = ?", id)
  if not rows then return nil, err end
  return rows[1]
end

local function stale_after_s()
  local p = providers.get(providers.default_name() or "")
  return 2 * ((p and p.timeout_ms or 60000) / 1000) + 30
end

-- The answer for a valid body: stored, claimed and run, or waited for. answer, cached | nil, err
function M.task(b)
  local id = tostring(b.task_id)
  local key = "ai:task:" .. id
  for _ = 1, 100000 do -- bounded: each turn waits up to 250 ms, or claims
    local row, err = load(id)
    if err then return nil, err end
    if row and row.state == "done" then
      local stored = json.decode(row.result)
      if type(stored) == "table" then return stored, true end
      return nil, "db: the stored answer of task " .. id .. " does not parse"
    end
    local now = chatgw.time()
    local claimed
    if not row then
      local n = chatgw.db.exec("INSERT INTO ai_tasks (task_id, stage, state, claimed_at) VALUES (?, ?, 'running', ?) ON CONFLICT DO NOTHING",
        id, b.stage, now)
      claimed = n == 1
    elseif now - row.claimed_at > stale_after_s() then -- its process died: take it over
      local n = chatgw.db.exec("UPDATE ai_tasks SET claimed_at = ? WHERE task_id = ? AND state = 'running' AND claimed_at = ?",
        now, id, row.claimed_at)
      claimed = n == 1
      if claimed then chatgw.log.warn("tasks: taking over a task whose run was abandoned", { task_id = id }) end
    end
    if claimed then
      local ok, answer = pcall(run, b)
      if not ok then
        chatgw.log.error("tasks: the task failed", { task_id = id, error = tostring(answer) })
        answer = { ok = false, task_id = id, stage = b.stage, error = "llm_failed: internal error", ts_utc = ts_utc() }
      end
      local _, werr = chatgw.db.exec("UPDATE ai_tasks SET state = 'done', result = ?, done_at = ? WHERE task_id = ?",
        json.encode(answer), chatgw.time(), id)
      chatgw._notify(key)
      if werr then chatgw.log.error("tasks: cannot store an answer", { task_id = id, error = tostring(werr) }) end
      return answer, false
    end
    local _, werr = chatgw._wait(key, 250)
    if werr then return nil, werr end
  end
  return nil, "timeout: task " .. id .. " did not finish"
end

-- The answer as given to a caller: a stored one says "cached": true (a copy; the stored table
-- is not changed).
function M.marked(answer, cached)
  if not cached then return answer end
  local out = {}
  for k, v in pairs(answer) do out[k] = v end
  out.cached = true
  return out
end

-- ---- HTTP ----

local limiter
function M.configure(per_min)
  M.per_min = per_min or 0
  limiter = M.per_min > 0 and chatgw.limiter{ name = "ai.tasks", limit = M.per_min, window_ms = 60000 } or nil
end

local function body_of(req)
  local raw = req.body or ""
  if raw:find("^%s*$") then return {} end
  local b = json.decode(raw)
  if type(b) ~= "table" then return nil end
  return b
end

function M.post_route(req)
  if limiter then
    local ok, retry_ms = limiter:take("global")
    if not ok then
      local s = math.max(1, math.ceil(retry_ms / 1000))
      return 429, { ok = false, error = "rate_limited", retry_after = s }, { ["Retry-After"] = tostring(s) }
    end
  end
  local b = body_of(req)
  if not b then return 400, { ok = false, error = "invalid_json" } end
  local st, code = M.validate(b)
  if st then return st, { ok = false, error = code } end
  local answer, cached = M.task(b)
  if not answer then
    chatgw.log.error("tasks: unavailable", { task_id = tostring(b.task_id), error = tostring(cached) })
    return 503, { ok = false, error = "unavailable" }
  end
  return M.marked(answer, cached)
end

function M.get_route(req)
  local row, err = load(req.params.id)
  if err then return 503, { ok = false, error = "unavailable" } end
  if not row then return 404, { ok = false, error = "not_found" } end
  if row.state ~= "done" then return 202, { ok = true, task_id = req.params.id, state = "running" } end
  return json.decode(row.result)
end

return M
