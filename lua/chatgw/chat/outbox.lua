-- chatgw.chat.outbox: every outbound message goes through here. A message (send, edit,
-- delete) is written to chat_outbox before the caller gets its handle; one sender per channel
-- account delivers the rows: in acceptance order per chat, several chats at once, through the
-- channel adapter's deliver(). Statuses: queued -> sending -> delivered | failed | unknown.
--
--   local h = outbox.accept{ channel = , account = , chat_id = , text = , ... }  -- a handle
--   h.id; h:status(); h:wait(ms); h:edit(text); h:delete()
--
-- Deliveries run as runtime tasks (chatgw._spawn_task): a reload does not cancel one half way,
-- and the new state's sender leaves rows alone that a task of this process is still sending
-- (chatgw.shared "chatgw.outbox.inflight"). A row left in "sending" by a process that died is
-- an unknown outcome: resent when the channel dedupes sends (Feishu's uuid), else marked
-- unknown and never sent twice.
--
-- Adapter contract (chat.register_channel): deliver(account, op) -> result, where op is
--   { id, kind = "send"|"edit"|"delete", chat_id, body = {...}, target_message_id, uuid, attempt }
-- and result is { ok = true, message_id = "..", message_ids = {..} } or
--   { ok = false, kind = "permanent"|"retry"|"unknown"|"rate_limited", error = "...",
--     retry_after = seconds (rate_limited) }.
local chatgw = chatgw
local json = require "chatgw.json"

local type, tostring, pairs, ipairs, pcall, min, max = type, tostring, pairs, ipairs, pcall, math.min, math.max

local M = {}

local FINAL = { delivered = true, failed = true, unknown = true }
local MAX_ATTEMPTS = 8
local BACKOFF_S = { 1, 2, 5, 10, 30 }

local channels -- name -> def (set by chat/init.lua through M.bind)
local inflight = chatgw.shared("chatgw.outbox.inflight") -- row id -> 1 while a task sends it
local metric_out = chatgw.metrics.counter{ name = "chatgw_chat_messages_out_total",
  help = "Outbound chat messages by final result (delivered, failed, unknown)",
  labels = { "channel", "account", "result" } }

function M.bind(channel_table) channels = channel_table end

local function now() return chatgw.time() end

local function uuid()
  return chatgw.crypto.hex(chatgw.crypto.random_bytes(16))
end

local function wake_sender(channel, account) chatgw._notify("outbox:" .. channel .. ":" .. account) end

-- ---- accept ----

local Handle = {}
Handle.__index = Handle

local function handle(id, channel, account, chat_id)
  return setmetatable({ id = id, channel = channel, account = account, chat_id = chat_id }, Handle)
end

-- Bytes of an image: the file at path (read now, so the caller may delete it) or given bytes,
-- kept in chat_blobs. Returns blob id | nil, err.
local function store_image(path, bytes)
  if path then
    local f, err = io.open(path, "rb")
    if not f then return nil, "image: " .. tostring(err) end
    bytes = f:read("*a")
    f:close()
  end
  if type(bytes) ~= "string" or bytes == "" then return nil, "image: no bytes" end
  local n, id = chatgw.db.exec("INSERT INTO chat_blobs (sha256, bytes, created_at) VALUES (?, ?, ?)",
    chatgw.crypto.sha256(bytes, "hex"), chatgw.db.blob(bytes), now())
  if not n then return nil, id end
  return id
end

-- Button data longer than the channel takes goes behind a short key ("k:<hex>").
local function store_buttons(buttons, limit)
  if not buttons then return nil end
  local out = {}
  for r, row in ipairs(buttons) do
    out[r] = {}
    for c, b in ipairs(row) do
      local data = b.data ~= nil and tostring(b.data) or b.text
      if limit and #data > limit then
        local key = "k:" .. chatgw.crypto.hex(chatgw.crypto.random_bytes(8))
        local n, err = chatgw.db.exec("INSERT INTO chat_buttons (key, data, created_at) VALUES (?, ?, ?)",
          key, data, now())
        if not n then return nil, err end
        data = key
      end
      out[r][c] = { text = b.text, data = data, url = b.url }
    end
  end
  return out
end

-- The data behind a pressed button (its key when it was stored).
function M.button_data(data)
  if type(data) == "string" and data:match("^k:%x+$") then
    local rows = chatgw.db.query("SELECT data FROM chat_buttons WHERE key = ?", data)
    if rows and rows[1] then return rows[1].data end
  end
  return data
end

-- spec: channel, account, chat_id, text, format, buttons, reply_to (a platform message id),
-- image (path), image_bytes, caption, handler, origin. Returns a handle | nil, err.
function M.accept(spec)
  local def = channels and channels[spec.channel]
  if not def then return nil, "unknown_channel: no channel '" .. tostring(spec.channel) .. "'" end
  local body = { text = spec.text, format = spec.format or "plain", reply_to = spec.reply_to,
                 caption = spec.caption }
  if spec.image or spec.image_bytes then
    local blob, err = store_image(spec.image, spec.image_bytes)
    if not blob then return nil, err end
    body.image_blob = blob
  end
  if spec.buttons then
    local b, err = store_buttons(spec.buttons, def.limits and def.limits.button_data_max)
    if not b then return nil, err end
    body.buttons = b
  end
  local t = now()
  local n, id = chatgw.db.exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, body,
      status, priority, created_at, updated_at, uuid, handler, origin)
    VALUES (?, ?, ?, 'send', ?, 'queued', 0, ?, ?, ?, ?, ?)]],
    spec.channel, spec.account, spec.chat_id, json.encode(body), t, t, uuid(), spec.handler,
    spec.origin or "send")
  if not n then return nil, id end
  wake_sender(spec.channel, spec.account)
  return handle(id, spec.channel, spec.account, spec.chat_id)
end

local function load_row(id)
  local rows, err = chatgw.db.query("SELECT * FROM chat_outbox WHERE id = ?", id)
  if not rows then return nil, err end
  return rows[1]
end

function M.status(id)
  local r, err = load_row(id)
  if not r then return nil, err or "not_found: no outbox message " .. tostring(id) end
  local ids = r.message_ids and json.decode(r.message_ids) or nil
  return { id = r.id, status = r.status, message_id = r.message_id, message_ids = ids,
           error = r.error, channel = r.channel, account = r.account, chat_id = r.chat_id,
           attempts = r.attempts, kind = r.kind }
end

function Handle:status() return M.status(self.id) end

-- Waits until the message is delivered, failed or unknown, at most ms (default 10000).
function Handle:wait(ms)
  local deadline = chatgw.now() + (ms or 10000)
  while true do
    local st, err = M.status(self.id)
    if not st then return nil, err end
    if FINAL[st.status] then return st end
    local left = deadline - chatgw.now()
    if left <= 0 then
      st.wait_timed_out = true
      return st
    end
    local _, werr = chatgw._wait("outbox:" .. self.id, left)
    if werr then return nil, werr end
  end
end

-- Replaces the text of the message. Pending edits of one message coalesce (the latest wins),
-- an edit of a message not sent yet changes it before it is sent, and an unchanged text is not
-- sent at all. Returns a handle for the edit (or the message itself when coalesced).
function Handle:edit(text, opts)
  if type(text) ~= "string" then error("handle:edit: text must be a string, got " .. type(text), 2) end
  local id, result = self.id, nil
  local fine, ok, err = pcall(chatgw.db.tx, function(tx)
    local rows = assert(tx:query("SELECT status, kind, body FROM chat_outbox WHERE id = ?", id))
    local target = rows[1]
    if not target then error("not_found: no outbox message " .. tostring(id), 0) end
    local body = json.decode(target.body) or {}
    if target.status == "queued" then -- not sent yet: send the new text instead
      body.text = text
      if opts and opts.format then body.format = opts.format end
      if opts and opts.buttons then body.buttons = opts.buttons end
      assert(tx:exec("UPDATE chat_outbox SET body = ?, updated_at = ? WHERE id = ?", json.encode(body), now(), id))
      result = self
      return
    end
    if target.status == "failed" then error("failed: the message was not delivered", 0) end
    local pending = assert(tx:query([[SELECT id, body FROM chat_outbox WHERE ref = ? AND kind = 'edit'
      AND status = 'queued' ORDER BY id DESC LIMIT 1]], id))[1]
    if pending then
      local pb = json.decode(pending.body) or {}
      pb.text = text
      if opts and opts.format then pb.format = opts.format end
      assert(tx:exec("UPDATE chat_outbox SET body = ?, updated_at = ? WHERE id = ?", json.encode(pb), now(), pending.id))
      result = handle(pending.id, self.channel, self.account, self.chat_id)
      return
    end
    if body.text == text and not (opts and (opts.format or opts.buttons)) then
      result = self -- unchanged: nothing to send
      return
    end
    local eb = { text = text, format = opts and opts.format or body.format, buttons = opts and opts.buttons }
    local t = now()
    local n, eid = tx:exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, ref, body,
        status, priority, created_at, updated_at, uuid, origin)
      VALUES (?, ?, ?, 'edit', ?, ?, 'queued', 1, ?, ?, ?, 'edit')]],
      self.channel, self.account, self.chat_id, id, json.encode(eb), t, t, uuid())
    assert(n, eid)
    result = handle(eid, self.channel, self.account, self.chat_id)
  end)
  if not fine then return nil, tostring(ok) end
  if ok == nil and err then return nil, err end
  wake_sender(self.channel, self.account)
  return result
end

function Handle:delete()
  local t = now()
  local n, id = chatgw.db.exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, ref, body,
      status, priority, created_at, updated_at, uuid, origin)
    VALUES (?, ?, ?, 'delete', ?, '{}', 'queued', 1, ?, ?, ?, 'delete')]],
    self.channel, self.account, self.chat_id, self.id, t, t, uuid())
  if not n then return nil, id end
  wake_sender(self.channel, self.account)
  return handle(id, self.channel, self.account, self.chat_id)
end

M.handle = handle

-- The outbox row of a message the bot sent (for button presses and replies to the bot).
function M.find_by_message(channel, account, chat_id, message_id)
  local rows = chatgw.db.query([[SELECT id, handler, body, origin FROM chat_outbox
    WHERE channel = ? AND account = ? AND chat_id = ? AND message_id = ? AND kind = 'send'
    ORDER BY id DESC LIMIT 1]], channel, account, tostring(chat_id), tostring(message_id))
  return rows and rows[1] or nil
end

-- ---- delivery ----

local function finish(row, status, fields)
  local t = now()
  local ok, err = chatgw.db.exec([[UPDATE chat_outbox SET status = ?, updated_at = ?, message_id = ?,
      message_ids = ?, error = ?, next_at = ? WHERE id = ?]],
    status, t, fields.message_id, fields.message_ids and json.encode(fields.message_ids) or nil,
    fields.error, fields.next_at or 0, row.id)
  if not ok then chatgw.log.error("outbox: cannot record a delivery result", { id = row.id, error = err }) end
  if FINAL[status] then
    metric_out:inc({ channel = row.channel, account = row.account, result = status })
    chatgw._notify("outbox:" .. row.id)
  end
end

-- The platform id of the message an edit or delete changes; nil, why when it has none.
local function target_of(row)
  if not row.ref then return nil, "no target" end
  local t = load_row(row.ref)
  if not t then return nil, "the message it changes does not exist" end
  if t.status ~= "delivered" then return nil, "the message it changes was not delivered (" .. t.status .. ")" end
  return t.message_id, t
end

local function deliver_one(def, account, row)
  local id = row.id
  inflight:set(tostring(id), 1, 600000)
  local t = now()
  local ok, err = chatgw.db.exec([[UPDATE chat_outbox SET status = 'sending', attempts = attempts + 1,
    updated_at = ? WHERE id = ?]], t, id)
  if not ok then
    inflight:delete(tostring(id))
    chatgw.log.error("outbox: cannot mark a message as sending", { id = id, error = err })
    return
  end
  local op = { id = id, kind = row.kind, chat_id = row.chat_id, body = json.decode(row.body) or {},
               uuid = row.uuid, attempt = (row.attempts or 0) + 1 }
  local target
  if row.kind ~= "send" then
    op.target_message_id, target = target_of(row)
    if not op.target_message_id then
      finish(row, "failed", { error = "failed: " .. tostring(target) })
      inflight:delete(tostring(id))
      return
    end
  end
  local fine, res = pcall(def.deliver, account, op)
  if not fine then res = { ok = false, kind = "retry", error = "adapter error: " .. tostring(res) } end
  if type(res) ~= "table" then res = { ok = false, kind = "retry", error = "adapter returned " .. type(res) } end
  if res.ok then
    finish(row, "delivered", { message_id = res.message_id and tostring(res.message_id) or nil,
                               message_ids = res.message_ids })
    if row.kind == "edit" and type(target) == "table" then -- the message now shows this text
      local tb = json.decode(target.body) or {}
      tb.text = op.body.text
      chatgw.db.exec("UPDATE chat_outbox SET body = ? WHERE id = ?", json.encode(tb), target.id)
    end
  elseif res.kind == "permanent" then
    chatgw.log.warn("outbox: message failed", { channel = row.channel, account = account,
      chat_id = row.chat_id, id = id, error = res.error })
    finish(row, "failed", { error = res.error })
  elseif res.kind == "unknown" then
    finish(row, "unknown", { error = res.error })
  elseif (row.attempts or 0) + 1 >= MAX_ATTEMPTS then
    finish(row, "failed", { error = "failed after " .. MAX_ATTEMPTS .. " attempts: " .. tostring(res.error) })
  else
    local wait = res.kind == "rate_limited" and (res.retry_after or 1)
      or BACKOFF_S[min((row.attempts or 0) + 1, #BACKOFF_S)]
    finish(row, "queued", { error = res.error, next_at = now() + wait })
  end
  inflight:delete(tostring(id))
end

-- A row found in "sending" that no task of this process is sending: its process died after the
-- request may have gone out.
local function recover(def, account, row)
  if def.idempotent_sends then -- the platform dedupes by uuid: sending again is safe
    chatgw.db.exec("UPDATE chat_outbox SET status = 'queued', updated_at = ? WHERE id = ?", now(), row.id)
  else
    chatgw.log.warn("outbox: outcome unknown after a restart (not sent again)",
      { channel = row.channel, account = account, chat_id = row.chat_id, id = row.id })
    finish(row, "unknown", { error = "unknown: the process stopped while sending" })
  end
end

-- The sender of one channel account: a supervised loop.
function M.sender(def, account)
  local channel = def.name
  local key = "outbox:" .. channel .. ":" .. account
  local busy, ninflight = {}, 0
  local max_inflight = def.max_inflight or 16
  while true do
    local rows, err = chatgw.db.query([[SELECT id, channel, account, chat_id, kind, ref, body, status,
        attempts, next_at, uuid FROM chat_outbox
      WHERE channel = ? AND account = ? AND status IN ('queued', 'sending') ORDER BY id LIMIT 500]],
      channel, account)
    if not rows then
      if tostring(err):find("^cancelled") then return end
      chatgw.log.error("outbox: cannot read pending messages", { channel = channel, account = account, error = err })
      local _, serr = chatgw.sleep(1000)
      if serr then return end
    else
      local t, next_due, seen = now(), nil, {}
      for _, r in ipairs(rows) do
        if not seen[r.chat_id] then
          seen[r.chat_id] = true -- only the first pending row of a chat may go (order)
          if busy[r.chat_id] or inflight:get(tostring(r.id)) then
            -- being sent by a task (of this state or the one before a reload)
          elseif r.status == "sending" then
            recover(def, account, r)
          elseif r.next_at > t then
            next_due = next_due and min(next_due, r.next_at) or r.next_at
          elseif ninflight < max_inflight then
            busy[r.chat_id] = true
            ninflight = ninflight + 1
            chatgw._spawn_task(function()
              local ok, e = pcall(deliver_one, def, account, r)
              if not ok then chatgw.log.error("outbox: delivery failed", { id = r.id, error = tostring(e) }) end
              busy[r.chat_id] = nil
              ninflight = ninflight - 1
              chatgw._notify(key)
            end)
          end
        end
      end
      local wait_ms = next_due and max(1, (next_due - t) * 1000) or 5000
      local _, werr = chatgw._wait(key, wait_ms)
      if werr then return end
    end
  end
end

-- Rows of this account not yet final (for health and metrics).
function M.depth(channel, account)
  local rows = chatgw.db.query([[SELECT count(*) AS n FROM chat_outbox WHERE channel = ? AND account = ?
    AND status IN ('queued', 'sending')]], channel, account)
  return rows and rows[1] and rows[1].n or 0
end

return M
