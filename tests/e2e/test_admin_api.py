"""E2E: the admin page's routes and data API (issue 16): /admin and its hashed assets with the
CSP and cache headers; GET /v1/admin/state (breakers, limiters, exec pools, outbox per account,
tasks); the failed outbox messages, retry (the row back to queued and delivered) and drop; 403
for a token without admin, 404 for unknown ids; the admin.state WebSocket push to connections
holding admin.read only."""
import json
import re
import time
import unittest

from harness import GatewayTest, SLOW, TOKEN
from test_ws import RawWs

READ_TOKEN = "reader-token-0123456789"
CHAT_ONLY = "chat-only-token-0123456789"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
       "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

CONFIG = """\
tokens:
  reader: { token_env: READ_TOKEN, scopes: [read] }
  console: { token_env: CHAT_ONLY, scopes: [ws], ws_scopes: [chat.read, chat.write] }
"""

HANDLER = """\
local testch = require "chatgw.chat.channels.test"
local outbox = require "chatgw.chat.outbox"
return {
  routes = {
    -- a message the platform refuses for good (the test channel's queued failure)
    ["POST /send-failing"] = function(req)
      testch.fail_next("permanent", { error = "Bad Request: chat not found", chat_id = req.json.chat_id })
      local h = assert(chatgw.chat.send{ channel = "test", chat_id = req.json.chat_id, text = req.json.text })
      local st = h:wait(5000)
      return { id = h.id, status = st.status }
    end,
    ["GET /status/:id"] = function(req) return outbox.status(tonumber(req.params.id)) end,
    -- the "upstream" breaker opened by calls to a dead port; a limiter refusing; an exec call
    ["POST /work"] = function(req)
      local br = chatgw.breaker{ name = "upstream", failures = 2, open_ms = 60000 }
      for _ = 1, 3 do br:call(chatgw.http.request, { url = "http://127.0.0.1:9/", timeout_ms = 1000 }) end
      local lim = chatgw.limiter{ name = "admin.test", rate = 1, burst = 1 }
      lim:take("k") lim:take("k")
      local r = chatgw.exec{ argv = { "true" }, module = "admintest" }
      return { breaker = br:state(), exec = r and r.code }
    end,
  },
}
"""


class AdminApiTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.g = self.gw({"h.lua": HANDLER}, CONFIG,
                         env={"CHATGW_TEST_CHANNEL": "1", "READ_TOKEN": READ_TOKEN, "CHAT_ONLY": CHAT_ONLY})

    def api(self, method, path, body=None, status=None, token=TOKEN):
        h = {"Authorization": "Bearer " + token} if token else {}
        r = self.g.request(method, path, json_body=body, headers=h, auth=False)
        if status is not None:
            self.assertEqual(r.status, status, r.text)
        if r.status >= 400 and r.headers.get("content-type", "").startswith("application/json"):
            j = r.json()
            self.assertFalse(j["ok"])
            self.assertTrue(j["error"], j)
        self.assertNotIn(TOKEN, r.text)
        return r

    # ---- the page ----
    def test_the_page_and_its_hashed_assets(self):
        for path in ("/admin", "/admin/"):
            r = self.api("GET", path, status=200, token=None)  # public: the page holds no secret
            self.assertEqual(r.headers["content-security-policy"], CSP)
            self.assertEqual(r.headers["x-content-type-options"], "nosniff")
            self.assertEqual(r.headers["referrer-policy"], "no-referrer")
            self.assertEqual(r.headers["cache-control"], "no-store")
            self.assertTrue(r.headers["content-type"].startswith("text/html"))
        html = r.text
        self.assertNotIn(TOKEN, html)
        self.assertNotIn("{{", html)
        self.assertIsNone(re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "no inline script")
        self.assertEqual(re.findall(r"<script[^>]*>([^<]+)</script>", html), [], "no script body")
        self.assertIsNone(re.search(r"\sstyle\s*=", html), "no inline style attribute")
        self.assertNotIn("<style", html)
        self.assertNotIn("http://", html.replace('content="/ws"', ""))  # no CDN
        assets = re.findall(r'(?:src|href)="(/admin/assets/[^"]+)"', html)
        self.assertIn("/admin/assets/app.css".split(".")[0], assets[0])
        self.assertGreaterEqual(len(assets), 10)
        for a in assets:
            self.assertRegex(a, r"^/admin/assets/[a-z_]+\.[0-9a-f]{16}\.(js|css)$")
            r = self.api("GET", a, status=200, token=None)
            self.assertEqual(r.headers["cache-control"], "public, max-age=31536000, immutable")
            self.assertEqual(r.headers["x-content-type-options"], "nosniff")
            ctype = "application/javascript" if a.endswith(".js") else "text/css"
            self.assertTrue(r.headers["content-type"].startswith(ctype), r.headers)
            self.assertNotIn("innerHTML", r.text)
        # a name the page does not list (an old hash, the plain name): a JSON 404
        for bad in ("/admin/assets/app.js", "/admin/assets/app.0000000000000000.js", "/admin/assets/..%2Fassets.lua"):
            r = self.api("GET", bad, status=404, token=None)
            self.assertEqual(r.json()["error"], "not_found")
        self.assertIn('content="/ws"', html)

    # ---- GET /v1/admin/state ----
    def test_state(self):
        w = self.api("POST", "/work", {}, 200).json()
        self.assertEqual(w, {"breaker": "open", "exec": 0})
        self.api("POST", "/v1/tasks", {"task_id": "t-1", "stage": "analyze", "prompt": "x"})
        st = self.api("GET", "/v1/admin/state", status=200).json()
        self.assertTrue(st["ok"])
        br = {b["name"]: b for b in st["breakers"]}
        self.assertEqual(br["upstream"]["state"], "open")
        self.assertEqual(br["upstream"]["consecutive_failures"], 2)
        self.assertGreater(br["upstream"]["next_half_open_at"], time.time() + 30)
        self.assertIn("chatgw.outbox.test.default", br)  # the runtime's own breakers too
        lim = {l["name"]: l for l in st["limiters"]}
        self.assertEqual(lim["admin.test"]["kind"], "bucket")
        self.assertEqual(lim["admin.test"]["rejections"], 1)
        mods = {m["module"]: m for m in st["exec"]["modules"]}
        self.assertEqual(mods["admintest"]["results"], {"ok": 1})
        self.assertEqual(mods["admintest"]["waits"], 1)
        self.assertIn("inflight", st["exec"])
        self.assertIn("running", st["tasks"])
        self.assertIsInstance(st["tasks"]["recent"], list)
        self.assertEqual(st["health"]["status"] in ("ok", "degraded"), True)
        self.assertIn("test", [c["channelId"] for c in st["channels"]])
        self.assertIsInstance(st["gateways"], list)
        # a reload keeps the breaker listed, with its state (the C side keeps it by name)
        self.g.reload()
        st = self.api("GET", "/v1/admin/state", status=200).json()
        self.assertEqual({b["name"]: b for b in st["breakers"]}["upstream"]["state"], "open")

    # ---- failed messages ----
    def test_failed_messages_retry_and_drop(self):
        sent = self.api("POST", "/send-failing", {"chat_id": "c1", "text": "hello again"}, 200).json()
        self.assertEqual(sent["status"], "failed")
        lst = self.api("GET", "/v1/admin/outbox/failed", status=200).json()
        m = {x["id"]: x for x in lst["messages"]}[sent["id"]]
        self.assertEqual(m["error"], "Bad Request: chat not found")
        self.assertEqual((m["channel"], m["account"], m["chat_id"], m["text"]), ("test", "default", "c1", "hello again"))
        st = self.api("GET", "/v1/admin/state", status=200).json()
        acct = {(a["channel"], a["account"]): a for a in st["outbox"]["accounts"]}[("test", "default")]
        self.assertEqual(acct["failed"], 1)
        # retry: queued, then delivered by the (woken) sender
        r = self.api("POST", "/v1/admin/outbox/%d/retry" % sent["id"], {}, 200).json()
        self.assertEqual(r, {"ok": True, "id": sent["id"], "status": "queued"})
        self.wait(lambda: self.api("GET", "/status/%d" % sent["id"]).json()["status"] == "delivered", 5,
                  "the retried message delivered")
        texts = [x["text"] for x in self.api("GET", "/v1/test/sent?chat_id=c1").json()["messages"]]
        self.assertEqual(texts, ["hello again"])
        self.assertEqual(self.api("GET", "/v1/admin/outbox/failed", status=200).json()["messages"], [])
        # not failed any more: 409
        r = self.api("POST", "/v1/admin/outbox/%d/retry" % sent["id"], {}, 409).json()
        self.assertEqual(r["error"], "not_failed")
        self.api("POST", "/v1/admin/outbox/%d/drop" % sent["id"], {}, 409)
        # drop: gone from the outbox
        two = self.api("POST", "/send-failing", {"chat_id": "c2", "text": "drop me"}, 200).json()
        self.assertEqual(self.api("POST", "/v1/admin/outbox/%d/drop" % two["id"], {}, 200).json(),
                         {"ok": True, "id": two["id"], "dropped": True})
        self.assertEqual(self.api("POST", "/v1/admin/outbox/%d/drop" % two["id"], {}, 409).json()["message"],
                         "the message is dropped")
        self.assertEqual(self.api("GET", "/status/%d" % two["id"]).json()["status"], "dropped")
        self.assertEqual(self.api("GET", "/v1/admin/outbox/failed", status=200).json()["messages"], [])
        # unknown ids, bad parameters
        for verb in ("retry", "drop"):
            self.assertEqual(self.api("POST", "/v1/admin/outbox/999999/%s" % verb, {}, 404).json()["error"], "not_found")
            self.api("POST", "/v1/admin/outbox/abc/%s" % verb, {}, 404)
        self.assertEqual(self.api("GET", "/v1/admin/outbox/failed?limit=0", status=400).json()["field"], "limit")
        self.api("GET", "/v1/admin/outbox/failed?before=x", status=400)
        # paging
        for i in range(3):
            self.assertEqual(self.api("POST", "/send-failing", {"chat_id": "p%d" % i, "text": "p"}, 200)
                             .json()["status"], "failed")
        page = self.api("GET", "/v1/admin/outbox/failed?limit=2", status=200).json()
        self.assertEqual(len(page["messages"]), 2)
        rest = self.api("GET", "/v1/admin/outbox/failed?limit=2&before=%d" % page["next"], status=200).json()
        self.assertEqual(len(rest["messages"]), 1)
        self.assertIsNone(rest["next"])

    def test_scopes(self):
        calls = [("GET", "/v1/admin/state"), ("GET", "/v1/admin/outbox/failed"),
                 ("POST", "/v1/admin/outbox/1/retry"), ("POST", "/v1/admin/outbox/1/drop")]
        for method, path in calls:
            r = self.api(method, path, {} if method == "POST" else None, 403, token=READ_TOKEN).json()
            self.assertEqual((r["error"], r["scope"]), ("forbidden", "admin"))
            self.api(method, path, {} if method == "POST" else None, 401, token=None)
            self.api(method, path, {} if method == "POST" else None, 401, token="wrong")
        self.assertEqual(self.api("GET", "/v1/whoami", status=200, token=READ_TOKEN).json()["scopes"], ["read"])

    # ---- the live view ----
    def ws(self, token, scopes):
        c = RawWs(self.g.port())
        self.addCleanup(c.close)
        op, ch = c.recv()
        self.assertEqual(json.loads(ch)["event"], "connect.challenge")
        c.send({"type": "req", "id": 1, "method": "connect",
                "params": {"role": "operator", "scopes": scopes, "auth": {"token": token}}})
        hello = json.loads(c.recv()[1])
        self.assertTrue(hello["ok"], hello)
        return c, hello["payload"]["auth"]["scopes"]

    def events(self, c, seconds):
        out, deadline = [], time.time() + seconds * SLOW
        c.s.settimeout(0.2)
        while time.time() < deadline:
            try:
                op, data = c.recv()
            except OSError:
                continue
            if op == 1:
                out.append(json.loads(data))
        return out

    def test_admin_state_is_pushed_to_admin_read_only(self):
        admin, granted = self.ws(TOKEN, ["admin.read"])
        self.assertEqual(granted, ["admin.read"])
        chat, granted2 = self.ws(CHAT_ONLY, ["admin.read", "chat.read"])
        self.assertEqual(granted2, ["chat.read"])  # a ws token without admin.read is not given it
        got = self.events(admin, 4.5)
        states = [e for e in got if e.get("event") == "admin.state"]
        self.assertGreaterEqual(len(states), 2, got)
        p = states[-1]["payload"]
        for k in ("breakers", "limiters", "exec", "outbox", "tasks", "channels", "gateways", "health"):
            self.assertIn(k, p)
        self.assertNotIn(TOKEN, json.dumps(p))
        self.assertEqual([e for e in self.events(chat, 0.5) if e.get("event") == "admin.state"], [])


if __name__ == "__main__":
    unittest.main()
