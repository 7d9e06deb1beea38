"""E2E: the chat layer on the test channel (CHATGW_TEST_CHANNEL=1: POST /v1/test/inbound,
POST /v1/test/press, GET /v1/test/sent) and on the ws channel: the message model, commands
and their etiquette, on_message addressing, the policy rule by rule, the allowlist modes and
/auth, output limits, rpm, the outbox (handles, status, images, long button data), handler
errors, languages and health."""
import os
import re
import textwrap
import time
import unittest

from harness import Gateway, GatewayTest, run_cli
from test_ws import WsTestBase, HAVE_NODE_WS

ENV = {"CHATGW_TEST_CHANNEL": "1"}

MODEL = r"""
return {
  commands = { echo = "say it again", fields = "show the message", boom = "fail", img = "image",
               button = "long button data", later = "a reply after a wait", sendq = "send quoting",
               longbtn = "a long text with buttons" },
  on_command = function(msg, args)
    if msg.command == "echo" then return msg:reply("echo: " .. args) end
    if msg.command == "fields" then
      return msg:reply(chatgw.json.encode({ channel = msg.channel, account = msg.account, id = msg.id,
        chat = msg.chat, user = msg.user, text = msg.text, command = msg.command, args = msg.args,
        argv = msg.argv, mentioned = msg.mentioned, reply_to = msg.reply_to or chatgw.json.null,
        date = type(msg.date) }))
    end
    if msg.command == "boom" then error("kaboom") end
    if msg.command == "img" then
      local path = os.tmpname()
      local f = io.open(path, "wb") f:write(("\137PNG"):rep(100)) f:close()
      local h = msg:reply{ image = path, caption = "a picture" }
      os.remove(path) -- the bytes were copied when the reply was accepted
      local st = h:wait(5000)
      return msg:reply("image " .. st.status)
    end
    if msg.command == "button" then
      return msg:reply{ text = "press", buttons = { { { text = "Long", data = ("x"):rep(200) }, { text = "Short", data = "s" } } } }
    end
    if msg.command == "longbtn" then
      return msg:reply{ text = string.rep("word ", 1200), buttons = { { { text = "B", data = "b" } } } }
    end
    if msg.command == "sendq" then
      chatgw.chat.send{ channel = "test", chat_id = msg.chat.id, text = "quoting", reply_to = msg.id }
      local ok, err = pcall(chatgw.chat.send, { channel = "test", chat_id = msg.chat.id, text = "x", quote = true })
      return msg:reply(tostring(err):match("chatgw%.chat%.send: quote needs a message") and "quote refused" or "?")
    end
    if msg.command == "later" then
      local h = msg:reply("first")
      local st = h:wait(5000)
      local st2 = chatgw.chat.status(h.id)
      return msg:reply(("status %s %s %s"):format(st.status, tostring(st.message_id ~= nil), st2.status))
    end
  end,
  on_callback = function(cb)
    cb:reply{ text = "pressed " .. #cb.data .. " " .. cb.data:sub(1, 3), quote = true }
  end,
}
"""

MESSAGES = r"""
return {
  name = "a_first",
  on_message = function(msg)
    if msg.text == "stop here" then msg:reply("first stopped it") return true end
    msg:reply("first saw: " .. msg.text)
  end,
}
"""

MESSAGES2 = r"""
return {
  name = "b_second",
  on_message = function(msg) msg:reply("second saw: " .. msg.text) end,
}
"""

LISTEN_ALL = r"""
return { groups = "all", on_message = function(msg) msg:reply("all: " .. msg.text) end }
"""


class ChatTest(GatewayTest):
    def chat(self, files, config=None, env=None, policy=None):
        e = dict(ENV)
        e.update(env or {})
        g = self.gw(files, config=config, env=e, start=False)
        if policy is not None:
            with open(os.path.join(g.dir, "policy.yml"), "w") as f:
                f.write(textwrap.dedent(policy))
        g.start()
        return g

    def send(self, g, text, chat_id="c1", **kw):
        body = {"chat_id": chat_id, "text": text}
        body.update(kw)
        r = g.request("POST", "/v1/test/inbound", json_body=body)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def sent(self, g, chat_id="c1"):
        return g.get("/v1/test/sent?chat_id=" + chat_id).json()["messages"]

    def texts(self, g, chat_id="c1"):
        return [m["text"] for m in self.sent(g, chat_id)]

    # ---- the message model and commands ----

    def test_message_model_on_the_test_channel(self):
        g = self.chat({"m.lua": MODEL})
        self.send(g, "/Fields@chatgw_test_bot  a  b ", chat_id="-1001234567890123", chat_type="supergroup",
                  user_id="98765432109876543", user_name="Ann", username="ann", mentioned=True)
        m = self.sent(g, "-1001234567890123")
        j = __import__("json").loads(m[0]["text"])
        self.assertEqual(j["channel"], "test")
        self.assertEqual(j["account"], "default")
        self.assertIsInstance(j["id"], str)
        self.assertEqual(j["chat"], {"id": "-1001234567890123", "type": "group", "raw_type": "supergroup"})
        self.assertEqual(j["user"]["id"], "98765432109876543")  # ids are strings, exact
        self.assertEqual(j["user"]["name"], "Ann")
        self.assertEqual(j["command"], "fields")
        self.assertEqual(j["args"], "a  b")
        self.assertEqual(j["argv"], ["a", "b"])
        self.assertTrue(j["mentioned"])
        self.assertEqual(j["date"], "number")
        # replies quote the message in groups, not in private chats
        self.assertIsNotNone(m[0]["reply_to"])
        self.send(g, "/echo hi")
        self.assertNotIn("reply_to", self.sent(g)[0])

    def test_commands_case_other_bots_and_unknown(self):
        g = self.chat({"m.lua": MODEL})
        self.send(g, "/ECHO Loud")
        self.send(g, "/echo@otherbot ignored")
        self.send(g, "/echo@ChatGW_Test_Bot ours")
        self.send(g, "/nope")
        self.assertEqual(self.texts(g), ["echo: Loud", "echo: ours",
                                         "Unknown command /nope. Send /help for the list."])
        # in a group an unknown command is answered only when the bot is mentioned
        self.send(g, "/nope", chat_id="-5", chat_type="group")
        self.assertEqual(self.texts(g, "-5"), [])
        self.send(g, "/nope", chat_id="-5", chat_type="group", mentioned=True)
        self.assertEqual(len(self.texts(g, "-5")), 1)
        # /help lists the commands with their descriptions; /start too
        self.send(g, "/help", chat_id="c2")
        help_text = self.texts(g, "c2")[0]
        self.assertIn("/echo - say it again", help_text)
        self.assertIn("/help - list the commands", help_text)
        self.assertNotIn("/auth", help_text)  # owner only
        self.send(g, "/start", chat_id="c2")
        self.assertEqual(self.texts(g, "c2")[1], help_text)

    def test_duplicate_command_is_a_load_error(self):
        g = Gateway({"a.lua": "return { commands = { 'deploy' }, on_command = function() end }\n",
                     "b.lua": "return {\n  commands = { 'Deploy' },\n  on_command = function() end,\n}\n"})
        self.addCleanup(g.cleanup)
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env)
        self.assertEqual(code, 1)
        self.assertRegex(err, r"b\.lua:2: command /deploy is already declared by .*a\.lua:1")
        g2 = Gateway({"c.lua": "return { commands = { 'x' } }\n"})
        self.addCleanup(g2.cleanup)
        code, out, err = run_cli(["check", g2.handlers_dir, "--config", g2.config_path], env=g2.env)
        self.assertIn("c.lua:1: commands needs an on_command function", err)

    def test_on_message_order_addressing_and_groups_all(self):
        g = self.chat({"a.lua": MESSAGES, "b.lua": MESSAGES2})
        self.send(g, "hello")
        self.assertEqual(self.texts(g), ["first saw: hello", "second saw: hello"])
        self.send(g, "stop here")
        self.assertEqual(self.texts(g)[2:], ["first stopped it"])
        # groups: only when mentioned or replying to the bot
        self.send(g, "chatter", chat_id="-7", chat_type="group")
        self.assertEqual(self.texts(g, "-7"), [])
        self.send(g, "to the bot", chat_id="-7", chat_type="group", mentioned=True)
        self.send(g, "a reply", chat_id="-7", chat_type="group", reply_to=self.sent(g, "-7")[0]["id"])
        self.assertEqual(self.texts(g, "-7"), ["first saw: to the bot", "second saw: to the bot",
                                               "first saw: a reply", "second saw: a reply"])
        g2 = self.chat({"all.lua": LISTEN_ALL})
        self.send(g2, "chatter", chat_id="-8", chat_type="group")
        self.assertEqual(self.texts(g2, "-8"), ["all: chatter"])

    # ---- outbox: handles, images, buttons, errors ----

    def test_outbox_handles_images_buttons_and_errors(self):
        # a second callback handler: a press goes only to the handler that sent the message
        other = 'return { on_callback = function(cb) cb:reply("z saw it") end }'
        g = self.chat({"m.lua": MODEL, "z.lua": other})
        self.send(g, "/later")
        self.assertEqual(self.texts(g), ["first", "status delivered true delivered"])
        self.send(g, "/img", chat_id="i1")
        m = self.sent(g, "i1")
        self.assertEqual(m[0]["caption"], "a picture")
        self.assertEqual(m[0]["image_bytes"], 400)
        self.assertEqual(m[1]["text"], "image delivered")
        self.send(g, "/button", chat_id="b1")
        msg = self.sent(g, "b1")[0]
        long_data = msg["buttons"][0][0]["data"]
        self.assertTrue(re.match(r"^k:[0-9a-f]{16}$", long_data), long_data)  # over 64 bytes: a key
        self.assertEqual(msg["buttons"][0][1]["data"], "s")
        r = g.request("POST", "/v1/test/press", json_body={"message_id": msg["id"], "data": long_data})
        self.assertEqual(r.status, 200)
        self.wait(lambda: len(self.sent(g, "b1")) == 2, what="the callback's reply")
        self.assertEqual(self.texts(g, "b1")[1], "pressed 200 xxx")  # the handler got the whole data
        self.assertEqual(self.sent(g, "b1")[1]["reply_to"], msg["id"])  # quote: the pressed message
        # a text longer than the platform takes: its buttons go under the last part, and a press
        # there finds the handler
        self.send(g, "/longbtn", chat_id="lb")
        parts = self.sent(g, "lb")
        self.assertEqual(len(parts), 2)
        self.assertEqual(parts[0]["buttons"], [])
        self.assertEqual(parts[1]["buttons"][0][0]["data"], "b")
        self.assertEqual((parts[0]["text"] + " " + parts[1]["text"]).split(), ["word"] * 1200)
        g.request("POST", "/v1/test/press", json_body={"message_id": parts[1]["id"], "data": "b"})
        self.wait(lambda: len(self.sent(g, "lb")) == 3, what="the press's reply")
        self.assertEqual(self.texts(g, "lb")[2], "pressed 1 b")
        time.sleep(0.2)
        self.assertEqual(len(self.sent(g, "lb")), 3, "only the handler that sent it saw the press")
        # chatgw.chat.send quotes by reply_to; quote (which needs a message) is refused
        self.send(g, "/sendq", chat_id="q1", message_id="m-77")
        sent = self.sent(g, "q1")
        self.assertEqual((sent[0]["text"], sent[0]["reply_to"]), ("quoting", "m-77"))
        self.assertEqual(sent[1]["text"], "quote refused")
        # a raising handler: logged with its traceback, the user gets a short error
        self.send(g, "/boom", chat_id="e1")
        reply = self.texts(g, "e1")[0]
        m = re.match(r"^Sorry, something went wrong \(error ([0-9a-f]{8})\)\.$", reply)
        self.assertTrue(m, reply)
        rec = g.wait_log(lambda r: r.get("msg") == "chat handler failed")
        self.assertEqual(rec["error_id"], m.group(1))
        self.assertIn("kaboom", rec["error"])
        self.assertIn("stack traceback", rec["error"])
        # the ledger drops a redelivered update
        a = self.send(g, "/echo once", chat_id="d1", update_id="u-1")
        b = self.send(g, "/echo once", chat_id="d1", update_id="u-1")
        self.assertTrue(a["recorded"])
        self.assertEqual(b, {"ok": True, "recorded": False, "reason": "duplicate"})
        self.assertEqual(self.texts(g, "d1"), ["echo: once"])
        m = g.get("/metrics").text
        self.assertRegex(m, r'chatgw_ledger_duplicates_total\{channel="test",account="default"\} 1')
        self.assertRegex(m, r'chatgw_chat_messages_out_total\{[^}]*result="delivered"[^}]*\} \d+')
        h = g.health()
        self.assertEqual(h["checks"]["channels"]["channels"]["test:default"]["state"], "ok")
        self.assertEqual(h["checks"]["channels"]["channels"]["ws:default"]["state"], "ok")

    # ---- policy ----

    POLICY = """
    defaults:
      output_limits: { max_lines: 3, max_chars: 200 }
    rules:
      - name: owner
        match: { channel: test, user_id: "${ENV:OWNER_TEST_USER_ID}" }
        allow: ["*"]
        rate_limit: { rpm: 100 }
      - match: { capability: ops.restart }
        allow: []
        deny_message: "ops is for the owner"
      - match: { capability: quiet.thing }
        allow: []
      - match: { capability: alerts.explain, chat_type: group }
        allow: [alerts.explain]
        require: { mention_bot_for_explain: true, reply_required_for_explain: true }
      - match: { capability: alerts.explain }
        allow: [alerts.explain]
        rate_limit: { rpm: 2 }
      - match: { capability: ai.ask }
        allow: [ai.ask]
        rate_limit: { rpm: 1 }
    """

    ASK = r"""
    return {
      capability = "ai.ask",  -- the string form: the capability of on_message
      on_message = function(msg) return msg:reply("asked: " .. msg.text) end,
    }
    """

    CAPS = r"""
    return {
      commands = { restart = "restart", quiet = "q", explain = "explain", long = "long", open = "open",
                   unruled = "no rule" },
      capability = { restart = "ops.restart", quiet = "quiet.thing", explain = "alerts.explain",
                     long = "alerts.explain", unruled = "some.cap" },
      on_command = function(msg, args)
        if msg.command == "long" then
          local lines = {}
          for i = 1, 10 do lines[i] = "line " .. i end
          return msg:reply(table.concat(lines, "\n"))
        end
        return msg:reply("did " .. msg.command)
      end,
    }
    """

    def test_policy_rule_by_rule(self):
        g = self.chat({"caps.lua": self.CAPS, "ask.lua": self.ASK}, policy=self.POLICY,
                      env={"OWNER_TEST_USER_ID": "42"})
        self.send(g, "/restart", chat_id="p1")
        self.assertEqual(self.texts(g, "p1"), ["ops is for the owner"])
        self.send(g, "/restart", chat_id="p2", user_id="42")  # the owner rule comes first
        self.assertEqual(self.texts(g, "p2"), ["did restart"])
        self.send(g, "/quiet", chat_id="p3")  # a rule without deny_message: silence
        self.assertEqual(self.texts(g, "p3"), [])
        self.send(g, "/unruled", chat_id="p4")  # no rule for the capability: denied
        self.assertEqual(self.texts(g, "p4"), ["not allowed"])
        self.send(g, "/open", chat_id="p5")  # no capability: open to all
        self.assertEqual(self.texts(g, "p5"), ["did open"])
        # group explain needs a mention and a reply (silent otherwise)
        self.send(g, "/explain", chat_id="-9", chat_type="group")
        self.send(g, "/explain", chat_id="-9", chat_type="group", mentioned=True)
        self.assertEqual(self.texts(g, "-9"), [])
        self.send(g, "/explain", chat_id="-9", chat_type="group", mentioned=True, reply_to="123")
        self.assertEqual(self.texts(g, "-9"), ["did explain"])
        # output limits from the file's defaults: 3 lines, with a note
        self.send(g, "/long", chat_id="p6")
        self.assertEqual(self.texts(g, "p6")[0], "line 1\nline 2\nline 3\n… (truncated: 7 more lines)")
        # rpm 2 per user and chat
        for _ in range(3):
            self.send(g, "/explain", chat_id="p7")
        t = self.texts(g, "p7")
        self.assertEqual(t[:2], ["did explain", "did explain"])
        self.assertRegex(t[2], r"^Too many requests: try again in \d+ s\.$")
        # each capability has its own budget: ai.ask (rpm 1) still answers in p7, once
        self.send(g, "what now", chat_id="p7")
        self.send(g, "and now", chat_id="p7")
        t = self.texts(g, "p7")
        self.assertEqual(t[3], "asked: what now")
        self.assertRegex(t[4], r"^Too many requests: try again in \d+ s\.$")
        m = g.get("/metrics").text
        self.assertRegex(m, r'chatgw_policy_denials_total\{capability="ops.restart",reason="not_allowed"\} 1')
        self.assertRegex(m, r'chatgw_policy_denials_total\{capability="alerts.explain",reason="mention_required"\} 1')
        self.assertRegex(m, r'chatgw_policy_denials_total\{capability="alerts.explain",reason="reply_required"\} 1')
        self.assertRegex(m, r'chatgw_policy_denials_total\{capability="alerts.explain",reason="rate_limited"\} 1')
        # a broken policy fails the reload with its line; the old one keeps working
        with open(os.path.join(g.dir, "policy.yml"), "w") as f:
            f.write("rules:\n  - match: { channel: test }\n    allow: [\"*\"]\n    bogus: 1\n")
        r = g.reload()
        self.assertEqual(r["last_result"], "failed")
        self.assertIn("policy.yml:4:", r["last_error"])
        self.send(g, "/restart", chat_id="p8")
        self.assertEqual(self.texts(g, "p8"), ["ops is for the owner"])

    # ---- allowlist ----

    def test_allowlist_auth_mode_and_auth_command(self):
        cfg = "chat:\n  allowlist_mode: auth\n  owner_chats:\n    test: \"owner-chat\"\n"
        g = self.chat({"m.lua": MODEL}, config=cfg, env={"OWNER_TEST_USER_ID": "42"})
        self.send(g, "/echo hi", chat_id="x1", user_id="7")
        self.assertEqual(self.texts(g, "x1"), ["This chat is not authorized to use this bot."])
        self.send(g, "/echo hi", chat_id="-20", chat_type="group", user_id="7", mentioned=True)
        self.assertEqual(self.texts(g, "-20"), [])  # silence in groups
        self.send(g, "/echo owner chat", chat_id="owner-chat", user_id="9")
        self.assertEqual(self.texts(g, "owner-chat"), ["echo: owner chat"])
        # /auth is for the owner
        self.send(g, "/auth add x1", chat_id="x1", user_id="7")
        self.assertEqual(self.texts(g, "x1")[1], "This chat is not authorized to use this bot.")
        self.send(g, "/auth add x1", chat_id="o1", user_id="42")
        self.assertEqual(self.texts(g, "o1"), ["Chat x1 may use this bot now."])
        self.send(g, "/echo now", chat_id="x1", user_id="7")
        self.assertEqual(self.texts(g, "x1")[2], "echo: now")
        self.send(g, "/auth list", chat_id="o1", user_id="42")
        self.assertEqual(self.texts(g, "o1")[1], "Chats allowed on test (auth):\nowner-chat (owner chat)\nx1")
        self.send(g, "/auth del x1", chat_id="o1", user_id="42")
        self.assertEqual(self.texts(g, "o1")[2], "Chat x1 may no longer use this bot.")
        self.send(g, "/echo again", chat_id="x1", user_id="7")
        self.assertEqual(self.texts(g, "x1")[3], "This chat is not authorized to use this bot.")
        # the owner sees /auth in /help
        self.send(g, "/help", chat_id="o1", user_id="42")
        self.assertIn("/auth - manage the chats allowed", self.texts(g, "o1")[3])

    def test_allowlist_owner_only(self):
        cfg = "chat:\n  allowlist_mode: owner_only\n"
        g = self.chat({"m.lua": MODEL}, config=cfg, env={"OWNER_TEST_USER_ID": "42"})
        self.send(g, "/echo a", chat_id="-30", chat_type="group", user_id="7", mentioned=True)
        self.send(g, "/echo b", chat_id="-30", chat_type="group", user_id="42", mentioned=True)
        self.assertEqual(self.texts(g, "-30"), ["echo: b"])
        self.send(g, "/echo c", chat_id="42", user_id="42")
        self.assertEqual(self.texts(g, "42"), ["echo: c"])

    def test_language_zh(self):
        g = self.chat({"m.lua": MODEL}, env={"CHAT_GATEWAY_RESPONSE_LANG": "zh"})
        self.send(g, "/nope")
        self.assertEqual(self.texts(g), ["未知命令 /nope。发送 /help 查看命令列表。"])
        g2 = self.chat({"m.lua": MODEL}, env={"GW_RESPONSE_LANG": "zh-CN"})
        self.send(g2, "/help")
        self.assertTrue(self.texts(g2)[0].startswith("你可以使用的命令："))
        # the built-in deny message and the truncation notes follow the language too
        zh = r"""
        return {
          commands = { lines = "many lines", ruleless = "no rule" },
          capability = { ruleless = "no.rule.for.this" },
          on_command = function(msg)
            return msg:reply(msg.command == "lines" and "a\nb\nc\nd" or "ran")
          end,
        }
        """
        g3 = self.chat({"zh.lua": zh}, env={"CHAT_GATEWAY_RESPONSE_LANG": "zh"},
                       policy="defaults:\n  output_limits: { max_lines: 2 }\n")
        self.send(g3, "/ruleless", chat_id="z1")
        self.assertEqual(self.texts(g3, "z1"), ["无权限"])
        self.send(g3, "/lines", chat_id="z2")
        self.assertEqual(self.texts(g3, "z2"), ["a\nb\n…（已截断：还有 2 行）"])


CHAT_BOT = r"""
return {
  commands = { echo = "echo" },
  on_command = function(msg, args) msg:reply{ text = "echo: " .. args, buttons = { { { text = "Again", data = "again" } } } } end,
  on_message = function(msg) msg:reply("heard " .. msg.text .. " from " .. msg.user.id) end,
  on_callback = function(cb) cb:reply("pressed " .. cb.data .. " on " .. tostring(cb.message.text)) end,
}
"""


@unittest.skipUnless(HAVE_NODE_WS, "node + node-ws (Debian packages nodejs, node-ws) are needed")
class WsChatChannelTest(WsTestBase):
    def test_chat_over_the_websocket(self):
        g = self.gw({"bot.lua": CHAT_BOT})
        d = self.driver(g)
        res = d.connect("alice", scopes=["chat.read", "chat.write"], device="alice")
        self.assertTrue(res["ok"], res)
        res = d.connect("bob", scopes=["chat.read"], device="bob")
        self.assertTrue(res["ok"], res)
        res = d.req("bob", "chat.join", {"chat_id": "room1"})
        self.assertTrue(res["ok"], res)
        res = d.req("alice", "chat.send", {"chat_id": "room1", "text": "/echo hi"})
        self.assertTrue(res["ok"], res)
        self.assertRegex(res["payload"]["id"], r"^[0-9a-f]{16}$")
        # bob sees alice's message and the bot's reply; alice sees the reply
        user_msg = d.msg("bob", lambda m: m.get("event") == "chat.message" and not m["payload"]["bot"])
        self.assertEqual(user_msg["payload"]["text"], "/echo hi")
        self.assertEqual(user_msg["payload"]["from"]["id"], "alice")
        for who in ("alice", "bob"):
            reply = d.msg(who, lambda m: m.get("event") == "chat.message" and m["payload"]["bot"])
            p = reply["payload"]
            self.assertEqual(p["chat_id"], "room1")
            self.assertEqual(p["text"], "echo: hi")
            self.assertEqual(p["format"], "plain")
            self.assertEqual(p["buttons"][0][0]["text"], "Again")
        res = d.req("alice", "chat.press", {"chat_id": "room1", "message_id": p["id"], "data": "again"})
        self.assertTrue(res["ok"], res)
        pressed = d.msg("alice", lambda m: m.get("event") == "chat.message" and m["payload"]["text"] == "pressed again on echo: hi")
        self.assertTrue(pressed["payload"]["bot"])
        res = d.req("alice", "chat.send", {"chat_id": "room2", "text": "plain words"})
        heard = d.msg("alice", lambda m: m.get("event") == "chat.message" and m["payload"]["chat_id"] == "room2")
        self.assertEqual(heard["payload"]["text"], "heard plain words from alice")
        # bob holds only chat.read: he may not send
        res = d.req("bob", "chat.send", {"chat_id": "room1", "text": "hi"})
        self.assertFalse(res["ok"])
        self.assertEqual(res["error"]["code"], "forbidden")
        res = d.req("alice", "chat.send", {"chat_id": "", "text": "x"})
        self.assertEqual(res["error"]["code"], "invalid_request")
        # a client-side id makes a retried send a duplicate
        r1 = d.req("alice", "chat.send", {"chat_id": "room3", "text": "once", "client_msg_id": "m-1"})
        r2 = d.req("alice", "chat.send", {"chat_id": "room3", "text": "once", "client_msg_id": "m-1"})
        self.assertTrue(r2["payload"]["duplicate"], r2)
        self.assertEqual(r2["payload"]["id"], r1["payload"]["id"], "the duplicate names the first send")
        d.msg("alice", lambda m: m.get("event") == "chat.message" and m["payload"]["text"] == "heard once from alice")


class ChatgwTestCommand(unittest.TestCase):
    ROOT = os.environ.get("CHATGW_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")

    def test_specs_of_the_echo_bot_example(self):
        ex = os.path.join(self.ROOT, "examples", "echo-bot")
        code, out, err = run_cli(["test", os.path.join(ex, "handlers")], cwd=ex)
        self.assertEqual(code, 0, out + err)
        self.assertRegex(out, r"\n(\d+) passed, 0 failed\n$")
        self.assertGreaterEqual(int(re.search(r"(\d+) passed", out).group(1)), 4)
        for line in out.splitlines()[:-1]:
            self.assertTrue(line.startswith("ok   "), line)

    def run_specs(self, handler, spec):
        """chatgw test on a fresh DIR/handlers/h.lua with DIR/tests/h_spec.lua: (code, out, err)."""
        d = __import__("tempfile").mkdtemp(prefix="chatgw-spec-")
        self.addCleanup(__import__("shutil").rmtree, d, True)
        for sub, name, src in (("handlers", "h.lua", handler), ("tests", "h_spec.lua", spec)):
            os.makedirs(os.path.join(d, sub))
            with open(os.path.join(d, sub, name), "w") as f:
                f.write(textwrap.dedent(src))
        return run_cli(["test", os.path.join(d, "handlers")], cwd=d)

    def test_a_failing_spec_fails_the_run(self):
        code, out, err = self.run_specs(CHAT_BOT, """\
            test("passes", function(t) t:eq(t:chat():user():send("/echo a")[1].text, "echo: a") end)
            test("fails", function(t) t:eq(t:chat():user():send("/echo a")[1].text, "nope") end)
            test("raises", function(t) error("oops") end)
            """)
        self.assertEqual(code, 1, out + err)
        self.assertIn("ok   passes", out)
        self.assertIn("FAIL fails", out)
        self.assertIn('value: expected "nope", got "echo: a"', out)
        self.assertIn("FAIL raises", out)
        self.assertTrue(out.endswith("1 passed, 2 failed\n"), out)

    def test_a_stubbed_http_answer_looks_like_a_real_one(self):
        code, out, err = self.run_specs("""\
            return {
              commands = { weather = "the weather" },
              on_command = function(msg)
                local res, err = chatgw.http.request{ url = "http://127.0.0.1:9/w" }
                if not res then return msg:reply("error: " .. err) end
                return msg:reply(res.status .. " " .. tostring(res.json and res.json.temp))
              end,
            }
            """, """\
            test("json is decoded", function(t)
              t:stub_http("GET http://127.0.0.1:9/w", { json = { temp = 21 } })
              t:eq(t:chat():user():send("/weather")[1].text, "200 21")
            end)
            test("a text body is not", function(t)
              t:stub_http("GET http://127.0.0.1:9/w", { status = 503, body = "down",
                headers = { ["Content-Type"] = "text/plain" } })
              t:eq(t:chat():user():send("/weather")[1].text, "503 nil")
            end)
            """)
        self.assertEqual(code, 0, out + err)
        self.assertTrue(out.endswith("2 passed, 0 failed\n"), out)

    def test_policy_and_config_hold_for_one_case_then_are_undone(self):
        code, out, err = self.run_specs("""\
            return {
              commands = { limit = "my limits" },
              capability = { limit = "demo.limit" },
              on_command = function(msg)
                local app = chatgw.config.app or {}
                return msg:reply(("%s %s"):format(tostring(msg.limits.max_lines),
                                 tostring(app.demo and app.demo.mode)))
              end,
            }
            """, """\
            test("under a policy and a setting", function(t)
              t:policy("rules:\\n  - allow: [demo.limit]\\n    output_limits: { max_lines: 7 }\\n")
              t:config("app.demo.mode", "on")
              t:eq(t:chat():user():send("/limit")[1].text, "7 on")
            end)
            test("the next case has neither", function(t)
              t:eq(t:chat():user():send("/limit")[1].text, "not allowed")
            end)
            test("a bad policy fails the case with its line", function(t)
              t:policy("rules:\\n  - allow: [x]\\n    colour: red\\n")
            end)
            """)
        self.assertEqual(code, 1, out + err)
        self.assertIn("ok   under a policy and a setting", out)
        self.assertIn("FAIL a bad policy fails the case with its line", out)
        self.assertRegex(out, r"t:policy: t:policy:3: .*colour")
        self.assertTrue(out.endswith("2 passed, 1 failed\n"), out)


if __name__ == "__main__":
    unittest.main()
