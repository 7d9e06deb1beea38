-- chatgw.notify.targets: which chats a notify goes to, as seed 000 resolves them. Pure.
--
--   targets.resolve(body, defaults) -> { target, telegram = {ids}, feishu = {ids} } | nil, code
--   defaults(target) -> the project's registry chat ids for "telegram" | "feishu" (or {})
--
-- `target` is telegram, feishu or both; anything else (or none) is both. Explicit per-target
-- lists (chat_ids_by_target, or chat_ids as a {telegram, feishu} map) win; a direct chat_id or
-- chat_ids list needs a single target (both: chat_id_requires_single_target); otherwise the
-- project's registry defaults. Errors: missing_telegram_chat_ids, missing_feishu_chat_ids,
-- missing_chat_ids_for_both (both needs chats on both sides). Ids become strings.
local type, tostring = type, tostring

local M = {}

local function str_list(v)
  local out = {}
  if type(v) == "table" then
    for _, x in ipairs(v) do
      if (type(x) == "string" or type(x) == "number") and tostring(x) ~= "" then out[#out + 1] = tostring(x) end
    end
  elseif (type(v) == "string" or type(v) == "number") and tostring(v) ~= "" then
    out[1] = tostring(v)
  end
  return out
end
M.str_list = str_list

local function is_list(t) return type(t) == "table" and (t[1] ~= nil or next(t) == nil) end

function M.normalize_target(t)
  t = type(t) == "string" and t:lower() or "both"
  if t == "telegram" or t == "feishu" or t == "both" then return t end
  return "both"
end

function M.resolve(body, defaults)
  local target = M.normalize_target(body.target)
  local chat_id = body.chat_id
  if type(chat_id) == "userdata" then chat_id = nil end -- JSON null: absent (then chat_ids counts)
  local direct = chat_id ~= nil and str_list(chat_id) or (is_list(body.chat_ids) and str_list(body.chat_ids) or {})
  local map = type(body.chat_ids_by_target) == "table" and body.chat_ids_by_target
    or (type(body.chat_ids) == "table" and not is_list(body.chat_ids) and body.chat_ids) or {}
  local ex_tg, ex_fs = str_list(map.telegram), str_list(map.feishu)
  if target == "both" and #direct > 0 then return nil, "chat_id_requires_single_target" end
  local tg = #ex_tg > 0 and ex_tg or (target == "telegram" and #direct > 0 and direct) or defaults("telegram")
  local fs = #ex_fs > 0 and ex_fs or (target == "feishu" and #direct > 0 and direct) or defaults("feishu")
  if target == "telegram" and #tg == 0 then return nil, "missing_telegram_chat_ids" end
  if target == "feishu" and #fs == 0 then return nil, "missing_feishu_chat_ids" end
  if target == "both" and (#tg == 0 or #fs == 0) then return nil, "missing_chat_ids_for_both" end
  -- both lists are returned whatever the target (the seed shows both in target_overrides);
  -- only the target's are sent to
  return { target = target, telegram = tg, feishu = fs }
end

return M
