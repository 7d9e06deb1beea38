-- chatgw.chat.channels.telegram.poll: long polling (getUpdates) for one account, run as a
-- supervised loop that holds the bot's lock (two chatgw processes never poll one bot).
--
-- Each call takes the offset persisted in chat_state, asks for up to 100 updates with the long
-- poll timeout and an explicit allowed_updates; every update of the batch is recorded in the
-- ledger; then the offset moves past them (persisted), and the next call confirms them to
-- Telegram. A kill between the record and the offset: Telegram sends them again, and the
-- ledger drops them. A reload cancels the long poll (the request is abandoned) and the new
-- state's loop goes on from the same offset.
--
-- 409 "terminated by other getUpdates request": another process polls the bot: one ERROR,
-- then the supervisor's backoff. 409 while a webhook is set: says how to fix it. A poll that
-- gets no answer for twice its timeout is abandoned and counted as a stall.
local chatgw = chatgw
local chat = require "chatgw.chat"
local chatstore = require "chatgw.chat.store"
local updates = require "chatgw.chat.channels.telegram.updates"
local ledger_redis = require "chatgw.chat.ledger_redis"

local tonumber, tostring, ipairs, max = tonumber, tostring, ipairs, math.max

local M = {}

M.ALLOWED = { "message", "edited_message", "callback_query", "my_chat_member" }

local stalls = chatgw.metrics.counter{ name = "chatgw_telegram_poll_stalls_total",
  help = "Telegram long polls abandoned after twice their timeout without an answer", labels = { "account" } }
local received = chatgw.metrics.counter{ name = "chatgw_telegram_updates_total",
  help = "Telegram updates received, by how (poll or webhook)", labels = { "account", "mode" } }
M.received = received

local conflict_logged = chatgw.shared("chatgw.telegram.conflict") -- account -> 1 once said
local stats = chatgw.shared("chatgw.telegram.stats") -- "<account>:updates" -> received (all modes)

-- Counts one update received; returns the account's total.
function M.count(account, mode)
  received:inc({ account = account, mode = mode })
  return stats:incr(account .. ":updates", 1, 0)
end

function M.offset_key(account) return "telegram:" .. account .. ":offset" end

M.BACKOFF_MS = { 1000, 2000, 5000, 10000, 30000 } -- as the supervisor's; reset by a good poll
M.IDLE_RESET_S = 6 * 86400 -- Telegram picks the next update_id at random after a week without one

-- What a failed getUpdates means, as the error to show.
local function explain(acct, err, info)
  local desc = info.description or tostring(err)
  if info.status == 409 and desc:lower():find("webhook", 1, true) then
    return "telegram: a webhook is set for this bot, so getUpdates is refused: set TELEGRAM_MODE=webhook "
      .. "(with TELEGRAM_WEBHOOK_URL), or delete the webhook (Bot API deleteWebhook; chatgw does so itself "
      .. "only for a webhook it set, when it goes back to polling)", "error"
  elseif info.status == 409 then
    return "telegram: another process polls this bot (" .. desc .. ")", "conflict"
  elseif info.status == 401 then
    return "telegram: the bot token was refused (401 Unauthorized): check " .. tostring(acct.token_env), "error"
  end
  return tostring(err), "warn"
end

local poll_loop

-- Polls until cancelled. In cluster mode (opts.lock_token) every claim of the batch checks the
-- leader lock still holds this run's token, so a stale leader's batch is refused (not recorded,
-- not confirmed) and the new leader gets it.
function M.run(acct, opts)
  if opts.lock_token then ledger_redis.fence("telegram", acct.name, opts.lock, opts.lock_token) end
  local ok, err = poll_loop(acct, opts)
  if opts.lock_token then ledger_redis.fence("telegram", acct.name, nil, nil) end
  return ok, err
end

-- Failures (network, 5xx, 409, 401) back off inside the loop, 1 s to
-- 30 s, so an outage never uses up the supervisor's restart budget; each is shown in
-- checks.channels and logged once per kind of error until a poll succeeds.
function poll_loop(acct, opts)
  local timeout_s = opts.timeout_s or 25
  local key = M.offset_key(acct.name)
  local offset = tonumber(chatstore.state_get(key) or "")
  local last_at = tonumber(chatstore.state_get(key .. ":at") or "")
  if offset and last_at and chatgw.time() - last_at > M.IDLE_RESET_S then
    -- a week idle: the next ids may be lower than the stored offset, which would hide them
    chatgw.log.info("telegram: no update for a week: polling without the old offset", { account = acct.name })
    offset = nil
  end
  local got = stats:get(acct.name .. ":updates") or 0
  local failures, said = 0, nil
  while true do
    local params = { limit = 100, timeout = timeout_s, allowed_updates = M.ALLOWED }
    if offset then params.offset = offset end
    -- twice the long poll's timeout (at least 10 s): past that the poll is stalled
    local result, err, info = acct.api:call("getUpdates", params, { timeout_ms = max(10, 2 * timeout_s) * 1000 })
    if not result then
      if tostring(err):find("^cancelled") then return nil, err end
      local msg, level
      if info.status == 0 and tostring(err):find("^timeout") then
        stalls:inc({ account = acct.name })
        msg, level = "telegram: getUpdates gave no answer in twice its timeout (" .. timeout_s .. " s): polling again", "warn"
      else
        msg, level = explain(acct, err, info)
      end
      if said ~= msg then -- once per kind of failure until a poll succeeds
        said = msg
        if level == "conflict" then
          if conflict_logged:add(acct.name, 1, 60000) then chatgw.log.error(msg, { account = acct.name }) end
        elseif level == "error" then
          chatgw.log.error(msg, { account = acct.name })
        else
          chatgw.log.warn("telegram: getUpdates failed: " .. msg, { account = acct.name })
        end
      end
      chat.set_state("telegram", acct.name, "error", msg, { mode = "poll" })
      failures = failures + 1
      local _, serr = chatgw.sleep(M.BACKOFF_MS[math.min(failures, #M.BACKOFF_MS)])
      if serr then return nil, serr end
    else
      failures, said = 0, nil
      local last
      for _, u in ipairs(result) do
        local ok, rerr = updates.handle(acct, u)
        if not ok then -- not recorded: not confirmed either; Telegram sends it again
          chat.set_state("telegram", acct.name, "error", "cannot record an update: " .. tostring(rerr), { mode = "poll" })
          return nil, rerr
        end
        last = tonumber(u.update_id) or last
        got = M.count(acct.name, "poll")
      end
      if last then
        offset = last + 1
        local ok, serr = chatstore.state_set(key, offset)
        if not ok then return nil, serr end
        chatstore.state_set(key .. ":at", chatgw.time())
      end
      chat.set_state("telegram", acct.name, "ok", nil, { mode = "poll", last_poll_at = chatgw.time(), updates = got })
      if timeout_s == 0 then chatgw.sleep(opts.interval_ms or 1500) end
    end
  end
end

return M
