"""E2E: the governor's buckets in Redis (docs/cluster.md): three nodes sending into one chat
share the per-chat limit, a 429 seen by one node freezes all of them, and with Redis gone the
nodes go on with their local limits (one WARN each). Reuses test_cluster's Redis and nodes."""
import time
import unittest

from fake_telegram import FakeTelegram
from test_cluster import BOT_TOKEN, REDIS, ClusterTest

RATE, BURST = 5, 2       # the governor's per-chat limit (chat.governor.telegram)
CHAT = 4242

HANDLERS = {"app.lua": r"""
return {
  routes = {
    ["POST /burst"] = function(req)
      local b = chatgw.json.decode(req.body)
      local n = 0
      for i = 1, b.n do
        local h = chatgw.chat.send{ channel = "telegram", chat_id = b.chat, text = b.tag .. "-" .. i }
        if h then n = n + 1 end
      end
      return { accepted = n }
    end,
  },
}
"""}


@unittest.skipUnless(REDIS, "redis-server is not installed")
class GovernorClusterTest(ClusterTest):
    def setUp(self):
        super().setUp()
        # the fake is a little looser than the governor (one more token): arrival jitter is not
        # a violation, three nodes each at their own limit (3x) would be
        self.tg = FakeTelegram(tokens={BOT_TOKEN: {"id": 123456, "username": "c_bot", "first_name": "C"}},
                               limits={"chat_per_s": RATE, "chat_burst": BURST + 1, "bot_per_s": 30})
        self.tg.start()
        self.addCleanup(self.tg.stop)

    def tg_node(self, name, burst=BURST):
        cfg = ("channels:\n  telegram:\n    poll_timeout_s: 1\n"
               "chat:\n  governor:\n    telegram:\n      chat_rate: %d\n      chat_burst: %d\n" % (RATE, burst))
        return self.node(name, handlers=HANDLERS,
                         env={"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": BOT_TOKEN},
                         extra_config=cfg)

    def burst(self, nodes, n):
        for i, g in enumerate(nodes):
            r = g.request("POST", "/burst", json_body={"chat": CHAT, "n": n, "tag": "n%d" % i})
            self.assertEqual(r.json()["accepted"], n)

    def delivered(self, nodes, n, timeout):
        want = sorted("n%d-%d" % (i, k) for i in range(len(nodes)) for k in range(1, n + 1))
        self.wait(lambda: len(self.tg.texts(CHAT)) >= len(want), timeout, "all messages")
        time.sleep(0.5)
        self.assertEqual(sorted(self.tg.texts(CHAT)), want, "every message exactly once")

    def sends(self):
        return [c for c in self.tg.calls("sendMessage") if c["params"].get("chat_id") == CHAT]

    def test_three_nodes_share_one_chat_limit(self):
        nodes = [self.tg_node("g1"), self.tg_node("g2"), self.tg_node("g3")]
        for g in nodes:
            self.wait_up(g)
        n = 20
        self.burst(nodes, n)
        self.delivered(nodes, n, 60)
        ts = [c["t"] for c in self.sends()]
        span = ts[-1] - ts[0]
        ideal = (3 * n - BURST) / RATE
        print("\n3 nodes x %d messages into one chat: %.1f s (the limit allows %.1f s)" % (n, span, ideal))
        self.assertEqual(self.tg.violations, [], "no request reached a frozen chat")
        self.assertEqual([c for c in self.sends() if c["status"] == 429], [], "no 429 at all")
        self.assertGreater(span, ideal * 0.85)
        self.assertLess(span, ideal * 1.5 + 2)

    def test_a_429_on_one_node_freezes_all(self):
        nodes = [self.tg_node("f1", burst=1), self.tg_node("f2", burst=1), self.tg_node("f3", burst=1)]
        for g in nodes:
            self.wait_up(g)
        self.tg.script("sendMessage", chat_id=CHAT, retry_after=2)
        n = 5
        self.burst(nodes, n)
        self.delivered(nodes, n, 60)
        self.assertEqual(self.tg.violations, [], "no node sent into the freeze")
        calls = self.sends()
        frozen_at = [c["t"] for c in calls if c["status"] == 429]
        self.assertEqual(len(frozen_at), 1)
        after = [c["t"] for c in calls if c["t"] > frozen_at[0]]
        print("\nfirst send after the 429 (retry_after 2): %.2f s" % (after[0] - frozen_at[0]))
        self.assertGreaterEqual(after[0] - frozen_at[0], 1.9)

    def test_redis_killed_mid_run_falls_back_to_local_limits(self):
        self.tg.limits = None  # three nodes on local limits may send 3x: only delivery is checked
        nodes = [self.tg_node("r1"), self.tg_node("r2"), self.tg_node("r3")]
        for g in nodes:
            self.wait_up(g)
        n = 10
        self.burst(nodes, n)
        self.wait(lambda: len(self.tg.texts(CHAT)) >= 3, 20, "some sent through Redis")
        self.redis.kill()
        self.delivered(nodes, n, 60)
        for g in nodes:
            self.assertIsNone(g.proc.poll(), "no crash")
            log = g.stderr_text()
            self.assertEqual(log.count("governor: Redis cannot decide"), 1, "one WARN per outage")


if __name__ == "__main__":
    unittest.main()
