-- chatgw.providers: AI providers through four wire formats (formats/*.lua), with their guards.
--
--   providers.chat(args)        -> result | nil, "ECODE: ...", partial
--   providers.models(name)      -> { ids } | nil, err
--   providers.validate(name)    -> { valid, latency_ms, error, code }
--
-- Guards, in order, for one call:
--   * one circuit breaker per provider (`ai.<name>`): transport failures, 5xx, overload and
--     unparseable answers count; 4xx answers (the caller's request, a bad key) and 429 do not
--   * retries on 429, 529 and 503 honouring retry-after (at most 2, each wait at most 10 s and
--     within the call's timeout), only before the first streamed token
--   * failover (providers.failover): the next provider is tried only before the first token;
--     after text has streamed a failure is returned as such, with the text so far (`partial`)
-- Error codes: auth, rate_limited, overloaded, bad_request, timeout, connect, open, upstream,
-- protocol, and unavailable (no such provider, or it is off). Keys never reach an error, a log
-- line or a metric label.
local chatgw = chatgw
local json = require "chatgw.json"
local pconfig = require "chatgw.providers.config"

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local min, floor = math.min, math.floor

local M = {}

local FORMATS = {
  openai = require "chatgw.providers.formats.openai",
  anthropic = require "chatgw.providers.formats.anthropic",
  gemini = require "chatgw.providers.formats.gemini",
  ollama = require "chatgw.providers.formats.ollama",
}

M.MAX_RETRIES = 2
M.MAX_RETRY_WAIT_MS = 10000

local state = { list = {}, by_name = {}, failover = {} } -- from the config at the last load

local requests = chatgw.metrics.counter{ name = "chatgw_ai_requests_total",
  help = "AI provider calls, by provider, model and result (ok or the error code)",
  labels = { "provider", "model", "result" } }
local tokens = chatgw.metrics.counter{ name = "chatgw_ai_tokens_total",
  help = "Tokens the providers counted, in (prompt) and out (answer)", labels = { "provider", "model", "direction" } }
local latency = chatgw.metrics.histogram{ name = "chatgw_ai_latency_seconds",
  help = "AI provider calls, request to last byte", labels = { "provider", "model" },
  buckets = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 } }
local errors = chatgw.metrics.counter{ name = "chatgw_ai_errors_total",
  help = "AI provider call failures, by error code", labels = { "provider", "model", "code" } }

-- Counted by the breaker; the others are answers about the request, not the provider's health.
local BREAKER_FAILURE = { upstream = true, overloaded = true, timeout = true, connect = true, protocol = true }
local RETRY = { rate_limited = true, overloaded = true }
local FAILOVER = { auth = true, rate_limited = true, overloaded = true, timeout = true, connect = true,
                   open = true, upstream = true, protocol = true, unavailable = true }

function M.configure(cfg)
  local r = pconfig.resolve(cfg)
  state = r
  return r
end

-- A provider added while running (the gateway registry): prov as providers/config.lua builds
-- them ({ name, kind, api_key, base_url, model, ... }). nil, err when the name is taken.
function M.add(prov)
  if state.by_name[prov.name] then return nil, "a provider named " .. prov.name .. " exists" end
  prov.source = "registry"
  state.list[#state.list + 1] = prov
  state.by_name[prov.name] = prov
  if not state.default then state.default = prov.name end
  return prov
end

function M.remove(name)
  local p = state.by_name[name]
  if not p or p.source ~= "registry" then return false end
  state.by_name[name] = nil
  for i, x in ipairs(state.list) do if x == p then table.remove(state.list, i) break end end
  if state.default == name then
    state.default = nil
    for _, x in ipairs(state.list) do if not x.off_reason then state.default = x.name break end end
  end
  return true
end

function M.list() return state.list end
function M.default_name() return state.default end
function M.get(name) return state.by_name[name] end

local function breaker(p)
  return chatgw.breaker{ name = "ai." .. p.name, failures = 5, open_ms = 30000, max_open_ms = 300000 }
end
M.breaker = breaker

local function scrub(p, s)
  s = tostring(s)
  if p.api_key and #p.api_key >= 4 then
    s = s:gsub(p.api_key:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"), "<key>")
  end
  return s
end

-- seconds from a retry-after header (seconds or an HTTP date), or retry-after-ms
local function retry_after_s(headers)
  local ms = tonumber(headers["retry-after-ms"])
  if ms then return ms / 1000 end
  local v = headers["retry-after"]
  if not v then return nil end
  local n = tonumber(v)
  if n then return n end
  return nil -- an HTTP date: treated as unknown (the default wait applies)
end

-- An HTTP answer that is not a success -> code, message, retry_after_s
local function classify_status(p, fmt, res)
  local st, j = res.status, res.json
  local msg = fmt.error_message(j, res.body) or ("HTTP " .. st)
  local code
  if st == 401 or st == 403 or (fmt.is_auth_error and fmt.is_auth_error(st, j)) then code = "auth"
  elseif st == 429 then code = "rate_limited"
  elseif st == 529 or st == 503 then code = "overloaded"
  elseif st == 408 or st == 504 then code = "timeout"
  elseif st >= 500 then code = "upstream"
  elseif st >= 400 then code = "bad_request"
  else code = "protocol" end
  return code, ("%s: %s (HTTP %d from %s)"):format(code, scrub(p, msg), st, p.name), retry_after_s(res.headers or {})
end

-- A transport error of chatgw.http.request -> code, message
local function classify_transport(p, err)
  err = scrub(p, err)
  local c = err:match("^([%w_]+):") or "upstream"
  local map = { timeout = "timeout", connect = "connect", dns = "connect", tls = "connect", io = "upstream",
                too_large = "protocol", cancelled = "cancelled" }
  local code = map[c] or "upstream"
  local rest = err:gsub("^[%w_]+:%s*", "")
  return code, ("%s: %s (%s)"):format(code, rest, p.name)
end

local function code_of(err) return tostring(err):match("^([%w_]+):") or "upstream" end

-- One request to one provider, no retries. result | nil, err, retry_after_s, streamed
local function attempt(p, a, deadline)
  local fmt = FORMATS[p.kind]
  local req = fmt.chat_request(p, a)
  local left = deadline - chatgw.now()
  if left <= 0 then return nil, ("timeout: the call's %d ms passed (%s)"):format(a.timeout_ms, p.name) end
  local headers = req.headers or {}
  for k, v in pairs(p.headers or {}) do headers[k] = v end
  local opts = { method = "POST", url = req.url, query = req.query, headers = headers, json = req.json,
                 timeout_ms = floor(left), connect_timeout_ms = min(10000, floor(left)) }
  local streamed, out, parser, perr = 0, {}, nil, nil
  local err_body = {} -- a streamed request answered with an error status: its body, read whole
  if a.stream then
    local texts = {}
    out.texts = texts
    parser = fmt.stream(function(delta)
      streamed = streamed + #delta
      texts[#texts + 1] = delta
      local ok, e = pcall(a.stream, delta)
      if not ok then perr = "stream callback: " .. tostring(e) error(perr, 0) end
    end, out)
    opts.on_chunk = function(chunk, status)
      if status and (status < 200 or status >= 300) then
        if #err_body < 64 then err_body[#err_body + 1] = chunk end
        return
      end
      local ok, e = parser:feed(chunk)
      if not ok then perr = perr or e error(perr, 0) end
    end
  end
  local okc, res, err = pcall(chatgw.http.request, opts)
  if not okc then -- on_chunk raised: the stream said it failed, or the caller's callback did
    if not perr then error(res, 0) end
    res = nil
  end
  if not res then
    if perr then -- the stream said it failed, or the caller's callback raised
      if perr:find("^stream callback") then return nil, "bad_request: " .. perr, nil, streamed end
      local code = code_of(perr)
      return nil, ("%s: %s (%s)"):format(code, (perr:gsub("^[%w_]+:%s*", "")), p.name), nil, streamed
    end
    local _, msg = classify_transport(p, err)
    if streamed > 0 then msg = msg .. " mid-stream" end
    return nil, msg, nil, streamed
  end
  if res.status < 200 or res.status >= 300 then
    if a.stream then
      res.body = table.concat(err_body)
      res.json = json.decode(res.body)
    end
    local _, msg, ra = classify_status(p, fmt, res)
    return nil, msg, ra, streamed
  end
  if a.stream then
    local ok, e = parser:finish()
    if not ok then return nil, ("%s (%s)"):format(e, p.name), nil, streamed end
    if not out.done and p.kind ~= "gemini" then -- Gemini has no end event: its stream just ends
      return nil, ("upstream: the stream ended before its end event (%s)"):format(p.name), nil, streamed
    end
    return { text = table.concat(out.texts), finish_reason = out.finish_reason, usage = out.usage or {} }
  end
  if type(res.json) ~= "table" then
    return nil, ("protocol: the answer is not JSON (%s)"):format(p.name)
  end
  local r, perr2 = fmt.parse(res.json)
  if not r then return nil, ("%s (%s)"):format(perr2, p.name) end
  r.usage = r.usage or {}
  return r
end

-- One provider with its breaker and retries. result | nil, err, streamed
local function call_provider(p, a, deadline)
  local br = breaker(p)
  local retries = 0
  while true do
    local ticket, berr, retry_ms = br:enter()
    if not ticket then
      return nil, ("open: %s (retry in %d ms)"):format(tostring(berr):gsub("^open:%s*", ""), retry_ms or 0), 0
    end
    local t0 = chatgw.now()
    local r, err, ra, streamed = attempt(p, a, deadline)
    local code = r and "ok" or code_of(err)
    if code == "cancelled" then br:leave(ticket, nil) return nil, err, streamed or 0 end
    local outcome = nil -- nil: does not count (the request's fault, or 429)
    if r then outcome = true elseif BREAKER_FAILURE[code] then outcome = false end
    br:leave(ticket, outcome)
    local model = a.model
    latency:observe({ provider = p.name, model = model }, (chatgw.now() - t0) / 1000)
    requests:inc({ provider = p.name, model = model, result = code })
    if r then
      local u = r.usage
      if u.input_tokens then tokens:inc({ provider = p.name, model = model, direction = "in" }, u.input_tokens) end
      if u.output_tokens then tokens:inc({ provider = p.name, model = model, direction = "out" }, u.output_tokens) end
      return r
    end
    errors:inc({ provider = p.name, model = model, code = code })
    if (streamed or 0) > 0 or not RETRY[code] or retries >= M.MAX_RETRIES then
      return nil, err, streamed or 0
    end
    local wait = min((ra or 1) * 1000, M.MAX_RETRY_WAIT_MS)
    if chatgw.now() + wait >= deadline then return nil, err, 0 end
    retries = retries + 1
    chatgw.log.info("ai: retrying after " .. code, { provider = p.name, wait_ms = floor(wait), attempt = retries })
    local _, serr = chatgw.sleep(wait)
    if serr then return nil, serr, 0 end
  end
end

local function check_args(a)
  local fn = "chatgw.ai.chat"
  if type(a) ~= "table" then error(fn .. ": expected a table of options, got " .. type(a), 3) end
  local known = { provider = true, model = true, messages = true, system = true, temperature = true,
                  max_tokens = true, stream = true, timeout_ms = true, failover = true }
  for k in pairs(a) do
    if not known[k] then error(("%s: unknown option '%s'"):format(fn, tostring(k)), 3) end
  end
  if type(a.messages) ~= "table" or #a.messages == 0 then
    error(fn .. ": messages must be a non-empty list of {role =, content =}", 3)
  end
  for i, m in ipairs(a.messages) do
    if type(m) ~= "table" or type(m.content) ~= "string" or
      (m.role ~= "user" and m.role ~= "assistant" and m.role ~= "system") then
      error(("%s: messages[%d] must be {role = 'user'|'assistant'|'system', content = string}"):format(fn, i), 3)
    end
  end
  if a.provider ~= nil and type(a.provider) ~= "string" then error(fn .. ": provider must be a string", 3) end
  if a.model ~= nil and type(a.model) ~= "string" then error(fn .. ": model must be a string", 3) end
  if a.system ~= nil and type(a.system) ~= "string" then error(fn .. ": system must be a string", 3) end
  if a.stream ~= nil and type(a.stream) ~= "function" then error(fn .. ": stream must be a function(delta)", 3) end
  for _, k in ipairs({ "temperature", "max_tokens", "timeout_ms" }) do
    if a[k] ~= nil and (type(a[k]) ~= "number" or a[k] < 0) then error(fn .. ": " .. k .. " must be a number >= 0", 3) end
  end
end
M.check_args = check_args

-- The providers to try, in order: the one asked (or the default), then the failover list.
local function chain(a)
  local first = a.provider or state.default
  local out, seen = {}, {}
  if first then out[1] = first; seen[first] = true end
  if a.failover ~= false then
    for _, n in ipairs(state.failover) do
      if not seen[n] then out[#out + 1] = n; seen[n] = true end
    end
  end
  return out
end

function M.chat(a)
  local names = chain(a)
  if #names == 0 then
    return nil, "unavailable: no AI provider is configured (set DEEPSEEK_API_KEY, OPENAI_API_KEY, ... or providers: in the config)"
  end
  local last_err
  for i, name in ipairs(names) do
    local p = state.by_name[name]
    local err
    if not p then
      err = ("unavailable: no provider '%s'"):format(name)
    elseif p.off_reason then
      err = ("unavailable: provider '%s' is off (%s)"):format(name, p.off_reason)
    else
      local timeout = a.timeout_ms or p.timeout_ms
      local args = { messages = a.messages, system = a.system, stream = a.stream, timeout_ms = timeout,
                     model = (i == 1 and a.model) or p.model,
                     temperature = a.temperature or p.temperature, max_tokens = a.max_tokens or p.max_tokens }
      local t0 = chatgw.now()
      local r, e, streamed = call_provider(p, args, t0 + timeout)
      if r then
        r.provider, r.model, r.latency_ms = p.name, args.model, floor((chatgw.now() - t0) * 10 + 0.5) / 10
        r.usage = { input_tokens = r.usage.input_tokens, output_tokens = r.usage.output_tokens }
        if i > 1 then chatgw.log.info("ai: answered by a failover provider", { provider = p.name, first = names[1] }) end
        return r
      end
      if streamed > 0 then -- text reached the caller: no silent switch
        return nil, e, { streamed_bytes = streamed }
      end
      err = e
    end
    last_err = err
    if not FAILOVER[code_of(err)] then return nil, err end
    if names[i + 1] then
      chatgw.log.warn("ai: provider failed before its first token; trying the next", { provider = name,
        next = names[i + 1], error = err })
    end
  end
  return nil, last_err
end

function M.models(name)
  name = name or state.default
  local p = name and state.by_name[name]
  if not p then return nil, ("unavailable: no provider '%s'"):format(tostring(name)) end
  if p.off_reason then return nil, ("unavailable: provider '%s' is off (%s)"):format(p.name, p.off_reason) end
  local fmt = FORMATS[p.kind]
  local req = fmt.models_request(p)
  local headers = req.headers or {}
  for k, v in pairs(p.headers or {}) do headers[k] = v end
  local res, err = chatgw.http.request{ url = req.url, headers = headers, timeout_ms = min(p.timeout_ms, 30000),
                                        connect_timeout_ms = 10000 }
  if not res then
    local _, msg = classify_transport(p, err)
    return nil, msg
  end
  if res.status ~= 200 then
    local _, msg = classify_status(p, fmt, res)
    return nil, msg
  end
  if type(res.json) ~= "table" then return nil, ("protocol: the model list is not JSON (%s)"):format(p.name) end
  return fmt.parse_models(res.json)
end

-- Whether the key works: a list of models (no tokens spent). A bad key (auth) and a network
-- failure are told apart by `code`.
function M.validate(name)
  local t0 = chatgw.now()
  local ids, err = M.models(name)
  local ms = floor((chatgw.now() - t0) * 10 + 0.5) / 10
  if ids then return { valid = true, latency_ms = ms, models = #ids } end
  local code = code_of(err)
  return { valid = false, latency_ms = ms, error = err, code = code,
           reason = code == "auth" and "the key was refused" or
             (code == "connect" or code == "timeout") and "the provider could not be reached" or nil }
end

-- For /health: each provider, on or off, and its breaker.
function M.health()
  local out = {}
  for _, p in ipairs(state.list) do
    local e = { kind = p.kind, model = p.model, base_url = (p.base_url:gsub("//[^/@]+@", "//<userinfo>@")),
                state = p.off_reason and "off" or "on",
                reason = p.off_reason }
    if not p.off_reason then e.breaker = breaker(p):state() end
    out[p.name] = e
  end
  return { status = "ok", default = state.default, failover = state.failover, providers = out }
end

return M
