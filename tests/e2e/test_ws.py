"""End-to-end tests of the WebSocket API (docs/websocket.md) with an independent client: Debian's
node-ws package driven by tests/e2e/ws_client.js (NODE_PATH=/usr/share/nodejs)."""
import json
import os
import queue
import signal
import socket
import subprocess
import textwrap
import threading
import time
import unittest

from harness import SANITIZE, SLOW, TOKEN, GatewayTest, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_JS = os.path.join(HERE, "ws_client.js")
NODE = "node"
NODE_PATH = "/usr/share/nodejs"


def have_node_ws():
    try:
        r = subprocess.run([NODE, "-e", "require('ws')"], env=dict(os.environ, NODE_PATH=NODE_PATH),
                           capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


HAVE_NODE_WS = have_node_ws()


class WsDriver:
    """One node process running ws_client.js in driver mode; any number of named connections."""

    def __init__(self, gw):
        self.gw = gw
        self.p = subprocess.Popen([NODE, CLIENT_JS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  env=dict(os.environ, NODE_PATH=NODE_PATH))
        self.pending = []
        self.cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._drain_err, daemon=True).start()
        self.next_id = 0

    def _pump(self):
        for raw in iter(self.p.stdout.readline, b""):
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            with self.cv:
                self.pending.append(ev)
                self.cv.notify_all()

    def _drain_err(self):
        for _ in iter(self.p.stderr.readline, b""):
            pass

    def cmd(self, **kw):
        self.p.stdin.write((json.dumps(kw) + "\n").encode())
        self.p.stdin.flush()

    def expect(self, pred, timeout=5, what="event"):
        deadline = time.time() + timeout * SLOW
        with self.cv:
            while True:
                for i, ev in enumerate(self.pending):
                    if pred(ev):
                        del self.pending[i]
                        return ev
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; pending: %r" %
                                         (what, self.pending[-10:]))
                self.cv.wait(left)

    def none(self, pred, wait=0.3):
        """Asserts no matching event arrives within wait seconds."""
        time.sleep(wait * SLOW)
        with self.cv:
            for ev in self.pending:
                if pred(ev):
                    raise AssertionError("unexpected event %r" % ev)

    def url(self, path="/ws"):
        return "ws://127.0.0.1:%d%s" % (self.gw.port(), path)

    def open(self, name, path="/ws", headers=None, origin=None, deflate=False, challenge=True):
        self.cmd(op="open", name=name, url=self.url(path), headers=headers or {}, origin=origin,
                 deflate=deflate)
        ev = self.expect(lambda e: e.get("name") == name and e["ev"] in ("open", "unexpected", "error"),
                         what="open " + name)
        if ev["ev"] != "open":
            return ev
        if challenge:
            ch = self.msg(name)
            assert ch["type"] == "event" and ch["event"] == "connect.challenge", ch
            ev["challenge"] = ch
        return ev

    def msg(self, name, pred=None, timeout=5):
        def match(e):
            if e.get("name") != name or e["ev"] != "message" or e.get("binary"):
                return False
            m = json.loads(e["data"])
            return pred is None or pred(m)
        return json.loads(self.expect(match, timeout, "message on " + name)["data"])

    def closed(self, name, timeout=5):
        return self.expect(lambda e: e.get("name") == name and e["ev"] == "close", timeout,
                           "close of " + name)

    def send(self, name, obj):
        self.cmd(op="send", name=name, json=obj)

    def req(self, name, method, params=None, rid=None, wait=True):
        if rid is None:
            self.next_id += 1
            rid = "r%d" % self.next_id
        m = {"type": "req", "id": rid, "method": method}
        if params is not None:
            m["params"] = params
        self.send(name, m)
        if not wait:
            return rid
        return self.msg(name, lambda m: m.get("type") == "res" and m.get("id") == rid)

    def connect(self, name, role="operator", scopes=None, token=TOKEN, device=None, client=None,
                path="/ws", headers=None, origin=None):
        ev = self.open(name, path, headers, origin)
        assert ev["ev"] == "open", ev
        params = {"role": role}
        if scopes is not None:
            params["scopes"] = scopes
        if token is not None:
            params["auth"] = {"token": token}
        if device is not None:
            params["device"] = {"id": device}
        if client is not None:
            params["client"] = client
        return self.req(name, "connect", params, rid="c-" + name)

    def stop(self):
        try:
            self.cmd(op="exit")
        except (BrokenPipeError, OSError):
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


class RawWs:
    """A minimal blocking WebSocket client over a raw socket (for a stalled reader with a tiny
    receive buffer, which node cannot set up)."""

    def __init__(self, port, rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(10 * SLOW)
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self):
        c = self.s.recv(65536)
        if not c:
            raise EOFError("closed")
        self.buf += c

    def _need(self, n):
        while len(self.buf) < n:
            self._fill()

    def recv(self):
        """(opcode, payload bytes)"""
        self._need(2)
        op, ln = self.buf[0] & 15, self.buf[1] & 127
        off = 2
        if ln == 126:
            self._need(4)
            ln, off = int.from_bytes(self.buf[2:4], "big"), 4
        elif ln == 127:
            self._need(10)
            ln, off = int.from_bytes(self.buf[2:10], "big"), 10
        self._need(off + ln)
        data, self.buf = self.buf[off:off + ln], self.buf[off + ln:]
        return op, data

    def send(self, obj, op=1):
        data = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        n = len(data)
        head = bytes([0x80 | op])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.s.sendall(head + b"\0\0\0\0" + data)  # mask key 0: payload unchanged

    def connect(self, role="node", token=TOKEN):
        op, ch = self.recv()
        assert json.loads(ch)["event"] == "connect.challenge"
        self.send({"type": "req", "id": 1, "method": "connect", "params": {"role": role, "auth": {"token": token}}})
        op, hello = self.recv()
        return json.loads(hello)

    def close(self):
        self.s.close()


HANDLERS = {"chat.lua": """\
    local hooks = chatgw.shared("hooks")
    return {
      methods = {
        ["echo"] = function(conn, params) return { params = params, id = conn.id, role = conn.role } end,
        ["boom"] = function(conn, params) error("kaboom") end,
        ["refuse"] = function(conn, params) return nil, "not_allowed: you may not" end,
        ["refuse.table"] = function(conn, params)
          return nil, { code = "busy", message = "later", retryable = true, retryAfterMs = 50 }
        end,
        ["nothing"] = function(conn, params) end,
        ["sleepy"] = function(conn, params) chatgw.sleep(params.ms) return { slept = params.ms } end,
        ["data.set"] = function(conn, params) conn.data[params.k] = params.v return true end,
        ["data.get"] = function(conn, params) return { v = conn.data[params.k] } end,
        ["data.big"] = function(conn, params)
          local ok, err = pcall(function() conn.data.big = string.rep("x", params.n) end)
          return { ok = ok, err = tostring(err) }
        end,
        ["bc"] = function(conn, p)
          return { sent = chatgw.ws.broadcast(p.event, p.payload, p.opts) }
        end,
        ["send"] = function(conn, p)
          local ok, err = chatgw.ws.send(p.to, p.event, p.payload)
          return { ok = ok, err = err }
        end,
        ["close"] = function(conn, p)
          local ok, err = chatgw.ws.close(p.id, p.code, p.reason)
          return { ok = ok, err = err }
        end,
        ["list"] = function(conn, p) return chatgw.ws.list(p or {}) end,
        ["get"] = function(conn, p) return chatgw.ws.get(p.id) or chatgw.json.null end,
        ["misuse"] = function(conn, p)
          local ok, err = pcall(chatgw.ws.broadcast, "bad event!", {})
          return { ok = ok, err = tostring(err) }
        end,
        ["flood"] = function(conn, p)
          local n = 0
          for i = 1, p.count do
            n = n + chatgw.ws.broadcast("flood", { i = i, pad = string.rep("x", p.size) }, { role = "node" })
            if i % 5 == 0 then chatgw.sleep(1) end
          end
          return { sent = n }
        end,
        ["fan.broadcast"] = function(conn, p)
          return chatgw.ws.broadcast("fan", { i = p.i }, { role = "node" })
        end,
        ["hooks"] = function() return { connects = hooks:get("c") or 0, disconnects = hooks:get("d") or 0,
                                         last = hooks:get("last") } end,
        ["version"] = function() return "v1" end,
      },
      on_connect = function(conn)
        hooks:incr("c", 1, 0)
        conn.data.hello = "from on_connect"
      end,
      on_disconnect = function(conn, code, reason)
        hooks:incr("d", 1, 0)
        hooks:set("last", chatgw.json.encode({ id = conn.id, code = code, reason = reason, data = conn.data }))
      end,
    }
    """}

BASE_WS = """\
    origins: ["https://ok.example"]
    rate_limit:
      messages_per_second: 100000
      burst: 100000
    """


def conf(extra=""):
    """A config with a ws: section: the test defaults plus `extra` (keys under ws:)."""
    return "ws:\n" + textwrap.indent(textwrap.dedent(BASE_WS) + textwrap.dedent(extra), "  ")


BASE_CONFIG = conf()


@unittest.skipUnless(HAVE_NODE_WS, "node + node-ws (Debian packages nodejs, node-ws) are needed")
class WsTestBase(GatewayTest):
    def setUp(self):
        super().setUp()
        self._drivers = []

    def tearDown(self):
        for d in self._drivers:
            d.stop()
        super().tearDown()

    def driver(self, gw):
        d = WsDriver(gw)
        self._drivers.append(d)
        return d

    def metric(self, g, name):
        total = 0.0
        found = False
        for line in g.get("/metrics").text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None


class TestHandshake(WsTestBase):
    def test_connect_challenge_and_hello_ok(self):
        g = self.gw(HANDLERS, conf("ping_interval_ms: 25000\n"))
        d = self.driver(g)
        ev = d.open("a")
        ch = ev["challenge"]
        self.assertEqual(set(ch["payload"]), {"nonce", "ts"})
        self.assertRegex(ch["payload"]["nonce"], r"^[0-9a-f]{32}$")
        self.assertAlmostEqual(ch["payload"]["ts"] / 1000.0, time.time(), delta=60)
        d.send("a", {"type": "req", "id": 7, "method": "connect", "params": {
            "role": "operator", "scopes": ["operator.read", "operator.write"],
            "auth": {"token": TOKEN}, "device": {"id": "dev-a"},
            "client": {"id": "test", "version": "1.2"}}})
        res = d.msg("a", lambda m: m.get("type") == "res")
        self.assertEqual(res["id"], 7)
        self.assertTrue(res["ok"])
        p = res["payload"]
        self.assertEqual(p["type"], "hello-ok")
        self.assertTrue(p["server"]["version"])
        self.assertTrue(p["server"]["connId"])
        self.assertEqual(p["auth"], {"role": "operator", "scopes": ["operator.read", "operator.write"]})
        self.assertEqual(p["policy"], {"maxPayload": 1048576, "maxBufferedBytes": 1048576,
                                       "tickIntervalMs": 25000})
        r = d.req("a", "echo", {"x": 1})
        self.assertEqual(r["payload"], {"params": {"x": 1}, "id": p["server"]["connId"], "role": "operator"})
        self.assertIn("GET /ws", g.get("/metrics").text)

    def test_config_token_grants_the_intersection(self):
        g = self.gw(HANDLERS, conf("""\
              tokens:
                - token_env: NODE_TOKEN
                  roles: [node]
                  scopes: [alpha, beta]
                - token_env: ANY_SCOPE_TOKEN
                  scopes: ["*"]
            """), env={"NODE_TOKEN": "node-secret-1", "ANY_SCOPE_TOKEN": "any-secret-2"})
        d = self.driver(g)
        r = d.connect("a", role="node", scopes=["alpha", "gamma"], token="node-secret-1")
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["payload"]["auth"], {"role": "node", "scopes": ["alpha"]})
        r = d.connect("b", role="operator", scopes=["alpha"], token="node-secret-1")
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["code"], "forbidden")
        self.assertEqual(d.closed("b")["code"], 1008)
        r = d.connect("c", role="operator", scopes=["x", "y"], token="any-secret-2")
        self.assertEqual(r["payload"]["auth"], {"role": "operator", "scopes": ["x", "y"]})
        r = d.connect("e", role="node", scopes=["anything"], token=TOKEN)
        self.assertEqual(r["payload"]["auth"]["scopes"], ["anything"])

    def test_bad_token_is_refused_and_closed(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        r = d.connect("a", token="wrong")
        self.assertEqual(r["id"], "c-a")
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["code"], "unauthorized")
        c = d.closed("a")
        self.assertEqual(c["code"], 1008)
        r = d.connect("b", token=None)
        self.assertEqual(r["error"]["code"], "unauthorized")
        self.assertEqual(d.closed("b")["code"], 1008)

    def test_bad_first_frames(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        # not JSON
        d.open("a")
        d.cmd(op="send", name="a", text="hello there")
        r = d.msg("a")
        self.assertEqual((r["type"], r["id"], r["ok"], r["error"]["code"]), ("res", None, False, "invalid_request"))
        self.assertEqual(d.closed("a")["code"], 1008)
        # another method first
        d.open("b")
        r = d.req("b", "echo", {"x": 1}, rid=5)
        self.assertEqual((r["id"], r["error"]["code"]), (5, "handshake_required"))
        self.assertEqual(d.closed("b")["code"], 1008)
        # bad role
        d.open("c")
        r = d.req("c", "connect", {"role": "admin", "auth": {"token": TOKEN}})
        self.assertEqual(r["error"]["code"], "invalid_request")
        self.assertEqual(d.closed("c")["code"], 1008)
        # a first frame over 64 KiB
        d.open("e")
        d.send("e", {"type": "req", "id": 1, "method": "connect", "pad": "x" * 70000})
        r = d.msg("e")
        self.assertEqual(r["error"]["code"], "too_large")
        self.assertEqual(d.closed("e")["code"], 1009)
        # binary first frame
        d.open("f")
        d.cmd(op="send", name="f", hex="00010203", binary=True)
        self.assertEqual(d.msg("f")["error"]["code"], "invalid_request")
        self.assertEqual(d.closed("f")["code"], 1003)
        # the server keeps serving
        self.assertTrue(d.connect("g")["ok"])

    def test_handshake_timeout(self):
        g = self.gw(HANDLERS, conf("handshake_timeout_ms: 300\n"))
        d = self.driver(g)
        t0 = time.time()
        d.open("a")
        r = d.msg("a")
        self.assertEqual(r["error"]["code"], "handshake_timeout")
        c = d.closed("a")
        self.assertEqual((c["code"], c["reason"]), (1008, "handshake timeout"))
        self.assertGreaterEqual(time.time() - t0, 0.25)

    def test_token_in_query_or_header_and_redacted(self):
        secret = "query-token-secret-xyz"
        g = self.gw(HANDLERS, BASE_CONFIG, token=secret)
        d = self.driver(g)
        ev = d.open("a", path="/ws?token=" + secret)
        self.assertEqual(ev["ev"], "open")
        r = d.req("a", "connect", {"role": "node"})
        self.assertTrue(r["ok"], r)
        ev = d.open("b", headers={"Authorization": "Bearer " + secret})
        r = d.req("b", "connect", {"role": "operator", "scopes": ["s"]})
        self.assertEqual(r["payload"]["auth"], {"role": "operator", "scopes": ["s"]})
        d.open("c", path="/ws?token=wrong")
        self.assertEqual(d.req("c", "connect", {"role": "node"})["error"]["code"], "unauthorized")
        time.sleep(0.2)
        self.assertNotIn(secret, g.stderr_text())
        self.assertNotIn("wrong", g.stderr_text())

    def test_origin_allowlist(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        self.assertEqual(d.open("a", origin="https://ok.example")["ev"], "open")
        ev = d.open("b", origin="https://evil.example")
        self.assertEqual((ev["ev"], ev["status"]), ("unexpected", 403))
        self.assertEqual(json.loads(ev["body"])["error"], "origin_not_allowed")
        self.assertEqual(d.open("c")["ev"], "open")  # no Origin: a non-browser client

    def test_upgrade_request_errors(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        r = g.get("/ws", auth=False)
        self.assertEqual(r.status, 426)
        self.assertEqual(r.headers.get("upgrade"), "websocket")
        self.assertEqual(g.request("POST", "/ws", body="x").status, 405)
        base = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
        out = g.raw((base + "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 426 "), out[:100])
        out = g.raw((base + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n").encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])
        # RFC 6455's sample key gives the RFC's sample accept value
        s = socket.create_connection(("127.0.0.1", g.port()))
        s.settimeout(5 * SLOW)
        s.sendall((base + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        s.close()
        self.assertTrue(buf.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), buf[:100])
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", buf)
        self.assertNotIn(b"Sec-WebSocket-Extensions", buf)
        # another path with upgrade headers is an ordinary (here: unknown) route
        out = g.raw(("GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 404 "), out[:100])

    def test_permessage_deflate_is_declined(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        ev = d.open("a", deflate=True)
        self.assertEqual(ev["ev"], "open")
        self.assertEqual(ev["extensions"], "")
        self.assertTrue(d.req("a", "connect", {"role": "node", "auth": {"token": TOKEN}})["ok"])

    def test_connection_limits_answer_503(self):
        g = self.gw(HANDLERS, conf("max_connections: 3\nmax_per_ip: 2\n"))
        d = self.driver(g)
        self.assertTrue(d.connect("a")["ok"])
        self.assertTrue(d.connect("b")["ok"])
        ev = d.open("c")
        self.assertEqual((ev["ev"], ev["status"]), ("unexpected", 503))
        self.assertEqual(json.loads(ev["body"])["error"], "too_many_connections")
        d.cmd(op="close", name="a", code=1000)
        d.closed("a")
        time.sleep(0.1)
        self.assertTrue(d.connect("e")["ok"])
        self.assertGreaterEqual(self.metric(g, "chatgw_websocket_upgrades_rejected_total"), 1)


class TestMessages(WsTestBase):
    def test_methods_results_and_errors(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        self.assertTrue(d.connect("a")["ok"])
        r = d.req("a", "echo", {"a": [1, 2]})
        self.assertEqual(r["payload"]["params"], {"a": [1, 2]})
        r = d.req("a", "nope")
        self.assertEqual((r["ok"], r["error"]["code"]), (False, "unknown_method"))
        r = d.req("a", "boom")
        self.assertEqual((r["ok"], r["error"]["code"]), (False, "internal_error"))
        g.wait_log(lambda rec: rec.get("msg") == "ws method failed" and "kaboom" in rec.get("error", ""))
        r = d.req("a", "refuse")
        self.assertEqual(r["error"], {"code": "not_allowed", "message": "you may not"})
        r = d.req("a", "refuse.table")
        self.assertEqual(r["error"], {"code": "busy", "message": "later", "retryable": True, "retryAfterMs": 50})
        r = d.req("a", "nothing")
        self.assertEqual(r, {"type": "res", "id": r["id"], "ok": True})
        r = d.req("a", "connect", {"role": "node"})
        self.assertEqual(r["error"]["code"], "already_connected")
        # bad requests
        d.send("a", {"type": "req", "method": "echo"})
        r = d.msg("a", lambda m: m.get("type") == "res")
        self.assertEqual((r["id"], r["error"]["code"]), (None, "invalid_request"))
        d.cmd(op="send", name="a", text="[1,2,3]")
        self.assertEqual(d.msg("a", lambda m: m.get("type") == "res")["error"]["code"], "invalid_request")
        d.send("a", {"type": "nope", "id": 9})
        self.assertEqual(d.msg("a", lambda m: m.get("id") == 9)["error"]["code"], "invalid_request")
        d.cmd(op="send", name="a", hex="0102", binary=True)
        self.assertEqual(d.msg("a", lambda m: m.get("type") == "res")["error"]["code"], "unsupported_data")
        # each call runs in its own coroutine: a slow call does not hold up a fast one
        slow = d.req("a", "sleepy", {"ms": 300}, wait=False)
        fast = d.req("a", "echo", {"f": 1}, wait=False)
        first = d.msg("a", lambda m: m.get("id") in (slow, fast))
        self.assertEqual(first["id"], fast)
        self.assertEqual(d.msg("a", lambda m: m.get("id") == slow)["payload"], {"slept": 300})
        # still connected
        self.assertTrue(d.req("a", "echo")["ok"])

    def test_rate_limit(self):
        g = self.gw(HANDLERS, """\
            ws:
              rate_limit:
                messages_per_second: 5
                burst: 5
                close_after: 20
            """)
        d = self.driver(g)
        self.assertTrue(d.connect("a")["ok"])
        ids = [d.req("a", "echo", {"i": i}, wait=False) for i in range(10)]
        res = [d.msg("a", lambda m, i=i: m.get("id") == i) for i in ids]
        limited = [r for r in res if not r["ok"]]
        self.assertGreaterEqual(len(limited), 4)
        self.assertLessEqual(len(limited), 6)
        e = limited[0]["error"]
        self.assertEqual(e["code"], "rate_limited")
        self.assertTrue(e["retryable"])
        self.assertGreater(e["retryAfterMs"], 0)
        self.assertLessEqual(e["retryAfterMs"], 200)
        time.sleep(1.2)
        self.assertTrue(d.req("a", "echo")["ok"])  # the bucket refilled
        for i in range(40):  # persistent abuse
            d.req("a", "echo", {"i": i}, wait=False)
        c = d.closed("a")
        self.assertEqual((c["code"], c["reason"]), (1008, "rate limit exceeded"))
        self.assertGreater(self.metric(g, "chatgw_websocket_rate_limited_total"), 0)

    def test_frames(self):
        g = self.gw(HANDLERS, conf("max_payload: 4096\n"))
        d = self.driver(g)
        self.assertTrue(d.connect("a")["ok"])
        # a fragmented text message is reassembled
        msg = json.dumps({"type": "req", "id": "frag", "method": "echo", "params": {"s": "é" * 50}})
        parts = [msg[:10], msg[10:30], msg[30:]]
        for i, p in enumerate(parts):
            d.cmd(op="send", name="a", text=p, fin=i == len(parts) - 1)
        self.assertEqual(d.msg("a", lambda m: m.get("id") == "frag")["payload"]["params"]["s"], "é" * 50)
        # a UTF-8 character split across fragments
        raw = json.dumps({"type": "req", "id": "u8", "method": "echo", "params": {"s": "€"}}, ensure_ascii=False).encode()
        cut = raw.index("€".encode()) + 1
        d.cmd(op="send", name="a", hex=raw[:cut].hex(), fin=False)
        d.cmd(op="send", name="a", hex=raw[cut:].hex())
        self.assertEqual(d.msg("a", lambda m: m.get("id") == "u8")["payload"]["params"]["s"], "€")
        # ping -> pong
        d.cmd(op="ping", name="a")
        d.expect(lambda e: e.get("name") == "a" and e["ev"] == "pong")
        # client close: the server answers with the same code
        d.cmd(op="close", name="a", code=4001, reason="bye")
        c = d.closed("a")
        self.assertEqual(c["code"], 4001)

        def fails(name, code, **send):
            self.assertTrue(d.connect(name)["ok"])
            d.cmd(name=name, **send)
            c = d.closed(name)
            self.assertEqual(c["code"], code, (send, c))

        fails("b", 1007, op="send", hex="7b22c328", binary=False)  # invalid UTF-8 text
        fails("c", 1009, op="send", text="x" * 5000)  # over max_payload
        fails("e", 1002, op="send", text='{"type":"req"}', mask=False)  # unmasked
        # RSV1 set on a masked text frame, mask key 0
        fails("f", 1002, op="raw", hex="c18000000000")
        # reserved opcode 3
        fails("h", 1002, op="raw", hex="838000000000")
        # close with the reserved code 1005
        fails("i", 1002, op="raw", hex="888200000000" + "03ed")
        # continuation frame with no message
        fails("j", 1002, op="raw", hex="808000000000")
        # fragmented message over max_payload
        self.assertTrue(d.connect("k")["ok"])
        d.cmd(op="send", name="k", text="x" * 3000, fin=False)
        d.cmd(op="send", name="k", text="x" * 3000)
        self.assertEqual(d.closed("k")["code"], 1009)
        time.sleep(0.2)
        self.assertTrue(d.connect("z")["ok"])

    def test_broadcast_send_close_list_get(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        op = d.connect("op", role="operator", scopes=["operator.read"], device="console")["payload"]["server"]["connId"]
        n1 = d.connect("n1", role="node", scopes=["jobs"], device="dev1")["payload"]["server"]["connId"]
        n2 = d.connect("n2", role="node", device="dev2")["payload"]["server"]["connId"]

        def events(name, event):
            return d.msg(name, lambda m: m.get("type") == "event" and m.get("event") == event)

        r = d.req("op", "bc", {"event": "all", "payload": {"x": 1}})
        self.assertEqual(r["payload"]["sent"], 3)
        for name in ("op", "n1", "n2"):
            ev = events(name, "all")
            self.assertEqual(ev["payload"], {"x": 1})
            self.assertIsInstance(ev["seq"], int)
            self.assertIsInstance(ev["stateVersion"], int)
        self.assertEqual(d.req("op", "bc", {"event": "nodes", "payload": 1, "opts": {"role": "node"}})["payload"]["sent"], 2)
        self.assertEqual(d.req("op", "bc", {"event": "jobs", "payload": [], "opts": {"scope": "jobs"}})["payload"]["sent"], 1)
        self.assertEqual(d.req("op", "bc", {"event": "some", "opts": {"include": [n2, op, n2, "nope-1"]}})["payload"]["sent"], 2)
        self.assertEqual(d.req("op", "bc", {"event": "most", "opts": {"exclude": [op]}})["payload"]["sent"], 2)
        self.assertEqual(events("n1", "nodes")["payload"], 1)
        self.assertEqual(events("n1", "jobs")["payload"], {})
        self.assertIsNone(events("n2", "some")["payload"])
        events("op", "some")
        events("n1", "most")
        events("n2", "most")
        d.none(lambda e: e.get("name") == "op" and '"event":"most"' in e.get("data", ""))
        # seq counts per connection: n2 has had all, nodes, some, most
        # send to one
        r = d.req("op", "send", {"to": n1, "event": "direct", "payload": {"hi": True}})
        self.assertEqual(r["payload"], {"ok": True})
        ev = events("n1", "direct")
        self.assertEqual(ev["payload"], {"hi": True})
        self.assertNotIn("stateVersion", ev)
        r = d.req("op", "send", {"to": "nope-9", "event": "direct"})
        self.assertTrue(r["payload"]["err"].startswith("not_found:"))
        # list and get
        lst = d.req("op", "list", {"role": "node"})["payload"]
        self.assertEqual(sorted(c["id"] for c in lst), sorted([n1, n2]))
        self.assertEqual(d.req("op", "list", {"device": "dev2"})["payload"][0]["id"], n2)
        info = d.req("op", "get", {"id": n1})["payload"]
        for k in ("id", "role", "scopes", "device", "remote_addr", "remote_port", "connected_at",
                  "last_seen", "buffered", "data", "client"):
            self.assertIn(k, info)
        self.assertEqual((info["role"], info["scopes"], info["device"], info["remote_addr"]),
                         ("node", ["jobs"], "dev1", "127.0.0.1"))
        self.assertEqual(info["data"], {"hello": "from on_connect"})
        self.assertIsNone(d.req("op", "get", {"id": "nope-1"})["payload"])
        # misuse raises with the function's name
        r = d.req("op", "misuse")
        self.assertIn("chatgw.ws.broadcast: event must be", r["payload"]["err"])
        # close from Lua
        r = d.req("op", "close", {"id": n2, "code": 4000, "reason": "kicked"})
        self.assertEqual(r["payload"], {"ok": True})
        c = d.closed("n2")
        self.assertEqual((c["code"], c["reason"]), (4000, "kicked"))
        self.assertTrue(d.req("op", "close", {"id": n2})["payload"]["err"].startswith("not_found:"))

    def test_http_broadcast_endpoint(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        d.connect("a", role="node")
        d.connect("b", role="operator")
        r = g.request("POST", "/v1/ws/broadcast", json_body={"event": "x", "payload": {"v": 1}}, auth=False)
        self.assertEqual(r.status, 401)
        r = g.request("POST", "/v1/ws/broadcast", json_body={"event": "news", "payload": {"v": 1}, "role": "node"})
        self.assertEqual((r.status, r.json()), (200, {"ok": True, "sent": 1}))
        ev = d.msg("a", lambda m: m.get("event") == "news")
        self.assertEqual(ev["payload"], {"v": 1})
        d.none(lambda e: e.get("name") == "b" and "news" in e.get("data", ""))
        r = g.request("POST", "/v1/ws/broadcast", json_body={"event": "bad event"})
        self.assertEqual(r.status, 400)
        r = g.request("POST", "/v1/ws/broadcast", json_body={"event": "x", "include": "notalist"})
        self.assertEqual(r.status, 400)
        r = g.request("POST", "/v1/ws/broadcast", body="[1]", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)


class TestLifecycle(WsTestBase):
    def test_hooks_data_and_reload(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        cid = d.connect("a", device="dev-a")["payload"]["server"]["connId"]
        self.assertTrue(d.req("a", "data.set", {"k": "n", "v": {"deep": [1, 2]}})["ok"])
        self.assertEqual(d.req("a", "data.get", {"k": "n"})["payload"], {"v": {"deep": [1, 2]}})
        big = d.req("a", "data.big", {"n": 10000})["payload"]
        self.assertFalse(big["ok"])
        self.assertIn("too_large", big["err"])
        self.assertEqual(d.req("a", "hooks")["payload"]["connects"], 1)
        self.assertEqual(d.req("a", "version")["payload"], "v1")
        g.write_handler("chat.lua", HANDLERS["chat.lua"].replace('return "v1"', 'return "v2"'))
        g.reload()
        # the new state sees the open connection: same id, data kept, new code answers
        self.assertEqual(d.req("a", "version")["payload"], "v2")
        self.assertEqual(d.req("a", "data.get", {"k": "n"})["payload"], {"v": {"deep": [1, 2]}})
        self.assertEqual(d.req("a", "echo")["payload"]["id"], cid)
        d.none(lambda e: e.get("name") == "a" and e["ev"] == "close", wait=0.2)
        # a second client connects on the new state; on_disconnect runs there with the data
        d.connect("b")
        d.cmd(op="close", name="a", code=1000, reason="done")
        d.closed("a")
        deadline = time.time() + 5 * SLOW
        while True:
            h = d.req("b", "hooks")["payload"]
            if h["disconnects"] >= 1 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(h["connects"], 2)
        last = json.loads(h["last"])
        self.assertEqual((last["id"], last["code"], last["reason"]), (cid, 1000, "done"))
        self.assertEqual(last["data"], {"hello": "from on_connect", "n": {"deep": [1, 2]}})

    def test_duplicate_methods_are_a_load_error(self):
        g = self.gw({"a.lua": """\
            return {
              methods = {
                ["room.send"] = function() end,
              },
            }
            """, "b.lua": """\
            return {
              name = "b",
              methods = {
                ["x"] = function() end,
                ["room.send"] = function() end,
              },
            }
            """, "c.lua": """\
            return { methods = { ["presence.list"] = function() end, [3] = function() end } }
            """}, BASE_CONFIG, start=False)
        code, _, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, r"b\.lua:5: method 'room\.send' is already declared by .*a\.lua:3")
        self.assertRegex(err, r"c\.lua:1: method 'presence\.list' is already declared by the runtime")
        self.assertRegex(err, r"c\.lua:1: method names must be strings")

    def test_heartbeat(self):
        g = self.gw(HANDLERS, conf("ping_interval_ms: 100\npong_timeout_ms: 600\n"))
        d = self.driver(g)
        d.connect("live")
        d.connect("dead")
        d.cmd(op="pause", name="dead")  # stops reading: no pongs
        for _ in range(3):
            d.expect(lambda e: e.get("name") == "live" and e["ev"] == "ping", timeout=2)
        g.wait_log(lambda r: r.get("msg") == "ws closed" and r.get("reason") == "heartbeat timeout", timeout=5)
        self.assertTrue(d.req("live", "echo")["ok"])
        self.assertGreater(self.metric(g, "chatgw_websocket_messages_pulse_total"), 0)
        d.cmd(op="resume", name="dead")
        c = d.closed("dead")
        self.assertIn(c["code"], (1001, 1006))

    def test_slow_consumer_is_dropped(self):
        g = self.gw(HANDLERS, conf("max_buffered_bytes: 65536\n"))
        d = self.driver(g)
        d.connect("op")
        d.connect("fast", role="node")
        slow = RawWs(g.port(), rcvbuf=4096)  # connects, then never reads again
        self.assertTrue(slow.connect()["ok"])
        t0 = time.time()
        d.req("op", "flood", {"count": 1000, "size": 20000}, rid="flood", wait=False)
        got = 0
        while got < 1000:
            m = d.msg("fast", lambda m: m.get("event") == "flood", timeout=20)
            got += 1
            self.assertEqual(m["payload"]["i"], got)
        self.assertLess(time.time() - t0, 20 * SLOW)
        res = d.msg("op", lambda m: m.get("id") == "flood", timeout=10)
        self.assertGreaterEqual(res["payload"]["sent"], 1000)
        rec = g.wait_log(lambda r: r.get("msg") == "ws slow consumer dropped")
        self.assertLessEqual(rec["unsent_bytes"], 65536 + 2 * 20100)
        g.wait_log(lambda r: r.get("msg") == "ws closed" and r.get("reason") == "slow consumer", timeout=5)
        self.assertEqual(self.metric(g, "chatgw_websocket_slow_consumer_closes_total"), 1)
        # the stalled client finds its stream cut: whatever arrived, then EOF or a reset
        with self.assertRaises((EOFError, ConnectionResetError, socket.timeout)):
            while True:
                slow.recv()
        slow.close()
        self.assertTrue(d.req("fast", "echo")["ok"])

    def test_presence_batches_and_list(self):
        g = self.gw(HANDLERS, conf("""\
              presence:
                batch_size: 3
                flush_interval_ms: 150
            """))
        d = self.driver(g)
        d.connect("op", scopes=["operator.read"], device="console")
        d.connect("blind", role="node")
        for i in range(4):
            d.connect("n%d" % i, role="node", device="dev%d" % i)
        changes = []
        while len(changes) < 6:  # console, blind, dev0..dev3 online
            ev = d.msg("op", lambda m: m.get("event") == "presence", timeout=3)
            self.assertLessEqual(len(ev["payload"]["changes"]), 3)
            changes += ev["payload"]["changes"]
        self.assertEqual([c["status"] for c in changes], ["online"] * 6)
        self.assertEqual([c["deviceId"] for c in changes[-4:]], ["dev0", "dev1", "dev2", "dev3"])
        d.none(lambda e: e.get("name") == "blind" and "presence" in e.get("data", ""))
        snap = d.req("op", "presence.list")["payload"]
        self.assertEqual(set(snap) - {k for k in snap if not k.startswith("dev") and k != "console"},
                         {"console", "dev0", "dev1", "dev2", "dev3"})
        self.assertEqual(snap["dev1"]["role"], "node")
        self.assertEqual(len(snap["dev1"]["connections"]), 1)
        self.assertEqual(d.req("blind", "presence.list")["error"]["code"], "forbidden")
        d.cmd(op="close", name="n2", code=1000)
        ev = d.msg("op", lambda m: m.get("event") == "presence", timeout=3)
        self.assertEqual([(c["deviceId"], c["status"]) for c in ev["payload"]["changes"]], [("dev2", "offline")])
        self.assertNotIn("dev2", d.req("op", "presence.list")["payload"])

    def test_graceful_shutdown(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        d.connect("a")
        d.connect("b", role="node")
        d.open("c")  # not connected yet
        g.signal(signal.SIGTERM)
        for name in ("a", "b"):
            ev = d.msg(name, lambda m: m.get("event") == "shutdown")
            self.assertEqual(ev["payload"], {"reason": "server_stopping"})
            c = d.closed(name)
            self.assertEqual(c["code"], 1001)
        self.assertEqual(d.closed("c")["code"], 1001)
        self.assertEqual(g.proc.wait(10 * SLOW), 0)
        g.check_sanitizers()

    def test_metrics(self):
        g = self.gw(HANDLERS, BASE_CONFIG)
        d = self.driver(g)
        d.connect("a")
        d.req("a", "echo")
        d.req("a", "bc", {"event": "m"})
        text = g.get("/metrics").text
        for name in ("chatgw_websocket_connections_active", "chatgw_websocket_connections_total",
                     "chatgw_websocket_messages_received_total", "chatgw_websocket_messages_sent_total",
                     "chatgw_websocket_slow_consumer_closes_total",
                     "chatgw_websocket_broadcast_duration_seconds_bucket"):
            self.assertIn(name, text)
        self.assertEqual(self.metric(g, "chatgw_websocket_connections_active"), 1)
        self.assertGreaterEqual(self.metric(g, "chatgw_websocket_messages_received_total"), 3)
        self.assertGreaterEqual(self.metric(g, "chatgw_websocket_messages_sent_total"), 4)
        h = g.health()
        self.assertEqual(h["checks"]["websocket"]["connections"], 1)


@unittest.skipUnless(HAVE_NODE_WS, "node + node-ws (Debian packages nodejs, node-ws) are needed")
class TestFanout(GatewayTest):
    # The same counts in the ASan/UBSan build (it takes about 2 s there too).
    CLIENTS = 200
    MESSAGES = 500

    def run_fanout(self, via):
        g = self.gw(HANDLERS, conf("max_per_ip: 1000\n"))
        cfg = {"url": "ws://127.0.0.1:%d/ws" % g.port(), "token": TOKEN, "clients": self.CLIENTS,
               # HTTP requests in flight together may be served in any order: one at a time
               "messages": self.MESSAGES, "inflight": 20 if via == "ws" else 1, "via": via,
               "httpPort": g.port(),
               "timeoutMs": int(50000 * SLOW)}
        t0 = time.time()
        p = subprocess.run([NODE, CLIENT_JS, "fanout", json.dumps(cfg)], capture_output=True,
                           env=dict(os.environ, NODE_PATH=NODE_PATH), timeout=120 * SLOW)
        took = time.time() - t0
        lines = [l for l in p.stdout.decode().splitlines() if l.startswith("{")]
        self.assertTrue(lines, p.stderr.decode()[-2000:])
        r = json.loads(lines[-1])
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["delivered"], self.CLIENTS * self.MESSAGES)
        if not SANITIZE:
            self.assertLess(took, 60)
        return r

    def test_fanout_200_clients_every_broadcast_once_in_order(self):
        self.run_fanout("ws")

    def test_fanout_through_http_endpoint(self):
        self.MESSAGES = 200
        self.run_fanout("http")


if __name__ == "__main__":
    unittest.main()
