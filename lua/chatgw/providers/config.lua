-- chatgw.providers.config: the `providers:` config section, the built-in presets, and the
-- providers they and the environment describe. Pure: the docs spec loads it.
--
--   providers:
--     default: deepseek            # reserved: the provider chatgw.ai.chat uses unless told
--     failover: [openai]           # reserved: tried in order when the one asked fails first
--     <name>: { kind, base_url, api_key_env, model, max_tokens, temperature, timeout_ms, headers }
--
-- A name that is a preset (openai, deepseek, groq, mistral, xai or its alias grok, anthropic,
-- gemini, ollama) starts from it; any other name needs `kind` and `base_url`. The environment
-- wins over the file: <NAME>_API_KEY (or the entry's api_key_env) and <NAME>_BASE_URL; for
-- ollama also OLLAMA_HOST. A preset's key in the environment is enough to turn it on; ollama
-- is on only with OLLAMA_BASE_URL or OLLAMA_HOST (or a base_url in the file). A provider that
-- needs a key and has none is off, with the reason.
local config = require "chatgw.config"

local M = {}

M.KINDS = { "openai", "anthropic", "gemini", "ollama" }

-- kind, base URL (as the provider's SDK takes it), default model, and the version path that
-- is added to a base URL which does not end in a version segment already.
M.PRESETS = {
  openai    = { kind = "openai", base_url = "https://api.openai.com/v1", model = "gpt-4o-mini" },
  deepseek  = { kind = "openai", base_url = "https://api.deepseek.com", model = "deepseek-chat",
                max_tokens = 800, temperature = 0.2 }, -- seed 000's settings
  groq      = { kind = "openai", base_url = "https://api.groq.com/openai/v1", model = "llama-3.3-70b-versatile" },
  mistral   = { kind = "openai", base_url = "https://api.mistral.ai/v1", model = "mistral-small-latest" },
  xai       = { kind = "openai", base_url = "https://api.x.ai/v1", model = "grok-3-mini", env_alias = "GROK" },
  anthropic = { kind = "anthropic", base_url = "https://api.anthropic.com", model = "claude-3-5-haiku-latest" },
  gemini    = { kind = "gemini", base_url = "https://generativelanguage.googleapis.com", model = "gemini-2.0-flash" },
  ollama    = { kind = "ollama", base_url = "http://127.0.0.1:11434", model = "llama3.2", keyless = true },
}
M.PRESETS.grok = M.PRESETS.xai
M.PRESET_ORDER = { "deepseek", "openai", "anthropic", "gemini", "groq", "mistral", "xai", "ollama" }

local VERSION = { openai = "/v1", anthropic = "/v1", gemini = "/v1beta", ollama = "" }

local NAME = "^[a-z][a-z0-9_]*$"

local entry = { type = "map", fields = {
  kind = { type = "string", enum = M.KINDS,
    doc = "The wire format: `openai` (OpenAI-compatible), `anthropic`, `gemini`, `ollama`; a preset's name gives it." },
  base_url = { type = "string", min_len = 8, max_len = 1023,
    doc = "As the provider's SDK takes it; a version path (`/v1`, `/v1beta`) is added unless the URL ends in one. `<NAME>_BASE_URL` wins." },
  api_key_env = { type = "string", min_len = 1, max_len = 128,
    doc = "The variable holding the API key (default `<NAME>_API_KEY`)." },
  model = { type = "string", min_len = 1, max_len = 256, doc = "The model unless a call names one; a preset has a default." },
  max_tokens = { type = "integer", min = 1, max = 1000000, doc = "Answer length cap (default 1024; deepseek 800)." },
  temperature = { type = "number", min = 0, max = 2, doc = "Sampling temperature (default: the provider's; deepseek 0.2)." },
  timeout_ms = { type = "integer", min = 100, max = 3600000, default = 60000,
    doc = "A whole call, first byte to last (a stream included)." },
  headers = { type = "dict", max_keys = 32, values = { type = "string", max_len = 4096 },
    doc = "Extra request headers (e.g. `OpenAI-Organization`)." },
} }

M.schema = { type = "dict", key_pattern = NAME, max_keys = 32, values = entry, doc_values = true,
  doc = "AI providers by name.",
  reserved = {
    default = { type = "string", min_len = 1, max_len = 64,
      doc = "The provider used when a call names none; unset: deepseek when `DEEPSEEK_API_KEY` is set, else the first provider that is on." },
    failover = { type = "list", items = { type = "string", min_len = 1, max_len = 64 },
      doc = "Providers tried in order when the one called fails before its first token." },
  } }

config.register_section("providers", M.schema)

local env = config.env_value

-- base .. version path, unless base already ends in a version segment (/v1, /v2beta, ...).
function M.versioned(base, kind)
  base = base:gsub("/+$", "")
  if base:match("/v%d+[%w]*$") then return base end
  return base .. (VERSION[kind] or "")
end

-- The providers of cfg (a loaded config) and the environment:
-- { list = { {name, kind, base_url (versioned), api_key, api_key_env, model, max_tokens,
--   temperature, timeout_ms, headers, off_reason}, ... }, by_name = {...}, default = name | nil,
--   failover = { names }, problems = { "providers.x: ..." } }
function M.resolve(cfg, getenv)
  getenv = getenv or os.getenv
  local p = cfg and cfg.providers or {}
  local out = { list = {}, by_name = {}, failover = {}, problems = {} }
  local names, seen = {}, {}
  for name, e in pairs(p) do
    if name ~= "default" and name ~= "failover" and type(e) == "table" then names[#names + 1] = name; seen[name] = true end
  end
  for _, name in ipairs(M.PRESET_ORDER) do -- a preset the environment turns on
    local pre = M.PRESETS[name]
    local up = name:upper()
    local on = env(getenv, up .. "_API_KEY") or (pre.env_alias and env(getenv, pre.env_alias .. "_API_KEY"))
    if name == "ollama" then on = env(getenv, "OLLAMA_BASE_URL") or env(getenv, "OLLAMA_HOST") end
    if on and not seen[name] then names[#names + 1] = name; seen[name] = true end
  end
  -- a preset named as the default or in failover is listed (off without its key) rather than
  -- unknown: `default: deepseek` with no key yet is a provider that is off, not a load error
  local named = {}
  if p.default then named[1] = p.default end
  for _, n in ipairs(p.failover or {}) do named[#named + 1] = n end
  for _, n in ipairs(named) do
    if type(n) == "string" and M.PRESETS[n] and not seen[n] then names[#names + 1] = n; seen[n] = true end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local e = p[name] or {}
    local pre = M.PRESETS[name] or {}
    local kind = e.kind or pre.kind
    local up = name:upper()
    if not kind then
      out.problems[#out.problems + 1] = ("providers.%s: kind is required (not a preset: one of %s)")
        :format(name, table.concat(M.KINDS, ", "))
    else
      local key_env = e.api_key_env or (up .. "_API_KEY")
      local key = env(getenv, key_env)
      if not key and not e.api_key_env and pre.env_alias then
        key = env(getenv, pre.env_alias .. "_API_KEY")
        if key then key_env = pre.env_alias .. "_API_KEY" end
      end
      local base = env(getenv, up .. "_BASE_URL") or (pre.env_alias and env(getenv, pre.env_alias .. "_BASE_URL"))
      if not base and name == "ollama" then
        local host = env(getenv, "OLLAMA_HOST")
        if host then base = host:find("://", 1, true) and host or ("http://" .. host) end
      end
      base = base or e.base_url or pre.base_url
      local prov = {
        name = name, kind = kind, api_key = key, api_key_env = key_env,
        model = e.model or pre.model, max_tokens = e.max_tokens or pre.max_tokens or 1024,
        temperature = e.temperature or pre.temperature, timeout_ms = e.timeout_ms or 60000,
        headers = e.headers or {},
      }
      if not base then
        out.problems[#out.problems + 1] = ("providers.%s: base_url is required (not a preset)"):format(name)
      elseif not base:match("^https?://[^/]") then
        out.problems[#out.problems + 1] = ("providers.%s: base_url must be an http:// or https:// URL, got '%s'")
          :format(name, base)
      else
        prov.base_url = M.versioned(base, kind)
        if not prov.model then
          out.problems[#out.problems + 1] = ("providers.%s: model is required (not a preset)"):format(name)
        end
        if kind ~= "ollama" and not key then prov.off_reason = key_env .. " is not set" end
        out.list[#out.list + 1] = prov
        out.by_name[name] = prov
      end
    end
  end
  local function on(name) return out.by_name[name] and not out.by_name[name].off_reason end
  if p.default then
    out.default = p.default
    if not out.by_name[p.default] then
      out.problems[#out.problems + 1] = ("providers.default: '%s' is not a provider (known: %s)")
        :format(p.default, #out.list > 0 and table.concat(names, ", ") or "none")
    end
  elseif on("deepseek") then
    out.default = "deepseek" -- seed 000's default
  else
    for _, prov in ipairs(out.list) do
      if not prov.off_reason then out.default = prov.name break end
    end
  end
  for _, name in ipairs(p.failover or {}) do
    if not out.by_name[name] then
      out.problems[#out.problems + 1] = ("providers.failover: '%s' is not a provider"):format(name)
    else
      out.failover[#out.failover + 1] = name
    end
  end
  return out
end

return M
