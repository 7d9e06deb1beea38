"""Hostile clients (issue 18): each repro bounded in time and bytes, asserting that the server's
RSS grows by less than RSS_BOUND while the attack runs and that another client is served
meanwhile. Numbers seen are printed (RSS before/after) so a run shows them."""
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

from harness import SLOW, TOKEN, GatewayTest
from test_ws import HAVE_NODE_WS, NODE, NODE_PATH, RawWs

RSS_BOUND = 64 * 1024 * 1024

HANDLERS = {"h.lua": """\
    return {
      routes = {
        ["POST /hook"] = { function(req) chatgw.sleep(3000) return { n = #req.body } end, public = true },
        ["POST /echo"] = { function(req) return { n = #req.body } end, public = true },
        ["POST /private"] = function(req) return { n = #req.body } end,
        ["GET /big"] = { function() return string.rep("x", 65536) end, public = true },
      },
    }
"""}


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def report(name, before, after):
    sys.stderr.write("\n[rss] %s: %.1f MB -> %.1f MB (+%.1f MB)\n"
                     % (name, before / 1e6, after / 1e6, (after - before) / 1e6))


def read_head(s, timeout=5):
    """Reads one response head (and what follows in the same reads); returns the bytes."""
    s.settimeout(timeout * SLOW)
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        if not c:
            break
        buf += c
    return buf


class HostileTest(GatewayTest):
    def start(self, config=""):
        self.g = self.gw(HANDLERS, config)
        self.pid = self.g.proc.pid
        return self.g

    def served(self, src="127.0.0.1"):
        """Another client (from src) gets /healthz now."""
        s = socket.create_connection(("127.0.0.1", self.g.port()), timeout=5 * SLOW,
                                     source_address=(src, 0))
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = read_head(s)
        finally:
            s.close()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head[:200])

    def assert_bounded(self, name, before):
        after = rss(self.pid)
        report(name, before, after)
        self.assertLess(after - before, RSS_BOUND, "%s: RSS grew by %d bytes" % (name, after - before))

    # ---- 1. pipelining non-reader: back-pressure ----

    def pipeline_flood(self, connect, seconds=3.0):
        s = connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(0.2)
        one = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
        chunk = one * 256
        sent = 0
        end = time.time() + seconds
        try:
            while time.time() < end:
                try:
                    sent += s.send(chunk)
                except (socket.timeout, ssl.SSLWantWriteError):
                    pass  # the server stopped reading: back-pressure
        finally:
            pass
        return s, sent

    def test_pipelining_non_reader_is_paused(self):
        self.start()
        before = rss(self.pid)
        s, sent = self.pipeline_flood(lambda: socket.create_connection(("127.0.0.1", self.g.port())))
        try:
            self.served()
            self.assert_bounded("pipelining non-reader (%d bytes of requests sent)" % sent, before)
            # Every 64 KiB answer was not sent at once: the server stopped reading the requests.
            self.assertLess(sent, 64 * 1024 * 1024)
        finally:
            s.close()
        self.served()

    def test_pipelining_non_reader_drains_then_resumes(self):
        self.start()
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        n = 100  # 100 x 64 KiB answers: far over max_unsent_bytes
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        time.sleep(0.5 * SLOW)  # not read meanwhile
        s.settimeout(10 * SLOW)
        got, buf = 0, b""
        while got < n:
            c = s.recv(1 << 20)
            self.assertTrue(c, "closed after %d responses" % got)
            buf += c
            while True:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    break
                head = buf[:i]
                self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head[:100])
                if len(buf) < i + 4 + 65536:
                    break
                buf = buf[i + 4 + 65536:]
                got += 1
        s.close()

    # ---- 2. bodies before auth; growth as data arrives; a global budget ----

    def test_unauthenticated_bodies_are_refused_at_headers(self):
        self.start()
        before = rss(self.pid)
        socks = []
        head = (b"POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n"
                b"Content-Type: application/json\r\n\r\n")
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", self.g.port()))
            s.sendall(head + b"x" * 1000)
            socks.append(s)
        try:
            for s in socks[:20]:
                h = read_head(s)
                self.assertTrue(h.startswith(b"HTTP/1.1 401 "), h[:200])
            self.served()
            self.assert_bounded("200 x 1 MiB bodies without a token", before)
        finally:
            for s in socks:
                s.close()

    def test_100_continue_only_after_auth(self):
        self.start()
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.sendall(b"POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        h = read_head(s)
        self.assertTrue(h.startswith(b"HTTP/1.1 401 "), h[:200])
        self.assertIn(b"connection: close", h.lower())
        s.close()
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        self.assertTrue(read_head(s).startswith(b"HTTP/1.1 404 "))
        s.close()
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.sendall(b"POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\nExpect: 100-continue\r\n\r\n")
        h = read_head(s)
        self.assertTrue(h.startswith(b"HTTP/1.1 100 Continue"), h[:200])
        s.sendall(b"hello")
        h = h[h.index(b"\r\n\r\n") + 4:] or read_head(s)
        if not h:
            h = read_head(s)
        self.assertTrue(h.startswith(b"HTTP/1.1 200 "), h[:200])
        s.close()
        # Without Expect the body is read and dropped: the connection serves the next request.
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.sendall(b"POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        h = read_head(s)
        self.assertTrue(h.startswith(b"HTTP/1.1 401 "), h[:200])
        rest = h[h.index(b"\r\n\r\n") + 4:]
        while b"HTTP/1.1 200 " not in rest:
            c = s.recv(65536)
            self.assertTrue(c, rest)
            rest += c
        s.close()

    def test_body_budget_503(self):
        self.start("http:\n  max_buffered_body_bytes: 4194304\n")
        before = rss(self.pid)
        socks, statuses = [], []
        head = b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
        for _ in range(12):
            s = socket.create_connection(("127.0.0.1", self.g.port()))
            s.sendall(head + b"x" * 700000)  # 1 MiB of buffer each once grown
            socks.append(s)
        try:
            time.sleep(0.5 * SLOW)
            for s in socks:
                s.settimeout(0.3 * SLOW)
                try:
                    h = s.recv(65536)
                except socket.timeout:
                    h = b""
                statuses.append(h[:12])
                if h.startswith(b"HTTP/1.1 503 "):
                    self.assertIn(b"retry-after: 1", h.lower())
            self.assertIn(b"HTTP/1.1 503", statuses)
            self.assertGreaterEqual(statuses.count(b""), 3, statuses)  # those within the budget wait
            self.served()
            self.assert_bounded("12 x 1 MiB public bodies, 4 MiB budget", before)
        finally:
            for s in socks:
                s.close()

    # ---- 3. idle lockout ----

    def test_first_byte_due_within_header_timeout(self):
        self.start("http:\n  header_timeout_ms: 300\n  idle_timeout_ms: 60000\n")
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.settimeout(5 * SLOW)
        t0 = time.time()
        self.assertEqual(s.recv(100), b"")  # closed, with nothing sent
        self.assertLess(time.time() - t0, 3 * SLOW)
        s.close()

    def test_silent_connections_from_one_address(self):
        self.start()
        before = rss(self.pid)
        socks = [socket.create_connection(("127.0.0.1", self.g.port())) for _ in range(300)]
        try:
            over = socks[-1]
            h = read_head(over)
            self.assertTrue(h.startswith(b"HTTP/1.1 503 "), h[:200])
            self.assertIn(b"retry-after: 1", h.lower())
            self.served("127.0.0.2")  # another address is not locked out
            self.assert_bounded("300 silent connections from one address", before)
        finally:
            for s in socks:
                s.close()
        time.sleep(0.3 * SLOW)
        self.served()  # the closed ones no longer count

    def test_fd_limit_warning(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
        try:
            g = self.gw(HANDLERS, "http:\n  max_connections: 1000000\nws:\n  max_connections: 1000000\n")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        g.wait_log(lambda r: "open file limit" in r.get("msg", "") and r.get("level") == "warn")
        if hard > 512:
            g.wait_log(lambda r: r.get("msg", "").startswith("raised the open file limit"))

    # ---- 6. no token in the access log ----

    def test_unparseable_target_400_and_no_token_logged(self):
        self.start()
        for target in (b"http:///ws?token=SECRET1", b"http://[::1/x?token=SECRET1"):
            s = socket.create_connection(("127.0.0.1", self.g.port()))
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            h = read_head(s)
            self.assertTrue(h.startswith(b"HTTP/1.1 400 "), (target, h[:200]))
            s.close()
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.sendall(b"GET http://x/ws?token=SECRET2 HTTP/1.1\r\nHost: x\r\n\r\n")
        read_head(s)
        s.close()
        self.g.wait_log(lambda r: r.get("msg") == "request" and r.get("status") == 400)
        time.sleep(0.2)
        self.assertNotIn("SECRET", self.g.stderr_text())

    # ---- 7. strict framing ----

    def answer(self, data, pieces=False):
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        try:
            if pieces:  # one byte at a time: the checks hold across reads
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(len(data)):
                    s.sendall(data[i:i + 1])
                    time.sleep(0.001)
            else:
                s.sendall(data)
            return read_head(s)
        finally:
            s.close()

    def test_strict_framing(self):
        self.start()
        bad = {
            "chunk not followed by CRLF": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                          b"3\r\nabcXX0\r\n\r\n",
            "space before the colon": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
                                      b"3\r\nabc\r\n0\r\n\r\n",
            "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            "obs-fold of an empty value": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A:\r\n\tb\r\n\r\n",
            "no Host": b"GET /healthz HTTP/1.1\r\n\r\n",
            "two Hosts": b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "CR not followed by LF": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rZX-B: b\r\n\r\n",
        }
        for name, data in bad.items():
            for pieces in (False, True):
                h = self.answer(data, pieces)
                self.assertTrue(h.startswith(b"HTTP/1.1 400 "), (name, pieces, h[:200]))
        good = [b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-A: a b\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                b"GET /healthz HTTP/1.0\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-B: b\r\n\r\n"]
        for data in good:
            for pieces in (False, True):
                h = self.answer(data, pieces)
                self.assertTrue(h.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")), (data, pieces, h[:200]))
        self.assertIn(b'"n":5', self.answer(good[0]) + b"")

    # ---- 4. WebSocket ping flood ----

    def ping_flood(self, ws, seconds):
        frame = b"\x89\xfd\0\0\0\0" + b"p" * 125  # masked ping, 125 bytes
        ws.s.settimeout(0.2)
        n, end = 0, time.time() + seconds
        try:
            while time.time() < end:
                try:
                    ws.s.sendall(frame * 64)
                    n += 64
                except socket.timeout:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        return n

    def test_ping_flood_before_connect_closes(self):
        self.start()
        before = rss(self.pid)
        ws = RawWs(self.g.port(), rcvbuf=4096)
        sent = self.ping_flood(ws, 1.5)
        self.served()
        self.assert_bounded("ping flood before connect (%d pings sent)" % sent, before)
        ws.s.settimeout(5 * SLOW)
        ops = []
        try:
            while True:
                op, data = ws.recv()
                ops.append(op)
                if op == 8:
                    self.assertEqual(int.from_bytes(data[:2], "big"), 1008, data)
                    break
        except (EOFError, ConnectionResetError, socket.timeout):
            self.fail("no close frame; got opcodes %r" % ops[:20])
        self.assertLessEqual(ops.count(10), 5, "pongs before connect")
        ws.close()

    def test_ping_flood_after_connect_bounded(self):
        self.start()
        ws = RawWs(self.g.port(), rcvbuf=4096)
        hello = ws.connect()
        self.assertTrue(hello.get("ok"), hello)
        before = rss(self.pid)
        sent = self.ping_flood(ws, 1.5)
        self.served()
        self.assert_bounded("ping flood after connect (%d pings sent)" % sent, before)
        ws.close()

    # ---- 5. outgoing text frames are valid UTF-8 ----

    def test_broadcast_invalid_utf8_400(self):
        self.start()
        ws = RawWs(self.g.port())
        ws.connect(role="operator")
        body = b'{"event":"x","payload":"\xff\xfe"}'
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        s.sendall(b"POST /v1/ws/broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        h = read_head(s)
        s.close()
        self.assertTrue(h.startswith(b"HTTP/1.1 400 "), h[:300])
        self.assertIn(b"invalid_utf8", h)
        r = self.g.request("POST", "/v1/ws/broadcast", json_body={"event": "x", "payload": "ok \u00e9"})
        self.assertEqual(r.json()["sent"], 1, r)
        op, data = ws.recv()
        self.assertEqual(op, 1)
        data.decode("utf-8")  # valid
        ws.close()

    # ---- 8. lingering close ----

    @unittest.skipUnless(HAVE_NODE_WS, "node ws not installed")
    def test_1009_reaches_the_client_50_times(self):
        self.start()
        script = r"""
const WebSocket = require('ws');
const url = process.argv[1], token = process.argv[2];
const big = 'x'.repeat(2 * 1024 * 1024);
const codes = [];
function one(i) {
  if (i === 50) { console.log(JSON.stringify(codes)); return; }
  const w = new WebSocket(url);
  let n = 0;
  w.on('message', () => {
    n++;
    if (n === 1) w.send(JSON.stringify({type: 'req', id: 1, method: 'connect', params: {role: 'node', auth: {token}}}));
    else if (n === 2) w.send(big);
  });
  w.on('error', () => {});
  w.on('close', (code) => { codes.push(code); one(i + 1); });
}
one(0);
"""
        before = rss(self.pid)
        out = subprocess.run([NODE, "-e", script, "ws://127.0.0.1:%d/ws" % self.g.port(), TOKEN],
                             env=dict(os.environ, NODE_PATH=NODE_PATH), capture_output=True,
                             text=True, timeout=120 * SLOW)
        codes = __import__("json").loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(len(codes), 50, out.stderr[-2000:])
        self.assertEqual(codes, [1009] * 50)
        self.served()
        self.assert_bounded("50 x 2 MiB WebSocket messages to a 1 MiB limit", before)

    def test_413_reaches_the_client_50_times(self):
        self.start()
        body = b"x" * (2 * 1024 * 1024)
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", self.g.port()))
            s.settimeout(10 * SLOW)
            t = threading.Thread(target=lambda: self._sendall(s, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                                                              b"Content-Length: %d\r\n\r\n" % len(body) + body))
            t.start()
            h = read_head(s)
            t.join()
            s.close()
            self.assertTrue(h.startswith(b"HTTP/1.1 413 "), (i, h[:200]))

    @staticmethod
    def _sendall(s, data):
        try:
            s.sendall(data)
        except OSError:
            pass


if __name__ == "__main__":
    unittest.main()
