"""End-to-end tests of the HTTP layer over raw sockets: keep-alive, pipelining, chunked bodies,
HEAD, 100-continue, limits and timeouts, error responses, request ids and the access log."""
import json
import re
import socket
import threading
import time
import unittest

from harness import SLOW, TOKEN, GatewayTest, Response

HANDLERS = {"app.lua": """\
    return {
      routes = {
        ["GET /ping"] = { function(req) return { ok = true, pong = true } end, public = true },
        ["GET /conn"] = { function(req)
          return { port = req.remote_port, addr = req.remote_addr }
        end, public = true },
        ["GET /seq/:n"] = { function(req)
          if req.params.n == "2" then chatgw.sleep(100) end
          return { n = req.params.n }
        end, public = true },
        ["GET /sleep/:ms"] = { function(req)
          chatgw.sleep(tonumber(req.params.ms))
          return { slept = tonumber(req.params.ms) }
        end, public = true },
        ["POST /echo"] = { function(req)
          return 200, req.body, { ["Content-Type"] = "application/octet-stream",
                                  ["X-Body-Len"] = tostring(#req.body) }
        end, public = true },
        ["POST /v1/items/:id"] = function(req)
          return 201, { id = req.params.id, got = req.json }
        end,
        ["GET /rid"] = { function(req) return { id = req.id } end, public = true },
      },
    }
    """}


class RawConn:
    """A client socket with a read buffer that parses HTTP/1.1 responses one at a time."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        c = self.s.recv(65536)
        if not c:
            raise EOFError("connection closed by the server; buffered %r" % self.buf[:200])
        self.buf += c

    def read_response(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3}) ", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        hmap = {k.lower(): v for k, v in headers}
        if head or status < 200 or status in (204, 304):
            body = b""
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            body, self.buf = self.buf, b""
        r = Response(status, headers, body)
        r.status_line = lines[0]
        return r

    def closed_within(self, seconds):
        """True if the server closes the connection (EOF or reset) within seconds; any data
        read meanwhile is kept in the buffer."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                c = self.s.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not c:
                return True
            self.buf += c
        return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def req(method, path, headers=None, body=b"", version="1.1", auth=False):
    h = {"Host": "127.0.0.1"}
    if auth:
        h["Authorization"] = "Bearer " + TOKEN
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k in (headers or {})):
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    out = "%s %s HTTP/%s\r\n" % (method, path, version)
    out += "".join("%s: %s\r\n" % kv for kv in h.items())
    return out.encode("latin-1") + b"\r\n" + body


class HttpTest(GatewayTest):
    def start(self, config=None):
        self.g = self.gw(HANDLERS, config=config)
        return self.g

    def conn(self, listener="main", timeout=5):
        c = RawConn(self.g.port(listener), timeout)
        self.addCleanup(c.close)
        return c

    def assertJsonError(self, r, status, error=None):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"),
                        r.headers)
        doc = json.loads(r.body)
        self.assertIs(doc.get("ok"), False, r.body)
        self.assertIsInstance(doc.get("error"), str, r.body)
        if error:
            self.assertEqual(doc["error"], error, r.body)
        return doc

    def assertHealthy(self):
        r = self.g.get("/ping", auth=False)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"ok": True, "pong": True})

    def access_record(self, rid, timeout=5):
        return self.g.wait_log(lambda r: r.get("msg") == "request" and r.get("request_id") == rid,
                               timeout)

    # ---- connection handling ----

    def test_keep_alive(self):
        self.start()
        c = self.conn()
        ports = set()
        for i in range(3):
            c.send(req("GET", "/conn"))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertNotIn("close", r.headers.get("connection", "").lower())
            ports.add(r.json()["port"])
            self.assertEqual(r.json()["addr"], "127.0.0.1")
        self.assertEqual(len(ports), 1, "all three requests on one connection")
        self.assertFalse(c.closed_within(0.2), "keep-alive connection closed early")

    def test_pipelining_in_order(self):
        self.start()
        c = self.conn()
        t0 = time.time()
        c.send(req("GET", "/seq/1") + req("GET", "/seq/2") + req("GET", "/seq/3"))
        got = [c.read_response() for _ in range(3)]
        elapsed = time.time() - t0
        self.assertEqual([r.status for r in got], [200, 200, 200], got)
        self.assertEqual([r.json()["n"] for r in got], ["1", "2", "3"])
        self.assertGreaterEqual(elapsed, 0.09, "the middle request sleeps 100 ms")
        ids = [r.headers["x-request-id"] for r in got]
        self.assertEqual(len(set(ids)), 3, ids)
        # the connection is still usable for a request sent after the batch
        c.send(req("GET", "/ping"))
        try:
            self.assertEqual(c.read_response().status, 200)
        except socket.timeout:
            self.fail("a request sent after a pipelined batch got no answer")

    def test_pipelining_many_small(self):
        # Handlers that answer without waiting: every buffered request must be served at once
        # (not one per idle_timeout_ms).
        self.start("http:\n  idle_timeout_ms: 300\n")
        c = self.conn(timeout=10)
        n = 20
        t0 = time.time()
        c.send(b"".join(req("GET", "/seq/%d" % (i + 10)) for i in range(n)))
        for i in range(n):
            r = c.read_response()
            self.assertEqual((r.status, r.json()["n"]), (200, str(i + 10)))
        elapsed = time.time() - t0
        self.assertLess(elapsed, 1.0 * SLOW,
                        "%d pipelined requests took %.2fs" % (n, elapsed))

    def test_http10_closes_after_response(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/ping", version="1.0"))
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["pong"], True)
        self.assertTrue(c.closed_within(2 * SLOW), "HTTP/1.0 connection must close")

    def test_connection_close_header(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/ping", {"Connection": "close"}))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("connection", "").lower(), "close")
        self.assertTrue(c.closed_within(2 * SLOW))

    def test_idle_keep_alive_closed(self):
        self.start("http:\n  idle_timeout_ms: 300\n")
        c = self.conn()
        c.send(req("GET", "/ping"))
        self.assertEqual(c.read_response().status, 200)
        t0 = time.time()
        self.assertTrue(c.closed_within(3 * SLOW), "idle keep-alive connection not closed")
        elapsed = time.time() - t0
        self.assertGreater(elapsed, 0.15, "closed before idle_timeout_ms")
        self.assertLess(elapsed, 1.5 * SLOW)
        self.assertEqual(c.buf, b"", "no bytes are sent on an idle close")
        self.assertHealthy()

    def test_max_connections(self):
        self.start("http:\n  max_connections: 2\n")
        a, b = self.conn(), self.conn()
        # make sure both are accepted and served
        for c in (a, b):
            c.send(req("GET", "/ping"))
            self.assertEqual(c.read_response().status, 200)
        c3 = self.conn()
        r = c3.read_response()
        self.assertJsonError(r, 503, "service_unavailable")
        self.assertEqual(r.headers.get("connection", "").lower(), "close")
        self.assertTrue(c3.closed_within(3 * SLOW))
        c3.close()
        # existing connections keep working
        a.send(req("GET", "/ping"))
        self.assertEqual(a.read_response().status, 200)
        # a freed slot is usable again
        a.close()
        b.close()
        deadline = time.time() + 5 * SLOW
        while True:
            c4 = self.conn()
            c4.send(req("GET", "/ping"))
            r = c4.read_response()
            c4.close()
            if r.status == 200 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.status, 200, "slots are released when connections close")

    # ---- bodies ----

    def test_chunked_request_body(self):
        self.start()
        c = self.conn()
        parts = [b"hello ", b"\x00\x01\xff binary\r\n", b"x" * 3000, b"\r\n0\r\n", b"end"]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        c.send(req("POST", "/echo", {"Transfer-Encoding": "chunked",
                                     "Content-Type": "application/octet-stream"}) + body)
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"".join(parts))
        self.assertEqual(r.headers["x-body-len"], str(len(b"".join(parts))))
        # keep-alive after a chunked body
        c.send(req("GET", "/ping"))
        self.assertEqual(c.read_response().status, 200)

    def test_chunked_body_sent_slowly(self):
        self.start()
        c = self.conn()
        c.send(req("POST", "/echo", {"Transfer-Encoding": "chunked"}))
        for p in (b"ab", b"cd", b"ef"):
            c.send(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.03)
        c.send(b"0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abcdef"))

    def test_content_length_body(self):
        self.start()
        c = self.conn()
        body = bytes(range(256)) * 10
        c.send(req("POST", "/echo", body=body))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, body))

    def test_head(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/ping"))
        g = c.read_response()
        self.assertEqual(g.status, 200)
        c.send(req("HEAD", "/ping"))
        h = c.read_response(head=True)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.headers.get("content-length"), str(len(g.body)))
        self.assertEqual(h.headers.get("content-type"), g.headers.get("content-type"))
        # no body bytes follow the HEAD response: the next response starts right away
        c.send(req("GET", "/ping"))
        nxt = c.read_response()
        self.assertEqual(nxt.status_line[:12], "HTTP/1.1 200")
        self.assertEqual(nxt.body, g.body)

    def test_expect_100_continue(self):
        self.start()
        c = self.conn()
        body = b'{"hello":"world"}'
        c.send(req("POST", "/echo", {"Expect": "100-continue",
                                     "Content-Length": str(len(body))}))
        interim = c.read_response()
        self.assertEqual(interim.status, 100, interim)
        self.assertTrue(interim.status_line.startswith("HTTP/1.1 100 Continue"),
                        interim.status_line)
        c.send(body)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, body))

    def test_body_too_large(self):
        self.start("http:\n  max_body_bytes: 1024\n")
        c = self.conn()
        # Only the head is sent: the server decides from Content-Length alone.
        c.send(req("POST", "/echo", {"Content-Length": "100000"}))
        r = c.read_response()
        self.assertJsonError(r, 413, "payload_too_large")
        self.assertEqual(r.headers.get("connection", "").lower(), "close")
        self.assertTrue(c.closed_within(3 * SLOW), "connection must close after 413")
        self.assertHealthy()

    def test_body_too_large_100_continue_not_sent(self):
        self.start("http:\n  max_body_bytes: 1024\n")
        c = self.conn()
        c.send(req("POST", "/echo", {"Content-Length": "5000", "Expect": "100-continue"}))
        r = c.read_response()
        self.assertJsonError(r, 413)

    def test_chunked_body_too_large(self):
        self.start("http:\n  max_body_bytes: 1024\n")
        c = self.conn()
        c.send(req("POST", "/echo", {"Transfer-Encoding": "chunked"}))
        chunk = b"a" * 600
        try:
            for _ in range(3):
                c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            c.send(b"0\r\n\r\n")
        except OSError:
            pass
        r = c.read_response()
        self.assertJsonError(r, 413)
        self.assertHealthy()

    def test_body_exactly_at_limit(self):
        self.start("http:\n  max_body_bytes: 1024\n")
        c = self.conn()
        body = b"z" * 1024
        c.send(req("POST", "/echo", body=body))
        r = c.read_response()
        self.assertEqual((r.status, len(r.body)), (200, 1024))

    # ---- malformed and slow clients ----

    def test_header_too_large(self):
        self.start("http:\n  max_header_bytes: 2048\n")
        c = self.conn()
        c.send(req("GET", "/ping", {"X-Big": "a" * 4000}))
        r = c.read_response()
        self.assertJsonError(r, 431)
        self.assertTrue(c.closed_within(3 * SLOW))
        self.assertHealthy()

    def test_many_headers(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/ping", {"X-H%d" % i: "v" for i in range(300)}))
        r = c.read_response()
        self.assertJsonError(r, 431)

    def test_garbage(self):
        self.start()
        c = self.conn()
        c.send(b"\x16\x03\x01\x02\x00garbage that is not http\r\n\r\n")
        r = c.read_response()
        self.assertJsonError(r, 400, "bad_request")
        self.assertEqual(r.headers.get("connection", "").lower(), "close")
        self.assertTrue(c.closed_within(3 * SLOW), "connection must close after 400")
        self.assertHealthy()

    def test_bad_request_after_good_one(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/ping") + b"GET /ping HTTP/9.9x\r\n\r\n")
        self.assertEqual(c.read_response().status, 200)
        r = c.read_response()
        self.assertJsonError(r, 400)
        self.assertTrue(c.closed_within(3 * SLOW))

    def test_slowloris(self):
        self.start("http:\n  header_timeout_ms: 300\n")
        s = socket.create_connection(("127.0.0.1", self.g.port()))
        self.addCleanup(s.close)
        data = b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 100
        got, closed = b"", False
        t0 = time.time()
        end = None
        for i in range(len(data)):
            if time.time() - t0 > 5 * SLOW:
                break
            try:
                s.sendall(data[i:i + 1])
            except OSError:
                closed = True
                end = end or time.time()
                break
            s.settimeout(0.1)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                closed = True
                end = end or time.time()
                break
            end = end or time.time()
            if not chunk:
                closed = True
                break
            got += chunk
            if b"\r\n\r\n" in got:
                break
        self.assertTrue(got or closed, "server never answered or closed a slowloris client")
        elapsed = end - t0
        self.assertLess(elapsed, 1.0 * SLOW, "slowloris not cut off in time (%.2fs)" % elapsed)
        self.assertGreater(elapsed, 0.2, "cut off before header_timeout_ms")
        if got:
            head, _, body = got.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 408 "), got)
            # the rest of the JSON body may still be in flight
            s.settimeout(2 * SLOW)
            try:
                while len(body) < 20 or not body.rstrip().endswith(b"}"):
                    c = s.recv(65536)
                    if not c:
                        break
                    body += c
            except OSError:
                pass
            doc = json.loads(body)
            self.assertIs(doc["ok"], False)
            self.assertEqual(doc["error"], "request_timeout")
        self.assertHealthy()

    def test_body_timeout(self):
        self.start("http:\n  body_timeout_ms: 300\n")
        c = self.conn()
        c.send(req("POST", "/echo", {"Content-Length": "100"}) + b"only part")
        t0 = time.time()
        r = c.read_response()
        self.assertLess(time.time() - t0, 2 * SLOW)
        self.assertJsonError(r, 408, "request_timeout")
        self.assertTrue(c.closed_within(3 * SLOW))

    # ---- routing errors ----

    def test_unknown_path_404(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/no/such/thing"))
        r = c.read_response()
        doc = self.assertJsonError(r, 404, "not_found")
        self.assertEqual(doc, {"ok": False, "error": "not_found"})
        # an error response does not close the connection
        c.send(req("GET", "/ping"))
        self.assertEqual(c.read_response().status, 200)

    def test_wrong_method_405(self):
        self.start()
        c = self.conn()
        c.send(req("DELETE", "/ping"))
        r = c.read_response()
        self.assertJsonError(r, 405, "method_not_allowed")
        allow = [m.strip() for m in r.headers.get("allow", "").split(",")]
        self.assertEqual(sorted(allow), ["GET", "HEAD"])
        c.send(req("GET", "/v1/items/7"))
        r = c.read_response()
        self.assertJsonError(r, 405)
        self.assertEqual(r.headers.get("allow"), "POST")

    def test_unauthorized_401(self):
        self.start()
        c = self.conn()
        c.send(req("POST", "/v1/items/1", body=b"{}"))
        r = c.read_response()
        self.assertJsonError(r, 401, "unauthorized")
        c.send(req("POST", "/v1/items/1", {"Content-Type": "application/json"},
                   body=b'{"a":1}', auth=True))
        r = c.read_response()
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json(), {"id": "1", "got": {"a": 1}})

    def test_invalid_json_400(self):
        self.start()
        c = self.conn()
        c.send(req("POST", "/v1/items/1", {"Content-Type": "application/json"},
                   body=b'{"a":', auth=True))
        r = c.read_response()
        self.assertJsonError(r, 400, "invalid_json")

    def test_handler_error_500(self):
        self.g = self.gw({"e.lua": """\
            return { routes = { ["GET /boom"] = { function() error("kaboom") end, public = true } } }
            """})
        c = self.conn()
        c.send(req("GET", "/boom", {"X-Request-Id": "boom-1"}))
        r = c.read_response()
        doc = self.assertJsonError(r, 500, "internal_error")
        self.assertEqual(doc.get("request_id"), "boom-1")
        self.assertNotIn("kaboom", r.text)
        self.g.wait_log(lambda x: x.get("msg") == "handler error" and "kaboom" in x.get("error", ""))

    # ---- request ids and the access log ----

    def test_request_id_echoed(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/rid", {"X-Request-Id": "abc-123_x.y:z"}))
        r = c.read_response()
        self.assertEqual(r.headers.get("x-request-id"), "abc-123_x.y:z")
        self.assertEqual(r.json()["id"], "abc-123_x.y:z")

    def test_request_id_generated(self):
        self.start()
        c = self.conn()
        seen = set()
        for extra in ({}, {"X-Request-Id": "has space"}, {"X-Request-Id": "x" * 129},
                      {"X-Request-Id": ""}):
            c.send(req("GET", "/rid", extra))
            r = c.read_response()
            rid = r.headers.get("x-request-id", "")
            self.assertRegex(rid, r"^[A-Za-z0-9._:-]{8,128}$", extra)
            self.assertNotEqual(rid, extra.get("X-Request-Id"))
            self.assertEqual(r.json()["id"], rid)
            seen.add(rid)
        self.assertEqual(len(seen), 4)

    def test_request_id_on_server_errors(self):
        self.start()
        c = self.conn()
        c.send(b"NOT HTTP\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 400)
        self.assertRegex(r.headers.get("x-request-id", ""), r"^[A-Za-z0-9._:-]+$")

    def test_access_log(self):
        self.start()
        c = self.conn()
        c.send(req("POST", "/v1/items/42", {"X-Request-Id": "log-test-1",
                                            "Content-Type": "application/json"},
                   body=b'{"k":"v"}', auth=True))
        self.assertEqual(c.read_response().status, 201)
        rec = self.access_record("log-test-1")
        self.assertEqual(rec["method"], "POST")
        self.assertEqual(rec["route"], "POST /v1/items/:id")
        self.assertEqual(rec["path"], "/v1/items/42")
        self.assertEqual(rec["status"], 201)
        self.assertIsInstance(rec["duration_ms"], (int, float))
        self.assertGreaterEqual(rec["duration_ms"], 0)
        self.assertEqual(rec["listener"], "main")
        self.assertEqual(rec["level"], "info")

        # one line per request, including unmatched routes and server errors
        c.send(req("GET", "/nope", {"X-Request-Id": "log-test-2"}))
        self.assertEqual(c.read_response().status, 404)
        rec = self.access_record("log-test-2")
        self.assertEqual((rec["status"], rec["method"], rec["path"]), (404, "GET", "/nope"))
        self.assertEqual(rec["route"], "-")

        c.send(req("GET", "/sleep/120", {"X-Request-Id": "log-test-3"}))
        self.assertEqual(c.read_response().status, 200)
        rec = self.access_record("log-test-3")
        self.assertEqual(rec["route"], "GET /sleep/:ms")
        self.assertGreaterEqual(rec["duration_ms"], 100)

        d = self.conn()
        d.send(b"BLAH\r\n\r\n")
        r = d.read_response()
        self.assertEqual(r.status, 400)
        rec = self.access_record(r.headers["x-request-id"])
        self.assertEqual(rec["status"], 400)

        time.sleep(0.1)
        for rid in ("log-test-1", "log-test-2", "log-test-3"):
            n = sum(1 for x in self.g.records()
                    if x.get("msg") == "request" and x.get("request_id") == rid)
            self.assertEqual(n, 1, rid)

    # ---- aborted clients ----

    def test_client_disconnects_while_handler_sleeps(self):
        self.start()
        c = self.conn()
        c.send(req("GET", "/sleep/300", {"X-Request-Id": "gone-1"}))
        time.sleep(0.05)
        c.close()
        # meanwhile the server answers others
        self.assertHealthy()
        rec = self.access_record("gone-1", timeout=5)
        self.assertEqual(rec["route"], "GET /sleep/:ms")
        self.assertHealthy()

    def test_client_resets_while_handler_sleeps(self):
        self.start()
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", self.g.port()))
            s.sendall(req("GET", "/sleep/150", {"X-Request-Id": "rst-%d" % i}))
            time.sleep(0.01)
            # RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        for i in range(5):
            self.access_record("rst-%d" % i)
        self.assertHealthy()
        # pipelined requests behind a sleeping one, then a disconnect
        c = self.conn()
        c.send(req("GET", "/sleep/100") + req("GET", "/ping") + req("GET", "/ping"))
        c.close()
        time.sleep(0.3)
        self.assertHealthy()

    def test_concurrent_clients(self):
        self.start()
        results = []
        lock = threading.Lock()

        def worker(i):
            try:
                c = RawConn(self.g.port())
                try:
                    c.send(req("GET", "/sleep/100"))
                    r = c.read_response()
                    with lock:
                        results.append(r.status)
                finally:
                    c.close()
            except Exception as e:  # noqa: BLE001 - reported through results
                with lock:
                    results.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10 * SLOW)
        self.assertEqual(results, [200] * 20)
        self.assertLess(time.time() - t0, 1.5 * SLOW, "sleeping handlers must run concurrently")


if __name__ == "__main__":
    unittest.main()
