-- chatgw.notify.deliver: one notify to one chat, through the outbox: the gate, dedupe_key,
-- update_key, the storm digest, then acceptance (durable: sent = true, status "queued").
--
--   deliver.one(ctx, channel, chat_id, item) -> the chat's entry of the response
--     ctx:  { gate, info, require_priority, override(channel, chat_id) -> level|nil,
--             account(channel) -> name, off(channel) -> reason|nil, dedupe_window_s, digest }
--     item: { text | image_bytes (+ caption), update_key, dedupe_key, project_id, meta }
--   deliver.flush_digests(now) -> n   the digests whose window closed, sent
--   deliver.wait(entries, ms)         waits for the accepted ones; status delivered|failed|...
local chatgw = chatgw
local json = require "chatgw.json"
local outbox = require "chatgw.chat.outbox"
local cluster = require "chatgw.cluster"
local update_shared = require "chatgw.notify.update_shared"
require "chatgw.notify.store"

local type, tostring = type, tostring

local M = {}

local NULL = json.null

local function nn(v) if v == nil then return NULL end return v end

local function record(h, channel, account, chat_id, item)
  chatgw.db.exec([[INSERT INTO notify_messages (outbox_id, channel, account, chat_id, project_id, meta, text,
      update_key, dedupe_key, created_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]],
    h.id, channel, account, chat_id, item.project_id and tostring(item.project_id) or nil,
    item.meta ~= nil and json.encode(item.meta) or nil, item.text or item.caption, item.update_key, item.dedupe_key,
    chatgw.time(), nn(item.priority))
end

-- In cluster mode a dedupe_key is claimed in Redis (one SET NX PX), so a repeat sent to any
-- node is dropped. nil when Redis cannot answer: this node's table decides (WARN once per outage).
local outage = {} -- cluster.outage's memory
local function first_in_cluster(channel, chat_id, key, window_s)
  local r, err = cluster.command("SET", "chatgw:notify:dedupe:" .. channel .. ":" .. chat_id .. ":" .. key,
    cluster.node_id, "NX", "PX", tostring(math.max(1, math.floor(window_s * 1000))))
  if r == nil and err then
    cluster.outage(outage, "notify: Redis cannot dedupe: this node's own table decides until it can", nil, err)
    return nil
  end
  cluster.recovered(outage, "notify: Redis dedupes again")
  return r == "OK"
end

-- true when the key was not seen in the window (and is now), false for a repeat
local function first_of(channel, chat_id, key, window_s)
  if cluster.enabled then
    local first = first_in_cluster(channel, chat_id, key, window_s)
    if first ~= nil then return first end
  end
  local now = chatgw.time()
  local n = chatgw.db.exec([[INSERT INTO notify_dedupe (channel, chat_id, key, until) VALUES (?, ?, ?, ?)
    ON CONFLICT (channel, chat_id, key) DO UPDATE SET until = excluded.until WHERE notify_dedupe.until < ?]],
    channel, chat_id, key, now + window_s, now)
  return n ~= 0
end

local function last_of(channel, chat_id, update_key)
  local rows = chatgw.db.query([[SELECT outbox_id FROM notify_messages WHERE channel = ? AND chat_id = ?
    AND update_key = ? ORDER BY id DESC LIMIT 1]], channel, chat_id, update_key)
  return rows and rows[1] and rows[1].outbox_id or nil
end

-- Folds a notify into the chat's digest when the chat is over the threshold in the window.
-- true when folded.
local function digested(ctx, channel, account, chat_id, item)
  local d = ctx.digest
  if not d or d.threshold <= 0 then return false end
  local lim = chatgw.limiter{ name = "notify.digest." .. d.window_s, limit = d.threshold, window_ms = d.window_s * 1000 }
  local key = channel .. ":" .. chat_id
  local due = chatgw.db.query("SELECT due_at FROM notify_digest WHERE channel = ? AND chat_id = ? LIMIT 1", channel, chat_id)
  if not (due and due[1]) and lim:take(key) then return false end
  local due_at = due and due[1] and due[1].due_at or (chatgw.time() + d.window_s)
  local line = (item.text or item.caption or "(image)"):match("^[^\n]*"):sub(1, 200)
  chatgw.db.exec("INSERT INTO notify_digest (channel, account, chat_id, due_at, text) VALUES (?, ?, ?, ?, ?)",
    channel, account, chat_id, due_at, line)
  return true
end

function M.one(ctx, channel, chat_id, item)
  local info = ctx.info
  local override = ctx.override(channel, chat_id)
  local d = ctx.gate:decide(info, override, ctx.require_priority)
  local e = { sent = false, delivery_priority = nn(info and info.delivery_priority),
              global_min_priority = nn(info and info.global_min_priority),
              channel_min_priority = nn(info and info.channel_min_priority),
              target_override_min_priority = nn(override), effective_min_priority = nn(d.effective_min),
              skip_reason = nn(d.skip_reason) }
  local off = ctx.off(channel)
  if off then
    e.skip_reason = "channel_disabled"
    e.detail = off
    return e
  end
  if not d.allowed then return e end
  local account = ctx.account(channel)
  if item.dedupe_key and not first_of(channel, chat_id, item.dedupe_key, item.dedupe_window_s or ctx.dedupe_window_s) then
    e.skip_reason = "duplicate"
    return e
  end
  if item.update_key and item.text then
    local oid = last_of(channel, chat_id, item.update_key)
    -- in cluster mode, a message another node sent for this key
    local h = oid and outbox.handle(oid, channel, account, chat_id) or update_shared.adopt(channel, account, chat_id, item.update_key)
    if h then
      local eh, err = h:edit(item.text)
      if eh then
        record(h, channel, account, chat_id, item) -- later lookups and edits find the same message
        update_shared.share(h, channel, account, chat_id, item.update_key, item.text)
        e.sent, e.status, e.outbox_id, e._handle = true, "edited", eh.id, eh
        return e
      end
      chatgw.log.warn("notify: cannot edit the message of an update_key; sending a new one",
        { channel = channel, chat_id = chat_id, error = tostring(err) })
    end
  end
  if digested(ctx, channel, account, chat_id, item) then
    e.sent, e.status = true, "digested"
    return e
  end
  local handles = {}
  if item.image_bytes then
    if channel == "feishu" and item.caption and item.caption ~= "" then -- the caption first, then the image (the seed's order)
      local h, err = outbox.accept{ channel = channel, account = account, chat_id = chat_id, text = item.caption, origin = "notify" }
      if not h then e.skip_reason, e.error = "notify_failed", tostring(err) return e end
      handles[#handles + 1] = h
      record(h, channel, account, chat_id, item)
    end
    local h, err = outbox.accept{ channel = channel, account = account, chat_id = chat_id, image_bytes = item.image_bytes,
      caption = channel ~= "feishu" and item.caption or nil, origin = "notify" }
    if not h then e.skip_reason, e.error = "notify_failed", tostring(err) return e end
    handles[#handles + 1] = h
    record(h, channel, account, chat_id, item)
  else
    local h, err = outbox.accept{ channel = channel, account = account, chat_id = chat_id, text = item.text, origin = "notify" }
    if not h then e.skip_reason, e.error = "notify_failed", tostring(err) return e end
    handles[1] = h
    record(h, channel, account, chat_id, item)
    if item.update_key then update_shared.share(h, channel, account, chat_id, item.update_key, item.text) end
  end
  e.sent, e.status, e.outbox_id = true, "queued", handles[#handles].id
  e._handle = handles[#handles]
  return e
end

-- Waits (all together, up to ms) for the entries' deliveries and reports them.
function M.wait(entries, ms)
  local deadline = chatgw.now() + ms
  for _, e in ipairs(entries) do
    if e._handle then
      local st = e._handle:wait(math.max(0, deadline - chatgw.now()))
      if st then
        e.status = st.status == "delivered" and (e.status == "edited" and "edited" or "delivered") or st.status
        e.message_id = nn(st.message_id)
        if st.error then e.error = st.error end
      end
    end
  end
end

function M.strip(e)
  e._handle = nil
  return e
end

-- Sends every digest whose window closed: "N more alerts:" and their first lines.
function M.flush_digests(now)
  local rows = chatgw.db.query([[SELECT channel, account, chat_id, MIN(due_at) AS due FROM notify_digest
    GROUP BY channel, account, chat_id HAVING MIN(due_at) <= ?]], now)
  local n = 0
  for _, r in ipairs(rows or {}) do
    local items = chatgw.db.query([[SELECT id, text FROM notify_digest WHERE channel = ? AND account = ? AND chat_id = ?
      ORDER BY id]], r.channel, r.account, r.chat_id) or {}
    if #items > 0 then
      local lines = { ("%d more alert%s:"):format(#items, #items == 1 and "" or "s") }
      for i, it in ipairs(items) do
        if i > 20 then lines[#lines + 1] = ("... and %d more"):format(#items - 20) break end
        lines[#lines + 1] = "- " .. it.text
      end
      local h = outbox.accept{ channel = r.channel, account = r.account, chat_id = r.chat_id,
        text = table.concat(lines, "\n"), origin = "notify" }
      if h then
        chatgw.db.exec("DELETE FROM notify_digest WHERE channel = ? AND account = ? AND chat_id = ? AND id <= ?",
          r.channel, r.account, r.chat_id, items[#items].id)
        n = n + 1
      end
    end
  end
  return n
end


return M
