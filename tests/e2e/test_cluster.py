"""E2E: several chatgw nodes on one real redis-server (docs/cluster.md).

Each case starts its own redis-server on a free loopback port with its own temp dir (no
persistence unless the case asks for its append-only file), stopped by PID; the nodes are chatgw processes with their own ports and data dirs.
Skipped when redis-server is not installed (CI installs it: scripts/install-deps.sh --test)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from fake_telegram import FakeTelegram
from harness import SLOW, TOKEN, GatewayTest
from test_ws import RawWs

REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
BOT_TOKEN = "123456:CLUSTER-token_SECRET-abcdefghijklmnop"
PASSWORD = "pw-Very-Secret-7f3a9c"

HANDLERS = {"app.lua": r"""
local lim = chatgw.limiter{ name = "shared_api", limit = 5, window_ms = 60000, shared = true }
return {
  commands = { ping = "pong" },
  on_command = function(msg) return msg:reply("pong " .. (chatgw.config.cluster.node_id or "")) end,
  routes = {
    ["GET /take"] = function() local ok, retry = lim:take("k") return { ok = ok, retry = retry } end,
    ["GET /redis"] = function()
      local v, err = chatgw._redis.command("PING")
      return { v = v, err = err }
    end,
  },
}
"""}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Redis:
    def __init__(self, password=None, aof=False):
        self.dir = tempfile.mkdtemp(prefix="chatgw-redis-")
        self.port = free_port()
        self.password = password
        self.aof = aof  # persistence: an append-only file, fsynced at every write
        self.proc = None

    def start(self):
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(100):
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self):
        auth = (":" + self.password + "@") if self.password else ""
        return "redis://%s127.0.0.1:%d/0" % (auth, self.port)


@unittest.skipUnless(REDIS, "redis-server is not installed")
class ClusterTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.redis = Redis(password=getattr(self, "PASSWORD", None), aof=getattr(self, "AOF", False)).start()
        self.addCleanup(self.redis.cleanup)

    def node(self, name, env=None, handlers=None, ttl_ms=3000, extra_config=""):
        e = {"CHAT_GATEWAY_REDIS_URL": self.redis.url(), "CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        e.update(env or {})
        cfg = "cluster:\n  node_id: %s\n  lock_ttl_ms: %d\n  command_timeout_ms: 1000\n" % (name, ttl_ms)
        g = self.gw(handlers or HANDLERS, config=cfg + extra_config, env=e)
        g.node_name = name
        return g

    def cluster_health(self, g):
        return g.health()["checks"]["cluster"]

    def wait_up(self, g):
        return self.wait(lambda: self.cluster_health(g)["redis"]["up"], 10, "redis up")


class LeaderTest(ClusterTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={BOT_TOKEN: {"id": 123456, "username": "c_bot", "first_name": "C"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)

    def tg_node(self, name):
        return self.node(name, env={"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": BOT_TOKEN},
                         extra_config="channels:\n  telegram:\n    poll_timeout_s: 1\n")

    def poller_state(self, g):
        loops = g.health()["checks"]["channels"]
        return loops

    def holders(self, nodes):
        out = []
        for g in nodes:
            if g.proc.poll() is not None:
                continue
            leaders = self.cluster_health(g).get("leaders") or {}
            for name, info in leaders.items():
                if name.startswith("telegram-") and info.get("me"):
                    out.append((name, g))
        return out

    def test_one_poller_then_takeover_after_kill_9(self):
        nodes = [self.tg_node("n1"), self.tg_node("n2"), self.tg_node("n3")]
        for g in nodes:
            self.wait_up(g)
        self.wait(lambda: len(self.holders(nodes)) == 1, 15, "one leader")
        # for two seconds: never two leaders, and the fake never saw two pollers at once
        deadline = time.time() + 2
        while time.time() < deadline:
            self.assertLessEqual(len(self.holders(nodes)), 1)
            time.sleep(0.1)
        for i in range(10):
            self.tg.push_update(BOT_TOKEN, self.tg.text_update(42, "/ping"))
        self.wait(lambda: len(self.tg.texts(42)) >= 10, 20, "10 answers")
        leader = self.holders(nodes)[0][1]
        # every other node sees who leads
        for g in nodes:
            if g is not leader:
                info = list((self.cluster_health(g).get("leaders") or {}).values())
                self.wait(lambda: any(i.get("holder") for i in
                                      (self.cluster_health(g).get("leaders") or {}).values()), 10, "holder seen")
        killed_at = time.time()
        leader.proc.kill()
        leader.proc.wait()
        rest = [g for g in nodes if g is not leader]
        self.wait(lambda: len(self.holders(rest)) == 1, 15, "a new leader")
        takeover = time.time() - killed_at
        print("\ntakeover after kill -9: %.2f s (lock_ttl_ms 3000)" % takeover)
        self.assertLess(takeover, 3.0 + 2.0 * SLOW)
        before = len(self.tg.texts(42))
        for i in range(10):
            self.tg.push_update(BOT_TOKEN, self.tg.text_update(42, "/ping"))
        self.wait(lambda: len(self.tg.texts(42)) >= before + 10, 20, "10 more answers")
        # no node ever got a getUpdates conflict (two pollers)
        for g in nodes:
            self.assertNotIn("terminated by other getUpdates", g.stderr_text())

    def test_redis_down_stops_polling_and_recovers(self):
        nodes = [self.tg_node("n1"), self.tg_node("n2")]
        for g in nodes:
            self.wait_up(g)
        self.wait(lambda: len(self.holders(nodes)) == 1, 15, "one leader")
        self.redis.kill()
        for g in nodes:
            self.wait(lambda: self.cluster_health(g)["status"] == "degraded", 10, "degraded")
            self.assertEqual(g.health()["status"], "degraded")
            self.assertEqual(g.get("/redis").json()["err"][:5], "down:")
        # the leader stops within ttl/3 + the command timeout: then nobody polls
        self.wait(lambda: len(self.holders(nodes)) == 0, 10, "no leader while Redis is down")
        time.sleep(0.5)
        n = len(self.tg.polls)
        time.sleep(2.5)
        self.assertLessEqual(len(self.tg.polls) - n, 1, "a poll while Redis was down")
        # the same port again: both reconnect by themselves, one leads, answers flow
        self.redis.start()
        for g in nodes:
            self.wait(lambda: self.cluster_health(g)["status"] == "ok", 15, "recovered")
        self.wait(lambda: len(self.holders(nodes)) == 1, 15, "a leader again")
        self.tg.push_update(BOT_TOKEN, self.tg.text_update(7, "/ping"))
        self.wait(lambda: len(self.tg.texts(7)) >= 1, 20, "an answer after recovery")
        for g in nodes:
            self.assertIsNone(g.proc.poll())


class FanoutTest(ClusterTest):
    def test_broadcast_on_a_reaches_b_and_c_once(self):
        a, b, c = self.node("a"), self.node("b"), self.node("c")
        for g in (a, b, c):
            self.wait_up(g)
            self.wait(lambda: (self.cluster_health(g)["redis"].get("subscriber_up")), 10, "subscribed")
        clients = {}
        for name, g in (("a", a), ("b", b), ("c", c)):
            w = RawWs(g.port())
            w.connect(role="operator")
            clients[name] = w
        for i in range(5):
            r = a.request("POST", "/v1/ws/broadcast", json_body={"event": "news", "payload": {"i": i}})
            self.assertEqual(r.status, 200, r.text)
        for name, w in clients.items():
            got = []
            w.s.settimeout(5 * SLOW)
            while len(got) < 5:
                op, data = w.recv()
                m = json.loads(data)
                if m.get("event") == "news":
                    got.append(m["payload"]["i"])
            self.assertEqual(got, [0, 1, 2, 3, 4], name)
            # nothing more: exactly once
            w.s.settimeout(0.7)
            extra = []
            try:
                while True:
                    op, data = w.recv()
                    m = json.loads(data)
                    if m.get("event") == "news":
                        extra.append(m)
            except (socket.timeout, TimeoutError):
                pass
            self.assertEqual(extra, [], name)
            w.close()


    def news(self, w, wait_s):
        """The payloads of the news events w gets within wait_s."""
        got = []
        w.s.settimeout(wait_s * SLOW)
        try:
            while True:
                op, data = w.recv()
                m = json.loads(data)
                if m.get("event") == "news":
                    got.append(m["payload"]["i"])
        except (socket.timeout, TimeoutError):
            pass
        return got

    def test_include_and_exclude_name_connections_on_any_node(self):
        a, b = self.node("a"), self.node("b")
        for g in (a, b):
            self.wait_up(g)
            self.wait(lambda: (self.cluster_health(g)["redis"].get("subscriber_up")), 10, "subscribed")
        ws, ids = {}, {}
        for name, g in (("a1", a), ("b1", b), ("b2", b)):
            w = RawWs(g.port())
            ids[name] = w.connect(role="operator")["payload"]["server"]["connId"]
            ws[name] = w
        # on A: include one connection of B; exclude the other of B
        r = a.request("POST", "/v1/ws/broadcast", json_body={"event": "news", "payload": {"i": 1},
                                                             "include": [ids["b1"]]})
        self.assertEqual(r.status, 200, r.text)
        r = a.request("POST", "/v1/ws/broadcast", json_body={"event": "news", "payload": {"i": 2},
                                                             "exclude": [ids["b2"]]})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.news(ws["b1"], 1.0), [1, 2])
        self.assertEqual(self.news(ws["b2"], 0.3), [])
        self.assertEqual(self.news(ws["a1"], 0.3), [2])
        for w in ws.values():
            w.close()


class LimiterTest(ClusterTest):
    def test_shared_limiter_counts_across_nodes(self):
        a, b = self.node("a"), self.node("b")
        self.wait_up(a)
        self.wait_up(b)
        oks = 0
        for i in range(10):
            g = a if i % 2 == 0 else b
            if g.get("/take").json()["ok"]:
                oks += 1
        self.assertEqual(oks, 5)
        r = b.get("/take").json()
        self.assertFalse(r["ok"])
        self.assertGreater(r["retry"], 0)


class PasswordTest(ClusterTest):
    PASSWORD = PASSWORD

    def test_password_never_in_logs_health_or_metrics(self):
        a = self.node("a")
        self.wait_up(a)
        self.assertEqual(a.get("/redis").json()["v"], "PONG")
        h = a.get("/health?verbose=1").text
        self.assertIn("***@", h)
        self.assertNotIn(PASSWORD, h)
        self.assertNotIn(PASSWORD, a.get("/metrics").text)
        # a wrong password: refused, said, never shown
        bad = self.gw(HANDLERS, config="cluster:\n  node_id: bad\n",
                      env={"CHAT_GATEWAY_REDIS_URL": "redis://:wrong-%s@127.0.0.1:%d/0" % (PASSWORD, self.redis.port)})
        self.wait(lambda: "handshake refused" in bad.stderr_text(), 10, "auth refused")
        self.assertEqual(bad.health()["status"], "degraded")
        self.redis.kill()  # lost and reconnecting lines too
        self.wait(lambda: "connection lost" in a.stderr_text(), 10, "lost")
        self.assertEqual(a.stop(), 0)
        self.assertEqual(bad.stop(), 0)
        for g in (a, bad):
            self.assertNotIn(PASSWORD, g.stderr_text())
            self.assertIn('"node":', g.stderr_text())


class ConfigTest(GatewayTest):
    def test_rediss_refused_with_a_clear_error(self):
        g = self.gw(HANDLERS, start=False, env={"CHAT_GATEWAY_REDIS_URL": "rediss://:pw@127.0.0.1:6380/0"})
        g.start(wait_ready=False)
        code = g.proc.wait(20 * SLOW)
        self.assertNotEqual(code, 0)
        err = g.stderr_text()
        self.assertIn("rediss:// (TLS) is not supported", err)
        self.assertIn("tunnel", err)
        self.assertNotIn(":pw@", err)

    def test_no_redis_url_no_cluster(self):
        g = self.gw(HANDLERS)
        h = g.health()
        self.assertNotIn("cluster", h["checks"])
        self.assertNotIn('"node":', g.stderr_text())
        self.assertEqual(g.get("/redis").json()["err"], "down: no cluster.redis_url is configured")
        # the shared limiter is the local one
        self.assertEqual(sum(1 for _ in range(7) if g.get("/take").json()["ok"]), 5)


if __name__ == "__main__":
    unittest.main()
