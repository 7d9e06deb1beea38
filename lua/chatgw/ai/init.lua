-- chatgw.ai: AI providers for handlers (docs/ai.md), the tasks API (docs/tasks.md) and
-- conversation memory.
--
--   chatgw.ai.chat{ provider =, model =, messages =, system =, temperature =, max_tokens =,
--                   stream = function(delta) end, timeout_ms =, failover = }
--       -> { text, provider, model, finish_reason, usage = {input_tokens, output_tokens},
--            latency_ms } | nil, "ECODE: ...", partial
--   chatgw.ai.models(provider)   -> { ids } | nil, err
--   chatgw.ai.validate(provider) -> { valid, latency_ms, error, code }
--   chatgw.ai.task{ task_id =, stage =, prompt =, context = } -> the tasks API's answer
--   chatgw.ai.memory(msg)        -> memory (:messages(), :add(role, text), :reset())
--   chatgw.ai.providers()        -> what /health shows: each provider, on or off
--
-- A chat call made from a chat handler (its coroutine serves a message) is counted against
-- seed 000's limits first: ai.rate_limit.global_per_min, then per_user_per_min (sliding 60 s
-- windows); over one, it returns nil, "rate_limited: ..." without calling the provider.
local chatgw = chatgw
local providers = require "chatgw.providers"
local tasks = require "chatgw.ai.tasks"
local memory = require "chatgw.ai.memory"
local dispatch = require "chatgw.chat.dispatch"
local handlers = require "chatgw.chat.handlers"
local texts = require "chatgw.chat.texts"

local type, tostring = type, tostring

local M = {}

require "chatgw.ai.config" -- the ai: section

local limits = { global = nil, user = nil }

local function chat_limits(cfg)
  local r = cfg.ai.rate_limit
  limits.global = r.global_per_min > 0 and chatgw.limiter{ name = "ai.chat.global", limit = r.global_per_min, window_ms = 60000 } or nil
  limits.user = r.per_user_per_min > 0 and chatgw.limiter{ name = "ai.chat.user", limit = r.per_user_per_min, window_ms = 60000 } or nil
end

-- Global first, then the user (seed 000's order); a refusal takes from neither.
local function admit(msg)
  local user = ("%s:%s"):format(msg.channel, tostring(msg.user and msg.user.id))
  for _, pair in ipairs({ { limits.global, "global" }, { limits.user, user } }) do
    local lim, key = pair[1], pair[2]
    if lim then
      local ok, retry = lim:peek(key)
      if not ok then
        return nil, ("rate_limited: %s AI limit reached; retry in %d s"):format(key == "global" and "the global" or "your",
          math.max(1, math.ceil(retry / 1000))), retry
      end
    end
  end
  if limits.global then limits.global:take("global") end
  if limits.user then limits.user:take(user) end
  return true
end

local ai = {}

function ai.chat(a)
  providers.check_args(a)
  local msg = dispatch.current_msg()
  if msg and msg.chat then
    local ok, err = admit(msg)
    if not ok then return nil, err end
  end
  return providers.chat(a)
end

function ai.models(name)
  if name ~= nil and type(name) ~= "string" then error("chatgw.ai.models: provider must be a string", 2) end
  return providers.models(name)
end

function ai.validate(name)
  if name ~= nil and type(name) ~= "string" then error("chatgw.ai.validate: provider must be a string", 2) end
  return providers.validate(name)
end

function ai.task(b)
  if type(b) ~= "table" then error("chatgw.ai.task: expected a table {task_id =, stage =, prompt =, context =}", 2) end
  local st, code = tasks.validate(b)
  if st then return nil, "bad_request: " .. code end
  local answer, cached = tasks.task(b)
  if not answer then return nil, cached end
  return tasks.marked(answer, cached)
end

-- The tasks API's analyze prompt (seed 000's facts-only system prompt, CONTEXT and PROMPT) for
-- a call of one's own, e.g. streamed into a chat: system, user text.
function ai.analyze_prompt(prompt, context)
  if type(prompt) ~= "string" then error("chatgw.ai.analyze_prompt: prompt must be a string", 2) end
  return tasks.ANALYZE_SYSTEM, tasks.analyze_prompt(prompt, context)
end

function ai.memory(x) return memory.open(x) end

function ai.providers() return providers.health() end

chatgw.ai = ai

function M.install(R)
  R.register_load_step(function(cfg)
    local r = providers.configure(cfg)
    if #r.problems > 0 then return r.problems end
    chat_limits(cfg)
    memory.max_turns, memory.max_chars = cfg.ai.memory.max_turns, cfg.ai.memory.max_chars
    tasks.configure(cfg.ai.tasks.per_min)
    return nil
  end)
  R.register_start("ai", function()
    for _, p in ipairs(providers.list()) do
      if p.off_reason then
        chatgw.log.info("ai provider off", { provider = p.name, reason = p.off_reason })
      else
        chatgw.log.info("ai provider on", { provider = p.name, kind = p.kind, model = p.model,
          default = p.name == providers.default_name() or nil })
      end
    end
    if not providers.default_name() then
      chatgw.log.info("no AI provider is on: set DEEPSEEK_API_KEY (or another provider's key) to use chatgw.ai and /v1/tasks")
    end
    return true
  end)
  R.register_health("ai", function(brief)
    if brief then return R.BRIEF_OK end -- always ok: the providers are detail
    return providers.health()
  end)
  R.register_builtin_route({ method = "POST", path = "/v1/tasks", fn = tasks.post_route, label = "POST /v1/tasks",
    scope = "tasks" })
  R.register_builtin_route({ method = "GET", path = "/v1/tasks/:id", fn = tasks.get_route, label = "GET /v1/tasks/:id",
    scope = "tasks" })
  -- /reset forgets the conversation of this chat (and user, in groups)
  handlers.BUILTIN.reset = true
  dispatch.builtins.reset = { desc = "reset_desc", fn = function(msg)
    memory.open(msg):reset()
    return msg:reply(texts.get("reset_done"))
  end }
end

return M
