-- Plain-Lua checks for lua/chatgw/providers/stream.lua (SSE and NDJSON read incrementally) and
-- the provider configuration (lua/chatgw/providers/config.lua). Run from the repo root:
--   luajit tests/lua/stream_spec.lua
package.path = "lua/?.lua;lua/?/init.lua;tests/lua/?.lua;" .. package.path
chatgw = { _ws = {} } -- chatgw.config reads it at load

local spec = require "spec_helper"
local check = spec.check
local pconfig = require "chatgw.providers.config"
local globals_before = spec.strict_globals()
local stream = require "chatgw.providers.stream"

-- feeds text in pieces of n bytes; returns the events
local function sse_events(text, n)
  local got = {}
  local p = stream.sse(function(ev, data) got[#got + 1] = ev .. "=" .. data return true end)
  local i = 1
  while i <= #text do
    assert(p:feed(text:sub(i, i + n - 1)))
    i = i + n
  end
  assert(p:finish())
  return table.concat(got, "|")
end

local body = "event: a\ndata: one\n\n: a comment\ndata: two\ndata:  lines\n\nevent: b\r\ndata:x\r\n\r\ndata: 世界🙂\r\rdata: last"
local want = "a=one|message=two\n lines|b=x|message=世界🙂|message=last"
for _, n in ipairs({ 1, 2, 3, 5, 7, 64, 4096 }) do
  local got = sse_events(body, n)
  check("sse in pieces of " .. n .. " bytes", got == want, got)
end

local stopped = stream.sse(function(_, data) if data == "bad" then return nil, "upstream: bad" end return true end)
local ok, err = stopped:feed("data: ok\n\ndata: bad\n\ndata: never\n\n")
check("a callback's error stops the stream", ok == nil and err == "upstream: bad", err)

local lines = {}
local nd = stream.ndjson(function(l) lines[#lines + 1] = l return true end)
local text = '{"a":1}\n\n{"b":"é"}\r\n{"c":3}'
for i = 1, #text do nd:feed(text:sub(i, i)) end
nd:finish()
check("ndjson: lines, blank ones skipped, the last without its newline", #lines == 3 and lines[2] == '{"b":"é"}'
  and lines[3] == '{"c":3}', table.concat(lines, "|"))

-- the configuration
local function env(t) return function(k) return t[k] end end
local r = pconfig.resolve({}, env({ DEEPSEEK_API_KEY = "k" }))
check("env alone turns a preset on; deepseek is the default", r.default == "deepseek" and r.by_name.deepseek
  and r.by_name.deepseek.base_url == "https://api.deepseek.com/v1" and r.by_name.deepseek.max_tokens == 800)
r = pconfig.resolve({}, env({ OPENAI_API_KEY = "k", DEEPSEEK_BASE_URL = "http://x/v1" }))
check("a preset without its key is not listed; the only one on is the default", r.default == "openai"
  and r.by_name.deepseek == nil)
r = pconfig.resolve({ providers = { anthropic = {} } }, env({}))
check("a configured preset without its key is off, with the reason", r.by_name.anthropic.off_reason == "ANTHROPIC_API_KEY is not set")
check("no default when nothing is on", r.default == nil)
r = pconfig.resolve({}, env({ OLLAMA_HOST = "127.0.0.1:11434" }))
check("OLLAMA_HOST turns ollama on, no key", r.by_name.ollama and r.by_name.ollama.base_url == "http://127.0.0.1:11434"
  and not r.by_name.ollama.off_reason)
r = pconfig.resolve({}, env({ GROK_API_KEY = "k" }))
check("GROK_API_KEY turns xai on", r.by_name.xai and r.by_name.xai.api_key == "k")
check("versioned: /v1 kept", pconfig.versioned("https://a/v1/", "openai") == "https://a/v1")
check("versioned: gemini adds /v1beta", pconfig.versioned("https://g", "gemini") == "https://g/v1beta")
check("versioned: a /v1beta base kept", pconfig.versioned("https://g/v1beta", "gemini") == "https://g/v1beta")
check("versioned: ollama adds nothing", pconfig.versioned("http://o:1/", "ollama") == "http://o:1")
r = pconfig.resolve({ providers = { mine = { model = "m" } } }, env({}))
check("a non-preset without kind is a problem", r.problems[1] and r.problems[1]:find("providers.mine: kind is required", 1, true))
r = pconfig.resolve({ providers = { default = "anthropic", failover = { "openai" } } }, env({}))
check("a preset named as default or failover is listed, off", #r.problems == 0 and r.default == "anthropic"
  and r.by_name.anthropic.off_reason == "ANTHROPIC_API_KEY is not set" and r.failover[1] == "openai")
r = pconfig.resolve({ providers = { failover = { "gemini" } } }, env({ OPENAI_API_KEY = "k" }))
check("a failover preset without a default is listed too", r.by_name.gemini and r.default == "openai")
r = pconfig.resolve({ providers = { default = "x", failover = { "y" } } }, env({}))
check("an unknown default and failover are problems", #r.problems == 2)
r = pconfig.resolve({ providers = { v = { kind = "openai", base_url = "ftp://x", model = "m" } } }, env({}))
check("a base_url that is not http(s) is a problem", r.problems[1] and r.problems[1]:find("http://", 1, true))

for k in pairs(_G) do check("no new global " .. tostring(k), globals_before[k]) end
spec.report()
