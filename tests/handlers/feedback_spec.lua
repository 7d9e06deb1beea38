-- Specs of handlers/feedback.lua: chatgw test handlers tests/handlers/feedback_spec.lua
-- Alerts come from the notify API, which does not send to the test channel: a case that needs
-- one posts a bot message and answers chatgw.notify.lookup for it (restored afterwards).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local feedback = dofile(here .. "/../../handlers/feedback.lua") -- the module, for its route

-- test(name, fn), with chatgw.notify.lookup answering `alerts` (message id -> notify) inside
local function case(name, fn)
  test(name, function(t)
    local real = chatgw.notify.lookup
    local alerts = {}
    chatgw.notify.lookup = function(channel, chat_id, message_id)
      local a = alerts[tostring(message_id)]
      if a and channel == "test" and a.chat_id == chat_id then return a.notify end
      return nil
    end
    local ok, err = pcall(fn, t, alerts)
    chatgw.notify.lookup = real
    if not ok then error(err, 0) end
  end)
end

-- a bot message in chat c (an alert when notify is given): its record in c:messages()
local function bot_message(c, text, alerts, notify)
  local h = assert(chatgw.chat.send{ channel = "test", chat_id = c.id, text = text })
  local st = h:wait(5000)
  if alerts and notify then alerts[st.message_id] = { chat_id = c.id, notify = notify } end
  return c:last()
end

local function alert(c, alerts, project)
  return bot_message(c, "disk 91% on db-1", alerts, { project_id = project or "shop", text = "disk 91% on db-1",
    meta = { delivery_priority = "HIGH", rule = "disk" }, outbox_id = 812, created_at = chatgw.time() })
end

-- the route's answer (chatgw.json.empty_array, a marker, made an empty table)
local function route(query)
  local out = feedback.routes["GET /v1/feedback"][1]({ query = query })
  for _, k in ipairs({ "records", "minimums" }) do
    if out[k] == chatgw.json.empty_array then out[k] = {} end
  end
  return out
end
local function records(chat_id) return route({ chat_id = chat_id }) end

local function min(c) return chatgw.notify.min_priority("test", c.id) end

case("a reply to an alert saying too many raises the chat's minimum one level and records it", function(t, alerts)
  local c = t:chat()
  local u = c:user{ name = "Ann", username = "ann" }
  local a = alert(c, alerts)
  local r = u:send("too many alerts!", { reply_to = a })
  t:eq(#r, 1, "one acknowledgement")
  t:eq(r[1].text, "OK: this chat now gets MEDIUM and above (was LOW).")
  t:eq(min(c), "MEDIUM", "the gate's minimum")
  local out = records(c.id)
  t:eq(#out.records, 1, "recorded")
  local rec = out.records[1]
  t:eq(rec.project_id, "shop")
  t:eq(rec.alert_text, "disk 91% on db-1")
  t:eq(rec.alert_outbox_id, 812)
  t:eq(rec.alert_message_id, a.id)
  t:eq(rec.alert_meta.rule, "disk")
  t:eq(rec.user_id, u.id)
  t:eq(rec.user_name, "Ann")
  t:eq(rec.text, "too many alerts!")
  t:eq(rec.action, "raise")
  t:eq(rec.old_level, "LOW")
  t:eq(rec.new_level, "MEDIUM")
  t:eq(rec.result, "changed")
  t:ok(type(rec.created_at) == "number" and rec.at:match("^%d%d%d%d%-%d%d%-%d%dT"), "when")
  t:eq(out.minimums[1].chat_id, c.id)
  t:eq(out.minimums[1].min_priority, "MEDIUM")
  t:eq(out.minimums[1].set, true)
end)

case("repeated complaints within the cooldown do not ratchet; after it they do", function(t, alerts)
  local c = t:chat()
  local u = c:user()
  local a = alert(c, alerts)
  t:eq(u:send("too noisy", { reply_to = a })[1].text, "OK: this chat now gets MEDIUM and above (was LOW).")
  local r = u:send("刷屏了", { reply_to = a })
  t:contains(r[1].text, "stays MEDIUM")
  t:contains(r[1].text, "at most once every 10 min")
  t:eq(min(c), "MEDIUM", "unchanged during the cooldown")
  t:advance(599 * 1000)
  t:contains(u:send("too many", { reply_to = a })[1].text, "next change possible in 1 s")
  t:advance(1000)
  t:eq(u:send("too many", { reply_to = a })[1].text, "OK: this chat now gets HIGH and above (was MEDIUM).")
  t:eq(min(c), "HIGH")
  local out = records(c.id)
  t:eq(#out.records, 4, "every complaint is recorded")
  t:eq(out.records[2].result, "cooldown")
  t:eq(out.records[2].new_level, "MEDIUM")
end)

case("the levels are bounds: never above the highest nor below the lowest", function(t, alerts)
  local c = t:chat()
  local u = c:user()
  local a = alert(c, alerts)
  t:eq(u:send("too quiet", { reply_to = a })[1].text,
    "This chat already gets every alert (LOW and above, the lowest level): nothing changed.")
  t:eq(min(c), nil, "nothing set")
  t:eq(u:send("only push CRITICAL", { reply_to = a })[1].text, "OK: this chat now gets CRITICAL and above (was LOW).")
  t:advance(600 * 1000)
  t:eq(u:send("告警太多", { reply_to = a })[1].text, "This chat already gets only CRITICAL, the highest level: nothing changed.")
  t:eq(min(c), "CRITICAL")
  t:eq(records(c.id).records[1].result, "at_highest")
  t:eq(u:send("是不是坏了", { reply_to = a })[1].text, "OK: this chat now gets HIGH and above (was CRITICAL).")
end)

case("only push X sets the minimum directly, in any case, also during a cooldown", function(t, alerts)
  local c = t:chat()
  local u = c:user()
  local a = alert(c, alerts)
  t:eq(u:send("too many", { reply_to = a })[1].text, "OK: this chat now gets MEDIUM and above (was LOW).")
  t:eq(u:send("只推 HIGH", { reply_to = a })[1].text, "OK: this chat now gets HIGH and above (was MEDIUM).")
  t:eq(min(c), "HIGH")
  t:eq(u:send("please only push high", { reply_to = a })[1].text, "This chat already gets HIGH and above: nothing changed.")
  t:eq(u:send("/feedback only push low")[1].text, "OK: this chat now gets LOW and above (was HIGH).")
  t:eq(min(c), "LOW")
  local rec = records(c.id).records[1]
  t:eq(rec.action, "set")
  t:eq(rec.project_id, nil, "no alert, no project")
end)

case("a reply to a bot message that is not a notify is still recorded, without a project", function(t, alerts)
  local c = t:chat()
  local u = c:user()
  local m = bot_message(c, "hello, I am the bot")
  t:eq(u:send("too many", { reply_to = m })[1].text, "OK: this chat now gets MEDIUM and above (was LOW).")
  local rec = records(c.id).records[1]
  t:eq(rec.project_id, nil)
  t:eq(rec.alert_outbox_id, nil)
  t:eq(rec.alert_message_id, m.id)
  t:eq(rec.alert_text, "hello, I am the bot")
end)

case("chatter is left alone: no reply, no record, on_message returns nothing", function(t, alerts)
  local c = t:chat()
  local u = c:user()
  local a = alert(c, alerts)
  t:eq(#u:send("thanks, looking into it", { reply_to = a }), 0, "a reply that is not feedback")
  t:eq(#u:send("too many", {}), 0, "feedback words outside a reply")
  t:eq(#u:send("only push when needed", { reply_to = a }), 0, "no level named")
  local g = t:group()
  local gu = g:user()
  t:eq(#gu:send("too many people here"), 0, "group chatter")
  t:eq(#records(c.id).records + #records(g.id).records, 0, "nothing recorded")
  t:eq(min(c), nil)
  local msg = { channel = "test", account = "default", chat = { id = c.id, type = "private" }, user = { id = u.id },
                text = "ok", reply_to = { id = a.id, from_bot = true } }
  t:eq(feedback.on_message(msg), nil, "the next handlers may run")
end)

case("in a group, a reply to the bot's alert is feedback without a mention", function(t, alerts)
  local g = t:group{ title = "Ops" }
  local u = g:user{ name = "Bob" }
  local a = alert(g, alerts, "billing")
  local r = u:send("告警太多了", { reply_to = a })
  t:eq(r[1].text, "OK: this chat now gets MEDIUM and above (was LOW).")
  t:ok(r[1].reply_to ~= nil, "quoted in the group")
  local rec = records(g.id).records[1]
  t:eq(rec.project_id, "billing")
  t:eq(rec.chat_type, "group")
end)

case("/feedback: usage, a complaint without a reply, and other text noted", function(t, alerts)
  local c = t:chat()
  local u = c:user()
  t:contains(u:send("/feedback")[1].text, "Usage: /feedback")
  t:eq(u:send("/feedback too many")[1].text, "OK: this chat now gets MEDIUM and above (was LOW).")
  local r = u:send("/feedback the disk alert is useful")
  t:contains(r[1].text, "Thanks, noted.")
  t:contains(r[1].text, "now MEDIUM and above")
  t:contains(u:send("/feedback only push URGENT")[1].text, "URGENT is not a level (LOW, MEDIUM, HIGH, CRITICAL)")
  local out = records(c.id)
  t:eq(#out.records, 3, "the usage answer records nothing")
  t:eq(out.records[2].action, "note")
  t:eq(out.records[2].result, "noted")
  local a = alert(c, alerts)
  t:advance(600 * 1000)
  t:eq(u:send("/feedback too quiet", { reply_to = a })[1].text, "OK: this chat now gets LOW and above (was MEDIUM).")
  t:eq(records(c.id).records[1].project_id, "shop", "/feedback as a reply finds the alert")
end)

case("GET /v1/feedback filters and limits", function(t, alerts)
  local c1, c2 = t:chat(), t:chat()
  c1:user():send("/feedback too many")
  c2:user():send("/feedback only push HIGH")
  c2:user():send("/feedback fine now")
  local all = route({ limit = "2" })
  t:eq(#all.records, 2, "limit")
  t:eq(all.records[1].chat_id, c2.id, "newest first")
  t:eq(all.levels[4], "CRITICAL")
  t:eq(all.cooldown_s, 600)
  local two = records(c2.id)
  t:eq(#two.records, 2)
  t:eq(#two.minimums, 1)
  t:eq(two.minimums[1].min_priority, "HIGH")
end)
