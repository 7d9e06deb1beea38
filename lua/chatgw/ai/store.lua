-- chatgw.ai.store: the AI layer's tables in the embedded store (migrations owned by
-- "chatgw.ai"; never edit a shipped one, append).
--
--   ai_tasks   one row per task_id of the tasks API: state running -> done, the answer as
--              stored JSON (failures included, as seed 000 stores them), who claimed it when
--   ai_memory  conversation memory: one row per chat (and per user in groups), the turns as JSON
local dbmod = require "chatgw.db"

dbmod.register("chatgw.ai", {
  [[
  CREATE TABLE ai_tasks (
    task_id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    claimed_at REAL NOT NULL,
    done_at REAL);
  CREATE TABLE ai_memory (
    key TEXT PRIMARY KEY,
    turns TEXT NOT NULL,
    updated_at REAL NOT NULL);
  ]],
})

return {}
