-- chatgw.chat.channels.telegram.config: the `channels.telegram` config schema (seed 000's place
-- for it; chat/channels/config.lua registers the section) and the accounts it describes, with
-- their environment variables.
--
-- One bot (the usual case): TELEGRAM_BOT_TOKEN (or the variable channels.telegram.bot_token_env
-- names), account "default". Several: channels.telegram.accounts.<name> = { token_env, mode,
-- webhook_url, webhook_secret_env, username }. Environment variables win over the file:
-- TELEGRAM_API_BASE, TELEGRAM_MODE, TELEGRAM_BOT_USERNAME, TELEGRAM_WEBHOOK_URL and
-- TELEGRAM_WEBHOOK_SECRET (these three for the default account). Pure: the docs spec loads it.
local config = require "chatgw.config"

local M = {}

local MODES = { "poll", "webhook", "send" }
local NAME = "^[a-z][a-z0-9_]*$"

M.schema = { type = "map", fields = {
    bot_token_env = { type = "string", default = "TELEGRAM_BOT_TOKEN", min_len = 1, max_len = 128,
      doc = "The environment variable holding the bot token of the default account (seed 000's name)." },
    api_base = { type = "string", default = "https://api.telegram.org", min_len = 1, max_len = 1023,
      doc = "The Bot API base URL; `TELEGRAM_API_BASE` wins." },
    mode = { type = "string", enum = MODES, default = "poll",
      doc = "`poll` (getUpdates), `webhook`, or `send`: send only, nothing received (a notify-only bot); `TELEGRAM_MODE` wins." },
    poll_timeout_s = config.int(25, 0, 50, "The long poll's `timeout` of getUpdates, in seconds."),
    poll_interval_ms = config.int(1500, 0, 600000,
      "The pause between two polls when `poll_timeout_s` is 0 (seed 000's key)."),
    allowlist_mode = { type = "string", enum = { "off", "owner_only", "auth" },
      doc = "Seed 000's place for the channel's allowlist mode; `chat.channels.telegram.allowlist_mode` wins." },
    drafts = { type = "boolean", default = true,
      doc = "Stream replies in private chats through message drafts (`sendMessageDraft`); off: by edits." },
    webhook_listener = { type = "string", default = "main", min_len = 1, max_len = 64,
      doc = "The listener serving `POST /telegram/<account>` in webhook mode." },
    accounts = { type = "dict", key_pattern = NAME, max_keys = 64,
      doc = "Several bots: per account name, `token_env`, `mode`, `webhook_url`, `webhook_secret_env`, `username`.",
      values = { type = "map", fields = {
        token_env = { type = "string", min_len = 1, max_len = 128 },
        mode = { type = "string", enum = MODES },
        webhook_url = { type = "string", min_len = 1, max_len = 2048 },
        webhook_secret_env = { type = "string", min_len = 1, max_len = 128 },
        username = { type = "string", min_len = 1, max_len = 64 },
      } } },
  } }

local env = config.env_value

-- The accounts of cfg (the whole config): { {name, token (nil: off), token_env, mode,
-- webhook_url, webhook_secret, username, api_base, off_reason}, ... } in name order, the
-- default account first. getenv: os.getenv (tests pass their own).
function M.accounts(cfg, getenv)
  getenv = getenv or os.getenv
  local t = cfg.channels and cfg.channels.telegram or {}
  local base = env(getenv, "TELEGRAM_API_BASE") or t.api_base or "https://api.telegram.org"
  base = base:gsub("/+$", "")
  local mode_env = env(getenv, "TELEGRAM_MODE")
  local list = {}
  local function add(name, a, defaults)
    local token_env = a.token_env or (defaults and t.bot_token_env) or ("TELEGRAM_BOT_TOKEN_" .. name:upper())
    local token = env(getenv, token_env)
    local acct = {
      name = name, token = token, token_env = token_env, api_base = base,
      mode = (defaults and mode_env) or a.mode or t.mode or "poll",
      -- the default account's variables win over the file, as everywhere
      webhook_url = (defaults and env(getenv, "TELEGRAM_WEBHOOK_URL")) or a.webhook_url,
      webhook_secret = env(getenv, a.webhook_secret_env) or (defaults and env(getenv, "TELEGRAM_WEBHOOK_SECRET")) or nil,
      username = (defaults and env(getenv, "TELEGRAM_BOT_USERNAME")) or a.username,
    }
    if acct.mode ~= "poll" and acct.mode ~= "webhook" and acct.mode ~= "send" then
      acct.bad_mode = "TELEGRAM_MODE must be poll, webhook or send, got '" .. tostring(acct.mode) .. "'"
    end
    if not token then acct.off_reason = token_env .. " is not set" end
    list[#list + 1] = acct
  end
  local accounts = t.accounts or {}
  add("default", accounts.default or {}, true)
  local names = {}
  for name in pairs(accounts) do if name ~= "default" then names[#names + 1] = name end end
  table.sort(names)
  for _, name in ipairs(names) do add(name, accounts[name], false) end
  return list
end

-- The bot's id: the part of the token before ':' (it names the poller's lock).
function M.bot_id(token)
  return token and token:match("^(%d+):") or nil
end

return M
