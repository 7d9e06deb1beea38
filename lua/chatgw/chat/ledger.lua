-- chatgw.chat.ledger: the durable inbound ledger (table chat_inbound).
--
-- Every inbound update is recorded before the platform is acknowledged (webhook 200,
-- getUpdates offset): channel, account, platform id, time, state, and the message itself.
--   record()   recorded; a platform id seen within the retention window is a duplicate
--   dispatch   the row is marked dispatched just before its handler starts, so a handler runs
--              at most once per update
--   replay()   rows recorded but never dispatched (the process died in between) are dispatched
--              after a restart, by the account's sender loop (the process holding its lock)
-- The one gap: a handler killed mid-run (kill -9 while it works) is not run again; its replies
-- accepted so far are still sent.
local chatgw = chatgw
local json = require "chatgw.json"

local M = {}

local dup_metric = chatgw.metrics.counter{ name = "chatgw_ledger_duplicates_total",
  help = "Inbound updates dropped as duplicates by the ledger", labels = { "channel", "account" } }
local in_metric = chatgw.metrics.counter{ name = "chatgw_chat_messages_in_total",
  help = "Inbound chat messages recorded, by channel and account", labels = { "channel", "account" } }

M.retention_s = 24 * 3600

-- Returns the row id | nil, "duplicate", the first delivery's message id | nil, "db: ...".
-- fields: the message's fields (JSON).
function M.record(channel, account, platform_id, fields)
  local t = chatgw.time()
  local n, id = chatgw.db.exec([[INSERT INTO chat_inbound (channel, account, platform_id, received_at,
      state, message) VALUES (?, ?, ?, ?, 'recorded', ?) ON CONFLICT DO NOTHING]],
    channel, account, tostring(platform_id), t, json.encode(fields))
  if not n then return nil, id end
  if n == 0 then
    dup_metric:inc({ channel = channel, account = account })
    local rows = chatgw.db.query([[SELECT message FROM chat_inbound WHERE channel = ? AND account = ?
      AND platform_id = ?]], channel, account, tostring(platform_id))
    local first = rows and rows[1] and json.decode(rows[1].message or "{}")
    return nil, "duplicate", type(first) == "table" and first.id or nil
  end
  in_metric:inc({ channel = channel, account = account })
  return id
end

-- Just before the handlers of row id start. false when it was dispatched already (a replay
-- racing a live dispatch).
function M.mark_dispatched(id)
  local n, err = chatgw.db.exec("UPDATE chat_inbound SET state = 'dispatched' WHERE id = ? AND state = 'recorded'", id)
  if not n then return nil, err end
  return n == 1
end

-- Rows of an account recorded and never dispatched, oldest first: { {id, message = fields}, ... }.
function M.pending(channel, account)
  local rows, err = chatgw.db.query([[SELECT id, message FROM chat_inbound WHERE state = 'recorded'
    AND channel = ? AND account = ? ORDER BY id]], channel, account)
  if not rows then return nil, err end
  for _, r in ipairs(rows) do r.message = json.decode(r.message or "{}") or {} end
  return rows
end

-- Forgets updates older than the retention window (their duplicates can no longer be told).
function M.prune()
  return chatgw.db.exec("DELETE FROM chat_inbound WHERE received_at < ? AND state = 'dispatched'",
    chatgw.time() - M.retention_s)
end

return M
