"""E2E: the Telegram channel against a local fake Bot API (tests/e2e/fake_telegram.py): long
polling with the offset across restarts and kill -9, a reload mid-poll, two processes, 409 of
both kinds, 401, webhooks with right, wrong and missing secrets, redelivery, commands and
mentions in groups, replies, buttons and callbacks, 429 storms with zero requests during
freezes, splitting at 4096 UTF-16 units, photo upload, streaming by drafts and by edits, two
bots at once, and the token kept out of logs, /health and /metrics."""
import json
import os
import signal
import struct
import time
import unittest
import urllib.request
import zlib

from harness import GatewayTest, SLOW
from fake_telegram import FakeTelegram
from upstream import refused_port

TOKEN = "123456:TEST-token_SECRET-abcdefghijklmnop"
TOKEN2 = "654321:SECOND-token_SECRET-qrstuvwxyz0123"

BOT = r"""
return {
  commands = { echo = "say it again", btn = "a button", long = "a long reply", img = "a picture",
               stream = "a streamed reply", many = "n replies", who = "which bot", tell = "send to a chat",
               size = "the attachment's size", esc = "escape", link = "a link with its preview",
               imgcap = "a picture with a long caption" },
  on_command = function(msg, args)
    local c = msg.command
    if c == "tell" then
      local h, err = chatgw.chat.send{ channel = "telegram", chat_id = msg.argv[1], text = msg.argv[2] }
      if not h then return msg:reply("refused: " .. err) end
      local st = h:wait(5000)
      return msg:reply("told: " .. st.status .. " " .. tostring(st.error or ""))
    end
    if c == "echo" then return msg:reply("echo: " .. args) end
    if c == "who" then return msg:reply("bot " .. msg.account) end
    if c == "imgcap" then return msg:reply{ image = os.getenv("TEST_PNG"), caption = string.rep("c", 1500) } end
    if c == "esc" then return msg:reply(chatgw.chat.telegram_escape("a-b.c_d")) end
    if c == "link" then return msg:reply{ text = "see https://example.org", link_preview = true } end
    if c == "btn" then return msg:reply{ text = "pick one", buttons = { { { text = "A", data = "a" } } } } end
    if c == "long" then return msg:reply(string.rep("😀", 3000)) end
    if c == "img" then return msg:reply{ image = os.getenv("TEST_PNG"), caption = "a *picture*", format = "markdown" } end
    if c == "many" then for i = 1, tonumber(args) do msg:reply("r" .. i) end return end
    if c == "stream" then
      local s = msg:stream()
      for i = 1, 12 do s:write("w" .. i .. " ") chatgw.sleep(120) end
      return s:finish()
    end
  end,
  on_message = function(msg)
    if msg.attachments[1] then
      local bytes, err = chatgw.chat.download(msg.attachments[1], { max_bytes = 100000 })
      return msg:reply("got " .. (bytes and #bytes or tostring(err)) .. " bytes of " .. msg.attachments[1].kind)
    end
    msg:reply("heard: " .. msg.text .. (msg.reply_to and " (a reply)" or ""))
  end,
  on_callback = function(cb) cb:reply("pressed " .. cb.data) end,
}
"""


def png(w=2, h=2):
    """A small valid PNG (the fake reads its dimensions)."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# a free 127.0.0.1 port (nothing listens on it until the gateway does)
free_port = refused_port


class TelegramTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TOKEN: {"id": 123456, "username": "test_bot", "first_name": "Test"},
                                       TOKEN2: {"id": 654321, "username": "second_bot", "first_name": "Second"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)

    def start(self, env=None, config=None, workdir=None, handlers=None, token=TOKEN):
        e = {"TELEGRAM_API_BASE": self.tg.url, "CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        if token:
            e["TELEGRAM_BOT_TOKEN"] = token
        e.update(env or {})
        cfg = config if config is not None else "channels:\n  telegram:\n    poll_timeout_s: 2\n"
        return self.gw(handlers or {"bot.lua": BOT}, config=cfg, env=e, workdir=workdir)

    def say(self, chat_id, text, token=TOKEN, **kw):
        return self.tg.push_update(token, self.tg.text_update(chat_id, text, **kw))

    def wait_texts(self, chat_id, n, timeout=10):
        self.wait(lambda: len(self.tg.texts(chat_id)) >= n, timeout,
                  "%d messages in %s (have %r)" % (n, chat_id, self.tg.texts(chat_id)))
        return self.tg.texts(chat_id)

    def channel(self, g, account="default"):
        return g.health()["checks"]["channels"]["channels"]["telegram:" + account]

    def assert_no_token(self, g):
        for where, text in (("logs", g.stderr_text()), ("/metrics", g.get("/metrics").text),
                            ("/health", json.dumps(g.get("/health?verbose=1").json()))):
            for t in (TOKEN, TOKEN.split(":")[1]):
                self.assertNotIn(t, text, "the bot token in " + where)

    # ---- polling ----

    def test_long_poll_replies_and_keeps_its_offset_across_restarts_and_kill9(self):
        g = self.start()
        self.say(42, "/echo one")
        self.assertEqual(self.wait_texts(42, 1), ["echo: one"])
        p = [x for x in self.tg.polls if x["token"] == TOKEN][-1]
        self.assertEqual(int(p["limit"]), 100)
        self.assertEqual(int(p["timeout"]), 2)
        self.assertEqual(sorted(json.loads(p["allowed_updates"]) if isinstance(p["allowed_updates"], str)
                                else p["allowed_updates"]),
                         ["callback_query", "edited_message", "message", "my_chat_member"])
        self.assertEqual(g.stop(), 0)
        g.restart()
        self.say(42, "/echo two")
        self.assertEqual(self.wait_texts(42, 2), ["echo: one", "echo: two"])
        g.signal(signal.SIGKILL)
        g.proc.wait(10)
        self.say(42, "/echo three")
        g.restart()
        self.assertEqual(self.wait_texts(42, 3), ["echo: one", "echo: two", "echo: three"])
        time.sleep(1.0)
        self.assertEqual(self.tg.texts(42), ["echo: one", "echo: two", "echo: three"], "none twice")
        h = self.channel(g)
        self.assertEqual(h["state"], "ok")
        self.assertEqual(h["mode"], "poll")
        self.assertIn("last_poll_at", h)
        self.assertEqual(h["poller"], "running")
        self.assertEqual([c["params"]["commands"][0]["command"] for c in self.tg.calls("setMyCommands")][-1], "btn")
        self.assertTrue(self.tg.sent(42)[0]["link_preview_disabled"], "link previews off unless asked")
        self.say(42, "/link")
        self.say(42, "/esc")
        texts = self.wait_texts(42, 5)
        self.assertFalse(self.tg.sent(42)[3]["link_preview_disabled"])
        self.assertEqual(texts[4], "a\\-b\\.c\\_d")
        self.assert_no_token(g)

    def test_an_update_redelivered_after_a_kill_is_not_handled_twice(self):
        g = self.start(env={"CHATGW_TEST_DISPATCH_DELAY_MS": "0"})
        uid = self.say(7, "/echo once")
        self.assertEqual(self.wait_texts(7, 1), ["echo: once"])
        g.signal(signal.SIGKILL)
        g.proc.wait(10)
        # Telegram sends it again (as if the offset had not been confirmed)
        u = self.tg.text_update(7, "/echo once")
        u["update_id"] = uid
        self.tg.push_update(TOKEN, u)
        g.restart()
        self.say(7, "/echo after")
        self.assertEqual(self.wait_texts(7, 2), ["echo: once", "echo: after"])

    def test_a_reload_mid_poll_loses_and_repeats_nothing(self):
        g = self.start()
        self.say(8, "/echo a")
        self.wait_texts(8, 1)
        time.sleep(0.3)  # the next long poll is waiting
        r = g.reload()
        self.assertEqual(r["last_result"], "ok", r)
        self.say(8, "/echo b")
        self.assertEqual(self.wait_texts(8, 2), ["echo: a", "echo: b"])
        time.sleep(0.5)
        self.assertEqual(self.tg.texts(8), ["echo: a", "echo: b"])
        self.assertFalse([x for x in g.records() if "another process polls" in x.get("msg", "")])

    def test_two_processes_one_polls_the_other_waits_for_the_lock(self):
        a = self.start()
        b = self.start(workdir=a.dir)
        self.wait(lambda: self.channel(b).get("poller") == "waiting_lock", 10, "B waits for the bot's lock")
        b.wait_log(lambda r: r.get("msg") == "supervised loop waits for its lock" and r.get("lock") == "telegram-123456")
        self.assertEqual(self.channel(a).get("poller"), "running")
        self.say(9, "/echo x")
        self.assertEqual(self.wait_texts(9, 1), ["echo: x"])
        a.signal(signal.SIGKILL)
        a.proc.wait(10)
        self.wait(lambda: self.channel(b).get("poller") == "running", 10, "B takes over")
        self.say(9, "/echo y")
        self.assertEqual(self.wait_texts(9, 2), ["echo: x", "echo: y"])

    def test_409_another_poller_and_409_webhook_active(self):
        g = self.start()
        self.wait(lambda: self.tg.polls, 10, "chatgw polls")
        # someone else long-polls the same bot: chatgw's poll is terminated with 409
        def other_poll():
            try:
                urllib.request.urlopen(self.tg.url + "/bot%s/getUpdates?timeout=1" % TOKEN, timeout=5).read()
            except Exception:
                pass
        other_poll()
        g.wait_log(lambda r: r.get("level") == "error" and "another process polls this bot" in r.get("msg", ""))
        # a webhook set elsewhere: getUpdates is refused, and the log says how to fix it
        urllib.request.urlopen(urllib.request.Request(self.tg.url + "/bot%s/setWebhook" % TOKEN,
                               data=json.dumps({"url": "https://example.invalid/hook"}).encode(),
                               headers={"Content-Type": "application/json"})).read()
        rec = g.wait_log(lambda r: r.get("level") == "error" and "webhook is set" in r.get("msg", ""), 15)
        self.assertIn("TELEGRAM_MODE=webhook", rec["msg"])
        self.assertIn("webhook", self.channel(g)["last_error"])
        self.assert_no_token(g)

    def test_a_refused_token_is_an_error_state_without_a_hot_loop(self):
        g = self.start(token="999:wrong-token-not-known")
        self.wait(lambda: self.channel(g).get("state") == "error", 10, "the error state")
        self.assertIn("401", self.channel(g)["last_error"])
        time.sleep(2.5)
        calls = self.tg.calls("getMe")
        self.assertLessEqual(len(calls), 3, "backoff, not a hot loop")
        self.assertEqual(g.health()["checks"]["channels"]["status"], "degraded")
        for t in ("wrong-token-not-known",):
            self.assertNotIn(t, g.stderr_text())

    def test_off_without_a_token(self):
        g = self.start(token=None, env={"CHATGW_TEST_CHANNEL": "1"})
        h = self.channel(g)
        self.assertEqual(h["state"], "off")
        self.assertIn("TELEGRAM_BOT_TOKEN is not set", h["last_error"])
        self.assertEqual(g.health()["checks"]["channels"]["status"], "ok", "off is not degraded")
        g.wait_log(lambda r: r.get("msg") == "chat channel off" and r.get("channel") == "telegram")
        self.assertEqual(self.tg.calls(), [])
        # a send to the account that is off is refused, not queued for ever
        g.request("POST", "/v1/test/inbound", json_body={"chat_id": "t1", "text": "/tell 5 hi"})
        self.assertEqual([m["text"] for m in g.get("/v1/test/sent?chat_id=t1").json()["messages"]],
                         ["refused: off: the telegram account 'default' is off (TELEGRAM_BOT_TOKEN is not set)"])

    def test_a_webhook_listener_that_does_not_exist_is_a_load_error(self):
        from harness import run_cli
        d = self.tg_dir()
        with open(os.path.join(d, "chatgw.yml"), "w") as f:
            f.write("channels:\n  telegram:\n    webhook_listener: hooks\n")
        os.makedirs(os.path.join(d, "handlers"))
        code, out, err = run_cli(["check", os.path.join(d, "handlers"), "--config", os.path.join(d, "chatgw.yml")])
        self.assertEqual(code, 1, out + err)
        self.assertIn("channels.telegram.webhook_listener: no listener named 'hooks'", out + err)

    # ---- webhook ----

    def test_webhook_with_right_wrong_and_missing_secret_and_redelivery(self):
        port = free_port()
        g = self.start(env={"CHAT_GATEWAY_PORT": str(port), "TELEGRAM_MODE": "webhook",
                            "TELEGRAM_WEBHOOK_URL": "http://127.0.0.1:%d/telegram/default" % port})
        self.wait(lambda: self.tg.webhook(TOKEN), 10, "setWebhook")
        wh = self.tg.webhook(TOKEN)
        self.assertTrue(wh.get("secret_token"))
        u = self.tg.text_update(50, "/echo via hook")
        u["update_id"] = 555001
        status, body = self.tg.deliver_webhook(TOKEN, u)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.wait_texts(50, 1), ["echo: via hook"])
        status, _ = self.tg.deliver_webhook(TOKEN, self.tg.text_update(50, "/echo wrong"), secret="nope")
        self.assertEqual(status, 403)
        status, _ = self.tg.deliver_webhook(TOKEN, self.tg.text_update(50, "/echo none"), secret=False)
        self.assertEqual(status, 403)
        # the same update again (Telegram retries): 200, not handled twice
        status, body = self.tg.deliver_webhook(TOKEN, u)
        self.assertEqual(status, 200, body)
        time.sleep(0.8)
        self.assertEqual(self.tg.texts(50), ["echo: via hook"])
        self.assertEqual(self.channel(g)["mode"], "webhook")
        self.assertEqual([x for x in self.tg.polls if x["token"] == TOKEN], [], "no polling in webhook mode")
        self.assert_no_token(g)

    def test_webhook_mode_without_url_is_an_error(self):
        g = self.start(env={"TELEGRAM_MODE": "webhook"})
        self.wait(lambda: self.channel(g).get("state") == "error", 10, "the error state")
        self.assertIn("TELEGRAM_WEBHOOK_URL", self.channel(g)["last_error"])

    # ---- the message model ----

    def test_groups_commands_mentions_replies(self):
        self.start()
        gid = -1001234567890
        self.tg.chat(gid, type="supergroup", title="Team")
        self.say(gid, "/echo@test_bot hi", user_id=77)
        self.say(gid, "/echo@other_bot no", user_id=77)
        self.say(gid, "chatter", user_id=77)
        self.say(gid, "hello @test_bot", user_id=77)
        self.assertEqual(self.wait_texts(gid, 2), ["echo: hi", "heard: hello @test_bot"])
        bot_msg = self.tg.sent(gid)[0]["message_id"]
        self.say(gid, "about that", user_id=77, reply_to_message=bot_msg)
        self.assertEqual(self.wait_texts(gid, 3)[2], "heard: about that (a reply)")
        sent = self.tg.sent(gid)
        self.assertIsNotNone(sent[0]["reply_to"], "replies in groups quote the message")
        time.sleep(0.5)
        self.assertEqual(len(self.tg.texts(gid)), 3, "nothing for /echo@other_bot or chatter")

    def test_buttons_and_callbacks_are_answered(self):
        self.start()
        self.say(60, "/btn")
        self.wait_texts(60, 1)
        m = self.tg.sent(60)[0]
        self.assertEqual(m["buttons"][0][0]["callback_data"], "a")
        self.tg.push_update(TOKEN, self.tg.callback_update(60, m["message_id"], "a"))
        self.assertEqual(self.wait_texts(60, 2)[1], "pressed a")
        self.wait(lambda: self.tg.answers, 6, "answerCallbackQuery")
        self.assertLess(self.tg.answers[0]["latency"], 5.5)

    # ---- outbound ----

    def test_429_storm_sends_nothing_during_freezes(self):
        self.tg.limits = {"chat_per_s": 1, "chat_burst": 3, "group_per_min": 20, "bot_per_s": 30}
        self.start()
        self.tg.script("sendMessage", chat_id=71, status=429, retry_after=2)
        self.say(71, "/many 6")
        self.say(72, "/many 6")
        self.assertEqual(self.wait_texts(71, 6, 20), ["r%d" % i for i in range(1, 7)])
        self.assertEqual(self.wait_texts(72, 6, 20), ["r%d" % i for i in range(1, 7)])
        self.assertEqual(self.tg.violations, [], "no request reached a frozen chat or bot")

    def test_a_long_reply_is_split_at_4096_utf16_units(self):
        self.start()
        self.say(80, "/long")
        parts = self.wait_texts(80, 2)
        self.assertEqual("".join(parts), "😀" * 3000)
        for p in parts:
            self.assertLessEqual(len(p.encode("utf-16-le")) // 2, 4096)

    def test_photo_upload_with_a_formatted_caption(self):
        path = os.path.join(self.tg_dir(), "p.png")
        with open(path, "wb") as f:
            f.write(png())
        self.start(env={"TEST_PNG": path})
        self.say(90, "/img")
        self.wait(lambda: self.tg.sent(90), 10, "the photo")
        m = self.tg.sent(90)[0]
        self.assertTrue(m.get("photo"), m)
        self.assertEqual(m["caption"], "a picture")
        self.assertEqual(len(self.tg.calls("sendPhoto")), 1)
        ents = self.tg.calls("sendPhoto")[0]["params"].get("caption_entities")
        self.assertEqual(ents, [{"type": "italic", "offset": 2, "length": 7}])
        # a caption over 1024 units: the photo with its start, then the rest as text
        self.say(91, "/imgcap")
        self.wait(lambda: len(self.tg.sent(91)) == 2, 10, "the photo and the rest")
        m = self.tg.sent(91)
        self.assertEqual((m[0]["caption"], m[1]["text"]), ("c" * 1024, "c" * 476))

    def tg_dir(self):
        d = __import__("tempfile").mkdtemp(prefix="chatgw-tg-")
        self.addCleanup(__import__("shutil").rmtree, d, True)
        return d

    def test_streaming_by_drafts_in_private_chats_and_by_edits_in_groups(self):
        self.start()
        final = " ".join("w%d" % i for i in range(1, 13)) + " "
        self.say(100, "/stream")
        self.wait(lambda: self.tg.texts(100) == [final], 15, "the final message")
        self.assertGreaterEqual(len(self.tg.drafts(100)), 1, "drafts while it ran")
        self.assertEqual(self.tg.calls("editMessageText"), [], "no edits in a private chat")
        gid = -300
        self.say(gid, "/stream@test_bot", user_id=5)
        self.wait(lambda: self.tg.texts(gid) == [final], 15, "the final text by edits")
        self.assertGreaterEqual(len(self.tg.calls("editMessageText")), 1)
        ts = [c["t"] for c in self.tg.calls("editMessageText")]
        for a, b in zip(ts, ts[1:]):
            self.assertGreaterEqual(b - a, 0.9, "edits at least 1 s apart")

    def test_two_bots_at_once(self):
        cfg = ("channels:\n  telegram:\n    poll_timeout_s: 2\n    accounts:\n"
               "      second: { token_env: SECOND_BOT_TOKEN }\n")
        g = self.start(config=cfg, env={"SECOND_BOT_TOKEN": TOKEN2})
        self.say(110, "/who")
        self.say(111, "/who", token=TOKEN2)
        self.assertEqual(self.wait_texts(110, 1), ["bot default"])
        self.assertEqual(self.wait_texts(111, 1), ["bot second"])
        self.assertEqual({c["token"] for c in self.tg.calls("sendMessage") if c["params"]["chat_id"] == 111}, {TOKEN2})
        self.assertEqual(self.channel(g, "second")["state"], "ok")

    def test_a_chat_that_removed_the_bot_and_a_group_that_migrated(self):
        g = self.start()
        self.tg.push_update(TOKEN, self.tg.my_chat_member_update(120, new_status="kicked"))
        time.sleep(0.5)
        self.say(121, "/tell 120 hello")
        self.assertRegex(self.wait_texts(121, 1)[0], r"^told: failed gone: ")
        self.assertEqual([c for c in self.tg.calls("sendMessage") if c["params"]["chat_id"] == 120], [],
                         "no request to a chat the bot is gone from")
        self.tg.push_update(TOKEN, self.tg.my_chat_member_update(120, new_status="member"))
        self.say(120, "/echo back")
        self.assertEqual(self.wait_texts(120, 1), ["echo: back"])
        # a group becomes a supergroup: messages to the old id go to the new one
        self.tg.chat(-400, type="group")
        self.tg.push_update(TOKEN, self.tg.migrate_update(-400, -1000000000400))
        time.sleep(0.5)
        self.say(121, "/tell -400 moved")
        self.wait(lambda: self.tg.texts(-1000000000400) == ["moved"], 10, "sent to the new id")
        rec = g.wait_log(lambda r: "became a supergroup" in r.get("msg", ""))
        self.assertEqual(rec["new_chat_id"], "-1000000000400")

    def test_edited_messages_reach_only_handlers_that_ask(self):
        edits = r"""
        return { edits = true, on_message = function(msg)
          if msg.edited then msg:reply("edited: " .. msg.text) return true end
        end }
        """
        self.start(handlers={"bot.lua": BOT, "zz_edits.lua": edits})
        self.say(130, "first")
        self.assertEqual(self.wait_texts(130, 1), ["heard: first"])
        self.tg.push_update(TOKEN, self.tg.edited_update(130, 1, "second"))
        self.assertEqual(self.wait_texts(130, 2)[1], "edited: second")

    def test_drafts_refused_switch_the_chat_to_edits(self):
        self.start()
        self.tg.script("sendMessageDraft", answer={"status": 400, "description": "Bad Request: TEXTDRAFT_PEER_INVALID"})
        final = " ".join("w%d" % i for i in range(1, 13)) + " "
        self.say(140, "/stream")
        self.wait(lambda: self.tg.texts(140) == [final], 15, "the final text by edits")
        self.assertGreaterEqual(len(self.tg.calls("editMessageText")), 1)
        n = len(self.tg.calls("sendMessageDraft"))
        self.say(140, "/stream")
        self.wait(lambda: self.tg.texts(140) == [final, final], 15, "the second stream")
        self.assertEqual(len(self.tg.calls("sendMessageDraft")), n, "no more drafts in that chat")

    def test_an_attachment_is_downloaded(self):
        self.start()
        self.tg.add_file("F1", b"x" * 1234, file_path="photos/f1.jpg")
        u = self.tg.text_update(150, "look")
        m = u["message"]
        del m["text"]
        m["caption"] = "look"
        m["photo"] = [{"file_id": "F1", "file_unique_id": "u1", "width": 2, "height": 2, "file_size": 1234}]
        self.tg.push_update(TOKEN, u)
        self.assertEqual(self.wait_texts(150, 1), ["got 1234 bytes of image"])

    def test_an_image_over_10_mb_goes_as_a_document(self):
        path = os.path.join(self.tg_dir(), "big.png")
        with open(path, "wb") as f:
            f.write(png() + b"\0" * (10 * 1024 * 1024 + 10))
        self.start(env={"TEST_PNG": path})
        self.say(160, "/img")
        self.wait(lambda: self.tg.sent(160), 20, "the file")
        self.assertEqual(self.tg.calls("sendPhoto"), [], "not tried as a photo")
        self.assertTrue(self.tg.sent(160)[0].get("document"))


if __name__ == "__main__":
    unittest.main()
