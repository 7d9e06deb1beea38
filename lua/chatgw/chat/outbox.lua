-- chatgw.chat.outbox: every outbound message goes through here. A message (send, edit,
-- delete) is written to chat_outbox before the caller gets its handle; the sender of its
-- channel account (chat/sender.lua) delivers it. Statuses: queued -> sending -> delivered |
-- failed | unknown; an operator may put a failed one back to queued (M.retry) or drop it
-- (M.drop: dropped).
--
--   local h = outbox.accept{ channel = , account = , chat_id = , text = , ... }  -- a handle
--   h.id; h:status(); h:wait(ms); h:edit(text); h:delete()
--   outbox.typing(channel, account, chat_id, is_group)  -- a chat action, if the governor lets it
--
-- Priorities (the governor serves the more important first when a bot is at its limit): 0 for
-- messages and a stream's final edit, 1 for interim edits and deletions; typing is never queued.
local chatgw = chatgw
local json = require "chatgw.json"

local governor = require "chatgw.chat.governor"

local type, tostring, pairs, ipairs, pcall = type, tostring, pairs, ipairs, pcall

local M = {}

local FINAL = { delivered = true, failed = true, unknown = true, dropped = true } -- dropped: M.drop
M.FINAL = FINAL

local channels -- name -> def (set by chat/init.lua through M.bind)
local typing_metric = chatgw.metrics.counter{ name = "chatgw_chat_typing_total",
  help = "Chat actions (typing), sent or dropped by the governor", labels = { "channel", "result" } }

function M.bind(channel_table) channels = channel_table end

local function now() return chatgw.time() end

local function uuid()
  return chatgw.crypto.hex(chatgw.crypto.random_bytes(16))
end

local seq_dict = chatgw.shared("chatgw.outbox.seq") -- sender key -> rows accepted: it reads new rows when this moves

local function wake_sender(channel, account)
  local key = "outbox:" .. channel .. ":" .. account
  seq_dict:incr(key, 1, 0)
  chatgw._notify(key)
end

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

-- The bytes of an accepted image (chat_blobs), for an adapter's delivery; nil when gone.
function M.blob(id)
  if not id then return nil end
  local rows = chatgw.db.query("SELECT bytes FROM chat_blobs WHERE id = ?", id)
  return rows and rows[1] and rows[1].bytes or nil
end

-- The data behind a pressed button (its key when it was stored).
function M.button_data(data)
  if type(data) == "string" and data:match("^k:%x+$") then
    local rows = chatgw.db.query("SELECT data FROM chat_buttons WHERE key = ?", data)
    if rows and rows[1] then return rows[1].data end
  end
  return data
end

-- Whether a chat is a group (the governor's per-group limit): from the message replied to, else
-- from the adapter (Telegram: a negative chat id).
local function is_group(def, chat_id, given)
  if given ~= nil then return given == true end
  if def.is_group then
    local ok, g = pcall(def.is_group, chat_id)
    return ok and g == true
  end
  return false
end

-- ---- handler runs ----
-- A handler cut off (kill -9) runs again after the restart (chat/ledger.lua). The messages a
-- run accepts from its own coroutine are keyed "<ledger row>:<n>" (the n-th message of the
-- run), so the second run's n-th message is the first run's row, not a new one: a handler
-- that sends the same messages in the same order sends each once. Tasks the handler spawns are
-- not keyed.
local runs = setmetatable({}, { __mode = "k" }) -- coroutine -> { row = ledger row id, n = messages so far }

function M.run_begin(row_id)
  local co = coroutine.running()
  if co and row_id then runs[co] = { row = row_id, n = 0 } end
end

function M.run_end()
  local co = coroutine.running()
  if co then runs[co] = nil end
end

local function run_key()
  local co = coroutine.running()
  local r = co and runs[co]
  if not r then return nil end
  r.n = r.n + 1
  return r.row .. ":" .. r.n
end

-- The row a keyed message of an earlier run of the handler wrote, when it went to the same
-- chat (nil otherwise: the second run differs there, and its message is a new one).
local function run_row(key, spec)
  local rows = chatgw.db.query("SELECT id, channel, account, chat_id FROM chat_outbox WHERE run_key = ?", key)
  local r = rows and rows[1]
  if not r or r.channel ~= spec.channel or r.chat_id ~= tostring(spec.chat_id) then return nil end
  chatgw.log.info("outbox: a handler run again after a restart: its message was accepted by the first run",
    { channel = r.channel, chat_id = r.chat_id, id = r.id })
  return handle(r.id, r.channel, r.account, r.chat_id)
end

-- spec: channel, account, chat_id, text, format, buttons, reply_to (a platform message id),
-- image (path), image_bytes, caption, handler, origin, group. Returns a handle | nil, err.
function M.accept(spec)
  local def = channels and channels[spec.channel]
  if not def then return nil, "unknown_channel: no channel '" .. tostring(spec.channel) .. "'" end
  local body = { text = spec.text, format = spec.format or "plain", reply_to = spec.reply_to,
                 caption = spec.caption, link_preview = spec.link_preview == true or nil,
                 card_id = spec.card_id } -- card_id: a card the channel made (Feishu CardKit)
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
  local t, key = now(), run_key()
  local function insert(k)
    return chatgw.db.exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, body,
        status, priority, grp, created_at, updated_at, uuid, handler, origin, run_key)
      VALUES (?, ?, ?, 'send', ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING]],
      spec.channel, spec.account, spec.chat_id, json.encode(body),
      is_group(def, spec.chat_id, spec.group) and 1 or 0, t, t, uuid(), spec.handler, spec.origin or "send", k)
  end
  local n, id = insert(key)
  if not n then return nil, id end
  if n == 0 and key then
    local h = run_row(key, spec)
    if h then return h end
    n, id = insert(nil)
    if not n then return nil, id end
  end
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
-- sent at all (the sender also skips it when the message already shows it). opts: format,
-- buttons, final (a stream's last edit: sent with a message's priority). Returns a handle for
-- the edit (or the message itself when it changed before being sent).
function Handle:edit(text, opts)
  if type(text) ~= "string" then error("handle:edit: text must be a string, got " .. type(text), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("handle:edit: opts must be a table", 2) end
  opts = opts or {}
  local def = channels and channels[self.channel]
  local buttons
  if opts.buttons then
    local b, berr = store_buttons(opts.buttons, def and def.limits and def.limits.button_data_max)
    if not b then return nil, berr end
    buttons = b
  end
  local id, result = self.id, nil
  local prio = opts.final and 0 or 1
  local fine, ok, err = pcall(chatgw.db.tx, function(tx)
    local q = "SELECT status, kind, ref, body, grp FROM chat_outbox WHERE id = ?"
    local target = assert(tx:query(q, id))[1]
    if target and target.kind == "edit" and target.ref then -- the handle of an edit: the message
      id = target.ref
      target = assert(tx:query(q, id))[1]
    end
    if not target then error("not_found: no outbox message " .. tostring(id), 0) end
    if target.kind ~= "send" then error("invalid_request: only a message can be edited", 0) end
    local body = json.decode(target.body) or {}
    -- inside the transaction the sender cannot take the row: still queued means not sent yet
    if target.status == "queued" then
      body.text = text
      if opts.format then body.format = opts.format end
      if buttons then body.buttons = buttons end
      assert(tx:exec("UPDATE chat_outbox SET body = ?, updated_at = ? WHERE id = ?", json.encode(body), now(), id))
      result = handle(id, self.channel, self.account, self.chat_id)
      return
    end
    if target.status == "failed" then error("failed: the message was not delivered", 0) end
    local pending = assert(tx:query([[SELECT id, body, priority FROM chat_outbox WHERE ref = ? AND kind = 'edit'
      AND status = 'queued' ORDER BY id DESC LIMIT 1]], id))[1]
    if pending then -- coalesce: the latest text wins, the highest priority stays
      local pb = json.decode(pending.body) or {}
      pb.text = text
      if opts.format then pb.format = opts.format end
      if buttons then pb.buttons = buttons end
      assert(tx:exec("UPDATE chat_outbox SET body = ?, priority = ?, updated_at = ? WHERE id = ?", json.encode(pb),
        pending.priority < prio and pending.priority or prio, now(), pending.id))
      result = handle(pending.id, self.channel, self.account, self.chat_id)
      return
    end
    if target.status == "delivered" and body.text == text and not opts.format and not buttons then
      result = handle(id, self.channel, self.account, self.chat_id) -- unchanged: nothing to send
      return
    end
    local eb = { text = text, format = opts.format or body.format, buttons = buttons }
    local t = now()
    local n, eid = tx:exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, ref, body,
        status, priority, grp, created_at, updated_at, uuid, origin)
      VALUES (?, ?, ?, 'edit', ?, ?, 'queued', ?, ?, ?, ?, ?, 'edit')]],
      self.channel, self.account, self.chat_id, id, json.encode(eb), prio, target.grp, t, t, uuid())
    assert(n, eid)
    result = handle(eid, self.channel, self.account, self.chat_id)
  end)
  if not fine then return nil, tostring(ok) end
  if ok == nil and err then return nil, err end
  wake_sender(self.channel, self.account)
  return result
end

function Handle:delete()
  local target_id = self.id
  local rows, qerr = chatgw.db.query("SELECT kind, ref, grp FROM chat_outbox WHERE id = ?", target_id)
  if rows and rows[1] and rows[1].kind == "edit" and rows[1].ref then -- the handle of an edit
    target_id = rows[1].ref
    rows, qerr = chatgw.db.query("SELECT kind, ref, grp FROM chat_outbox WHERE id = ?", target_id)
  end
  if not rows then return nil, qerr end
  if not rows[1] then return nil, "not_found: no outbox message " .. tostring(self.id) end
  if rows[1].kind ~= "send" then return nil, "invalid_request: only a message can be deleted" end
  local t = now()
  local n, id = chatgw.db.exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, ref, body,
      status, priority, grp, created_at, updated_at, uuid, origin)
    VALUES (?, ?, ?, 'delete', ?, '{}', 'queued', 1, ?, ?, ?, ?, 'delete')]],
    self.channel, self.account, self.chat_id, target_id, rows[1].grp, t, t, uuid())
  if not n then return nil, id end
  wake_sender(self.channel, self.account)
  return handle(id, self.channel, self.account, self.chat_id)
end

M.handle = handle

-- A message another node of the cluster sent (its outbox is there): a delivered row here, so
-- that this node can edit or delete it (notify's update_key). spec: channel, account, chat_id,
-- text, format, message_id, message_ids. Returns a handle | nil, err.
function M.adopt(spec)
  local def = channels and channels[spec.channel]
  if not def then return nil, "unknown_channel: no channel '" .. tostring(spec.channel) .. "'" end
  if not spec.message_id then return nil, "invalid_request: a message to adopt needs its message_id" end
  local t = now()
  local ids = type(spec.message_ids) == "table" and #spec.message_ids > 1 and json.encode(spec.message_ids) or nil
  local n, id = chatgw.db.exec([[INSERT INTO chat_outbox (channel, account, chat_id, kind, body, status, priority,
      grp, created_at, updated_at, message_id, message_ids, uuid, origin)
    VALUES (?, ?, ?, 'send', ?, 'delivered', 0, ?, ?, ?, ?, ?, ?, 'adopted')]],
    spec.channel, spec.account, spec.chat_id, json.encode({ text = spec.text, format = spec.format or "plain" }),
    is_group(def, spec.chat_id, spec.group) and 1 or 0, t, t, tostring(spec.message_id), ids, uuid())
  if not n then return nil, id end
  return handle(id, spec.channel, spec.account, spec.chat_id)
end

-- The outbox row of a message whose buttons were pressed (the platform message showing them:
-- the last part of a split text).
function M.find_by_message(channel, account, chat_id, message_id)
  local rows = chatgw.db.query([[SELECT id, handler, body, origin FROM chat_outbox
    WHERE channel = ? AND account = ? AND chat_id = ? AND buttons_at = ? AND kind = 'send'
    ORDER BY id DESC LIMIT 1]], channel, account, tostring(chat_id), tostring(message_id))
  return rows and rows[1] or nil
end

-- A chat action (typing): sent now if the governor lets it, else dropped; never queued
-- behind messages, never in the store. true when it was sent.
function M.typing(channel, account, chat_id, group)
  local def = channels and channels[channel]
  if not def or not def.typing then return false end
  local ok = governor.get(def, account):admit(chat_id, group, "typing")
  typing_metric:inc({ channel = channel, result = ok and "sent" or "dropped" })
  if not ok then return false end
  chatgw.spawn(function() pcall(def.typing, account, tostring(chat_id)) end)
  return true
end

-- ---- operators (the admin page) ----

-- A failed message back to queued, as if just accepted (its retries and error cleared, the parts
-- already sent kept), and its sender told to take it back into view (sender.lua reads the
-- rows queued again when this account's "requeue:" counter moves). Returns the row's channel
-- and account | nil, "not_found: ..." | nil, "not_failed: ...".
function M.retry(id)
  local rows, err = chatgw.db.write_query([[UPDATE chat_outbox SET status = 'queued', next_at = 0,
    retries = 0, error = NULL, updated_at = ? WHERE id = ? AND status = 'failed' RETURNING channel, account]],
    now(), id)
  if not rows then return nil, err end
  local r = rows[1]
  if not r then
    local st = M.status(id)
    if not st then return nil, "not_found: no outbox message " .. tostring(id) end
    return nil, "not_failed: the message is " .. tostring(st.status)
  end
  seq_dict:incr("requeue:outbox:" .. r.channel .. ":" .. r.account, 1, 0)
  wake_sender(r.channel, r.account)
  return r
end

-- A failed message given up by an operator: status `dropped` (final, pruned like the others;
-- not deleted: SQLite would give its id to the next message, behind the sender's view).
-- Returns true | nil, "not_found: ..." | nil, "not_failed: ...".
function M.drop(id)
  local n, err = chatgw.db.exec("UPDATE chat_outbox SET status = 'dropped', updated_at = ? WHERE id = ? AND status = 'failed'",
    now(), id)
  if not n then return nil, err end
  if n == 0 then
    local st = M.status(id)
    if not st then return nil, "not_found: no outbox message " .. tostring(id) end
    return nil, "not_failed: the message is " .. tostring(st.status)
  end
  return true
end

-- Rows of this account not yet final (for health and metrics).
function M.depth(channel, account)
  local rows = chatgw.db.query([[SELECT count(*) AS n FROM chat_outbox WHERE channel = ? AND account = ?
    AND status IN ('queued', 'sending')]], channel, account)
  return rows and rows[1] and rows[1].n or 0
end

-- Forgets what is older than the retention: final outbox rows (a press on a button of a
-- message older than that no longer finds its handler) and long button data.
function M.prune(retention_s)
  local cutoff = now() - retention_s
  chatgw.db.exec([[DELETE FROM chat_outbox WHERE status IN ('delivered', 'failed', 'unknown', 'dropped')
    AND updated_at < ?]], cutoff)
  chatgw.db.exec("DELETE FROM chat_buttons WHERE created_at < ?", cutoff)
  chatgw.db.exec("DELETE FROM chat_blobs WHERE created_at < ?", cutoff) -- of messages long gone
end

return M
