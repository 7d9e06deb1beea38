"""E2E: delivery guarantees of the chat layer, on the test channel with its HTTP sink (a fake
chat platform, tests/e2e/fake_chat_platform.py): the inbound ledger across kill -9, the
outbox across kill -9 and stops, order per chat, the governor (429 freezes, priorities,
typing), coalesced edits, unknown outcomes, long texts split, plain-text fallback, chats the
bot was removed from, 5xx retries, and a standby process that never sends."""
import os
import re
import signal
import time
import unittest

from harness import GatewayTest, SLOW
from fake_chat_platform import FakeChatPlatform

BOT = r"""
return {
  commands = { many = "n replies", fan = "n messages to each listed chat", stream = "a streamed reply",
               fmt = "a formatted reply", long = "a long reply", same = "an unchanged edit",
               prio = "finals before edits", typing = "typing", grow = "an edit over parts",
               slow = "a reply, a pause, a reply" },
  on_command = function(msg, args)
    local c = msg.command
    if c == "many" then
      for i = 1, tonumber(msg.argv[1]) do msg:reply("r" .. i) end
    elseif c == "fan" then
      local n = tonumber(msg.argv[1])
      for i = 1, n do
        for j = 2, #msg.argv do
          chatgw.chat.send{ channel = "test", chat_id = msg.argv[j], text = msg.argv[j] .. ":" .. i }
        end
      end
    elseif c == "stream" then
      local s = msg:stream()
      for i = 1, 50 do s:write("w" .. i .. " ") chatgw.sleep(10) end
      s:finish()
    elseif c == "fmt" then
      msg:reply{ text = "*bold* a-b", format = "markdown" }
    elseif c == "long" then
      msg:reply(string.rep("😀", 5000))
    elseif c == "same" then
      local h = msg:reply("same text")
      h:wait(5000)
      h:edit("same text")
      msg:reply("after")
    elseif c == "prio" then
      local h = msg:reply("base")
      h:wait(5000)
      chatgw.chat.send{ channel = "test", chat_id = "fill1", text = "fill" }
      chatgw.chat.send{ channel = "test", chat_id = "fill2", text = "fill" }
      h:edit("base edited")
      for i = 1, 3 do chatgw.chat.send{ channel = "test", chat_id = "final" .. i, text = "final" } end
    elseif c == "grow" then
      local h = msg:reply("short")
      h:wait(5000)
      local e = h:edit(string.rep("😀", 5000)) -- three parts: the message and two more
      e:wait(10000)
      local e2 = h:edit("short again")           -- one part: the two others are deleted
      e2:wait(10000)
      msg:reply("done " .. e.id .. " " .. e2.id)
    elseif c == "slow" then -- a reply, a pause to kill the process in, a second reply
      msg:reply("before the pause")
      chatgw.chat.send{ channel = "test", chat_id = msg.chat.id .. "-log", text = "send too" }
      chatgw.sleep(tonumber(msg.argv[1]) or 3000)
      msg:reply("after the pause")
    elseif c == "typing" then
      local n = 0
      for _ = 1, 5 do if msg:typing() then n = n + 1 end end
      msg:reply("typing sent " .. n)
    end
  end,
}
"""


class DeliveryTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.p = FakeChatPlatform().start()
        self.addCleanup(self.p.stop)

    def start(self, config=None, env=None, workdir=None, instance="A"):
        e = {"CHATGW_TEST_CHANNEL": "1", "CHATGW_TEST_CHANNEL_SINK": self.p.url,
             "CHATGW_TEST_INSTANCE": instance, "CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        e.update(env or {})
        return self.gw({"bot.lua": BOT}, config=config, env=e, workdir=workdir)

    def inbound(self, g, text, chat_id="c1", **kw):
        body = {"chat_id": chat_id, "text": text, "wait": False}
        body.update(kw)
        r = g.request("POST", "/v1/test/inbound", json_body=body)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def metric(self, g, pattern):
        m = re.search(pattern + r" (\d+(?:\.\d+)?)", g.get("/metrics").text)
        return float(m.group(1)) if m else 0.0

    def wait_texts(self, chat_id, n, timeout=10.0):
        self.wait(lambda: len(self.p.texts(chat_id)) >= n, timeout,
                  "%d messages in chat %s (have %r)" % (n, chat_id, self.p.texts(chat_id)))
        return self.p.texts(chat_id)

    # ---- the ledger ----

    def test_kill9_between_record_and_dispatch(self):
        g = self.start(env={"CHATGW_TEST_DISPATCH_DELAY_MS": "5000"})
        b = self.inbound(g, "/many 1", chat_id="k1", update_id=77)
        self.assertTrue(b["recorded"], b)
        g.signal(signal.SIGKILL)
        g.proc.wait(10)
        self.assertEqual(self.p.requests, [], "nothing was dispatched before the kill")
        del g.env["CHATGW_TEST_DISPATCH_DELAY_MS"]
        g.restart()
        self.assertEqual(self.wait_texts("k1", 1), ["r1"])
        g.wait_log(lambda r: r.get("msg") == "chat: dispatching an update recorded before the restart")
        # the platform delivers the update again: a duplicate, not run again
        b = self.inbound(g, "/many 1", chat_id="k1", update_id=77)
        self.assertEqual(b["recorded"], False)
        self.assertEqual(b["reason"], "duplicate")
        time.sleep(1.0)
        self.assertEqual(self.p.texts("k1"), ["r1"], "the handler ran once")
        self.assertEqual(self.metric(g, r'chatgw_ledger_duplicates_total\{channel="test",account="default"\}'), 1)

    def test_kill9_during_a_handler_runs_it_again_and_each_reply_is_sent_once(self):
        g = self.start()
        self.inbound(g, "/slow 3000", chat_id="h1", update_id=81)
        self.assertEqual(self.wait_texts("h1", 1), ["before the pause"])
        self.assertEqual(self.wait_texts("h1-log", 1), ["send too"])
        g.signal(signal.SIGKILL)
        g.proc.wait(10)
        g.restart()
        # the second run's first two messages are the first run's rows: not sent again
        self.assertEqual(self.wait_texts("h1", 2, 15), ["before the pause", "after the pause"])
        g.wait_log(lambda r: r.get("msg") == "chat: running a handler again: the process stopped while it ran")
        time.sleep(0.5)
        self.assertEqual(self.p.texts("h1"), ["before the pause", "after the pause"])
        self.assertEqual(self.p.texts("h1-log"), ["send too"])
        # and not a third time at the next start
        g.stop()
        g.restart()
        time.sleep(1.0)
        self.assertEqual(self.p.texts("h1"), ["before the pause", "after the pause"])

    def test_a_handler_cut_off_twice_is_not_run_a_third_time(self):
        g = self.start()
        self.inbound(g, "/slow 60000", chat_id="h2", update_id=82)
        self.wait_texts("h2", 1)
        for _ in range(2):
            g.signal(signal.SIGKILL)
            g.proc.wait(10)
            g.restart()
            time.sleep(1.0)
        g.wait_log(lambda r: r.get("msg") == "chat: an update whose handler was cut off twice is not run a third time")
        self.assertEqual(self.p.texts("h2"), ["before the pause"])
        g.stop()

    # ---- the outbox ----

    def test_kill9_with_replies_queued(self):
        self.p.delay = 0.1
        g = self.start()
        self.inbound(g, "/many 20", chat_id="q1")
        self.wait(lambda: len(self.p.requests) >= 4, 10, "a few deliveries")
        g.signal(signal.SIGKILL)
        g.proc.wait(10)
        before = len(self.p.requests)
        self.assertLess(before, 20, "replies were still queued at the kill")
        g.restart()
        want = ["r%d" % i for i in range(1, 21)]
        # the one in flight at the kill reached the platform (it answers after its delay):
        # after the restart its outcome is unknown and it is not sent again
        self.wait(lambda: len(self.p.texts("q1")) >= 20, 20, "all 20 delivered")
        time.sleep(0.5)
        self.assertEqual(self.p.texts("q1"), want, "all sent, in order, none twice")
        sends = [r["text"] for r in self.p.requests_for("q1", "send")]
        self.assertEqual(sorted(sends, key=lambda t: int(t[1:])), want, "no text requested twice")
        self.assertLessEqual(self.metric(g, r'chatgw_outbox_unknown_total\{channel="test",account="default"\}'), 1)

    def test_order_per_chat_with_chats_in_parallel(self):
        self.p.delay = 0.02
        g = self.start()
        self.inbound(g, "/fan 8 o1 o2 o3 o4 o5", chat_id="admin")
        for c in ["o1", "o2", "o3", "o4", "o5"]:
            self.assertEqual(self.wait_texts(c, 8), ["%s:%d" % (c, i) for i in range(1, 9)])
        self.assertGreater(self.p.up.max_inflight, 1, "chats were served at the same time")
        self.wait(lambda: self.metric(g, r'chatgw_chat_messages_out_total\{channel="test",account="default",result="delivered"\}') == 40,
                  5, "40 recorded as delivered")

    def test_stop_lets_a_delivery_in_flight_finish(self):
        self.p.delay = 1.0
        g = self.start()
        self.inbound(g, "/many 1", chat_id="st")
        self.wait(lambda: len(self.p.requests) == 1, 10, "the request is out")
        self.assertEqual(g.stop(), 0)
        self.assertEqual(self.p.texts("st"), ["r1"])
        g.restart()
        time.sleep(1.5)
        self.assertFalse(any(r.get("msg", "").startswith("outbox: outcome unknown") for r in g.records()),
                         "the result was recorded before the exit")
        self.assertEqual(len(self.p.requests), 1, "not sent again")

    # ---- failures ----

    def test_429_freezes_exactly_the_chat_for_exactly_retry_after(self):
        self.p.script("fa", {"status": 429, "json": {"ok": False, "error": "Too Many Requests: retry after 2",
                                                     "retry_after": 2, "scope": "chat"}})
        g = self.start()
        self.inbound(g, "/fan 3 fa fb", chat_id="admin")
        self.assertEqual(self.wait_texts("fb", 3, 5), ["fb:1", "fb:2", "fb:3"])
        self.assertEqual(self.wait_texts("fa", 3, 10), ["fa:1", "fa:2", "fa:3"])
        fa = self.p.requests_for("fa")
        self.assertEqual(fa[0]["status"], 429)
        self.assertEqual([r["text"] for r in fa], ["fa:1", "fa:1", "fa:2", "fa:3"], "the frozen message went first")
        gap = fa[1]["t"] - fa[0]["t"]
        self.assertGreaterEqual(gap, 2.0, "no request to the frozen chat during retry_after")
        self.assertLess(gap, 2.0 + 1.0 * SLOW, "resumed right after retry_after")
        fb = self.p.requests_for("fb")
        self.assertLess(fb[-1]["t"] - fa[0]["t"], 1.0 * SLOW, "the other chat was not frozen")
        self.assertEqual(self.metric(g, r'chatgw_platform_429_total\{channel="test",account="default",scope="chat"\}'), 1)

    def test_429_for_the_bot_freezes_every_chat(self):
        self.p.script("ba", {"status": 429, "json": {"ok": False, "error": "Too Many Requests", "retry_after": 1.5,
                                                     "scope": "bot"}})
        self.p.delay = 0.05
        g = self.start()
        self.inbound(g, "/fan 2 ba bb bc", chat_id="admin")
        for c in ["ba", "bb", "bc"]:
            self.wait_texts(c, 2, 10)
        # requests already on their way when the 429 was answered (delay after it arrived) are
        # not frozen; from then on nothing goes for exactly 1.5 s
        t429 = [r["t"] for r in self.p.requests if r["status"] == 429][0] + self.p.delay
        during = [r for r in self.p.requests if t429 + 0.02 < r["t"] < t429 + 1.5]
        self.assertEqual(during, [], "no request to any chat while the bot was frozen")
        self.assertEqual(self.metric(g, r'chatgw_platform_429_total\{channel="test",account="default",scope="bot"\}'), 1)

    def test_unknown_outcome_is_not_resent(self):
        self.p.script("u1", {"hang": 5})
        g = self.start(env={"CHATGW_TEST_CHANNEL_SINK_TIMEOUT_MS": "400"})
        self.inbound(g, "/many 2", chat_id="u1")
        self.wait(lambda: self.p.texts("u1") == ["r2"], 10, "the second reply after the first timed out")
        time.sleep(1.5)
        self.assertEqual([r["text"] for r in self.p.requests_for("u1")], ["r1", "r2"], "r1 was not sent again")
        self.assertEqual(self.metric(g, r'chatgw_outbox_unknown_total\{channel="test",account="default"\}'), 1)
        self.assertEqual(self.metric(g, r'chatgw_chat_messages_out_total\{channel="test",account="default",result="unknown"\}'), 1)

    def test_unknown_outcome_is_resent_with_the_same_uuid_where_sends_are_idempotent(self):
        self.p.script("u2", {"hang": 5})
        self.p.dedupe_uuid = True
        g = self.start(env={"CHATGW_TEST_CHANNEL_SINK_TIMEOUT_MS": "400", "CHATGW_TEST_CHANNEL_IDEMPOTENT": "1"})
        self.inbound(g, "/many 1", chat_id="u2")
        self.wait(lambda: self.p.texts("u2") == ["r1"], 10, "resent and delivered")
        reqs = self.p.requests_for("u2")
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[0]["uuid"], reqs[1]["uuid"], "the same uuid: the platform dedupes it")
        self.assertEqual(self.metric(g, r'chatgw_outbox_unknown_total\{channel="test",account="default"\}'), 0)

    def test_5xx_is_retried_with_backoff(self):
        self.p.script("e5", {"status": 502, "json": {"ok": False, "error": "Bad Gateway"}},
                      {"status": 500, "json": {"ok": False, "error": "Internal Server Error"}})
        g = self.start()
        self.inbound(g, "/many 1", chat_id="e5")
        self.assertEqual(self.wait_texts("e5", 1, 15), ["r1"])
        reqs = self.p.requests_for("e5")
        self.assertEqual([r["status"] for r in reqs], [502, 500, 200])
        self.assertGreaterEqual(reqs[1]["t"] - reqs[0]["t"], 0.7, "backoff after the first failure")
        self.assertGreaterEqual(reqs[2]["t"] - reqs[1]["t"], 1.5, "longer after the second")
        self.assertEqual(self.metric(g, r'chatgw_outbox_retries_total\{channel="test",account="default",reason="error"\}'), 2)

    def test_formatted_text_the_platform_rejects_is_resent_as_plain(self):
        self.p.script("bf", {"status": 400, "json": {"ok": False, "error": "Bad Request: can't parse entities: "
                                                     "Character '-' is reserved and must be escaped"}})
        g = self.start()
        self.inbound(g, "/fmt", chat_id="bf")
        self.assertEqual(self.wait_texts("bf", 1), ["*bold* a-b"])
        reqs = self.p.requests_for("bf")
        self.assertEqual([r["format"] for r in reqs], ["markdown", "plain"])
        self.assertEqual(self.metric(g, r'chatgw_outbox_retries_total\{channel="test",account="default",reason="bad_format"\}'), 1)

    def test_a_chat_that_removed_the_bot_fails_fast_until_it_is_back(self):
        self.p.script("gz", {"status": 403, "json": {"ok": False, "error": "Forbidden: bot was blocked by the user"}})
        g = self.start()
        self.inbound(g, "/fan 1 gz", chat_id="admin")
        self.wait(lambda: len(self.p.requests_for("gz")) == 1, 10, "the 403")
        self.wait(lambda: self.metric(g, r'chatgw_chat_messages_out_total\{channel="test",account="default",result="failed"\}') == 1,
                  5, "failed")
        self.inbound(g, "/fan 3 gz", chat_id="admin")  # fail at once: no request
        self.wait(lambda: self.metric(g, r'chatgw_chat_messages_out_total\{channel="test",account="default",result="failed"\}') == 4,
                  5, "three more failed")
        self.assertEqual(len(self.p.requests_for("gz")), 1, "no request to a chat the bot is gone from")
        warns = [r for r in g.records() if r.get("msg") == "outbox: message failed" and r.get("chat_id") == "gz"]
        self.assertEqual(len(warns), 1, "logged once")
        self.assertIn("bot was blocked", warns[0]["error"])
        # a message from the chat: the bot is back
        self.inbound(g, "/many 1", chat_id="gz")
        self.assertEqual(self.wait_texts("gz", 1), ["r1"])

    # ---- the governor ----

    def test_coalesced_edits_and_the_exact_final_text(self):
        self.p.delay = 0.15
        g = self.start()
        self.inbound(g, "/stream", chat_id="sx")
        final = " ".join("w%d" % i for i in range(1, 51)) + " "
        self.wait(lambda: self.p.texts("sx") == [final], 15, "the final text")
        edits = self.p.requests_for("sx", "edit")
        self.assertLess(len(edits), 12, "50 writes coalesced into a few edits")
        self.assertGreaterEqual(len(edits), 1)
        self.assertEqual(len(self.p.requests_for("sx", "send")), 1, "one message")

    def test_an_unchanged_edit_is_not_sent(self):
        g = self.start()
        self.inbound(g, "/same", chat_id="sm")
        self.assertEqual(self.wait_texts("sm", 2), ["same text", "after"])
        self.assertEqual(self.p.requests_for("sm", "edit"), [])

    def test_finals_go_before_edits_when_the_bot_is_at_its_limit(self):
        cfg = "chat:\n  governor:\n    test: { bot_rate: 2, bot_burst: 2 }\n"
        g = self.start(config=cfg)
        self.inbound(g, "/prio", chat_id="pe")
        self.wait(lambda: self.p.texts("pe") == ["base edited"], 15, "the edit")
        order = [(r["chat_id"], r["op"]) for r in self.p.requests]
        edit_at = order.index(("pe", "edit"))
        finals_at = [order.index(("final%d" % i, "send")) for i in (1, 2, 3)]
        self.assertTrue(all(f < edit_at for f in finals_at), order)
        # and the bot's rate held: a bucket of 2 refilled at 2/s lets at most 2 + 2 * T requests
        # go in any span of T seconds
        ts = [r["t"] for r in self.p.requests]
        for i in range(len(ts)):
            for j in range(i + 1, len(ts)):
                self.assertLessEqual(j - i + 1, 2 + 2 * (ts[j] - ts[i]) + 0.1, "bot rate: %r" % order)

    def test_typing_never_takes_the_last_token(self):
        cfg = "chat:\n  governor:\n    test: { bot_rate: 1, bot_burst: 2 }\n"
        g = self.start(config=cfg)
        self.inbound(g, "/typing", chat_id="ty")
        self.assertEqual(self.wait_texts("ty", 1), ["typing sent 1"])
        self.assertEqual(self.metric(g, r'chatgw_chat_typing_total\{channel="test",result="dropped"\}'), 4)

    # ---- long texts ----

    def test_a_long_text_is_split_as_the_platform_counts(self):
        g = self.start()
        self.inbound(g, "/long", chat_id="lg")
        parts = self.wait_texts("lg", 3)
        self.assertEqual("".join(parts), "😀" * 5000)
        for p in parts:
            self.assertLessEqual(len(p.encode("utf-16-le")) // 2, 4096, "at most 4096 UTF-16 code units")
        reqs = self.p.requests_for("lg")
        self.assertEqual([(r["part"], r["parts"]) for r in reqs], [(1, 3), (2, 3), (3, 3)])
        self.assertEqual(len({r["uuid"] for r in reqs}), 3, "each part its own uuid")

    def test_an_edit_longer_than_a_message_spreads_over_parts(self):
        g = self.start()
        self.inbound(g, "/grow", chat_id="gr")
        self.wait(lambda: len(self.p.texts("gr")) == 2 and self.p.texts("gr")[1].startswith("done"), 15,
                  "the edits")
        shown = self.p.delivered("gr")
        self.assertEqual(shown[0]["text"], "short again")
        ops = [(r["op"], r.get("part")) for r in self.p.requests_for("gr")]
        self.assertEqual(ops, [("send", 1), ("edit", 1), ("send", 2), ("send", 3),
                               ("edit", 1), ("delete", None), ("delete", None), ("send", 1)])

    def test_a_reload_does_not_cut_a_delivery_short(self):
        self.p.delay = 0.8
        g = self.start()
        self.inbound(g, "/many 3", chat_id="rl")
        self.wait(lambda: len(self.p.requests) == 1, 10, "the first request")
        r = g.reload()
        self.assertEqual(r["last_result"], "ok", r)
        self.assertEqual(self.wait_texts("rl", 3, 15), ["r1", "r2", "r3"])
        time.sleep(0.5)
        self.assertEqual([x["text"] for x in self.p.requests_for("rl")], ["r1", "r2", "r3"], "none twice")
        self.assertFalse(any(x.get("msg", "").startswith("outbox: outcome unknown") for x in g.records()))

    # ---- one sender per account ----

    def test_a_standby_process_never_sends(self):
        a = self.start(instance="A")
        b = self.start(workdir=a.dir, instance="B")
        self.wait(lambda: b.health()["checks"]["channels"]["channels"]["test:default"].get("sender") == "waiting_lock",
                  10, "B waits for the lock")
        # a message handled by B: its replies are delivered by A, the lock holder
        self.inbound(b, "/many 3", chat_id="sb1")
        self.assertEqual(self.wait_texts("sb1", 3), ["r1", "r2", "r3"])
        self.assertEqual({r["instance"] for r in self.p.requests}, {"A"})
        # A dies: B takes over, and sends
        a.signal(signal.SIGKILL)
        a.proc.wait(10)
        self.inbound(b, "/many 2", chat_id="sb2")
        self.assertEqual(self.wait_texts("sb2", 2), ["r1", "r2"])
        self.assertEqual({r["instance"] for r in self.p.requests_for("sb2")}, {"B"})


if __name__ == "__main__":
    unittest.main()
