"""E2E: the gateway registry across cluster nodes (docs/cluster.md): a Telegram bot created
through /v1/gateways on node A is listed and started on node B (one of them polls it, the
other waits for the lock), a node started later gets it from Redis, and a delete on B stops
it on every node. Credentials stay encrypted in Redis."""
import subprocess
import time
import unittest

from test_cluster import REDIS, ClusterTest
from fake_telegram import FakeTelegram

KEY = "cd" * 32
TG_TOKEN = "123456:" + "R" * 35
HANDLER = {"bot.lua": """
return {
  commands = { hi = "say hi" },
  on_command = function(msg) msg:reply("hi from " .. msg.account .. " on " .. chatgw.config.cluster.node_id) end,
}
"""}


@unittest.skipUnless(REDIS, "redis-server is not installed")
class ClusterRegistryTest(ClusterTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 123456, "username": "shared_bot"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)

    def reg_node(self, name):
        g = self.node(name, env={"TELEGRAM_API_BASE": self.tg.url, "CHAT_GATEWAY_ENCRYPTION_KEY": KEY},
                      handlers=HANDLER, extra_config="channels:\n  telegram:\n    poll_timeout_s: 1\n")
        self.wait_up(g)
        self.wait(lambda: self.cluster_health(g)["redis"].get("subscriber_up"), 10, "subscribed")
        return g

    def redis_cmd(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.redis.port)] + list(args), capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def status(self, g, id):
        r = g.request("GET", "/v1/gateways/" + id)
        self.assertNotIn(TG_TOKEN, r.text)
        return r.status

    def test_a_gateway_created_on_one_node_runs_on_every_node(self):
        a, b = self.reg_node("a"), self.reg_node("b")
        r = a.request("POST", "/v1/gateways", json_body={"id": "alerts", "name": "Alerts", "type": "telegram_bot",
                                                         "credentials": {"botToken": TG_TOKEN}})
        self.assertEqual(r.status, 201, r.text)
        self.wait(lambda: self.status(b, "alerts") == 200, 5, "node b lists the gateway")
        # one node polls it: an update is answered once
        self.tg.push_update(TG_TOKEN, self.tg.text_update(901, "/hi"))
        self.wait(lambda: len(self.tg.texts(901)) == 1, 15, "one answer")
        time.sleep(1.5)
        self.assertEqual(len(self.tg.texts(901)), 1, self.tg.texts(901))
        # the copy in Redis is the stored row: the token is not in it
        shared = self.redis_cmd("HGET", "chatgw:registry", "alerts")
        self.assertIn("credentials_enc", shared)
        self.assertNotIn(TG_TOKEN.split(":")[1], shared)
        # a node started later gets it from Redis at its start
        c = self.reg_node("c")
        self.wait(lambda: self.status(c, "alerts") == 200, 10, "node c lists the gateway")
        # a delete on b stops it everywhere
        self.assertEqual(b.request("DELETE", "/v1/gateways/alerts").status, 200)
        for g in (a, c):
            self.wait(lambda: self.status(g, "alerts") == 404, 5, "deleted on every node")
        time.sleep(2.0)
        polls = len(self.tg.calls("getUpdates", token=TG_TOKEN))
        time.sleep(2.5)
        self.assertLessEqual(len(self.tg.calls("getUpdates", token=TG_TOKEN)), polls + 1, "nobody polls after delete")
        for g in (a, b, c):
            for rec in g.records():
                self.assertNotIn(TG_TOKEN.split(":")[1], str(rec))


if __name__ == "__main__":
    unittest.main()
