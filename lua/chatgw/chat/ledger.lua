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
-- In cluster mode a new row's platform id is also claimed in Redis (chat/ledger_redis.lua), so
-- a redelivery to another node is a duplicate there too; a row another node claimed first is
-- kept with state 'duplicate' (never dispatched, never replayed).
local chatgw = chatgw
local json = require "chatgw.json"
local cluster = require "chatgw.cluster"
local ledger_redis = require "chatgw.chat.ledger_redis"

local M = {}

local dup_metric = chatgw.metrics.counter{ name = "chatgw_ledger_duplicates_total",
  help = "Inbound updates dropped as duplicates by the ledger", labels = { "channel", "account" } }
local in_metric = chatgw.metrics.counter{ name = "chatgw_chat_messages_in_total",
  help = "Inbound chat messages recorded, by channel and account", labels = { "channel", "account" } }

M.retention_s = 24 * 3600

local function duplicate(channel, account, platform_id)
  dup_metric:inc({ channel = channel, account = account })
  local rows = chatgw.db.query([[SELECT message FROM chat_inbound WHERE channel = ? AND account = ?
    AND platform_id = ?]], channel, account, tostring(platform_id))
  local first = rows and rows[1] and json.decode(rows[1].message or "{}")
  return nil, "duplicate", type(first) == "table" and first.id or nil
end

-- Cluster mode, a row just recorded: claims its platform id in Redis. false when another node
-- claimed it first (the row becomes 'duplicate'); nil, "fenced: ..." when this node lost the
-- account's leader lock (the row is deleted: a later delivery records it afresh). Redis down:
-- true (local dedupe only).
-- Why local first, then Redis: a claim followed by a failed local insert would make every
-- redelivery a duplicate of an update nobody recorded (lost); the other way round, a failed
-- claim leaves a local row that dispatches (at least once), and a process dying between the
-- two leaves a 'recorded' row whose claim replay() makes before dispatching it.
local function claim(id, channel, account, platform_id, unfenced)
  if not cluster.enabled then return true end
  local mine, err = ledger_redis.claim(channel, account, platform_id, M.retention_s, unfenced)
  if mine == nil and tostring(err):find("^fenced") then
    chatgw.db.exec("DELETE FROM chat_inbound WHERE id = ? AND state = 'recorded'", id)
    return nil, err
  end
  if mine ~= false then return true end
  chatgw.db.exec("UPDATE chat_inbound SET state = 'duplicate' WHERE id = ? AND state = 'recorded'", id)
  return false
end

-- Returns the row id | nil, "duplicate", the first delivery's message id | nil, "db: ...".
-- fields: the message's fields (JSON).
function M.record(channel, account, platform_id, fields)
  local t = chatgw.time()
  local n, id = chatgw.db.exec([[INSERT INTO chat_inbound (channel, account, platform_id, received_at,
      state, message) VALUES (?, ?, ?, ?, 'recorded', ?) ON CONFLICT DO NOTHING]],
    channel, account, tostring(platform_id), t, json.encode(fields))
  if not n then return nil, id end
  if n == 0 then return duplicate(channel, account, platform_id) end
  local mine, cerr = claim(id, channel, account, platform_id)
  if mine == nil then return nil, cerr end
  if not mine then return duplicate(channel, account, platform_id) end
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
-- In cluster mode each is claimed first (the process may have died before its claim): those
-- another node claimed become 'duplicate' and are left out.
function M.pending(channel, account)
  local rows, err = chatgw.db.query([[SELECT id, platform_id, message FROM chat_inbound WHERE state = 'recorded'
    AND channel = ? AND account = ? ORDER BY id]], channel, account)
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    if claim(r.id, channel, account, r.platform_id, true) then
      r.message = json.decode(r.message or "{}") or {}
      out[#out + 1] = r
    end
  end
  return out
end

-- Forgets updates older than the retention window (their duplicates can no longer be told).
function M.prune()
  return chatgw.db.exec("DELETE FROM chat_inbound WHERE received_at < ? AND state IN ('dispatched', 'duplicate')",
    chatgw.time() - M.retention_s)
end

return M
