"""E2E: notify's dedupe_key and update_key across cluster nodes (docs/cluster.md): the same
dedupe key sent to two nodes sharing one real redis-server is delivered once; an update_key
sent to another node edits the message the first node sent; with Redis gone each node's own
table decides (one WARN), and nothing crashes."""
import socket
import time
import unittest

import test_notify
from test_cluster import REDIS, Redis


@unittest.skipUnless(REDIS, "redis-server is not installed")
class ClusterNotifyTest(test_notify.NotifyTest):
    """NotifyTest's set-up and helpers; only the cases below run here (load_tests)."""

    def setUp(self):
        super().setUp()
        self.redis = Redis().start()
        self.addCleanup(self.redis.cleanup)

    def node(self, name):
        g = self.start(extra="cluster:\n  node_id: %s\n  command_timeout_ms: 1000\n" % name,
                       env={"CHAT_GATEWAY_REDIS_URL": self.redis.url()}, feishu=False)
        self.wait(lambda: g.health()["checks"]["cluster"]["redis"]["up"], 10, "redis up on " + name)
        return g

    def entry(self, r, chat):
        return r["sent"]["telegram"][str(chat)]

    def test_a_dedupe_key_is_sent_once_across_nodes(self):
        a, b = self.node("a"), self.node("b")
        base = {"target": "telegram", "chat_id": 700, "priority": "HIGH", "dedupe_key": "disk:db-1"}
        self.assertEqual(self.entry(self.notify(a, dict(base, text="from a")), 700)["status"], "queued")
        e = self.entry(self.notify(b, dict(base, text="from b")), 700)
        self.assertEqual((e["sent"], e["skip_reason"]), (False, "duplicate"))
        # per chat, and per key
        self.assertTrue(self.entry(self.notify(b, dict(base, chat_id=701, text="other chat")), 701)["sent"])
        self.assertTrue(self.entry(self.notify(b, dict(base, dedupe_key="disk:db-2", text="other key")), 700)["sent"])
        # the window is the key's expiry in Redis: after it, any node sends again
        short = dict(base, chat_id=702, dedupe_key="k", dedupe_window_s=1)
        self.assertTrue(self.entry(self.notify(a, dict(short, text="short 1")), 702)["sent"])
        self.assertEqual(self.entry(self.notify(b, dict(short, text="short 2")), 702)["skip_reason"], "duplicate")
        time.sleep(1.3)
        self.assertTrue(self.entry(self.notify(b, dict(short, text="short 3")), 702)["sent"])
        self.assertEqual(self.wait_texts(700, 2), ["from a", "other key"])
        self.assertEqual(self.wait_texts(702, 2), ["short 1", "short 3"])
        time.sleep(0.3)
        self.assertEqual(len(self.tg.texts(700)), 2)
        self.assertEqual(self.tg.texts(701), ["other chat"])

    def test_an_update_key_edits_the_message_another_node_sent(self):
        a, b = self.node("a"), self.node("b")
        body = {"target": "telegram", "chat_id": 720, "priority": "HIGH", "update_key": "deploy-42"}
        self.assertEqual(self.entry(self.notify(a, dict(body, text="deploy: running", wait=True)), 720)["status"],
                         "delivered")
        mid = self.tg.sent(720)[0]["message_id"]
        # the message id reaches Redis once A knows it (after the delivery)
        self.wait(lambda: self.redis_get("chatgw:notify:update:telegram:720:deploy-42"), 5, "the shared message id")
        e = self.entry(self.notify(b, dict(body, text="deploy: done", wait=True)), 720)
        self.assertEqual((e["sent"], e["status"]), (True, "edited"))
        self.wait(lambda: self.tg.texts(720) == ["deploy: done"], 10, "B's edit of A's message")
        edits = self.tg.calls("editMessageText")
        self.assertEqual([str(x["params"]["message_id"]) for x in edits], [str(mid)])
        # and back on A: its own row, the same message again
        e = self.entry(self.notify(a, dict(body, text="deploy: verified", wait=True)), 720)
        self.assertEqual(e["status"], "edited")
        self.wait(lambda: self.tg.texts(720) == ["deploy: verified"], 10, "A's edit")
        self.assertEqual(len(self.tg.calls("sendMessage")), 1, "one message in the chat")
        self.assertEqual(self.tg.texts(720), ["deploy: verified"])

    def redis_get(self, key):
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=5) as s:
            s.sendall(("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)).encode())
            return not s.recv(100).startswith(b"$-1")

    def test_without_redis_each_node_dedupes_on_its_own(self):
        a = self.node("a")
        self.redis.kill()
        self.wait(lambda: not a.health()["checks"]["cluster"]["redis"]["up"], 10, "redis down")
        base = {"target": "telegram", "chat_id": 710, "priority": "HIGH", "dedupe_key": "k"}
        self.assertTrue(self.entry(self.notify(a, dict(base, text="one")), 710)["sent"])
        self.assertEqual(self.entry(self.notify(a, dict(base, text="two")), 710)["skip_reason"], "duplicate")
        self.assertEqual(len(self.warns(a, "Redis cannot dedupe")), 1)
        self.assertEqual(self.wait_texts(710, 1), ["one"])


def load_tests(loader, tests, pattern):
    return unittest.TestSuite(ClusterNotifyTest(n) for n in sorted(vars(ClusterNotifyTest)) if n.startswith("test_"))


if __name__ == "__main__":
    unittest.main()
