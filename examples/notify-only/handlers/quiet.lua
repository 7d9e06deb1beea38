-- notify-only: no chat handler on purpose (the bot serves no commands). This file adds one
-- operator route on the main listener (bearer token): a chat's minimum priority at run time,
-- over the registry's notify_overrides, kept in the store across restarts.
--
--   PUT    /v1/quiet/feishu/oc_shop_ops?min_priority=CRITICAL   quiet the group for the night
--   GET    /v1/quiet/feishu/oc_shop_ops                         what is set
--   DELETE /v1/quiet/feishu/oc_shop_ops                         back to the registry's minimum
local CHANNELS = { telegram = true, feishu = true }

local function chat_of(req)
  local channel, chat_id = req.params.channel, req.params.chat_id
  if not CHANNELS[channel] then
    return nil, { ok = false, error = "unknown_channel", channels = { "telegram", "feishu" } }
  end
  return channel, chat_id
end

local function answer(channel, chat_id)
  return { ok = true, channel = channel, chat_id = chat_id,
           min_priority = chatgw.notify.min_priority(channel, chat_id) or chatgw.json.null }
end

return {
  routes = {
    ["GET /v1/quiet/:channel/:chat_id"] = function(req)
      local channel, chat_id = chat_of(req)
      if not channel then return 400, chat_id end
      return answer(channel, chat_id)
    end,
    ["PUT /v1/quiet/:channel/:chat_id"] = function(req)
      local channel, chat_id = chat_of(req)
      if not channel then return 400, chat_id end
      local level = type(req.query.min_priority) == "string" and req.query.min_priority:upper() or nil
      local known = false
      for _, l in ipairs(chatgw.notify.levels()) do known = known or l == level end
      if not known then
        return 400, { ok = false, error = "invalid_min_priority", levels = chatgw.notify.levels() }
      end
      chatgw.notify.set_min_priority(channel, chat_id, level)
      return answer(channel, chat_id)
    end,
    ["DELETE /v1/quiet/:channel/:chat_id"] = function(req)
      local channel, chat_id = chat_of(req)
      if not channel then return 400, chat_id end
      chatgw.notify.set_min_priority(channel, chat_id, nil)
      return answer(channel, chat_id)
    end,
  },
}
