"""The shipped examples load with `chatgw check` and do what examples/README.md says."""
import os
import shutil
import socket
import time
import unittest

from harness import Gateway, GatewayTest, run_cli, SLOW
from test_ws import WsTestBase, have_node_ws
from upstream import Upstream

ROOT = os.environ.get("CHATGW_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLES = os.path.join(ROOT, "examples")


def example_gateway(name, env=None):
    """A Gateway serving a copy of examples/<name> (handlers and config)."""
    src = os.path.join(EXAMPLES, name)
    with open(os.path.join(src, "chatgw.yml")) as f:
        g = Gateway(config=f.read(), env=env)
    shutil.rmtree(g.handlers_dir)
    shutil.copytree(os.path.join(src, "handlers"), g.handlers_dir)
    return g


class ExamplesCheckTest(unittest.TestCase):
    def test_every_example_passes_check(self):
        names = sorted(d for d in os.listdir(EXAMPLES) if os.path.isdir(os.path.join(EXAMPLES, d)))
        self.assertGreaterEqual(len(names), 2)
        for name in names:
            d = os.path.join(EXAMPLES, name)
            code, out, err = run_cli(["check", os.path.join(d, "handlers"), "--config",
                                    os.path.join(d, "chatgw.yml")])
            self.assertEqual(code, 0, "%s: %s" % (name, err))
            self.assertIn("chatgw check: OK", out)


class HttpEchoTest(GatewayTest):
    def test_routes_counter_and_breaker(self):
        up = Upstream({"/": lambda r: r.reply(503, b"down")})
        up.start()
        self.addCleanup(up.stop)
        g = example_gateway("http-echo", env={"no_proxy": "*"})
        with open(g.config_path, "w") as f:
            f.write('app:\n  upstream: "%s"\n' % up.url("").rstrip("/"))
        self._gws.append(g)
        g.start()
        self.assertEqual(g.get("/ping", auth=False).text, "pong")
        r = g.request("POST", "/v1/echo/7?x=1", json_body={"a": 1})
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json(), {"id": "7", "query": {"x": "1"}, "got": {"a": 1}, "n": 1})
        self.assertEqual(g.get("/v1/echo/7").status, 405)
        # the upstream answers 503: a result, not a failure, so the breaker stays closed
        r = g.get("/v1/fetch")
        self.assertEqual(r.json(), {"ok": True, "status": 503, "bytes": 4})
        # point the example at a port nobody listens on (a reload re-reads app.upstream): three
        # connect failures open the breaker, then it rejects at once
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        with open(g.config_path, "w") as f:
            f.write('app:\n  upstream: "http://127.0.0.1:%d"\n' % dead)
        self.assertEqual(g.reload()["last_result"], "ok")
        for _ in range(3):
            self.assertEqual(g.get("/v1/fetch").status, 503)
        r = g.get("/v1/fetch")
        self.assertEqual(r.status, 503)
        self.assertTrue(r.json()["error"].startswith("open:"), r.json())
        # the counter survived the reload, and the timer ticks
        time.sleep(1.2 * SLOW)
        stats = g.get("/v1/stats").json()
        self.assertEqual(stats["echoes"], 1)
        self.assertGreaterEqual(stats["ticks"], 1)


@unittest.skipUnless(have_node_ws(), "node + node-ws not installed")
class WsChatTest(WsTestBase):
    def test_chat_room(self):
        g = example_gateway("ws-chat", env={"CHAT_TOKEN": "chat-secret"})
        self._gws.append(g)
        g.start()
        d = self.driver(g)
        res = d.connect("alice", scopes=["chat.read", "chat.write"], token="chat-secret",
                        device="alice")
        self.assertTrue(res["ok"], res)
        res = d.connect("bob", scopes=["chat.read"], token="chat-secret", device="bob")
        self.assertTrue(res["ok"], res)
        joined = d.msg("alice", lambda m: m.get("event") == "room.joined")
        self.assertEqual(joined["payload"]["who"], "bob")
        res = d.req("alice", "room.send", {"text": "hello"})
        self.assertTrue(res["ok"], res)
        self.assertEqual(res["payload"]["delivered"], 2)
        got = d.msg("bob", lambda m: m.get("event") == "room.message")
        self.assertEqual(got["payload"]["text"], "hello")
        self.assertEqual(got["payload"]["from"], "alice")
        # bob may read but not write
        res = d.req("bob", "room.send", {"text": "hi"})
        self.assertFalse(res["ok"])
        self.assertEqual(res["error"]["code"], "forbidden")
        res = d.req("alice", "room.send", {})
        self.assertEqual(res["error"]["code"], "invalid_params")
        # history survives a reload
        g.reload()
        res = d.req("bob", "room.history")
        self.assertEqual([m["text"] for m in res["payload"]["messages"]], ["hello"])


if __name__ == "__main__":
    unittest.main()

