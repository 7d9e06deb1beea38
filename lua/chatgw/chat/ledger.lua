-- chatgw.chat.ledger: the durable inbound ledger (table chat_inbound).
--
-- Every inbound update is recorded before the platform is acknowledged (webhook 200,
-- getUpdates offset): channel, account, platform id, time, state, and the message itself.
--   record()   recorded; a platform id seen within the retention window is a duplicate
--   dispatch   the row is marked running just before its handlers start (one task wins), and
--              dispatched when they return
--   replay()   after a restart, by the account's sender loop (the process holding its lock):
--              rows recorded and never dispatched are dispatched, and rows whose handler was
--              cut off (running) are run again, once (rerun). The messages the second run
--              accepts are the first run's where they match by position (chat/outbox.lua), so
--              the user sees each reply once; a handler's other side effects may happen twice.
--              A row cut off twice (rerun) is not run a third time (a message that kills the
--              process would otherwise do it at every start).
-- In cluster mode a new row's platform id is also claimed in Redis (chat/ledger_redis.lua), so
-- a redelivery to another node is a duplicate there too; a row another node claimed first is
-- kept with state 'duplicate' (never dispatched, never replayed). The claim adds the update to
-- the account's stream (its entry id in stream_id), the dispatch acknowledges it there, and a
-- live node takes over (claim_stale) what a dead node recorded and never dispatched.
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
-- Rows just claimed, until their dispatch: what it needs without reading the row again. A
-- process dying in between leaves stream_id unset: the takeover scan sets it (claim_stale).
local fresh = {}

local function claim(id, channel, account, platform_id, message, unfenced)
  if not cluster.enabled then return true end
  local mine, err = ledger_redis.claim(channel, account, platform_id, M.retention_s, message, unfenced)
  if mine == nil and tostring(err):find("^fenced") then
    chatgw.db.exec("DELETE FROM chat_inbound WHERE id = ? AND state = 'recorded'", id)
    return nil, err
  end
  if mine == true and err ~= "" then -- err: the new stream entry's id (written with the row's next state)
    fresh[id] = { channel = channel, account = account, platform_id = platform_id, stream_id = err }
  end
  if mine ~= false then return true end
  chatgw.db.exec("UPDATE chat_inbound SET state = 'duplicate' WHERE id = ? AND state = 'recorded'", id)
  return false
end

-- Returns the row id | nil, "duplicate", the first delivery's message id | nil, "db: ...".
-- fields: the message's fields (JSON).
function M.record(channel, account, platform_id, fields)
  local t, message = chatgw.time(), json.encode(fields)
  local n, id = chatgw.db.exec([[INSERT INTO chat_inbound (channel, account, platform_id, received_at,
      state, message) VALUES (?, ?, ?, ?, 'recorded', ?) ON CONFLICT DO NOTHING]],
    channel, account, tostring(platform_id), t, message)
  if not n then return nil, id end
  if n == 0 then return duplicate(channel, account, platform_id) end
  local mine, cerr = claim(id, channel, account, platform_id, message)
  if mine == nil then return nil, cerr end
  if not mine then return duplicate(channel, account, platform_id) end
  in_metric:inc({ channel = channel, account = account })
  return id
end

local NEXT = { recorded = "running", running = "rerun" }

-- Just before the handlers of row id start; from: the state it was read in ('recorded' for a
-- live dispatch, 'running' for a handler run again). false when another task had it first (a
-- replay racing a live dispatch).
-- In cluster mode Redis is asked first whether this node still holds the update (a live node
-- may have taken it over while this one looked dead): when not, the row becomes 'duplicate'.
function M.mark_running(id, from)
  from = from or "recorded"
  if not NEXT[from] then return false end
  local sid
  if cluster.enabled then
    local r = fresh[id]
    fresh[id] = nil
    if not r then
      local rows = chatgw.db.query("SELECT channel, account, platform_id, stream_id, state FROM chat_inbound WHERE id = ?", id)
      r = rows and rows[1]
      if not r or r.state ~= from then return false end
    end
    sid = r.stream_id
    local mine = ledger_redis.dispatch(r.channel, r.account, r.platform_id, sid)
    if mine == false then
      chatgw.db.exec("UPDATE chat_inbound SET state = 'duplicate' WHERE id = ? AND state = ?", id, from)
      dup_metric:inc({ channel = r.channel, account = r.account })
      return false
    end
  end
  local n, err = chatgw.db.exec("UPDATE chat_inbound SET state = ?, stream_id = coalesce(?, stream_id) WHERE id = ? AND state = ?",
    NEXT[from], sid, id, from)
  if not n then return nil, err end
  return n == 1
end

-- Its handlers returned (or raised).
function M.mark_dispatched(id)
  return chatgw.db.exec("UPDATE chat_inbound SET state = 'dispatched' WHERE id = ? AND state IN ('running', 'rerun')", id)
end

-- Rows of an account recorded and never dispatched, or whose handler was cut off, oldest
-- first: { {id, state, message = fields}, ... }; busy(id): true for a row a task of this
-- process runs now (left out). A row cut off twice is marked dispatched (a WARN) and left out.
-- In cluster mode each is claimed first (the process may have died before its claim): those
-- another node claimed become 'duplicate' and are left out.
function M.pending(channel, account, busy)
  local rows, err = chatgw.db.query([[SELECT id, platform_id, state, message FROM chat_inbound
    WHERE state IN ('recorded', 'running', 'rerun') AND channel = ? AND account = ? ORDER BY id]], channel, account)
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    if busy and busy(r.id) then
      -- a live task's: it finishes it
    elseif r.state == "rerun" then
      chatgw.db.exec("UPDATE chat_inbound SET state = 'dispatched' WHERE id = ? AND state = 'rerun'", r.id)
      chatgw.log.warn("chat: an update whose handler was cut off twice is not run a third time",
        { channel = channel, account = account, id = r.id })
    elseif claim(r.id, channel, account, r.platform_id, r.message, true) then
      r.message = json.decode(r.message or "{}") or {}
      out[#out + 1] = r
    end
  end
  return out
end

-- Cluster mode: the account's stream entries pending longer than min_idle_ms on dead nodes
-- (taken over) or on this one (its own, settled or lost locally). Returns the rows to dispatch
-- now, as pending() does, plus from (the dead node): { {id, message = fields, from}, ... }.
function M.claim_stale(channel, account, min_idle_ms)
  local entries, err = ledger_redis.claim_stale(channel, account, min_idle_ms, 100)
  if not entries then return nil, err end
  local out = {}
  for _, e in ipairs(entries) do
    local rows = chatgw.db.query("SELECT id, state, stream_id FROM chat_inbound WHERE channel = ? AND account = ? AND platform_id = ?",
      channel, account, e.platform_id)
    local have = rows and rows[1]
    if have and (have.state == "dispatched" or have.state == "running" or have.state == "rerun"
                 or (have.state == "duplicate" and not e.from)) then
      ledger_redis.ack(channel, account, e.stream_id) -- settled here: off the pending list
    elseif have and have.state == "recorded" then
      -- this node dispatches it (a live task or the replay): it acknowledges the entry then
      if have.stream_id ~= e.stream_id then
        chatgw.db.exec("UPDATE chat_inbound SET stream_id = ? WHERE id = ?", e.stream_id, have.id)
      end
    else -- a dead node's (or one this node recorded and lost): recorded here, then dispatched
      local got = chatgw.db.write_query([[INSERT INTO chat_inbound (channel, account, platform_id, received_at,
          state, message, stream_id) VALUES (?, ?, ?, ?, 'recorded', ?, ?)
        ON CONFLICT (channel, account, platform_id) DO UPDATE SET state = 'recorded', message = excluded.message,
          stream_id = excluded.stream_id WHERE chat_inbound.state = 'duplicate' RETURNING id]],
        channel, account, e.platform_id, chatgw.time(), e.message, e.stream_id)
      local id = got and got[1] and got[1].id
      if id then
        chatgw.log.info("chat: taking over an update a node recorded and did not dispatch", { channel = channel,
          account = account, platform_id = e.platform_id, from = e.from or cluster.node_id })
        out[#out + 1] = { id = id, state = "recorded", message = json.decode(e.message) or {}, from = e.from }
      end
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
