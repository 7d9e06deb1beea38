-- chatgw.chat.channels.feishu.config: the `channels.feishu` config schema and the apps
-- (accounts) it describes, with seed 000's environment variables. Pure: the docs spec loads it.
--
-- One app (the usual case), account "default": FEISHU_APP_ID and FEISHU_APP_SECRET (both set:
-- the channel is on), FEISHU_VERIFICATION_TOKEN, FEISHU_ENCRYPT_KEY (optional),
-- FEISHU_BOT_OPEN_ID / FEISHU_BOT_USER_ID / FEISHU_BOT_NAME (mention detection; else from the
-- bot info API), FEISHU_API_BASE (else FEISHU_DOMAIN=lark: open.larksuite.com, else
-- open.feishu.cn). Several: channels.feishu.accounts.<name> names the variables of each.
local config = require "chatgw.config"

local M = {}

local NAME = "^[a-z][a-z0-9_]*$"
local ENV_NAME = { type = "string", min_len = 1, max_len = 128 }

M.FEISHU, M.LARK = "https://open.feishu.cn", "https://open.larksuite.com"

M.schema = { type = "map", fields = {
  allowlist_mode = { type = "string", enum = { "off", "owner_only", "auth" },
    doc = "Seed 000's place for the Feishu allowlist mode; `chat.channels.feishu.allowlist_mode` wins." },
  api_base = { type = "string", min_len = 1, max_len = 1023,
    doc = "The open platform's base URL; `FEISHU_API_BASE` wins; unset: `FEISHU_DOMAIN=lark` gives open.larksuite.com, else open.feishu.cn." },
  event_path = { type = "string", default = "/feishu/events", min_len = 2, max_len = 256,
    doc = "The event callback path on the `feishu` listener (the default app; other apps add `/<account>`)." },
  stream = { type = "string", enum = { "card", "edit" }, default = "card",
    doc = "Streamed replies: a CardKit streaming card (`card`), or edits of a text message (`edit`)." },
  accounts = { type = "dict", key_pattern = NAME, max_keys = 64,
    doc = "Several apps: per account name, the variables holding `app_id_env`, `app_secret_env`, `verification_token_env`, `encrypt_key_env`, and `bot_open_id`, `bot_name`.",
    values = { type = "map", fields = {
      app_id_env = ENV_NAME, app_secret_env = ENV_NAME, verification_token_env = ENV_NAME,
      encrypt_key_env = ENV_NAME,
      bot_open_id = { type = "string", min_len = 1, max_len = 128 },
      bot_name = { type = "string", min_len = 1, max_len = 128 },
    } } },
} }

local env = config.env_value

-- The apps of cfg: { {name, app_id, app_secret (nil: off), verification_token, encrypt_key,
-- bot_open_id, bot_user_id, bot_name, api_base, event_path, off_reason}, ... }, default first.
function M.accounts(cfg, getenv)
  getenv = getenv or os.getenv
  local f = cfg.channels and cfg.channels.feishu or {}
  local base = env(getenv, "FEISHU_API_BASE") or f.api_base
    or ((env(getenv, "FEISHU_DOMAIN") or ""):lower() == "lark" and M.LARK or M.FEISHU)
  base = base:gsub("/+$", "")
  local path = f.event_path or "/feishu/events"
  local list = {}
  local function add(name, a, default)
    local up = name:upper()
    local function var(key, default_name)
      return a[key] or (default and default_name) or ("FEISHU_" .. default_name:gsub("^FEISHU_", "") .. "_" .. up)
    end
    local id_env, secret_env = var("app_id_env", "FEISHU_APP_ID"), var("app_secret_env", "FEISHU_APP_SECRET")
    local acct = {
      name = name, api_base = base, app_id_env = id_env, app_secret_env = secret_env,
      app_id = env(getenv, id_env), app_secret = env(getenv, secret_env),
      verification_token = env(getenv, var("verification_token_env", "FEISHU_VERIFICATION_TOKEN")),
      encrypt_key = env(getenv, var("encrypt_key_env", "FEISHU_ENCRYPT_KEY")),
      bot_open_id = (default and env(getenv, "FEISHU_BOT_OPEN_ID")) or a.bot_open_id,
      bot_user_id = default and env(getenv, "FEISHU_BOT_USER_ID") or nil,
      bot_name = (default and env(getenv, "FEISHU_BOT_NAME")) or a.bot_name,
      event_path = default and path or (path .. "/" .. name),
      stream = f.stream or "card",
    }
    if not acct.app_id or not acct.app_secret then
      acct.off_reason = (not acct.app_id and id_env or secret_env) .. " is not set"
    end
    list[#list + 1] = acct
  end
  local accounts = f.accounts or {}
  add("default", accounts.default or {}, true)
  local names = {}
  for name in pairs(accounts) do if name ~= "default" then names[#names + 1] = name end end
  table.sort(names)
  for _, name in ipairs(names) do add(name, accounts[name], false) end
  return list
end

-- Whether any app has its credentials: then the `feishu` listener exists (seed 000 runs it
-- whenever Feishu is on, without a config file declaring it).
function M.on(cfg, getenv)
  for _, a in ipairs(M.accounts(cfg, getenv)) do
    if a.app_id and a.app_secret then return true end
  end
  return false
end

config.register_auto_listener("feishu", M.on)

return M
