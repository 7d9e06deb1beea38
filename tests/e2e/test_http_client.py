"""E2E: chatgw.http.request against fake upstreams on 127.0.0.1 - results of any status,
query/headers/json/form, gzip, keep-alive, concurrency that never blocks the loop, on_chunk
streaming, max_body, and every transport failure code (connect, timeout, dns, tls, too_large,
io, cancelled), retries, redirects, proxies and the outbound metrics."""
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import SLOW, GatewayTest
from upstream import Upstream, parse_multipart, refused_port

NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}

# POST /do runs chatgw.http.request with the JSON body as its options ("stream": true adds an
# on_chunk that records each chunk and when it came); it answers with what came back.
CLIENT = r"""
local function run(o)
  local t0 = chatgw.now()
  local chunks
  if o.big then o.body = string.rep("x", o.big); o.big = nil end  -- more than the inbound cap
  if o.stream then
    o.stream = nil
    chunks = {}
    o.on_chunk = function(c) chunks[#chunks + 1] = { t = chatgw.now() - t0, data = c } end
  end
  local ok, res, err = pcall(chatgw.http.request, o)
  local out = { elapsed = chatgw.now() - t0, chunks = chunks }
  if not ok then out.raised = tostring(res); return out end
  out.err = err
  if res then
    out.status, out.headers, out.body, out.json, out.url =
      res.status, res.headers, res.body, res.json, res.url
    out.body_len = #res.body
  end
  return out
end

return {
  routes = {
    ["POST /do"] = { function(req) return run(req.json) end, public = true },
    -- n background tasks each doing one request at once; answers when all are done
    ["POST /fan"] = { function(req)
      local o, done, statuses = req.json, 0, {}
      local t0 = chatgw.now()
      for i = 1, o.n do
        chatgw.spawn(function()
          local res, err = chatgw.http.request{ url = o.url, timeout_ms = 30000 }
          local k = res and tostring(res.status) or err
          statuses[k] = (statuses[k] or 0) + 1
          done = done + 1
        end)
      end
      while done < o.n do chatgw.sleep(5) end
      return { elapsed = chatgw.now() - t0, statuses = statuses }
    end, public = true },
    -- a task that outlives the request: cancelled by a reload
    ["POST /bg"] = { function(req)
      local url = req.json.url
      chatgw.spawn(function()
        local t0 = chatgw.now()
        local res, err = chatgw.http.request{ url = url, timeout_ms = 30000 }
        chatgw.log.info("bg done", { err = err or "none", status = res and res.status or 0,
                                     elapsed = chatgw.now() - t0 })
      end)
      return { ok = true }
    end, public = true },
  },
}
"""


def poll(fn, timeout=5.0, interval=0.02):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return fn()


# A DNS label longer than 63 characters: getaddrinfo rejects it without sending a query.
UNRESOLVABLE_LABEL = "a" * 70

class HttpClientTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = Upstream().start()
        self.addCleanup(self.up.stop)

    def start_gw(self, env=None, handlers=None):
        e = dict(NO_PROXY)
        e.update(env or {})
        return self.gw(handlers or {"client.lua": CLIENT}, env=e)

    def do(self, g, timeout=30, **opts):
        r = g.request("POST", "/do", json_body=opts, auth=False, timeout=timeout)
        self.assertEqual(r.status, 200, r)
        return r.json()

    # ---- results ----

    def test_get_with_query_and_headers_returns_status_headers_body_json(self):
        self.up.route("GET /echo", lambda r: r.reply_json(200, {
            "query": r.query, "raw_query": r.raw_query, "headers": r.headers},
            {"X-Up": "yes", "Set-Thing": "a"}))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/echo?x=1"),
                      query={"a": "b c", "list": ["1", "2"], "n": 5, "e": "ü&="},
                      headers={"X-Custom": "v1", "Authorization": "Bearer t"})
        self.assertIsNone(out.get("err"))
        self.assertEqual(out["status"], 200)
        self.assertEqual(out["headers"]["x-up"], "yes")           # names lower-case
        self.assertEqual(out["headers"]["content-type"], "application/json")
        q = out["json"]["query"]                                   # res.json decoded
        self.assertEqual(q["x"], ["1"])
        self.assertEqual(q["a"], ["b c"])
        self.assertEqual(q["list"], ["1", "2"])
        self.assertEqual(q["n"], ["5"])
        self.assertEqual(q["e"], ["ü&="])
        self.assertIn("a=b%20c", out["json"]["raw_query"])
        h = out["json"]["headers"]
        self.assertEqual(h["x-custom"], "v1")
        self.assertEqual(h["authorization"], "Bearer t")
        self.assertTrue(h["user-agent"].startswith("chatgw/"))
        self.assertNotIn("expect", h)
        self.assertEqual(json.loads(out["body"])["headers"]["x-custom"], "v1")

    def test_any_status_is_a_result_not_an_error(self):
        self.up.route("/404", lambda r: r.reply(404, b"nope"))
        self.up.route("/500", lambda r: r.reply_json(500, {"ok": False, "error": "boom"}))
        self.up.route("/204", lambda r: r.reply(204))
        g = self.start_gw()
        a = self.do(g, url=self.up.url("/404"))
        self.assertEqual((a["status"], a["body"], a.get("err")), (404, "nope", None))
        self.assertNotIn("json", a)                               # text/plain: no res.json
        b = self.do(g, url=self.up.url("/500"))
        self.assertEqual(b["status"], 500)
        self.assertEqual(b["json"], {"ok": False, "error": "boom"})
        c = self.do(g, url=self.up.url("/204"))
        self.assertEqual((c["status"], c["body"]), (204, ""))

    def test_json_option_encodes_and_sets_content_type(self):
        self.up.route("POST /in", lambda r: r.reply_json(200, {
            "ct": r.headers.get("content-type"), "got": r.json(), "method": r.method}))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/in"), json={"text": "a/b", "id": "12345678901234567"})
        self.assertEqual(out["json"]["method"], "POST")            # json= defaults to POST
        self.assertEqual(out["json"]["ct"], "application/json")
        self.assertEqual(out["json"]["got"], {"text": "a/b", "id": "12345678901234567"})
        # an explicit Content-Type wins
        out = self.do(g, url=self.up.url("/in"), json={"a": 1},
                      headers={"content-type": "application/vnd.x+json"})
        self.assertEqual(out["json"]["ct"], "application/vnd.x+json")

    def test_methods_and_raw_bodies(self):
        self.up.route("/m", lambda r: r.reply_json(200, {
            "method": r.method, "body": r.body.decode(), "ct": r.headers.get("content-type")}))
        g = self.start_gw()
        for method in ("PUT", "PATCH", "DELETE", "POST"):
            out = self.do(g, method=method, url=self.up.url("/m"), body="raw-" + method,
                          headers={"Content-Type": "text/plain"})
            self.assertEqual(out["json"], {"method": method, "body": "raw-" + method,
                                           "ct": "text/plain"})
        out = self.do(g, method="get", url=self.up.url("/m"))
        self.assertEqual(out["json"]["method"], "GET")
        out = self.do(g, method="HEAD", url=self.up.url("/m"))
        self.assertEqual((out["status"], out["body"]), (200, ""))
        # a big body is sent at once (no "Expect: 100-continue" round trip)
        out = self.do(g, method="POST", url=self.up.url("/m"), big=3_000_000, timeout=60)
        self.assertEqual(len(out["json"]["body"]), 3_000_000)
        self.assertLess(out["elapsed"], 900 * SLOW)

    def test_multipart_form_with_file_parts_from_path_and_bytes(self):
        seen = {}

        def upload(r):
            seen["parts"] = parse_multipart(r.headers, r.body)
            seen["ct"] = r.headers["content-type"]
            r.reply_json(200, {"ok": True})

        self.up.route("POST /sendPhoto", upload)
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        photo = os.path.join(tmp, "cat.png")
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
        with open(photo, "wb") as f:
            f.write(png)
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/sendPhoto"), form={
            "chat_id": "12345678901234567",
            "caption": "hello",
            "n": 7,
            "photo": {"path": photo, "content_type": "image/png"},
            "doc": {"data": "bytes from memory", "filename": "note.txt",
                    "content_type": "text/plain"},
        })
        self.assertEqual(out["status"], 200, out)
        p = seen["parts"]
        self.assertTrue(seen["ct"].startswith("multipart/form-data; boundary="))
        self.assertEqual(p["chat_id"]["data"], b"12345678901234567")
        self.assertIsNone(p["chat_id"]["filename"])
        self.assertEqual(p["caption"]["data"], b"hello")
        self.assertEqual(p["n"]["data"], b"7")
        self.assertEqual(p["photo"]["filename"], "cat.png")
        self.assertEqual(p["photo"]["content_type"], "image/png")
        self.assertEqual(p["photo"]["data"], png)
        self.assertEqual(p["doc"]["filename"], "note.txt")
        self.assertEqual(p["doc"]["data"], b"bytes from memory")
        # a missing file is a misuse: raised with the function's name
        out = self.do(g, url=self.up.url("/sendPhoto"),
                      form={"photo": {"path": os.path.join(tmp, "missing.png")}})
        self.assertIn("chatgw.http.request: form.photo: cannot read", out["raised"])

    def test_gzip_responses_are_decoded(self):
        text = "compressible " * 5000
        self.up.route("/gz", lambda r: r.reply_gzip(200, text))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/gz"))
        self.assertEqual(out["status"], 200)
        self.assertEqual(out["body"], text)
        self.assertEqual(out["headers"]["content-encoding"], "gzip")
        ae = self.up.requests[-1].headers.get("accept-encoding", "")
        self.assertIn("gzip", ae)

    # ---- the loop never blocks ----

    def test_200_concurrent_requests_overlap(self):
        def slow(r):
            r.sleep(0.2)
            r.reply(200, b"ok")

        self.up.route("/slow", slow)
        g = self.start_gw()
        t0 = time.time()
        r = g.request("POST", "/fan", json_body={"url": self.up.url("/slow"), "n": 200},
                      auth=False, timeout=60)
        wall = time.time() - t0
        self.assertEqual(r.status, 200, r)
        out = r.json()
        self.assertEqual(out["statuses"], {"200": 200}, out)
        # serial would take 40 s; overlapping takes a little over 0.2 s
        self.assertLess(out["elapsed"], 5000 * SLOW, out)
        self.assertLess(wall, 8 * SLOW)
        self.assertGreaterEqual(self.up.max_inflight, 100)
        # and the gateway kept answering other requests meanwhile
        self.assertEqual(g.get("/health").status, 200)

    def test_other_requests_are_served_while_one_waits(self):
        self.up.route("/slow", lambda r: (r.sleep(1.0), r.reply(200, b"late")))
        g = self.start_gw(handlers={"client.lua": CLIENT, "ping.lua": """
            return { routes = { ["GET /ping"] = { function() return "pong" end, public = true } } }
        """})
        res = {}
        t = threading.Thread(target=lambda: res.update(self.do(g, url=self.up.url("/slow"))))
        t.start()
        poll(lambda: self.up.count("/slow") == 1)
        t0 = time.time()
        self.assertEqual(g.get("/ping", auth=False).text, "pong")
        self.assertLess(time.time() - t0, 0.5 * SLOW)
        t.join(10 * SLOW)
        self.assertEqual(res["body"], "late")

    def test_keepalive_reuses_the_connection(self):
        self.up.route("/k", lambda r: r.reply(200, b"k"))
        g = self.start_gw()
        for _ in range(20):
            self.assertEqual(self.do(g, url=self.up.url("/k"))["status"], 200)
        self.assertEqual(self.up.connections, 1)

    # ---- streaming ----

    def test_on_chunk_receives_sse_events_as_they_arrive(self):
        self.up.route("/sse", lambda r: r.reply_sse(["one", "two", "three"], delay=0.3))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/sse"), stream=True)
        self.assertEqual(out["status"], 200, out)
        self.assertEqual(out["body"], "")                      # all of it went to on_chunk
        data = "".join(c["data"] for c in out["chunks"])
        self.assertEqual(data, "data: one\n\ndata: two\n\ndata: three\n\n")
        first = next(c for c in out["chunks"] if "one" in c["data"])
        # the first event was in Lua's hands long before the response completed
        self.assertLess(first["t"], out["elapsed"] - 400, out)
        self.assertGreaterEqual(out["elapsed"], 550)
        self.assertGreaterEqual(len(out["chunks"]), 3)

    def test_streamed_large_body_arrives_whole_and_in_order(self):
        blob = "".join("%08d\n" % i for i in range(200000))     # 1.8 MB in many chunks
        self.up.route("/big", lambda r: r.reply_chunked(
            200, [blob[i:i + 50000] for i in range(0, len(blob), 50000)]))
        g = self.start_gw(handlers={"s.lua": r"""
            return { routes = { ["GET /s"] = { function(req)
              local parts, n = {}, 0
              local res, err = chatgw.http.request{ url = req.query.url, on_chunk = function(c)
                n = n + 1; parts[n] = c
                if n % 7 == 0 then chatgw.sleep(1) end   -- a slow consumer: the transfer pauses
              end }
              local all = table.concat(parts)
              return { err = err, status = res and res.status, n = n, len = #all,
                       head = all:sub(1, 18), tail = all:sub(-9) }
            end, public = true } } }
        """})
        r = g.get("/s?url=" + self.up.url("/big"), auth=False, timeout=60)
        out = r.json()
        self.assertEqual(out["status"], 200, out)
        self.assertEqual(out["len"], len(blob))
        self.assertEqual(out["head"], "00000000\n00000001\n")
        self.assertEqual(out["tail"], "00199999\n")
        self.assertGreater(out["n"], 5)

    def test_chunked_body_without_on_chunk_is_buffered(self):
        self.up.route("/chunked", lambda r: r.reply_chunked(200, ["a" * 10, "b" * 20, "c"],
                                                             delay=0.05))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/chunked"))
        self.assertEqual(out["body"], "a" * 10 + "b" * 20 + "c")

    # ---- caps and failures ----

    def test_too_large_chunked_and_sized_bodies(self):
        self.up.route("/chunky", lambda r: r.reply_chunked(200, ["x" * 4000] * 10))
        self.up.route("/sized", lambda r: r.reply(200, b"y" * 50000))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/chunky"), max_body=10000)
        self.assertTrue(out["err"].startswith("too_large:"), out)
        self.assertNotIn("status", out)
        out = self.do(g, url=self.up.url("/sized"), max_body=1000)
        self.assertTrue(out["err"].startswith("too_large:"), out)
        out = self.do(g, url=self.up.url("/chunky"), max_body=40000)   # exactly at the cap
        self.assertEqual(out["body_len"], 40000)
        out = self.do(g, url=self.up.url("/chunky"), max_body=10000, stream=True)
        self.assertTrue(out["err"].startswith("too_large:"), out)
        self.assertLessEqual(sum(len(c["data"]) for c in out["chunks"]), 10000)

    def test_reset_mid_body_is_an_io_error(self):
        self.up.route("/reset", lambda r: r.reset_mid_body(100000, 1000))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/reset"))
        self.assertTrue(out["err"].startswith("io:"), out)

    def test_refused_connection_is_connect_error(self):
        g = self.start_gw()
        out = self.do(g, url="http://127.0.0.1:%d/x" % refused_port())
        self.assertTrue(out["err"].startswith("connect:"), out)
        self.assertTrue(out["err"].endswith(" (request not sent)"), out)
        self.assertLess(out["elapsed"], 2000 * SLOW)

    def test_slow_answer_is_timeout_error(self):
        self.up.route("/hang", lambda r: r.hang(10))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/hang"), timeout_ms=300)
        self.assertTrue(out["err"].startswith("timeout:"), out)
        self.assertNotIn("request not sent", out["err"])  # it was: the server may act on it
        self.assertGreaterEqual(out["elapsed"], 290)
        self.assertLess(out["elapsed"], 2000 * SLOW)
        # a streamed answer that stalls also times out, after the chunks it did send
        self.up.route("/stall", lambda r: r.reply_chunked(200, ["early", "never"], delay=5))
        out = self.do(g, url=self.up.url("/stall"), timeout_ms=400, stream=True)
        self.assertTrue(out["err"].startswith("timeout:"), out)
        self.assertEqual(out["chunks"][0]["data"], "early")

    def test_unknown_host_is_dns_error(self):
        g = self.start_gw()
        # A label over 63 characters fails in the resolver itself: no query leaves the machine.
        out = self.do(g, url="http://%s.invalid/x" % UNRESOLVABLE_LABEL, timeout_ms=10000)
        self.assertTrue(out["err"].startswith("dns:"), out)

    def test_misuse_raises_with_the_function_name(self):
        g = self.start_gw()
        cases = [
            ({"url": 5}, "url must be a string"),
            ({"url": "ftp://127.0.0.1/x"}, "url must be an http:// or https:// URL"),
            ({"url": "not a url"}, "url must be an http:// or https:// URL"),
            ({"url": self.up.url("/"), "timeout_s": 5}, "unknown option 'timeout_s'"),
            ({"url": self.up.url("/"), "headers": {"X": "a\r\nB: c"}}, "header 'X' has"),
            ({"url": self.up.url("/"), "body": "a", "json": {}}, "give only one of"),
            ({"url": self.up.url("/"), "timeout_ms": -1}, "timeout_ms must be"),
            ({"url": self.up.url("/"), "max_body": "big"}, "max_body must be a number"),
            ({"url": self.up.url("/"), "method": "GE T"}, "method must be"),
        ]
        for opts, needle in cases:
            out = self.do(g, **opts)
            self.assertIn("raised", out, opts)
            self.assertIn("chatgw.http.request: " + needle, out["raised"])

    # ---- redirects, retries, proxies, TLS ----

    def test_redirects_are_off_by_default(self):
        self.up.route("/from", lambda r: r.reply(302, b"", {"Location": "/to"}))
        self.up.route("/to", lambda r: r.reply(200, b"arrived"))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/from"))
        self.assertEqual(out["status"], 302)
        self.assertEqual(out["headers"]["location"], "/to")
        out = self.do(g, url=self.up.url("/from"), follow_redirects=True)
        self.assertEqual((out["status"], out["body"]), (200, "arrived"))
        self.assertTrue(out["url"].endswith("/to"))
        self.up.route("/loop", lambda r: r.reply(302, b"", {"Location": "/loop"}))
        out = self.do(g, url=self.up.url("/loop"), follow_redirects=3)
        self.assertTrue(out["err"].startswith("io:"), out)

    def test_retries_on_5xx_burst_then_success(self):
        calls = []

        def flaky(r):
            calls.append(1)
            if len(calls) <= 2:
                r.reply(503, b"busy")
            else:
                r.reply(200, b"fine")

        self.up.route("/flaky", flaky)
        self.up.route("POST /flaky-post", lambda r: r.reply(503, b"busy"))
        g = self.start_gw()
        out = self.do(g, url=self.up.url("/flaky"), retries=3, retry_backoff_ms=20)
        self.assertEqual((out["status"], out["body"]), (200, "fine"))
        self.assertEqual(len(calls), 3)
        # without retries a 5xx burst is just a result
        out = self.do(g, url=self.up.url("/flaky-post"), retries=3, retry_backoff_ms=20,
                      method="POST", body="x")                  # POST is not retried
        self.assertEqual(out["status"], 503)
        self.assertEqual(self.up.count("/flaky-post"), 1)
        out = self.do(g, url="http://127.0.0.1:%d/" % refused_port(), retries=2,
                      retry_backoff_ms=10)
        self.assertTrue(out["err"].startswith("connect:"))
        m = g.get("/metrics").text
        self.assertIn('chatgw_http_client_retries_total{host="127.0.0.1"} 4', m)

    def test_proxy_environment_is_honoured(self):
        def find(req):  # the proxy sees the absolute URL as the request target
            if req.target.startswith("http://upstream.example/"):
                return lambda r: r.reply(200, ("proxied " + r.target).encode())
            return None

        self.up._find = find
        g = self.gw({"client.lua": CLIENT}, env={"http_proxy": self.up.url(""), "no_proxy": "",
                                                  "NO_PROXY": ""})
        out = self.do(g, url="http://upstream.example/via-proxy?q=1")
        self.assertEqual(out["body"], "proxied http://upstream.example/via-proxy?q=1", out)
        # proxy = false bypasses it (and then the name does not resolve; the over-long label
        # fails inside the resolver, so no DNS query leaves the machine)
        out = self.do(g, url="http://%s.example/x" % UNRESOLVABLE_LABEL, proxy=False,
                      timeout_ms=5000)
        self.assertEqual(out["err"].split(":")[0], "dns", out)

    def test_tls_is_verified_by_default(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        tls = Upstream({"/s": lambda r: r.reply(200, b"secure")})
        tls.start()
        self.addCleanup(tls.stop)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        tls.server.socket = ctx.wrap_socket(tls.server.socket, server_side=True)
        url = "https://127.0.0.1:%d/s" % tls.port
        g = self.start_gw()
        out = self.do(g, url=url)
        self.assertTrue(out["err"].startswith("tls:"), out)
        out = self.do(g, url=url, ca_file=cert)
        self.assertEqual((out.get("status"), out.get("body")), (200, "secure"), out)
        out = self.do(g, url=url, tls_verify=False)
        self.assertEqual(out.get("status"), 200, out)

    # ---- reload and metrics ----

    def test_background_request_is_cancelled_by_reload(self):
        self.up.route("/forever", lambda r: r.hang(20))
        g = self.start_gw()
        r = g.request("POST", "/bg", json_body={"url": self.up.url("/forever")}, auth=False)
        self.assertEqual(r.status, 200)
        self.assertTrue(poll(lambda: self.up.count("/forever") == 1))
        g.reload()
        rec = g.wait_log(lambda r: r.get("msg") == "bg done", timeout=5)
        self.assertTrue(rec["err"].startswith("cancelled:"), rec)
        self.assertLess(rec["elapsed"], 5000 * SLOW)
        m = g.get("/metrics").text
        self.assertIn('chatgw_http_client_errors_total{host="127.0.0.1",code="cancelled"} 1', m)

    def test_stop_with_transfers_in_flight_exits_cleanly(self):
        self.up.route("/forever", lambda r: r.hang(20))
        blob = "z" * 100000
        self.up.route("/firehose", lambda r: r.reply_chunked(200, [blob] * 50))
        g = self.start_gw(handlers={"client.lua": CLIENT, "slow.lua": r"""
            return { routes = { ["POST /slow-consumer"] = { function(req)
              local url = req.json.url
              chatgw.spawn(function()   -- takes a chunk every 10 s: the transfer stays paused
                chatgw.http.request{ url = url, on_chunk = function() chatgw.sleep(10000) end }
              end)
              return { ok = true }
            end, public = true } } }
        """})
        for _ in range(3):
            g.request("POST", "/bg", json_body={"url": self.up.url("/forever")}, auth=False)
        g.request("POST", "/slow-consumer", json_body={"url": self.up.url("/firehose")},
                  auth=False)
        self.assertTrue(poll(lambda: self.up.count("/forever") == 3
                             and self.up.count("/firehose") == 1))
        time.sleep(0.3)
        t0 = time.time()
        self.assertEqual(g.stop(), 0, g.stderr_text()[-3000:])   # teardown checks sanitizers
        self.assertLess(time.time() - t0, 5 * SLOW)

    def test_request_in_flight_finishes_across_a_reload(self):
        self.up.route("/slow", lambda r: (r.sleep(0.6), r.reply(200, b"done")))
        g = self.start_gw()
        res = {}
        t = threading.Thread(target=lambda: res.update(self.do(g, url=self.up.url("/slow"))))
        t.start()
        self.assertTrue(poll(lambda: self.up.count("/slow") == 1))
        g.reload()
        t.join(10 * SLOW)
        self.assertEqual((res.get("status"), res.get("body")), (200, "done"), res)

    def test_metrics_count_requests_by_host_status_and_error(self):
        self.up.route("/ok", lambda r: r.reply(200, b"ok"))
        self.up.route("/bad", lambda r: r.reply(502, b"bad"))
        g = self.start_gw()
        self.do(g, url=self.up.url("/ok"))
        self.do(g, url=self.up.url("/ok"))
        self.do(g, url=self.up.url("/bad"))
        self.do(g, url="http://127.0.0.1:%d/" % refused_port())
        m = g.get("/metrics").text
        self.assertIn('chatgw_http_client_requests_total{host="127.0.0.1",status="200"} 2', m)
        self.assertIn('chatgw_http_client_requests_total{host="127.0.0.1",status="502"} 1', m)
        self.assertIn('chatgw_http_client_requests_total{host="127.0.0.1",status="error"} 1', m)
        self.assertIn('chatgw_http_client_errors_total{host="127.0.0.1",code="connect"} 1', m)
        self.assertIn('chatgw_http_client_request_duration_seconds_count{host="127.0.0.1"} 4', m)
        self.assertIn("chatgw_http_client_active 0", m)


if __name__ == "__main__":
    unittest.main()
