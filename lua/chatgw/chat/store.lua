-- chatgw.chat.store: the chat layer's tables in the embedded store (migrations owned by
-- "chatgw.chat"; never edit a shipped one, append).
--
--   chat_inbound    the durable inbound ledger: one row per platform update, recorded before the
--                   platform is acknowledged; state recorded -> running (its handlers started)
--                   -> dispatched (they returned), running -> rerun (run again after a crash), or
--                   duplicate (cluster mode: another node claimed its platform id first);
--                   stream_id: cluster mode, its entry in the account's Redis stream
--   chat_outbox     every outbound message, edit and deletion, written before the caller gets
--                   its handle; status queued -> sending -> delivered | failed | unknown;
--                   grp: sent to a group chat (the governor's group limit); retries: failed
--                   attempts that count toward giving up; parts_done: parts of a long text
--                   delivered so far; buttons_at: the platform id of the message showing its
--                   buttons (a press finds its handler by it; indexed only where set); run_key:
--                   "<inbound row>:<n>", the n-th message of a handler run (chat/outbox.lua)
--   chat_blobs      image bytes of accepted replies (a handler may delete its file at once)
--   chat_buttons    button data too long for a platform, behind a short key
--   chat_allowlist  the chats allowed to use a bot (allowlist modes owner_only and auth)
--   chat_state      small values that must survive restarts: offsets, the governor's freezes
--                   ("frozen:<channel>:<account>:<chat|*>") and gone chats ("gone:...")
local dbmod = require "chatgw.db"

dbmod.register("chatgw.chat", {
  [[
  CREATE TABLE chat_inbound (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL, account TEXT NOT NULL, platform_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    UNIQUE (channel, account, platform_id));
  CREATE INDEX chat_inbound_state ON chat_inbound (state) WHERE state = 'recorded';
  CREATE INDEX chat_inbound_received ON chat_inbound (received_at);
  CREATE TABLE chat_outbox (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL, account TEXT NOT NULL, chat_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref INTEGER,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    grp INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    parts_done INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    message_id TEXT,
    message_ids TEXT,
    buttons_at TEXT,
    error TEXT,
    uuid TEXT NOT NULL,
    handler TEXT,
    origin TEXT);
  CREATE INDEX chat_outbox_pending ON chat_outbox (channel, account, id)
    WHERE status IN ('queued', 'sending');
  CREATE INDEX chat_outbox_buttons ON chat_outbox (channel, account, chat_id, buttons_at)
    WHERE buttons_at IS NOT NULL;
  CREATE TABLE chat_blobs (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, bytes BLOB NOT NULL,
    created_at REAL NOT NULL);
  CREATE TABLE chat_buttons (key TEXT PRIMARY KEY, data TEXT NOT NULL, created_at REAL NOT NULL);
  CREATE TABLE chat_allowlist (
    channel TEXT NOT NULL, account TEXT NOT NULL, chat_id TEXT NOT NULL,
    added_by TEXT, added_at REAL NOT NULL,
    PRIMARY KEY (channel, account, chat_id));
  CREATE TABLE chat_state (k TEXT PRIMARY KEY, v TEXT NOT NULL, updated_at REAL NOT NULL);
  ]],
  -- 2: cluster mode, the entry of the update in the account's Redis stream (chat/ledger_redis.lua)
  [[ALTER TABLE chat_inbound ADD COLUMN stream_id TEXT;]],
  -- 3: a handler run again after a crash writes its n-th message once (chat/outbox.lua), and
  -- the rows a restart looks at (recorded, or their handler cut off)
  [[ALTER TABLE chat_outbox ADD COLUMN run_key TEXT;
  CREATE UNIQUE INDEX chat_outbox_run_key ON chat_outbox (run_key) WHERE run_key IS NOT NULL;
  CREATE INDEX chat_inbound_open ON chat_inbound (channel, account, id) WHERE state IN ('recorded', 'running', 'rerun');]],
})

local M = {}

function M.state_get(key)
  local rows, err = chatgw.db.query("SELECT v FROM chat_state WHERE k = ?", key)
  if not rows then return nil, err end
  return rows[1] and rows[1].v or nil
end

function M.state_set(key, value)
  return chatgw.db.exec([[INSERT INTO chat_state (k, v, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (k) DO UPDATE SET v = excluded.v, updated_at = excluded.updated_at]],
    key, tostring(value), chatgw.time())
end

function M.state_delete(key)
  return chatgw.db.exec("DELETE FROM chat_state WHERE k = ?", key)
end

return M
