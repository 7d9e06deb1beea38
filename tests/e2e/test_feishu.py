"""E2E: the Feishu/Lark channel against a local fake open platform (tests/e2e/fake_feishu.py):
plain and encrypted events, URL verification plain and encrypted, bad signatures, stale
timestamps, wrong tokens and malformed bodies; redelivery and a kill -9 between receipt and
dispatch; mentions in groups and rich text; the tenant token (one refresh for 50 concurrent
sends, a bad secret in /health); 99991400 storms with zero sends during freezes; images
uploaded once; replies; card buttons with toasts and the delayed update; streaming cards with
their sequence, and the fallback to edits; and no secret in logs, /metrics or /health."""
import json
import os
import signal
import struct
import time
import unittest
import urllib.error
import urllib.request
import zlib

from harness import GatewayTest
from fake_feishu import FakeFeishu

APP, SECRET = "cli_test_app", "app-SECRET-abcdef0123456789"
VT = "verif-TOKEN-0123456789abcdef"
EK = "encrypt-KEY-0123456789abcdefgh"
APP2, SECRET2, VT2 = "cli_second", "second-SECRET-zyxwv98765", "second-VT-9876543210"
BOT_OPEN_ID = "ou_bot0000000000000000000000000001"

BOT = r"""
return {
  commands = { echo = "say it again", many = "n replies", img = "a picture", btn = "a card with a button",
               stream = "a streamed reply", tell = "send to an id", long = "a long text", md = "markdown" },
  on_command = function(msg, args)
    local c = msg.command
    if c == "echo" then return msg:reply("echo: " .. args) end
    if c == "many" then for i = 1, tonumber(msg.argv[1]) do msg:reply("r" .. i) end return end
    if c == "img" then
      msg:reply{ image = os.getenv("TEST_PNG"), caption = "chart one" }
      return msg:reply{ image = os.getenv("TEST_PNG") }
    end
    if c == "btn" then return msg:reply{ text = "pick one", buttons = { { { text = "A", data = "a" },
                                                                         { text = "Slow", data = "slow" } } } } end
    if c == "md" then return msg:reply{ text = "**bold** text", format = "markdown" } end
    if c == "long" then -- past the policy's output limit: chat.send
      return chatgw.chat.send{ channel = "feishu", chat_id = msg.chat.id, text = string.rep("x", 200000) }
    end
    if c == "tell" then
      local h, err = chatgw.chat.send{ channel = "feishu", chat_id = msg.argv[1], text = "told" }
      if not h then return msg:reply("refused: " .. err) end
      local st = h:wait(5000)
      return msg:reply("told: " .. st.status)
    end
    if c == "stream" then
      local n, ms = tonumber(msg.argv[1]) or 15, tonumber(msg.argv[2]) or 60
      local s = msg:stream()
      for i = 1, n do s:write("w" .. i .. " ") chatgw.sleep(ms) end
      return s:finish()
    end
  end,
  on_message = function(msg)
    local att = msg.attachments[1]
    if att then
      local bytes, err = chatgw.chat.download(att, { max_bytes = 100000 })
      return msg:reply("got " .. (bytes and #bytes or tostring(err)) .. " bytes of " .. att.kind)
    end
    msg:reply("heard: " .. msg.text .. (msg.mentioned and " (mentioned)" or "")
      .. (msg.reply_to and (" (a reply to " .. msg.reply_to.id .. ")") or ""))
  end,
  on_callback = function(cb)
    if cb.data == "slow" then chatgw.sleep(3200) end
    cb:answer("chose " .. cb.data)
  end,
  routes = {
    ["POST /blast"] = function(req)
      local n = tonumber(req.query.n)
      local hs = {}
      for i = 1, n do
        hs[i] = chatgw.chat.send{ channel = "feishu", chat_id = "oc_blast" .. i, text = "blast " .. i }
      end
      local ok = 0
      for i = 1, n do if hs[i]:wait(20000).status == "delivered" then ok = ok + 1 end end
      return { sent = ok }
    end,
  },
}
"""


def png(w=2, h=2):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    raw = b"".join(b"\x00" + b"\x00\xff\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class FeishuTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.fs = FakeFeishu(apps={APP: {"secret": SECRET, "bot": {"open_id": BOT_OPEN_ID, "app_name": "TestBot"}},
                                   APP2: {"secret": SECRET2, "bot": {"open_id": "ou_bot2", "app_name": "Second"}}})
        self.fs.start()
        self.addCleanup(self.fs.stop)

    def start(self, env=None, config="", encrypt=False, secret=SECRET, vt=VT, handlers=None):
        e = {"FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": secret, "FEISHU_API_BASE": self.fs.url,
             "FEISHU_WEBHOOK_PORT": "0", "CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        if vt:
            e["FEISHU_VERIFICATION_TOKEN"] = vt
        if encrypt:
            e["FEISHU_ENCRYPT_KEY"] = EK
        e.update(env or {})
        self.ek = EK if encrypt else None
        g = self.gw(handlers or {"bot.lua": BOT}, config=config, env=e)
        self.g = g
        return g

    def url(self, g=None, path="/feishu/events"):
        return "http://127.0.0.1:%d%s" % ((g or self.g).port("feishu"), path)

    def send_event(self, body, g=None, **kw):
        kw.setdefault("encrypt_key", self.ek)
        return self.fs.event(self.url(g), body, **kw)

    def say(self, chat_id, text, chat_type="p2p", **kw):
        body = self.fs.message_event(APP, chat_id, text, VT, chat_type=chat_type, **kw)
        status, answer = self.send_event(body)
        self.assertEqual(status, 200, answer)
        return body

    def texts(self, chat_id):
        return [m["text"] for m in self.fs.messages(chat_id) if not m["deleted"]]

    def wait_texts(self, chat_id, n, timeout=10):
        self.wait(lambda: len(self.texts(chat_id)) >= n, timeout,
                  "%d messages in %s (have %r)" % (n, chat_id, self.texts(chat_id)))
        return self.texts(chat_id)

    def wait_detail(self):
        g = getattr(self, "g", None)
        calls = ["%s %s %s" % (c["method"], c["path"], c["code"]) for c in self.fs.calls()][-15:]
        return ("\nfake calls: %r\nfake errors: %r\nlog:\n%s" % (calls, self.fs.errors,
                "\n".join(l for l in g.stderr_text().splitlines() if '"msg":"request"' not in l)[-4000:] if g else ""))

    def post_raw(self, raw, headers, g=None):
        req = urllib.request.Request(self.url(g), data=raw, method="POST",
                                     headers=dict(headers, **{"Content-Type": "application/json"}))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def channel(self, g, account="default"):
        return g.health()["checks"]["channels"]["channels"]["feishu:" + account]

    def assert_no_secrets(self, g):
        issued = [t["token"] for t in self.fs.token_requests if t.get("token")]
        for where, text in (("logs", g.stderr_text()), ("/metrics", g.get("/metrics").text),
                            ("/health", json.dumps(g.get("/health?verbose=1").json()))):
            for s in [SECRET, VT, EK] + issued:
                self.assertNotIn(s, text, "a secret in " + where)

    # ---- events in ----

    def test_plain_event_is_answered_and_a_redelivery_is_dropped(self):
        g = self.start()
        body = self.say("oc_p2p1", "hello there")
        self.assertEqual(self.wait_texts("oc_p2p1", 1), ["heard: hello there"])
        m = self.fs.messages("oc_p2p1")[0]
        self.assertEqual(m["receive_id_type"], "chat_id")
        self.assertEqual(m["msg_type"], "text")
        self.assertTrue(m["uuid"], "every send carries a uuid")
        self.assertIsNone(m["reply_to"], "a private chat gets plain messages, not quotes")
        # Feishu retries: the same event, and the same message in an event with a new id
        status, answer = self.send_event(body)
        self.assertEqual((status, answer.get("ok")), (200, True))
        body["header"]["event_id"] = "another-event-id"
        self.assertEqual(self.send_event(body)[0], 200)
        time.sleep(0.8)
        self.assertEqual(self.texts("oc_p2p1"), ["heard: hello there"], "handled once")
        self.assertEqual(len(self.fs.token_requests), 1, "one token for everything")
        self.assertEqual(self.channel(g)["state"], "ok")
        self.assertIn('chatgw_feishu_events_total{account="default",result="duplicate"} 2', g.get("/metrics").text)
        self.assert_no_secrets(g)

    def test_url_verification_plain_and_encrypted(self):
        g = self.start(encrypt=True)
        ch = self.fs.url_verification(VT)
        # the verification carries no signature headers, encrypted or not
        status, answer = self.send_event(ch, sign=False)
        self.assertEqual((status, answer), (200, {"challenge": ch["challenge"]}))
        status, answer = self.send_event(ch, encrypt_key=None, sign=False)
        self.assertEqual((status, answer), (200, {"challenge": ch["challenge"]}))
        status, answer = self.send_event(self.fs.url_verification("wrong"), sign=False)
        self.assertEqual((status, answer["error"]), (401, "bad_token"))
        self.assertEqual(g.proc.poll(), None)

    def test_encrypted_events_signature_and_bad_input(self):
        g = self.start(encrypt=True)
        self.say("oc_p2p2", "secret words")
        self.assertEqual(self.wait_texts("oc_p2p2", 1), ["heard: secret words"])
        ev = lambda text: self.fs.message_event(APP, "oc_p2p2", text, VT, chat_type="p2p")
        cases = [
            ("unsigned", dict(sign=False), 401, "bad_signature"),
            ("stale", dict(timestamp=int(time.time()) - 400), 401, "stale_timestamp"),
            ("wrong key", dict(encrypt_key="not-the-key"), 400, "bad_encrypt"),
        ]
        for name, kw, want_status, want_error in cases:
            status, answer = self.send_event(ev(name), **kw)
            self.assertEqual((status, answer.get("error")), (want_status, want_error), name)
        # a signature that does not match the bytes
        status, answer = self.post_raw(json.dumps({"encrypt": "AAAA"}).encode(), {
            "X-Lark-Request-Timestamp": str(int(time.time())), "X-Lark-Request-Nonce": "n1",
            "X-Lark-Signature": "0" * 64})
        self.assertEqual((status, answer.get("error")), (400, "bad_encrypt"), "decrypt comes first")
        enc = self.fs.encrypt(EK, json.dumps(ev("tampered")).encode())
        status, answer = self.post_raw(json.dumps({"encrypt": enc}).encode(), {
            "X-Lark-Request-Timestamp": str(int(time.time())), "X-Lark-Request-Nonce": "n1",
            "X-Lark-Signature": "0" * 64})
        self.assertEqual((status, answer.get("error")), (401, "bad_signature"))
        for name, raw, want in [("not base64", b'{"encrypt":"@@@not base64@@@"}', "bad_encrypt"),
                                ("short", b'{"encrypt":"AAAA"}', "bad_encrypt"),
                                ("not json", b'{"encrypt": ', "invalid_json"),
                                ("array", b'[1,2]', "invalid_json")]:
            status, answer = self.send_event(None, raw=raw)
            self.assertEqual((status, answer.get("error")), (400, want), name)
        # a plain event to an app with an encrypt key: unsigned, refused
        status, answer = self.send_event(ev("plain"), encrypt_key=None)
        self.assertEqual((status, answer.get("error")), (401, "bad_signature"))
        time.sleep(0.5)
        self.assertEqual(self.texts("oc_p2p2"), ["heard: secret words"], "no handler ran for a refused event")
        self.assertEqual(g.proc.poll(), None)
        self.assert_no_secrets(g)

    def test_wrong_token_is_refused_and_no_handler_runs(self):
        g = self.start()
        body = self.fs.message_event(APP, "oc_p2p3", "who am i", "not-the-token", chat_type="p2p")
        status, answer = self.send_event(body)
        self.assertEqual((status, answer["error"]), (401, "bad_token"))
        status, answer = self.send_event(None, raw=b"{not json")
        self.assertEqual((status, answer["error"]), (400, "invalid_json"))
        time.sleep(0.5)
        self.assertEqual(self.texts("oc_p2p3"), [])
        self.assertTrue([r for r in g.records() if r.get("msg") == "feishu: event refused" and r.get("error") == "bad_token"])

    def test_without_a_verification_token_events_get_503_and_sends_work(self):
        g = self.start(vt=None)
        body = self.fs.message_event(APP, "oc_p2p4", "hi", "anything", chat_type="p2p")
        status, answer = self.send_event(body)
        self.assertEqual((status, answer), (503, {"ok": False, "error": "verification_token_missing"}))
        self.assertTrue(g.wait_log(lambda r: "FEISHU_VERIFICATION_TOKEN is not set" in r.get("msg", "")))
        h = self.wait(lambda: self.channel(g).get("warning") and self.channel(g), 10, "the warning in /health")
        self.assertIn("FEISHU_VERIFICATION_TOKEN", h["warning"])
        r = g.request("POST", "/blast?n=1", body="")
        self.assertEqual(r.json(), {"sent": 1}, r.text)
        self.assertEqual(self.texts("oc_blast1"), ["blast 1"])

    def test_a_kill9_between_receipt_and_dispatch_loses_and_repeats_nothing(self):
        g = self.start(env={"CHATGW_TEST_CHANNEL": "1", "CHATGW_TEST_DISPATCH_DELAY_MS": "5000"})
        body = self.say("oc_p2p5", "/echo once")
        g.signal(signal.SIGKILL)
        g.proc.wait(10)
        self.assertEqual(self.texts("oc_p2p5"), [], "acknowledged before any handler ran")
        del g.env["CHATGW_TEST_DISPATCH_DELAY_MS"]
        g.restart()
        self.assertEqual(self.wait_texts("oc_p2p5", 1), ["echo: once"])
        # Feishu did not see the 200 in time and sends it again: dropped
        self.assertEqual(self.send_event(body)[0], 200)
        time.sleep(0.8)
        self.assertEqual(self.texts("oc_p2p5"), ["echo: once"])

    def test_group_mentions_replies_and_rich_text(self):
        self.start()
        gid = "oc_group1"
        bot = {"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID}, "name": "TestBot"}
        ann = {"key": "@_user_2", "id": {"open_id": "ou_ann"}, "name": "Ann"}
        self.say(gid, "chatter without a mention", chat_type="group")
        self.say(gid, "@_user_1 status please @_user_2", chat_type="group", mentions=[bot, ann])
        texts = self.wait_texts(gid, 1)
        self.assertEqual(texts, ["heard: status please @Ann (mentioned)"])
        first = self.fs.messages(gid)[0]
        self.assertIsNotNone(first["reply_to"], "a reply in a group quotes the message (/reply)")
        # a reply to the bot's message needs no mention (the fake shows the message before
        # chatgw has its answer: a user cannot reply that fast)
        time.sleep(0.3)
        self.say(gid, "about that", chat_type="group", parent_id=first["message_id"])
        self.assertEqual(self.wait_texts(gid, 2)[1], "heard: about that (a reply to %s)" % first["message_id"])
        # rich text with a mention of the bot
        post = {"title": "Report", "content": [[{"tag": "at", "user_id": "@_user_1", "user_name": "TestBot"},
                                                {"tag": "text", "text": " see "},
                                                {"tag": "a", "href": "https://example.org", "text": "this"}],
                                               [{"tag": "text", "text": "line two"}]]}
        body = self.fs.post_event(APP, gid, post, VT, chat_type="group", mentions=[bot])
        self.assertEqual(self.send_event(body)[0], 200)
        self.assertEqual(self.wait_texts(gid, 3)[2], "heard: Report\nsee this\nline two (mentioned)")
        time.sleep(0.5)
        self.assertEqual(len(self.texts(gid)), 3, "nothing for the chatter")

    def test_bot_name_from_env_and_bot_messages_ignored(self):
        self.start(env={"FEISHU_BOT_NAME": "Helper", "FEISHU_BOT_OPEN_ID": "ou_other"})
        gid = "oc_group2"
        self.say(gid, "@_user_1 hi", chat_type="group",
                 mentions=[{"key": "@_user_1", "id": {"open_id": "ou_x"}, "name": "Helper"}])
        self.assertEqual(self.wait_texts(gid, 1), ["heard: hi (mentioned)"])
        self.say("oc_p2p6", "from a bot", sender_type="app")
        time.sleep(0.6)
        self.assertEqual(self.texts("oc_p2p6"), [])
        self.assertEqual(self.fs.calls("/bot/v3/info"), [], "the env says who the bot is")

    def test_an_image_in_is_downloaded(self):
        self.start()
        self.fs.resources[("om_img1", "img_v3_in")] = b"\x89PNG" + b"z" * 96
        body = self.fs.image_event(APP, "oc_p2p7", "img_v3_in", VT, chat_type="p2p", message_id="om_img1")
        self.assertEqual(self.send_event(body)[0], 200)
        self.assertEqual(self.wait_texts("oc_p2p7", 1), ["got 100 bytes of image"])

    # ---- the tenant token ----

    def test_token_expiry_in_the_middle_of_50_concurrent_sends_is_one_refresh(self):
        g = self.start()
        self.wait(lambda: self.channel(g)["state"] == "ok", 10, "the app checked")
        self.assertEqual(len(self.fs.token_requests), 1)
        self.fs.expire_tokens()
        self.fs.delay = 0.05
        r = g.request("POST", "/blast?n=50", body="", timeout=40)
        self.assertEqual(r.json(), {"sent": 50}, r.text)
        self.assertEqual(len(self.fs.token_requests), 2, "one refresh for all of them")
        for i in range(1, 51):
            self.assertEqual(self.texts("oc_blast%d" % i), ["blast %d" % i])
        refused = [c for c in self.fs.calls("/im/v1/messages", method="POST") if c["code"] == 99991663]
        self.assertGreater(len(refused), 0, "the sends met the expired token")

    def test_a_bad_app_secret_is_an_error_in_health(self):
        g = self.start(secret="wrong-secret-value")
        self.wait(lambda: self.channel(g)["state"] == "error", 10, "error state")
        h = self.channel(g)
        self.assertIn("10014", h["last_error"])
        time.sleep(1.5)
        self.assertLessEqual(len(self.fs.token_requests), 3, "backs off, no hot loop")
        self.assertNotIn("wrong-secret-value", g.stderr_text())

    def test_off_without_credentials(self):
        g = self.gw({"bot.lua": BOT}, config="", env={"FEISHU_API_BASE": self.fs.url})
        h = g.health()["checks"]["channels"]["channels"]["feishu:default"]
        self.assertEqual(h["state"], "off")
        self.assertIn("FEISHU_APP_ID", h["last_error"] or h.get("reason", ""))
        self.assertNotIn("feishu", g.ports, "no webhook listener when Feishu is off")
        self.assertTrue([r for r in g.records() if r.get("msg") == "chat channel off" and r.get("channel") == "feishu"])

    # ---- outbound ----

    def test_99991400_storm_sends_nothing_during_freezes(self):
        self.start()
        self.fs.script("/open-apis/im/v1/messages", code=99991400, status=429, reset=2, scope="app", method="POST")
        self.fs.script("/open-apis/im/v1/messages", code=230020, status=400, reset=1, scope="chat", method="POST")
        t0 = time.time()
        self.say("oc_p2p8", "/many 4")
        self.say("oc_p2p9", "/many 4")
        self.assertEqual(self.wait_texts("oc_p2p8", 4, 20), ["r1", "r2", "r3", "r4"])
        self.assertEqual(self.wait_texts("oc_p2p9", 4, 20), ["r1", "r2", "r3", "r4"])
        self.assertGreaterEqual(time.time() - t0, 1.9, "the freeze was kept")
        self.assertEqual(self.fs.violations, [], "no request reached a frozen app or chat")

    def test_a_send_retried_after_an_unknown_outcome_posts_once(self):
        self.start()
        # the message is posted, but the answer is a 5xx: the same uuid goes again
        self.fs.script("/open-apis/im/v1/messages", code=1, status=502, msg="bad gateway", method="POST",
                       after=True)
        self.say("oc_p2p18", "/echo once")
        self.wait(lambda: len(self.fs.calls("/open-apis/im/v1/messages", method="POST")) >= 2, 10, "the retry")
        time.sleep(0.5)
        calls = self.fs.calls("/open-apis/im/v1/messages", method="POST")
        self.assertEqual(len({c["json"]["uuid"] for c in calls}), 1, "one uuid for both tries")
        self.assertEqual(self.texts("oc_p2p18"), ["echo: once"], "posted once")

    def test_images_are_uploaded_once_and_sent_by_key(self):
        path = os.path.join(self.fs_tmp(), "chart.png")
        self.start(env={"TEST_PNG": path})
        self.say("oc_p2p10", "/img")
        self.wait(lambda: len([m for m in self.fs.messages("oc_p2p10") if m["msg_type"] == "image"]) >= 2, 10, "images")
        msgs = self.fs.messages("oc_p2p10")
        self.assertEqual([m["msg_type"] for m in msgs], ["image", "text", "image"])
        self.assertEqual(msgs[1]["text"], "chart one", "the caption under the image")
        self.assertEqual(self.fs.uploads, 1, "the same bytes are uploaded once")
        key = msgs[0]["content"]["image_key"]
        self.assertEqual(msgs[2]["content"]["image_key"], key)
        self.assertEqual(self.fs.images[key], png())

    def fs_tmp(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="feishu-e2e-")
        with open(os.path.join(d, "chart.png"), "wb") as f:
            f.write(png())
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d

    def test_receive_id_types_markdown_and_long_texts(self):
        self.start()
        for target, kind in [("ou_someone", "open_id"), ("on_union1", "union_id"), ("ann@example.com", "email"),
                             ("oc_chat1", "chat_id")]:
            self.say("oc_p2p11", "/tell " + target)
        self.wait_texts("oc_p2p11", 4)
        sent = {c["json"]["receive_id"]: c["query"]["receive_id_type"]
                for c in self.fs.calls("/open-apis/im/v1/messages", method="POST") if c["json"]["receive_id"] != "oc_p2p11"}
        self.assertEqual(sent, {"ou_someone": "open_id", "on_union1": "union_id", "ann@example.com": "email",
                                "oc_chat1": "chat_id"})
        self.assertEqual(self.texts("oc_p2p11"), ["told: delivered"] * 4)
        self.say("oc_p2p12", "/md")
        self.wait_texts("oc_p2p12", 1)
        m = self.fs.messages("oc_p2p12")[0]
        self.assertEqual(m["msg_type"], "post")
        self.say("oc_p2p13", "/long")
        parts = self.wait_texts("oc_p2p13", 2)
        self.assertEqual("".join(parts), "x" * 200000, "split at the limit, nothing lost")
        self.assertTrue(all(len(p.encode()) <= 150 * 1024 for p in parts))

    def test_card_buttons_toast_and_the_delayed_update(self):
        self.start()
        self.say("oc_p2p14", "/btn")
        self.wait_texts("oc_p2p14", 1)
        m = self.fs.messages("oc_p2p14")[0]
        self.assertEqual(m["msg_type"], "interactive")
        values = [a["value"] for el in m["content"]["elements"] if el["tag"] == "action" for a in el["actions"]]
        self.assertEqual(values, [{"data": "a"}, {"data": "slow"}])
        ev = self.fs.card_action_event(APP, VT, m["message_id"], "oc_p2p14", {"data": "a"})
        t0 = time.time()
        status, answer = self.send_event(ev)
        self.assertEqual(status, 200)
        self.assertEqual(answer, {"toast": {"type": "info", "content": "chose a"}})
        self.assertLess(time.time() - t0, 2.5)
        # a redelivery is not run again
        self.assertEqual(self.send_event(ev), (200, {}))
        # an answer after 2.5 s: the response goes empty, the card is updated later
        ev = self.fs.card_action_event(APP, VT, m["message_id"], "oc_p2p14", {"data": "slow"})
        t0 = time.time()
        status, answer = self.send_event(ev)
        took = time.time() - t0
        self.assertEqual((status, answer), (200, {}), self.g.stderr_text()[-2000:])
        self.assertTrue(2.3 < took < 3.0, took)
        self.wait(lambda: self.fs.card_updates, 5, "the delayed card update")
        u = self.fs.card_updates[0]
        self.assertEqual(u["token"], ev["event"]["token"])
        self.assertIn("chose slow", json.dumps(u["card"]))
        self.assertIn("pick one", json.dumps(u["card"]))

    def test_streaming_card_with_increasing_sequences(self):
        self.start()
        self.say("oc_p2p15", "/stream")
        want = "".join("w%d " % i for i in range(1, 16))
        self.wait(lambda: any(not c["streaming_mode"] for c in self.fs.cards.values()), 15, "the card closed")
        self.assertEqual(len(self.fs.cards), 1)
        card = list(self.fs.cards.values())[0]
        self.assertEqual(list(card["elements"].values()), [want], "the final text is exact")
        seqs = card["sequences"]
        self.assertEqual(seqs, sorted(set(seqs)), "strictly increasing")
        self.assertGreater(len(seqs), 2, "updated while it grew")
        msgs = self.fs.messages("oc_p2p15")
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["card_id"], card["card_id"])
        self.assertEqual(self.fs.violations, [])

    def test_streaming_falls_back_to_edits_when_no_card_can_be_made(self):
        self.start()
        self.fs.script("/open-apis/cardkit/v1/cards", code=230099, status=400, msg="create card failed",
                       times=5, method="POST")
        self.say("oc_p2p16", "/stream")
        want = "".join("w%d " % i for i in range(1, 16)).strip()
        self.wait(lambda: self.texts("oc_p2p16") and self.texts("oc_p2p16")[-1].strip() == want, 15, "final text")
        msgs = self.fs.messages("oc_p2p16")
        self.assertEqual(len(msgs), 1, "one message, edited")
        self.assertGreater(msgs[0]["edits"], 0)
        self.assertLessEqual(msgs[0]["edits"], 20)
        self.assertEqual(self.fs.cards, {})

    def test_a_stream_by_edits_keeps_to_20_edits_and_ends_exact(self):
        cfg = ("chat:\n  governor:\n    feishu: { chat_rate: 1000, chat_burst: 1000 }\n"
               "channels:\n  feishu:\n    stream: edit\n")
        self.start(config=cfg)
        self.say("oc_p2p19", "/stream 80 25")
        want = "".join("w%d " % i for i in range(1, 81)).strip()
        self.wait(lambda: want in [t.strip() for t in self.texts("oc_p2p19")], 15, "final text")
        time.sleep(0.3)
        msgs = self.fs.messages("oc_p2p19")
        self.assertLessEqual(msgs[0]["edits"], 20, "edited up to Feishu's limit and no further")
        self.assertGreater(msgs[0]["edits"], 5, "edited as it grew")
        self.assertEqual(msgs[-1]["text"].strip(), want, "the final text is exact")
        self.assertEqual([c for c in self.fs.calls(method="PUT") if c["code"]], [], "no edit refused")

    def test_two_apps_each_on_its_own_path(self):
        cfg = ("channels:\n  feishu:\n    accounts:\n      second:\n        app_id_env: APP2_ID\n"
               "        app_secret_env: APP2_SECRET\n        verification_token_env: APP2_VT\n")
        g = self.start(config=cfg, env={"APP2_ID": APP2, "APP2_SECRET": SECRET2, "APP2_VT": VT2})
        body = self.fs.message_event(APP2, "oc_p2p17", "/echo two", VT2, chat_type="p2p")
        status, _ = self.fs.event(self.url(g, "/feishu/events/second"), body)
        self.assertEqual(status, 200)
        self.assertEqual(self.wait_texts("oc_p2p17", 1), ["echo: two"])
        self.assertEqual({c["app_id"] for c in self.fs.token_requests}, {APP, APP2})
        # the default app's token does not open the second app's path
        body = self.fs.message_event(APP, "oc_p2p17", "/echo wrong", VT, chat_type="p2p")
        self.assertEqual(self.fs.event(self.url(g, "/feishu/events/second"), body)[0], 401)
        self.assertEqual(self.fs.event(self.url(g, "/feishu/events/nope"), body)[0], 404)
        self.wait(lambda: self.channel(g, "second")["state"] == "ok", 10, "the second app checked")


if __name__ == "__main__":
    unittest.main()
