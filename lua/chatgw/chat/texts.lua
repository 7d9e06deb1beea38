-- chatgw.chat.texts: the built-in replies in English and Chinese. The language is
-- CHAT_GATEWAY_RESPONSE_LANG (alias GW_RESPONSE_LANG, seed 000's names), else chat.language in
-- the config, else "en". M.get(key, vars) fills "{name}" placeholders.
local M = {}

local TEXTS = {
  en = {
    help_header = "Commands you can use:",
    help_none = "There is no command you can use here.",
    unknown_command = "Unknown command /{command}. Send /help for the list.",
    not_allowed = "not allowed",
    rate_limited = "Too many requests: try again in {seconds} s.",
    allowlist_denied = "This chat is not authorized to use this bot.",
    handler_error = "Sorry, something went wrong (error {id}).",
    truncated = "… (truncated)",
    truncated_lines = "… (truncated: {n} more lines)",
    truncated_line = "… (truncated: 1 more line)",
    auth_usage = "Usage: /auth add <chat_id> | /auth del <chat_id> | /auth list",
    auth_owner_only = "Only the owner can change who may use this bot.",
    auth_added = "Chat {chat_id} may use this bot now.",
    auth_removed = "Chat {chat_id} may no longer use this bot.",
    auth_not_found = "Chat {chat_id} was not on the list.",
    auth_list = "Chats allowed on {channel} ({mode}):",
    auth_list_empty = "No chat is on the list of {channel} ({mode}).",
    auth_owner_chat = "{chat_id} (owner chat)",
    stream_failed = "(failed: {error})",
    help_desc = "list the commands",
    start_desc = "start",
    auth_desc = "manage the chats allowed to use this bot (owner)",
    reset_desc = "forget this conversation",
    reset_done = "Done: this conversation starts afresh.",
    ai_rate_limited = "Too many questions at once: try again in {seconds} s.",
  },
  zh = {
    help_header = "你可以使用的命令：",
    help_none = "这里没有你可以使用的命令。",
    unknown_command = "未知命令 /{command}。发送 /help 查看命令列表。",
    not_allowed = "无权限",
    rate_limited = "请求过于频繁，请在 {seconds} 秒后重试。",
    allowlist_denied = "此会话未获授权使用本机器人。",
    handler_error = "抱歉，处理时出错（错误 {id}）。",
    truncated = "…（已截断）",
    truncated_lines = "…（已截断：还有 {n} 行）",
    truncated_line = "…（已截断：还有 1 行）",
    auth_usage = "用法：/auth add <chat_id> | /auth del <chat_id> | /auth list",
    auth_owner_only = "只有所有者可以修改授权。",
    auth_added = "会话 {chat_id} 现在可以使用本机器人。",
    auth_removed = "会话 {chat_id} 已不能使用本机器人。",
    auth_not_found = "会话 {chat_id} 不在列表中。",
    auth_list = "{channel} 已授权的会话（{mode}）：",
    auth_list_empty = "{channel} 没有已授权的会话（{mode}）。",
    auth_owner_chat = "{chat_id}（所有者会话）",
    stream_failed = "（失败：{error}）",
    help_desc = "列出命令",
    start_desc = "开始",
    auth_desc = "管理可使用本机器人的会话（所有者）",
    reset_desc = "清除本会话的记忆",
    reset_done = "好的，本会话已重新开始。",
    ai_rate_limited = "提问太频繁，请 {seconds} 秒后再试。",
  },
}

M.LANGUAGES = { "en", "zh" }

local lang = "en"

-- From env (seed names) or the config value; an unknown language falls back to English.
function M.configure(cfg_language)
  local v = os.getenv("CHAT_GATEWAY_RESPONSE_LANG")
  if not v or v == "" then v = os.getenv("GW_RESPONSE_LANG") end
  if not v or v == "" then v = cfg_language end
  v = v and v:lower():match("^(%a%a)") or "en"
  lang = TEXTS[v] and v or "en"
  return lang
end

function M.language() return lang end

function M.get(key, vars)
  local t = TEXTS[lang][key] or TEXTS.en[key] or key
  if vars then
    t = t:gsub("{([%w_]+)}", function(k)
      local v = vars[k]
      return v ~= nil and tostring(v) or "{" .. k .. "}"
    end)
  end
  return t
end

return M
