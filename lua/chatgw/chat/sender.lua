-- chatgw.chat.sender: the outbox sender of one channel account, and its deliveries.
--
-- One sender per bot account, a supervised loop holding the account's lock: a standby process
-- on the same data dir waits for the lock and never sends. Each pass reads the pending rows in
-- id order, takes the first of each chat (messages leave a chat in the order they were
-- accepted), sorts those by priority, asks the governor for each, marks the admitted ones
-- `sending` in one statement and starts a delivery task for each, at most max_inflight.
--
-- A delivery reads the row after it was marked (an edit of a queued message that committed
-- before is sent; one after it becomes an edit), splits a text longer than the platform takes,
-- calls the adapter's deliver(account, op) per part under the bot's circuit breaker, and
-- records what the platform said:
--   ok            delivered (the platform message id; all of them for a split text)
--   permanent     failed at once, logged with the platform's words (once per chat and error);
--                 gone = true (blocked, kicked, chat deleted) fails the chat's other messages too,
--                 and later ones, until a message from that chat comes in
--   bad_format    sent again at once as plain text
--   rate_limited  the governor freezes what it names (scope chat or bot) for exactly
--                 retry_after; the row waits exactly that long; no attempt is counted
--   retry         5xx, connection errors: capped exponential backoff, breaker failure
--   unknown       the request went out, no answer came (timeout, reset): `unknown`, never sent
--                 again, unless the channel dedupes sends by uuid (idempotent_sends: Feishu),
--                 then it is sent again with the same uuid. Edits and deletions are safe to
--                 repeat and are retried.
-- Deliveries are runtime tasks: a reload does not cut one short. The shared dictionary
-- chatgw.outbox.inflight names the rows a task of this process is sending; a row found
-- `sending` without it was left by a process that died, and is recovered as an unknown
-- outcome by the rule above.
local chatgw = chatgw
local json = require "chatgw.json"
local governor = require "chatgw.chat.governor"
local split = require "chatgw.chat.split"
local FINAL = require("chatgw.chat.outbox").FINAL

local type, tostring, ipairs, pairs, pcall, unpack = type, tostring, ipairs, pairs, pcall, unpack
local min, max, random, sort, concat = math.min, math.max, math.random, table.sort, table.concat

local M = {}

M.MAX_RETRIES = 10       -- failed attempts (5xx, connection errors) before a message fails
M.BACKOFF_CAP_S = 60
M.IDLE_MS = 1000         -- a pass at least this often: rows written by another process
M.MAX_VIEW = 50000       -- pending rows the sender keeps in view; later ones wait their turn

local inflight = chatgw.shared("chatgw.outbox.inflight") -- row id -> 1 while a task sends it
local seq_dict = chatgw.shared("chatgw.outbox.seq")     -- sender key -> rows accepted (a counter)
local logged = chatgw.shared("chatgw.outbox.logged")     -- permanent errors already logged

local metric_out = chatgw.metrics.counter{ name = "chatgw_chat_messages_out_total",
  help = "Outbound chat messages by final result (delivered, failed, unknown)",
  labels = { "channel", "account", "result" } }
local metric_depth = chatgw.metrics.gauge{ name = "chatgw_outbox_depth",
  help = "Outbox messages queued or sending, per channel account", labels = { "channel", "account" } }
local metric_send = chatgw.metrics.histogram{ name = "chatgw_outbox_send_seconds",
  help = "Time of one platform request of the outbox (a send, edit or deletion)", labels = { "channel" },
  buckets = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 } }
local metric_latency = chatgw.metrics.histogram{ name = "chatgw_outbox_delivery_seconds",
  help = "Time from a message's acceptance to its delivery", labels = { "channel" },
  buckets = { 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300 } }
local metric_retries = chatgw.metrics.counter{ name = "chatgw_outbox_retries_total",
  help = "Outbox deliveries put back to be tried again, by reason", labels = { "channel", "account", "reason" } }
local metric_unknown = chatgw.metrics.counter{ name = "chatgw_outbox_unknown_total",
  help = "Outbox sends whose outcome is unknown (request written, no answer) and that are not resent",
  labels = { "channel", "account" } }

local function now() return chatgw.time() end

-- ---- recording results ----

-- The final status of a row that was `from` (default "sending"): the guard keeps a stale view
-- of the row from ever overwriting a result recorded meanwhile.
local function finish(row, status, fields, from)
  fields = fields or {}
  local t = now()
  local n, err = chatgw.db.exec([[UPDATE chat_outbox SET status = ?, updated_at = ?, message_id = ?,
      message_ids = ?, error = ?, next_at = 0, buttons_at = coalesce(?, buttons_at) WHERE id = ? AND status = ?]],
    status, t, fields.message_id, fields.message_ids and json.encode(fields.message_ids) or nil,
    fields.error, fields.buttons_at, row.id, from or "sending")
  if not n then chatgw.log.error("outbox: cannot record a delivery result", { id = row.id, error = err }) end
  row.status = n == 1 and status or "stale" -- either way it left the sender's view
  if n ~= 1 then return false end
  metric_out:inc({ channel = row.channel, account = row.account, result = status })
  if status == "delivered" and row.kind == "send" and row.created_at then
    metric_latency:observe({ channel = row.channel }, max(0, t - row.created_at))
  end
  if row.body and row.body.image_blob then -- the bytes are not needed any more
    chatgw.db.exec("DELETE FROM chat_blobs WHERE id = ?", row.body.image_blob)
  end
  chatgw._notify("outbox:" .. row.id)
  return true
end

-- Back to queued: tried again at next_at. fields: retries, error, body (when it changed).
local function requeue(row, next_at, reason, fields)
  fields = fields or {}
  local ok, err = chatgw.db.exec([[UPDATE chat_outbox SET status = 'queued', next_at = ?, retries = ?,
      error = ?, body = coalesce(?, body), attempts = attempts - ?, updated_at = ? WHERE id = ?
      AND status = 'sending']],
    next_at, fields.retries or row.retries or 0, fields.error, fields.body and json.encode(fields.body) or nil,
    fields.uncount and 1 or 0, now(), row.id)
  if not ok then chatgw.log.error("outbox: cannot queue a message again", { id = row.id, error = err }) end
  if ok ~= 1 then -- not ours any more (or the store failed): it leaves the view
    row.status = "stale"
    return
  end
  row.status, row.next_at, row.retries = "queued", next_at, fields.retries or row.retries or 0
  if reason then metric_retries:inc({ channel = row.channel, account = row.account, reason = reason }) end
end

local function backoff_s(retries)
  local b = min(M.BACKOFF_CAP_S, 2 ^ max(0, retries - 1))
  return b * (0.8 + 0.4 * random()) -- jitter: many chats failing together do not retry together
end

-- A permanent error is logged once per chat and error (repeats at debug).
local function log_permanent(row, err)
  local key = concat({ row.channel, row.account, row.chat_id, tostring(err):sub(1, 120) }, "|")
  local fields = { channel = row.channel, account = row.account, chat_id = row.chat_id, id = row.id,
                   kind = row.kind, error = tostring(err) }
  if logged:add(key, 1, 3600000) then
    chatgw.log.warn("outbox: message failed", fields)
  else
    chatgw.log.debug("outbox: message failed (again)", fields)
  end
end

-- The bot was removed from the chat: its queued messages (in the sender's view) fail now;
-- later ones fail as they come into view.
local function fail_chat(st, chat_id, reason)
  local q = st.queues[chat_id]
  if not q then return end
  local keep = {}
  for _, r in ipairs(q) do
    if r.status == "queued" then
      finish(r, "failed", { error = "gone: " .. tostring(reason) }, "queued")
      st.depth = st.depth - 1
    else
      keep[#keep + 1] = r -- the one being sent: its task drops it
    end
  end
  st.queues[chat_id] = #keep > 0 and keep or nil
end

-- ---- one delivery ----

local function call(st, op)
  local t0 = chatgw.now()
  local fine, res = pcall(st.def.deliver, st.account, op)
  metric_send:observe({ channel = st.channel }, (chatgw.now() - t0) / 1000)
  if not fine then return { ok = false, kind = "retry", error = "adapter error: " .. tostring(res) } end
  if type(res) ~= "table" then return { ok = false, kind = "retry", error = "adapter returned " .. type(res) } end
  return res
end

-- Waits until the governor lets one more request of the chat go (parts after the first).
local function admit_wait(st, row, class)
  while true do
    local ok, wait = st.gov:admit(row.chat_id, row.grp == 1, class)
    if ok then return true end
    if wait <= 0 then return nil, "gone" end
    local _, err = chatgw.sleep(min(wait, 60000))
    if err then return nil, err end
  end
end

local function text_limits(def, body)
  local l = def.limits or {}
  local max = l.text_max
  if l.text_max_for then max = l.text_max_for(body) or max end -- by kind (Feishu: text vs card)
  return max, l.text_unit or "codepoints"
end

-- The texts a body is sent as (one part unless the text is longer than the platform takes; an
-- image with its caption is one part). { false } when there is no text.
local function parts_of(def, body)
  local tmax, unit = text_limits(def, body)
  if type(body.text) ~= "string" then return { false } end
  -- a text of at most tmax bytes fits in any unit (a UTF-16 code unit takes 1 byte or more)
  if not tmax or body.image_blob or #body.text <= tmax then return { body.text } end
  return split.split(body.text, tmax, { unit = unit, format = body.format })
end

local function op_for(row, kind, body, extra)
  local op = { id = row.id, kind = kind, chat_id = row.chat_id, body = body, uuid = row.uuid,
               attempt = row.attempts }
  for k, v in pairs(extra or {}) do op[k] = v end
  return op
end

-- A message: each part in turn (the first was admitted by the pass), progress kept so that a
-- retry resumes after the last part delivered.
local function send_parts(st, row)
  local body = row.body
  local parts = parts_of(st.def, body)
  local ids = row.message_ids or {}
  local n = #parts
  for i = row.parts_done + 1, n do
    if i > row.parts_done + 1 then
      local ok, err = admit_wait(st, row, "final")
      if not ok then return { ok = false, kind = "retry", error = "cancelled: " .. tostring(err) }, ids end
    end
    local b = body
    if n > 1 then
      b = {}
      for k, v in pairs(body) do b[k] = v end
      b.text = parts[i]
      if i > 1 then b.reply_to = nil end -- the first part quotes; the rest follow it
      if i < n then b.buttons = nil end  -- buttons go under the last part
    end
    local res = call(st, op_for(row, "send", b, { uuid = n > 1 and (row.uuid .. "-" .. i) or row.uuid,
      part = i, parts = n }))
    if not res.ok then return res, ids end
    ids[i] = res.message_id and tostring(res.message_id) or nil
    if i < n then
      row.parts_done = i
      chatgw.db.exec("UPDATE chat_outbox SET parts_done = ?, message_ids = ?, updated_at = ? WHERE id = ?",
        i, json.encode(ids), now(), row.id)
    end
  end
  return { ok = true, message_id = ids[1], message_ids = n > 1 and ids or nil,
           buttons_at = body.buttons and ids[n] or nil }, ids
end

local function load_target(row)
  if not row.ref then return nil, "no target" end
  local rows = chatgw.db.query("SELECT * FROM chat_outbox WHERE id = ?", row.ref)
  local t = rows and rows[1]
  if not t then return nil, "the message it changes does not exist" end
  if t.status ~= "delivered" then return nil, "the message it changes was not delivered (" .. t.status .. ")" end
  t.body = json.decode(t.body or "{}") or {}
  t.ids = t.message_ids and json.decode(t.message_ids) or { t.message_id }
  if not t.ids[1] then return nil, "the platform gave the message no id" end
  return t
end

local function save_target(target, body, ids)
  chatgw.db.exec([[UPDATE chat_outbox SET body = ?, message_id = ?, message_ids = ?, updated_at = ?,
      buttons_at = ? WHERE id = ?]],
    json.encode(body), ids[1], #ids > 1 and json.encode(ids) or nil, now(),
    body.buttons and ids[#ids] or nil, target.id)
end

-- An edit: the new text split as a message would be, each part onto the platform message that
-- shows that part (unchanged parts skipped), extra parts sent as new messages, surplus ones
-- deleted (or blanked where the channel cannot delete).
local function edit_parts(st, row, target)
  local def = st.def
  local tb = target.body
  local shown = tb.parts or { tb.text }
  local nb = { text = row.body.text, format = row.body.format or tb.format, link_preview = tb.link_preview }
  local parts = parts_of(def, nb)
  local ids = {}
  for i, id in ipairs(target.ids) do ids[i] = id end
  local requests = 0
  local function step(kind, b, extra)
    if requests > 0 then
      local ok, err = admit_wait(st, row, "edit")
      if not ok then return { ok = false, kind = "retry", error = "cancelled: " .. tostring(err) } end
    end
    requests = requests + 1
    return call(st, op_for(row, kind, b, extra))
  end
  -- the buttons (new ones, else those shown) stay under the last part: an edit without them
  -- would take them off (Telegram's editMessageText drops a keyboard it is not given)
  local buttons = row.body.buttons or tb.buttons
  local moved = buttons and #parts ~= #shown -- the last part is another message now
  for i, p in ipairs(parts) do
    local b = { text = p, format = nb.format, buttons = i == #parts and buttons or nil,
                link_preview = nb.link_preview }
    if ids[i] then
      if p ~= shown[i] or nb.format ~= tb.format or (i == #parts and row.body.buttons)
          or (moved and (i == #parts or i == #shown)) then
        local res = step("edit", b, { target_message_id = ids[i], part = i, parts = #parts })
        if not res.ok then return res end
      end
    else
      local res = step("send", b, { uuid = row.uuid .. "-" .. i, part = i, parts = #parts })
      if not res.ok then return res end
      ids[i] = tostring(res.message_id)
      tb.parts = { unpack(parts, 1, i) } -- a retry must not send this part again
      save_target(target, tb, ids)
    end
  end
  for i = #ids, #parts + 1, -1 do -- the new text has fewer parts than were shown
    local res
    if def.capabilities and def.capabilities.delete then
      res = step("delete", {}, { target_message_id = ids[i] })
    else
      res = step("edit", { text = "…", format = "plain" }, { target_message_id = ids[i] })
    end
    if not res.ok then return res end
    ids[i] = nil
  end
  tb.text, tb.format, tb.parts = nb.text, nb.format, #parts > 1 and parts or nil
  if row.body.buttons then tb.buttons = row.body.buttons end
  save_target(target, tb, ids)
  return { ok = true, message_id = ids[1], message_ids = #ids > 1 and ids or nil }
end

local function delete_parts(st, row, target)
  for i, id in ipairs(target.ids) do
    if i > 1 then
      local ok, err = admit_wait(st, row, "edit")
      if not ok then return { ok = false, kind = "retry", error = "cancelled: " .. tostring(err) } end
    end
    local res = call(st, op_for(row, "delete", {}, { target_message_id = id }))
    if not res.ok then return res end
  end
  return { ok = true, message_id = target.ids[1] }
end

local function deliver(st, row)
  local ticket, berr, bretry = st.br:enter()
  if not ticket then -- the circuit opened since the pass: not an attempt
    requeue(row, now() + (bretry or 1000) / 1000, nil, { uncount = true, error = berr })
    return
  end
  local res, target
  if row.kind == "send" then
    res = send_parts(st, row)
  else
    local why
    target, why = load_target(row)
    if not target then
      st.br:leave(ticket, nil)
      finish(row, "failed", { error = "failed: " .. tostring(why) })
      return
    end
    if row.kind == "edit" then res = edit_parts(st, row, target) else res = delete_parts(st, row, target) end
  end
  local kind = res.ok and "ok" or res.kind
  st.br:leave(ticket, (kind == "retry" or kind == "unknown") and false
    or (kind == "rate_limited") and nil or true)
  if res.ok then
    finish(row, "delivered", { message_id = res.message_id and tostring(res.message_id) or nil,
                               message_ids = res.message_ids, buttons_at = res.buttons_at })
    if row.kind == "delete" then target.body.deleted = true; save_target(target, target.body, target.ids) end
    return
  end
  local err = tostring(res.error or kind)
  if kind == "bad_format" and row.body.format and row.body.format ~= "plain" then
    row.body.format = "plain" -- the platform cannot parse the markup: the text as it is
    chatgw.log.info("outbox: formatted text rejected, sending it as plain text", { channel = row.channel,
      account = row.account, chat_id = row.chat_id, id = row.id, error = err })
    requeue(row, 0, "bad_format", { body = row.body, error = err })
  elseif kind == "permanent" or kind == "bad_format" then
    log_permanent(row, err)
    finish(row, "failed", { error = err, message_ids = row.parts_done > 0 and row.message_ids or nil })
    if res.gone then
      st.gov:mark_gone(row.chat_id, err)
      fail_chat(st, row.chat_id, err)
    end
  elseif kind == "rate_limited" then
    local wait = type(res.retry_after) == "number" and res.retry_after > 0 and res.retry_after or 1
    st.gov:freeze(res.scope, row.chat_id, wait)
    requeue(row, now() + wait, "rate_limited", { uncount = true, error = err })
  elseif kind == "unknown" and row.kind == "send" and not st.def.idempotent_sends then
    metric_unknown:inc({ channel = row.channel, account = row.account })
    chatgw.log.warn("outbox: outcome unknown (not sent again)", { channel = row.channel, account = row.account,
      chat_id = row.chat_id, id = row.id, error = err })
    finish(row, "unknown", { error = "unknown: " .. err })
  else -- retry, or an unknown outcome that is safe to repeat
    local retries = (row.retries or 0) + 1
    if retries >= M.MAX_RETRIES then
      log_permanent(row, err)
      finish(row, "failed", { error = ("failed after %d attempts: %s"):format(retries, err) })
    else
      requeue(row, now() + backoff_s(retries), kind == "unknown" and "unknown" or "error",
        { retries = retries, error = err })
    end
  end
end

-- ---- recovery ----

-- A row in "sending" that no task of this process sends: its process died after the request
-- may have gone out.
local function recover(st, row)
  if row.kind ~= "send" or st.def.idempotent_sends then -- safe to repeat
    requeue(row, 0, "recovered", {})
    return
  end
  local what = (row.parts_done or 0) > 0 and ("part " .. (row.parts_done + 1) .. " of the text") or "the message"
  row.body = json.decode(row.body or "{}") or {}
  local ids = row.message_ids and json.decode(row.message_ids) or nil
  if finish(row, "unknown", { error = "unknown: the process stopped while sending " .. what, message_ids = ids,
                              message_id = ids and ids[1] or nil }) then
    metric_unknown:inc({ channel = row.channel, account = row.account })
    chatgw.log.warn("outbox: outcome unknown after a restart (not sent again)",
      { channel = row.channel, account = row.account, chat_id = row.chat_id, id = row.id, what = what })
  end
end

-- ---- the loop ----

local COLS = [[id, channel, account, chat_id, kind, ref, status, priority, grp, attempts, retries,
  parts_done, next_at, created_at, uuid, message_ids]]

local function class_of(r)
  return (r.kind == "send" or r.priority == 0) and "final" or "edit"
end

local function by_priority(a, b)
  if a.priority ~= b.priority then return a.priority < b.priority end
  return a.id < b.id
end

-- The sender's view of the pending rows: per chat, in id order. Only this sender changes their
-- status (it holds the account's lock), so the view stays true; rows accepted since are read
-- by id (ids grow in commit order: SQLite has one writer at a time). A row that another
-- state of this process is still sending (a reload) is "foreign" until its status is read
-- back.
local function add_row(st, r)
  local q = st.queues[r.chat_id]
  if not q then
    q = {}
    st.queues[r.chat_id] = q
  end
  q[#q + 1] = r
  st.depth = st.depth + 1
  if r.id > st.last_id then st.last_id = r.id end
end

local function drop_head(st, r)
  local q = st.queues[r.chat_id]
  if not q then return end
  for i, x in ipairs(q) do
    if x == r then
      table.remove(q, i)
      st.depth = st.depth - 1
      break
    end
  end
  if #q == 0 then st.queues[r.chat_id] = nil end
end

local FETCH_SQL = ([[SELECT %s FROM chat_outbox WHERE channel = ? AND account = ?
  AND id > ? AND status IN ('queued', 'sending') ORDER BY id LIMIT ?]]):format(COLS)

-- Rows accepted since the last look (at most MAX_VIEW in the view: beyond, they wait). Only
-- when this process accepted some (the accept counter moved) or, for rows another process
-- wrote, once per IDLE_MS.
local function fetch_new(st)
  local room = M.MAX_VIEW - st.depth
  if room <= 0 then return true end
  local seq, t = seq_dict:get(st.key) or 0, chatgw.now()
  if seq == st.seq and t - st.fetched_at < M.IDLE_MS then return true end
  local rows, err = chatgw.db.query(FETCH_SQL, st.channel, st.account, st.last_id, min(room, 5000))
  if not rows then return nil, err end
  st.seq, st.fetched_at = seq, t
  if #rows == min(room, 5000) then st.seq = -1 end -- more to read: look again at the next pass
  for _, r in ipairs(rows) do
    if r.status == "sending" then
      -- at the start: a task of this process in another state, or a process that died
      if inflight:get(tostring(r.id)) then r.foreign = true else r.recover = true end
    end
    add_row(st, r)
  end
  return true
end

-- Rows an operator queued again (outbox.retry: failed rows, so older than the view's last id):
-- read when this account's "requeue:" counter moved, and put back in id order in their chat.
local REQUEUED_SQL = ([[SELECT %s FROM chat_outbox WHERE channel = ? AND account = ?
  AND id <= ? AND status = 'queued' ORDER BY id LIMIT 1000]]):format(COLS)

local function fetch_requeued(st)
  local n = seq_dict:get("requeue:" .. st.key) or 0
  if n == st.requeue_seq then return end
  local rows = chatgw.db.query(REQUEUED_SQL, st.channel, st.account, st.last_id)
  if not rows then return end
  st.requeue_seq = n
  local seen = {}
  for _, q in pairs(st.queues) do for _, r in ipairs(q) do seen[r.id] = true end end
  for _, r in ipairs(rows) do
    if not seen[r.id] then
      local q = st.queues[r.chat_id]
      if not q then
        q = {}
        st.queues[r.chat_id] = q
      end
      local at = #q + 1
      for i, x in ipairs(q) do if x.id > r.id then at = i break end end
      table.insert(q, at, r)
      st.depth = st.depth + 1
    end
  end
end

-- Rows another state was sending: read back whether they are done.
local function refresh_foreign(st, list)
  local ids = {}
  for i, r in ipairs(list) do ids[i] = r.id end
  local rows = chatgw.db.query([[SELECT id, status, next_at, retries FROM chat_outbox
    WHERE id IN (SELECT value FROM json_each(?))]], json.encode(ids))
  local by = {}
  for _, x in ipairs(rows or {}) do by[x.id] = x end
  for _, r in ipairs(list) do
    local x = by[r.id]
    if not x or FINAL[x.status] then
      drop_head(st, r)
    elseif x.status == "queued" then
      r.foreign, r.status, r.next_at, r.retries = nil, "queued", x.next_at, x.retries
    end
  end
end

local function start_deliveries(st, chosen)
  local ids = {}
  for i, r in ipairs(chosen) do ids[i] = r.id end
  -- marked and read in one statement: an edit of a queued message committed before the mark is
  -- what goes out; one after it sees the row sending and becomes an edit
  local rows, err = chatgw.db.write_query([[UPDATE chat_outbox SET status = 'sending',
    attempts = attempts + 1, updated_at = ? WHERE id IN (SELECT value FROM json_each(?)) AND status = 'queued'
    RETURNING id, body, attempts, priority]], now(), json.encode(ids))
  if not rows then
    chatgw.log.error("outbox: cannot mark messages as sending", { channel = st.channel, error = err })
    return
  end
  local fresh = {}
  for _, r in ipairs(rows or {}) do fresh[r.id] = r end
  for _, r in ipairs(chosen) do
    local f = fresh[r.id]
    if not f then
      drop_head(st, r) -- no longer queued: nothing of ours to send
    else
      r.body = json.decode(f.body or "{}") or {}
      r.attempts, r.priority, r.status = f.attempts, f.priority, "sending"
      if type(r.message_ids) == "string" then r.message_ids = json.decode(r.message_ids) end
      st.busy[r.chat_id] = true
      st.n = st.n + 1
      inflight:set(tostring(r.id), 1, 86400000)
      chatgw._spawn_task(function()
        local ok, e = pcall(deliver, st, r)
        if not ok then
          chatgw.log.error("outbox: delivery failed", { id = r.id, error = tostring(e) })
          requeue(r, now() + backoff_s((r.retries or 0) + 1), "error", { retries = (r.retries or 0) + 1,
            error = tostring(e) })
        end
        inflight:delete(tostring(r.id))
        if r.status ~= "queued" then drop_head(st, r) end
        st.busy[r.chat_id] = nil
        st.n = st.n - 1
        chatgw._notify(st.key)
      end)
    end
  end
end

-- One pass: returns how long to wait (ms) before the next unless woken.
local function pass(st)
  fetch_requeued(st)
  local ok, err = fetch_new(st)
  if not ok then
    if tostring(err):find("^cancelled") then return nil, err end
    chatgw.log.error("outbox: cannot read pending messages", { channel = st.channel, account = st.account, error = err })
    return 1000
  end
  metric_depth:set({ channel = st.channel, account = st.account }, st.depth)
  local t, next_due, candidates, foreign = now(), nil, {}, {}
  local function due(at) next_due = next_due and min(next_due, at) or at end
  for chat, q in pairs(st.queues) do
    local r = q[1] -- only the first pending row of a chat may go (order)
    if st.busy[chat] then
      -- a task of this state sends it
    elseif r.foreign then
      foreign[#foreign + 1] = r
    elseif r.recover then
      r.recover = nil
      recover(st, r)
      if r.status ~= "queued" then drop_head(st, r) end
      due(t)
    elseif st.gov:gone(chat) then
      fail_chat(st, chat, st.gov:gone(chat))
      due(t)
    elseif r.next_at > t then
      due(r.next_at)
    else
      candidates[#candidates + 1] = r
    end
  end
  if #foreign > 0 then
    refresh_foreign(st, foreign)
    due(t + 0.05)
  end
  if #candidates > 0 then
    local bstate = st.br:state()
    if bstate == "open" then
      due(t + max(50, st.br:stats().retry_after_ms or 1000) / 1000)
      candidates = {}
    end
    sort(candidates, by_priority)
    local chosen, room = {}, st.max - st.n
    if bstate == "half_open" then room = min(room, 1) end -- one probe
    for _, r in ipairs(candidates) do
      if #chosen >= room then break end
      local admitted, wait = st.gov:admit(r.chat_id, r.grp == 1, class_of(r))
      if admitted then
        -- from the governor's first "not yet" for this row (0 when it went at once)
        governor.metric_wait:observe({ channel = st.channel }, r.gov_since and max(0, t - r.gov_since) or 0)
        r.gov_since = nil
        chosen[#chosen + 1] = r
      else
        r.gov_since = r.gov_since or t
        due(t + max(1, wait) / 1000)
      end
    end
    if #chosen > 0 then start_deliveries(st, chosen) end
  end
  local wait_ms = next_due and (next_due - t) * 1000 or M.IDLE_MS
  return max(1, min(wait_ms, M.IDLE_MS))
end

-- The sender of one channel account: run as a supervised loop (chat/init.lua).
function M.run(def, account)
  local st = { def = def, account = account, channel = def.name, key = "outbox:" .. def.name .. ":" .. account,
               gov = governor.get(def, account), busy = {}, n = 0, max = def.max_inflight or 16,
               queues = {}, depth = 0, last_id = 0, seq = -1, fetched_at = 0,
               br = chatgw.breaker{ name = ("chatgw.outbox.%s.%s"):format(def.name, account), failures = 5,
                                    open_ms = 5000, max_open_ms = M.BACKOFF_CAP_S * 1000 } }
  st.requeue_seq = seq_dict:get("requeue:" .. st.key) or 0 -- what is queued now, fetch_new reads
  st.gov:restore()
  while true do
    local wait_ms, err = pass(st)
    if not wait_ms then return nil, err end
    local _, werr = chatgw._wait(st.key, wait_ms)
    if werr then return nil, werr end
  end
end

-- Deliveries running in this process (all states).
function M.inflight() return inflight:count() end

return M
