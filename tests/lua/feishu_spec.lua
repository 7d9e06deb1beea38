-- Plain-Lua checks for the pure parts of the Feishu channel: events into the message model
-- (lua/chatgw/chat/channels/feishu/parse.lua) and the apps read from the config and the
-- environment (feishu/config.lua). Run from the repo root: luajit tests/lua/feishu_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path
chatgw = { _ws = {} } -- chatgw.config reads it at load

local spec = require "spec_helper"
local check = spec.check
local json = require "chatgw.json"
local fsconfig = require "chatgw.chat.channels.feishu.config"
local globals_before = spec.strict_globals()
local parse = require "chatgw.chat.channels.feishu.parse"

local BOT = { open_id = "ou_bot", name = "TestBot" }

local function event(kind, content, over)
  local ev = { sender = { sender_id = { open_id = "ou_u1", user_id = "u1", union_id = "on_u1" }, sender_type = "user" },
               message = { message_id = "om_1", chat_id = "oc_1", chat_type = "group", message_type = kind,
                           content = json.encode(content), create_time = "1700000000123" } }
  for k, v in pairs(over or {}) do ev.message[k] = v end
  return ev
end

-- text, mentions
local f = parse.message(event("text", { text = "@_user_1 deploy now @_user_2" }, { mentions = {
  { key = "@_user_1", id = { open_id = "ou_bot" }, name = "TestBot" },
  { key = "@_user_2", id = { open_id = "ou_ann" }, name = "Ann" } } }), BOT)
check("text: the bot's mention key is stripped, others read @name", f.text == "deploy now @Ann", f.text)
check("text: mentioned", f.mentioned == true)
check("group chat", f.chat.type == "group" and f.chat.id == "oc_1")
check("user ids", f.user.id == "ou_u1" and f.user.union_id == "on_u1")
check("date in seconds", f.date == 1700000000)
check("id is the message_id", f.id == "om_1")

f = parse.message(event("text", { text = "@_user_1 hi" }, { chat_type = "p2p", mentions = {
  { key = "@_user_1", id = { open_id = "ou_x" }, name = "Other" } } }), BOT)
check("p2p is private", f.chat.type == "private")
check("another's mention is not the bot's", f.mentioned == false and f.text == "@Other hi", f.text)

f = parse.message(event("text", { text = "@_user_1 hi" }, { mentions = {
  { key = "@_user_1", id = { open_id = "ou_x", user_id = "bot_uid" }, name = "Bot" } } }),
  { user_id = "bot_uid" })
check("mention by user_id", f.mentioned == true and f.text == "hi")
f = parse.message(event("text", { text = "@_user_1 hi" }, { mentions = {
  { key = "@_user_1", id = { open_id = "ou_x" }, name = "TestBot" } } }), { name = "TestBot" })
check("mention by name", f.mentioned == true)
f = parse.message(event("text", { text = "a % pattern (x) @_user_10" }, { mentions = {
  { key = "@_user_10", id = { open_id = "ou_bot" }, name = "B" } } }), BOT)
check("magic characters in text survive", f.text == "a % pattern (x)", f.text)

-- post (rich text), with and without the locale wrapper
local post = { title = "Report", content = { { { tag = "at", user_id = "@_user_1", user_name = "TestBot" },
  { tag = "text", text = " see " }, { tag = "a", href = "https://x", text = "this" } },
  { { tag = "img", image_key = "img_1" } }, { { tag = "text", text = "end" } } } }
f = parse.message(event("post", post, { mentions = { { key = "@_user_1", id = { open_id = "ou_bot" }, name = "TestBot" } } }), BOT)
check("post: plain text, a line per paragraph, the bot's @ out", f.text == "Report\nsee this\n\nend", f.text)
check("post: mentioned", f.mentioned == true)
check("post: its image is an attachment", f.attachments[1] and f.attachments[1].id == "img_1"
  and f.attachments[1].message_id == "om_1")
f = parse.message(event("text", { text = "first @_user_1\n@_user_1 second @_user_1 third" }, { mentions = {
  { key = "@_user_1", id = { open_id = "ou_bot" }, name = "B" } } }), BOT)
check("the bot's key at line ends and between words", f.text == "first\nsecond third", f.text)
f = parse.message(event("text", { text = "@_user_1 and @_user_10" }, { mentions = {
  { key = "@_user_1", id = { open_id = "ou_a" }, name = "A%1" }, { key = "@_user_10", id = { open_id = "ou_b" }, name = "B" } } }), BOT)
check("@_user_1 is not a prefix of @_user_10; % in a name", f.text == "@A%1 and @B", f.text)
f = parse.message(event("post", { zh_cn = post }), BOT)
check("post: the locale wrapper", f.text:find("^Report\n") ~= nil, f.text)

-- image, file
f = parse.message(event("image", { image_key = "img_2" }), BOT)
check("image: kind, key, message", f.attachments[1].kind == "image" and f.attachments[1].id == "img_2"
  and f.attachments[1].resource_type == "image" and f.text == "")
f = parse.message(event("file", { file_key = "file_1", file_name = "a.pdf" }), BOT)
check("file", f.attachments[1].kind == "file" and f.attachments[1].name == "a.pdf")

-- replies, bots, junk
f = parse.message(event("text", { text = "x" }, { parent_id = "om_0" }), BOT, function(id) return id == "om_0" end)
check("parent_id is reply_to, from the bot", f.reply_to.id == "om_0" and f.reply_to.from_bot == true)
local ev = event("text", { text = "x" })
ev.sender.sender_type = "app"
check("messages from apps are ignored", parse.message(ev, BOT) == nil)
ev = event("text", { text = "x" })
ev.message.content = "{not json"
f = parse.message(ev, BOT)
check("bad content is an empty text, no raise", f and f.text == "")
check("no message", parse.message({}, BOT) == nil)
check("not a table", parse.message("x", BOT) == nil)

-- card actions
local a = parse.card_action({ operator = { open_id = "ou_u1" }, token = "c-1", action = { value = { data = "yes" } },
  context = { open_message_id = "om_5", open_chat_id = "oc_1" } })
check("card action: data, message, chat, token", a.data == "yes" and a.message.id == "om_5" and a.chat.id == "oc_1"
  and a.card_token == "c-1" and a.user.id == "ou_u1")
a = parse.card_action({ action = { value = { k = 1 } } })
check("card action: a value without data is its JSON", a.data == '{"k":1}', a.data)

-- config: env names, domains, accounts
local function env(t) return function(k) return t[k] end end
local l = fsconfig.accounts({}, env({ FEISHU_APP_ID = "cli_1", FEISHU_APP_SECRET = "s" }))
check("one app, default, on", #l == 1 and l[1].name == "default" and l[1].app_id == "cli_1" and not l[1].off_reason)
check("default base", l[1].api_base == "https://open.feishu.cn")
check("default path", l[1].event_path == "/feishu/events")
l = fsconfig.accounts({}, env({ FEISHU_APP_ID = "cli_1", FEISHU_DOMAIN = "lark" }))
check("lark domain", l[1].api_base == "https://open.larksuite.com")
check("off without the secret, says which", l[1].off_reason == "FEISHU_APP_SECRET is not set", l[1].off_reason)
l = fsconfig.accounts({ channels = { feishu = { api_base = "http://x/" } } },
  env({ FEISHU_API_BASE = "http://127.0.0.1:9/", FEISHU_DOMAIN = "lark" }))
check("FEISHU_API_BASE wins, trailing / dropped", l[1].api_base == "http://127.0.0.1:9", l[1].api_base)
l = fsconfig.accounts({ channels = { feishu = { event_path = "/fs", accounts = { ops = { bot_name = "Ops" } } } } },
  env({ FEISHU_APP_ID_OPS = "cli_2", FEISHU_APP_SECRET_OPS = "s2", FEISHU_VERIFICATION_TOKEN_OPS = "v2" }))
check("a second app, its own variables and path", l[2].name == "ops" and l[2].app_id == "cli_2"
  and l[2].verification_token == "v2" and l[2].event_path == "/fs/ops" and l[2].bot_name == "Ops", l[2] and l[2].event_path)
check("on() sees any app", fsconfig.on({ channels = { feishu = { accounts = { ops = {} } } } },
  env({ FEISHU_APP_ID_OPS = "a", FEISHU_APP_SECRET_OPS = "b" })) == true)
check("on() off", fsconfig.on({}, env({})) == false)

for k in pairs(_G) do check("no new global " .. tostring(k), globals_before[k]) end
spec.report()
