-- chatgw.notify.store: the notify API's tables (migrations owned by "chatgw.notify").
--
--   notify_messages  every message notify accepted: its outbox row, project, meta, keys (for
--                    chatgw.notify.lookup: the alert a user replied to, and update_key edits)
--   notify_dedupe    dedupe_key per chat, until when a repeat is dropped
--   notify_digest    notifies folded into a chat's digest, sent when its window closes
local dbmod = require "chatgw.db"

dbmod.register("chatgw.notify", {
  [[
  CREATE TABLE notify_messages (
    id INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL,
    channel TEXT NOT NULL, account TEXT NOT NULL, chat_id TEXT NOT NULL,
    project_id TEXT, meta TEXT, text TEXT, update_key TEXT, dedupe_key TEXT,
    created_at REAL NOT NULL);
  CREATE INDEX notify_messages_update ON notify_messages (channel, chat_id, update_key) WHERE update_key IS NOT NULL;
  CREATE INDEX notify_messages_outbox ON notify_messages (outbox_id);
  CREATE TABLE notify_dedupe (
    channel TEXT NOT NULL, chat_id TEXT NOT NULL, key TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (channel, chat_id, key));
  CREATE TABLE notify_digest (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL, account TEXT NOT NULL, chat_id TEXT NOT NULL,
    due_at REAL NOT NULL, text TEXT NOT NULL);
  CREATE INDEX notify_digest_due ON notify_digest (due_at);
  ]],
  -- 2: the delivery priority the gate resolved, for chatgw.notify.lookup (explain's context)
  [[ALTER TABLE notify_messages ADD COLUMN priority TEXT;]],
})

return {}
