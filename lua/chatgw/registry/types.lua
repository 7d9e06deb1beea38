-- chatgw.registry.types: the gateway types, seed 002's field names, and their checks.
--
--   telegram_bot  credentials { botToken }                      config { mode, webhook_url, username }
--   feishu_app    credentials { appId, appSecret, verificationToken?, encryptKey? }   config { stream }
--   ai            credentials { provider, apiKey (not for ollama), baseUrl?, model? } config { max_tokens, temperature, timeout_ms }
--   webhook       credentials { secret }                        config { handler }
--
-- check(type, credentials, config) -> clean credentials, clean config, info | nil, code, field.
-- info is what the API may show of the credentials: the type and masked hints, never a secret.
local secrets = require "chatgw.registry.secrets"
local pconfig = require "chatgw.providers.config"

local type = type

local M = {}

M.ORDER = { "telegram_bot", "feishu_app", "ai", "webhook" }

local function str(v, max) return type(v) == "string" and v ~= "" and #v <= (max or 4096) end

local function opt_table(v) return v == nil or type(v) == "table" end

local T = {}

T.telegram_bot = function(c, cfg)
  if not str(c.botToken, 256) then return nil, "missing_field", "credentials.botToken" end
  if not c.botToken:match("^%d+:[%w_-]+$") or #c.botToken:match(":(.*)$") < 30 then
    return nil, "invalid_field", "credentials.botToken"
  end
  local mode = cfg.mode or "poll"
  if mode ~= "poll" and mode ~= "webhook" and mode ~= "send" then return nil, "invalid_field", "config.mode" end
  if cfg.webhook_url ~= nil and not (str(cfg.webhook_url, 2048) and cfg.webhook_url:match("^https://")) then
    return nil, "invalid_field", "config.webhook_url"
  end
  if mode == "webhook" and not cfg.webhook_url then return nil, "missing_field", "config.webhook_url" end
  if cfg.username ~= nil and not (str(cfg.username, 64) and cfg.username:match("^[%w_]+$")) then
    return nil, "invalid_field", "config.username"
  end
  return { botToken = c.botToken },
    { mode = mode, webhook_url = cfg.webhook_url, username = cfg.username },
    { type = "telegram_bot", hint = secrets.mask(c.botToken, true), bot_id = c.botToken:match("^(%d+):") }
end

T.feishu_app = function(c, cfg)
  if not str(c.appId, 128) then return nil, "missing_field", "credentials.appId" end
  if not str(c.appSecret, 256) then return nil, "missing_field", "credentials.appSecret" end
  for _, k in ipairs({ "verificationToken", "encryptKey" }) do
    if c[k] ~= nil and not str(c[k], 256) then return nil, "invalid_field", "credentials." .. k end
  end
  if cfg.stream ~= nil and cfg.stream ~= "card" and cfg.stream ~= "edit" then
    return nil, "invalid_field", "config.stream"
  end
  return { appId = c.appId, appSecret = c.appSecret, verificationToken = c.verificationToken, encryptKey = c.encryptKey },
    { stream = cfg.stream },
    { type = "feishu_app", app_id = c.appId, hint = secrets.mask(c.appSecret),
      events = c.verificationToken ~= nil, encrypted_events = c.encryptKey ~= nil }
end

T.ai = function(c, cfg)
  local provider = c.provider or cfg.provider
  if not str(provider, 64) then return nil, "missing_field", "credentials.provider" end
  local pre = pconfig.PRESETS[provider]
  if not pre then return nil, "invalid_field", "credentials.provider" end
  if not pre.keyless and not str(c.apiKey, 4096) then return nil, "missing_field", "credentials.apiKey" end
  if c.apiKey ~= nil and not str(c.apiKey, 4096) then return nil, "invalid_field", "credentials.apiKey" end
  local base = c.baseUrl or cfg.baseUrl
  if base ~= nil and not (str(base, 1023) and base:match("^https?://[^/]")) then
    return nil, "invalid_field", "credentials.baseUrl"
  end
  local model = c.model or cfg.model
  if model ~= nil and not str(model, 256) then return nil, "invalid_field", "credentials.model" end
  for _, k in ipairs({ "max_tokens", "temperature", "timeout_ms" }) do
    if cfg[k] ~= nil and type(cfg[k]) ~= "number" then return nil, "invalid_field", "config." .. k end
  end
  return { provider = provider, apiKey = c.apiKey, baseUrl = base, model = model },
    { max_tokens = cfg.max_tokens, temperature = cfg.temperature, timeout_ms = cfg.timeout_ms },
    { type = "ai", provider = provider, model = model or pre.model, base_url = base,
      hint = c.apiKey and secrets.mask(c.apiKey) or nil }
end

T.webhook = function(c, cfg)
  if not str(c.secret, 256) or #c.secret < 16 then return nil, "missing_field", "credentials.secret" end
  if not (str(cfg.handler, 64) and cfg.handler:match("^[%a_][%w_.-]*$")) then
    return nil, "missing_field", "config.handler"
  end
  return { secret = c.secret }, { handler = cfg.handler },
    { type = "webhook", hint = secrets.mask(c.secret), path = nil }
end

-- credentials and config as the request gave them (tables or nil).
function M.check(kind, credentials, config)
  local fn = T[kind]
  if not fn then return nil, "invalid_type", "type" end
  if type(credentials) ~= "table" then return nil, "missing_field", "credentials" end
  if not opt_table(config) then return nil, "invalid_field", "config" end
  return fn(credentials, config or {})
end

function M.known(kind) return T[kind] ~= nil end

return M
