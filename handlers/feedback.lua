-- feedback: seed 000's feedback loop. A reply to an alert the bot sent (found with
-- chatgw.notify.lookup), or /feedback <text>, saying there are too many alerts ("too many",
-- "too noisy", "告警太多", "刷屏") raises that chat's minimum priority one level; too few ("too
-- quiet", "告警太少", "是不是坏了") lowers it one level; "only push HIGH" / "只推 HIGH" (any level
-- name) sets it. The notify gate uses the new minimum at once (chatgw.notify.set_min_priority).
--
-- * Within the levels: never above the highest, never below the lowest. A chat with no minimum
--   set starts at the lowest level (the gate's default).
-- * Cooldown: after a change, one-level changes wait app.feedback.cooldown_s (default 600 s), so
--   repeated complaints do not ratchet. "only push X" always applies.
-- * Every feedback is recorded in the store (who, chat, project, alert, text, change, when);
--   GET /v1/feedback (bearer token) lists the records and the current per-chat minimums.
-- * Chatter is left alone: on_message returns true only for feedback it handled.
--
--   app:
--     feedback:
--       cooldown_s: 600
--
-- The levels are the notify gate's (chatgw.notify.levels(): CHAT_GATEWAY_PRIORITY_LEVELS, default
-- LOW, MEDIUM, HIGH, CRITICAL).
local chatgw = chatgw

local RAISE = { "too many", "too noisy", "告警太多", "刷屏" }
local LOWER = { "too quiet", "告警太少", "是不是坏了" }

local function levels()
  local list = chatgw.notify.levels() -- the notify gate's, lowest first
  local rank = {}
  for i, l in ipairs(list) do rank[l] = i end
  return list, rank
end

local function cooldown_s()
  local app = chatgw.config.app
  local f = type(app) == "table" and type(app.feedback) == "table" and app.feedback or {}
  local n = tonumber(f.cooldown_s)
  return n and n >= 0 and n or 600
end

-- What a text asks for: "set", level | "raise" | "lower" | nil, the unknown level word of an
-- "only push X" that names no level.
local function classify(text, rank)
  local low = text:lower()
  local word = low:match("only%s+push%s+([%w_%-]+)") or low:match("只推%s*([%w_%-]+)")
  if word and rank[word:upper()] then return "set", word:upper() end
  for _, p in ipairs(RAISE) do if low:find(p, 1, true) then return "raise" end end
  for _, p in ipairs(LOWER) do if low:find(p, 1, true) then return "lower" end end
  return nil, word
end

local function duration(s)
  s = math.max(0, math.ceil(s))
  if s < 60 then return s .. " s" end
  if s < 3600 then return math.ceil(s / 60) .. " min" end
  return ("%d h %d min"):format(math.floor(s / 3600), math.ceil((s % 3600) / 60))
end

-- One change at a time per chat (two complaints at once must not both raise).
local busy = {}
local function locked(key, fn, ...)
  while busy[key] do chatgw.sleep(5) end
  busy[key] = true
  local ok, res = pcall(fn, ...)
  busy[key] = nil
  if not ok then error(res, 0) end
  return res
end

local function last_change(channel, chat_id)
  local rows = assert(chatgw.db.query([[SELECT created_at FROM feedback_records
    WHERE channel = ? AND chat_id = ? AND result = 'changed' ORDER BY id DESC LIMIT 1]], channel, chat_id))
  return rows[1] and rows[1].created_at
end

-- Decides, applies and records one feedback; returns the acknowledgement.
local function apply(msg, action, level, alert, text, bad_word)
  local list, rank = levels()
  local channel, chat_id = msg.channel, msg.chat.id
  local cur = chatgw.notify.min_priority(channel, chat_id)
  cur = rank[cur or ""] and cur or list[1]
  local new, result, ack = cur, "noted", nil
  local now, cd = chatgw.time(), cooldown_s()
  if action == "set" then
    new = level
    result = new == cur and "unchanged" or "changed"
  elseif action == "raise" or action == "lower" then
    local i = rank[cur] + (action == "raise" and 1 or -1)
    local since = last_change(channel, chat_id)
    if i > #list then
      result, ack = "at_highest", ("This chat already gets only %s, the highest level: nothing changed."):format(cur)
    elseif i < 1 then
      result, ack = "at_lowest", ("This chat already gets every alert (%s and above, the lowest level): nothing changed."):format(cur)
    elseif since and now - since < cd then
      result = "cooldown"
      ack = ("Noted. This chat's minimum changed %s ago and changes at most once every %s, so it stays %s (next change possible in %s).")
        :format(duration(now - since), duration(cd), cur, duration(cd - (now - since)))
    else
      new, result = list[i], "changed"
    end
  end
  if result == "changed" then chatgw.notify.set_min_priority(channel, chat_id, new) end
  local meta = alert and alert.meta
  assert(chatgw.db.exec([[INSERT INTO feedback_records (created_at, channel, account, chat_id, chat_type,
      user_id, user_name, username, project_id, alert_outbox_id, alert_message_id, alert_text, alert_meta,
      text, action, old_level, new_level, result)
    VALUES (:at, :channel, :account, :chat_id, :chat_type, :user_id, :user_name, :username, :project_id,
      :outbox_id, :message_id, :alert_text, :meta, :text, :action, :old, :new, :result)]],
    { at = now, channel = channel, account = msg.account, chat_id = chat_id, chat_type = msg.chat.type,
      user_id = msg.user.id, user_name = msg.user.name, username = msg.user.username,
      project_id = alert and alert.project_id, outbox_id = alert and alert.outbox_id,
      message_id = msg.reply_to and msg.reply_to.id,
      alert_text = alert and alert.text or (msg.reply_to and msg.reply_to.text),
      meta = type(meta) == "table" and chatgw.json.encode(meta) or nil,
      text = text, action = action or "note", old = cur, new = new, result = result }))
  chatgw.log.info("feedback", { channel = channel, chat_id = chat_id, user_id = msg.user.id,
    project_id = alert and alert.project_id, action = action or "note", from = cur, to = new, result = result })
  if result == "changed" then return ("OK: this chat now gets %s and above (was %s)."):format(new, cur) end
  if result == "unchanged" then return ("This chat already gets %s and above: nothing changed."):format(cur) end
  if ack then return ack end
  local hint = bad_word and ("%s is not a level (%s). "):format(bad_word:upper(), table.concat(list, ", ")) or ""
  return ("Thanks, noted. %sSay \"too many\", \"too quiet\" or \"only push %s\" to change which alerts this chat gets (now %s and above).")
    :format(hint, list[#list - 1] or list[1], cur)
end

local function alert_of(msg)
  local r = msg.reply_to
  if not r or not r.id then return nil end
  return chatgw.notify.lookup(msg.channel, msg.chat.id, r.id)
end

local function handle(msg, action, level, text, bad_word, alert)
  local ack = locked(msg.channel .. "\0" .. msg.chat.id, apply, msg, action, level, alert, text, bad_word)
  msg:reply(ack)
  return true
end

return {
  commands = { feedback = "tell the bot about its alerts: too many, too quiet, only push HIGH" },

  on_command = function(msg, args)
    if args == "" then
      return msg:reply("Usage: /feedback <text>, e.g. /feedback too many, /feedback too quiet, /feedback only push HIGH (or reply to an alert with it).")
    end
    local action, x = classify(args, select(2, levels()))
    local alert = alert_of(msg)
    if action == "set" then return handle(msg, action, x, args, nil, alert) end
    return handle(msg, action, nil, args, x, alert)
  end,

  -- A reply to an alert (or to another message of the bot) that is feedback; anything else is
  -- left to the other handlers.
  on_message = function(msg)
    local r = msg.reply_to
    if not r or msg.text == "" then return end
    local action, level = classify(msg.text, select(2, levels()))
    if not action then return end
    local alert = alert_of(msg)
    if not r.from_bot and not alert then return end
    return handle(msg, action, level, msg.text, nil, alert)
  end,

  migrations = {
    [[CREATE TABLE feedback_records (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        channel TEXT NOT NULL, account TEXT, chat_id TEXT NOT NULL, chat_type TEXT,
        user_id TEXT, user_name TEXT, username TEXT,
        project_id TEXT, alert_outbox_id INTEGER, alert_message_id TEXT, alert_text TEXT, alert_meta TEXT,
        text TEXT NOT NULL, action TEXT NOT NULL, old_level TEXT, new_level TEXT, result TEXT NOT NULL);
      CREATE INDEX feedback_records_chat ON feedback_records (channel, chat_id, id);]],
  },

  routes = {
    -- ?limit=N (1..1000, default 100), ?channel=, ?chat_id=: newest first.
    ["GET /v1/feedback"] = { scope = "read", function(req)
      local q = req.query
      local limit = math.max(1, math.min(1000, math.floor(tonumber(q.limit) or 100)))
      local where, args = {}, {}
      if type(q.channel) == "string" then where[#where + 1] = "channel = ?"; args[#args + 1] = q.channel end
      if type(q.chat_id) == "string" then where[#where + 1] = "chat_id = ?"; args[#args + 1] = q.chat_id end
      local cond = #where > 0 and (" WHERE " .. table.concat(where, " AND ")) or ""
      args[#args + 1] = limit
      local rows = assert(chatgw.db.query("SELECT * FROM feedback_records" .. cond .. " ORDER BY id DESC LIMIT ?",
        unpack(args)))
      for _, r in ipairs(rows) do
        r.at = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(r.created_at))
        if r.alert_meta then r.alert_meta = chatgw.json.decode(r.alert_meta) end
      end
      table.remove(args)
      local chats = assert(chatgw.db.query("SELECT channel, chat_id, max(id) AS last FROM feedback_records" .. cond
        .. " GROUP BY channel, chat_id ORDER BY last DESC LIMIT 1000", unpack(args)))
      local list = levels()
      local mins = {}
      for i, c in ipairs(chats) do
        local set = chatgw.notify.min_priority(c.channel, c.chat_id)
        mins[i] = { channel = c.channel, chat_id = c.chat_id, min_priority = set or list[1], set = set ~= nil }
      end
      local empty = chatgw.json.empty_array
      return { ok = true, records = #rows > 0 and rows or empty, minimums = #mins > 0 and mins or empty,
               levels = list, cooldown_s = cooldown_s() }
    end },
  },
}
