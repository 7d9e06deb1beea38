-- docs/config.md shows the schema: every key of the sections below has the row that
-- config.doc_rows() makes from the schema (type, range, default, meaning), and the docs have
-- no row for a key the schema lacks. Run from the repo root: luajit tests/lua/config_docs_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path
chatgw = { _ws = {} } -- lua/chatgw/ws.lua registers the ws: section; it reads chatgw._ws at load
local config = require "chatgw.config"
require "chatgw.ws"
require "chatgw.chat.config" -- the chat: section (lua/chatgw/chat/config.lua)
require "chatgw.chat.channels.config" -- the channels: section (telegram, feishu)
require "chatgw.providers.config" -- the providers: section
require "chatgw.ai.config" -- the ai: section
require "chatgw.notify.config" -- the notify: section
require "chatgw.auth" -- the tokens: section
require "chatgw.audit.config" -- the audit: section

local spec = require "spec_helper"
local check = spec.check

local f = assert(io.open("docs/config.md", "rb"))
local doc = f:read("*a")
f:close()

for _, section in ipairs({ "http", "lua", "watchdog", "cluster", "ws", "chat", "channels", "providers", "ai", "notify", "tokens", "audit" }) do
  print("# " .. section)
  local known = {}
  for _, r in ipairs(config.doc_rows(section)) do
    known[r.key] = true
    check("docs/config.md has the row of " .. r.key, doc:find(r.row, 1, true) ~= nil, r.row)
  end
  for key in doc:gmatch("\n| `(" .. section .. "%.[^`]+)` |") do
    check("the schema has the key docs/config.md shows: " .. key, known[key] == true)
  end
end

spec.report()
