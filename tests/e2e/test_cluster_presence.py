"""E2E: presence.list across cluster nodes (docs/cluster.md): devices connected to node A and
node B are all listed by either node, each connection tagged with its node; a node killed
with SIGKILL drops out of the list within three write intervals."""
import json
import os
import signal
import time
import unittest

from harness import SLOW, TOKEN
from test_cluster import REDIS, ClusterTest
from test_ws import RawWs


def ws_client(g, device, scopes=("operator.read",)):
    w = RawWs(g.port())
    op, ch = w.recv()
    assert json.loads(ch)["event"] == "connect.challenge"
    w.send({"type": "req", "id": 1, "method": "connect",
            "params": {"role": "operator", "scopes": list(scopes), "device": {"id": device},
                       "auth": {"token": TOKEN}}})
    op, hello = w.recv()
    assert json.loads(hello).get("ok"), hello
    return w


def presence_list(w, rid):
    w.send({"type": "req", "id": rid, "method": "presence.list"})
    deadline = time.time() + 10 * SLOW
    while time.time() < deadline:
        op, data = w.recv()
        m = json.loads(data)
        if m.get("type") == "res" and m.get("id") == rid:
            assert m["ok"], m
            return m["payload"]
    raise AssertionError("no answer to presence.list")


@unittest.skipUnless(REDIS, "redis-server is not installed")
class PresenceTest(ClusterTest):
    def test_presence_list_aggregates_every_node(self):
        a, b = self.node("a"), self.node("b")
        self.wait_up(a)
        self.wait_up(b)
        wa = ws_client(a, "console-a")
        wb = ws_client(b, "laptop-b")
        wb2 = ws_client(b, "console-a")  # one device on two nodes: one entry, two connections
        rid = [10]

        def listed(w):
            rid[0] += 1
            return presence_list(w, rid[0])

        # b's part reaches Redis within one write interval (2 s)
        self.wait(lambda: "laptop-b" in listed(wa), 6 * SLOW, "laptop-b listed by node a")
        snap = listed(wa)
        self.assertEqual(sorted(c["node"] for c in snap["console-a"]["connections"]), ["a", "b"])
        self.assertEqual([c["node"] for c in snap["laptop-b"]["connections"]], ["b"])
        self.assertEqual(set(listed(wb)), {"console-a", "laptop-b"})
        # kill -9 of b: its part expires (3 intervals), a's own part is always fresh
        os.kill(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
        t0 = time.time()
        self.wait(lambda: "laptop-b" not in listed(wa), 10 * SLOW, "laptop-b gone after b died")
        print("\n  a dead node left presence.list after %.1f s" % (time.time() - t0))
        snap = listed(wa)
        self.assertEqual([c["node"] for c in snap["console-a"]["connections"]], ["a"])
        for w in (wa, wb, wb2):
            w.close()

    def test_without_redis_a_node_lists_its_own(self):
        a = self.node("a")
        self.wait_up(a)
        wa = ws_client(a, "solo")
        self.redis.kill()
        self.wait(lambda: not self.cluster_health(a)["redis"]["up"], 10, "redis down")
        snap = presence_list(wa, 5)
        self.assertEqual(list(snap), ["solo"])
        self.assertEqual(snap["solo"]["connections"][0]["node"], "a")
        wa.close()


if __name__ == "__main__":
    unittest.main()
