"""E2E: the audit ledger (issue 16): each recorded action makes its entry (/auth add and del on
the test channel, policy and projects registry reloads, admin-scope calls and notify calls
counted per token and hour), GET /v1/audit's filters and cursor, the NDJSON export, retention
pruning, the 403 for tokens without admin, and no secret in any entry or answer."""
import hashlib
import json
import os
import sqlite3
import time

from harness import SLOW, TOKEN, GatewayTest
from fake_feishu import FakeFeishu
from fake_telegram import FakeTelegram

TG_TOKEN = "123456:audit-telegram-secret"
APP, APP_SECRET, VT = "cli_audit", "feishu-app-secret-9", "feishu-verification-secret-8"
SECRETS = {"ADMIN_TOKEN": "audit-admin-secret-1", "ALERTS_TOKEN": "audit-alerts-secret-2",
           "ALERTS2_TOKEN": "audit-alerts-secret-3", "READ_TOKEN": "audit-read-secret-4"}
ALL_SECRETS = list(SECRETS.values()) + [TOKEN, TG_TOKEN, APP_SECRET, VT, "handler-given-secret"]

CONFIG = """
tokens:
  root:    { token_env: ADMIN_TOKEN, scopes: [admin] }
  alerts:  { token_env: ALERTS_TOKEN, scopes: [notify] }
  alerts2: { token_env: ALERTS2_TOKEN, scopes: [notify] }
  reader:  { token_env: READ_TOKEN, scopes: [read] }
chat:
  allowlist_mode: auth
  owner_chats: { test: owner-chat }
"""

HANDLER = """
return { routes = {
  ["GET /mine"] = function(req) return { who = req.auth.name } end,
  ["POST /rec"] = { scope = "read", function(req)
    local b = req.json or {}
    for i = 1, b.n or 1 do
      local ok, err = chatgw.audit.record(b.kind or "test", { who = req.auth.name, addr = req.remote_addr,
        what = "entry " .. i, detail = b.detail })
      if not ok then return 500, { ok = false, error = err } end
    end
    return { ok = true }
  end },
  ["GET /misuse"] = { scope = "read", function()
    local ok, err = pcall(chatgw.audit.record, "Bad Kind", {})
    local ok2, err2 = pcall(chatgw.audit.record, "fine", "not a table")
    return { raised = not ok and not ok2, err = tostring(err), err2 = tostring(err2) }
  end },
} }
"""

POLICY_1 = "rules:\n  - match: { channel: test }\n    allow: ['*']\n"
POLICY_2 = "defaults:\n  rate_limit: { rpm: 20 }\n" + POLICY_1
REGISTRY_1 = "projects:\n  p1:\n    notify:\n      telegram_chat_ids: ['100']\n"
REGISTRY_2 = REGISTRY_1 + "  p2:\n    notify:\n      telegram_chat_ids: ['200']\n"


def h12(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class AuditTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 4242, "username": "audit_bot", "first_name": "Audit"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.fs = FakeFeishu(apps={APP: {"secret": APP_SECRET,
                                         "bot": {"open_id": "ou_audit_bot", "app_name": "AuditBot"}}})
        self.fs.start()
        self.addCleanup(self.fs.stop)

    # ---- helpers ----

    def start(self, extra="", env=None, files=None):
        e = dict(SECRETS)
        e.update({"CHATGW_TEST_CHANNEL": "1", "OWNER_TEST_USER_ID": "42", "CHAT_GATEWAY_LOCK_RETRY_MS": "200",
                  "TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TG_TOKEN,
                  "FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": APP_SECRET, "FEISHU_VERIFICATION_TOKEN": VT,
                  "FEISHU_API_BASE": self.fs.url, "FEISHU_WEBHOOK_PORT": "0"})
        e.update(env or {})
        g = self.gw({"mine.lua": HANDLER}, CONFIG + extra, env=e, start=False)
        for name, text in (files or {}).items():
            self.write(g, name, text)
        g.start()
        return g

    @staticmethod
    def write(g, name, text):
        path = os.path.join(g.dir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def call(self, g, method, path, token=TOKEN, body=None, listener="main"):
        """A request with token; no secret may be in any answer."""
        headers = {"Authorization": "Bearer " + token}
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        r = g.request(method, path, body=body, headers=headers, auth=False, listener=listener)
        for s in ALL_SECRETS:
            self.assertNotIn(s, r.text, "a secret in the answer to %s %s" % (method, path))
        return r

    def audit(self, g, query="", token=None):
        r = self.call(g, "GET", "/v1/audit" + query, token or SECRETS["ADMIN_TOKEN"])
        self.assertEqual(r.status, 200, r.text)
        return r.json()

    def entries(self, g, kind, **match):
        """The entries of kind (newest first) whose fields (or detail fields) match."""
        out = []
        for e in self.audit(g, "?limit=1000&kind=" + kind)["entries"]:
            fields = dict(e.get("detail") or {})
            fields.update(e)
            if all(fields.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def wait_entry(self, g, kind, count=None, **match):
        def found():
            es = self.entries(g, kind, **match)
            if es and (count is None or es[0].get("count") == count):
                return es[0]
            return None
        return self.wait(found, 10, "an audit entry %s %r (count %r)" % (kind, match, count))

    def inbound(self, g, text, user_id="42", chat_id="owner-chat"):
        r = self.call(g, "POST", "/v1/test/inbound",
                      body={"chat_id": chat_id, "user_id": user_id, "text": text, "chat_type": "private"})
        self.assertEqual(r.status, 200, r.text)

    def assert_no_secret_in_store(self, g):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(g.dir, "data", "chatgw.db"), uri=True)
        try:
            rows = db.execute("SELECT * FROM audit_log").fetchall()
        finally:
            db.close()
        self.assertTrue(rows)
        text = json.dumps(rows)
        for s in ALL_SECRETS:
            self.assertNotIn(s, text, "a secret in audit_log")

    # ---- tests ----

    def test_each_action_creates_its_entry(self):
        g = self.start(files={"policy.yml": POLICY_1, "projects.yml": REGISTRY_1})
        # boot: the policy and the registry, once each
        p = self.entries(g, "policy.reload")
        self.assertEqual(len(p), 1, p)
        self.assertEqual((p[0]["who"], p[0]["detail"]["hash"], p[0]["detail"]["reason"]), ("runtime", h12(POLICY_1), "boot"))
        self.assertEqual(p[0]["detail"]["source"], os.path.join(g.dir, "policy.yml"))
        self.assertIsNone(p[0]["addr"])
        reg = self.entries(g, "registry.reload")
        self.assertEqual(len(reg), 1, reg)
        self.assertEqual((reg[0]["detail"]["hash"], reg[0]["detail"]["reason"]), (h12(REGISTRY_1), "boot"))

        # /auth add and del by the owner
        self.inbound(g, "/auth add x1")
        e = self.wait_entry(g, "allowlist.add")
        self.assertEqual(e["who"], "chat:test:42")
        self.assertEqual(e["what"], "/auth add x1")
        self.assertEqual(e["detail"], {"channel": "test", "account": "default", "chat_id": "x1",
                                       "from_chat": "owner-chat", "changed": True})
        self.inbound(g, "/auth del x1")
        e = self.wait_entry(g, "allowlist.del")
        self.assertEqual((e["who"], e["detail"]["chat_id"], e["detail"]["changed"]), ("chat:test:42", "x1", True))
        self.inbound(g, "/auth add x2", user_id="7")  # not an owner: no change, no entry
        time.sleep(0.2)
        self.assertEqual(len(self.entries(g, "allowlist.*")), 2)

        # a reload with the same files records nothing; a changed policy and registry do
        g.reload()
        self.assertEqual(len(self.entries(g, "policy.reload")), 1)
        self.assertEqual(len(self.entries(g, "registry.reload")), 1)
        self.write(g, "policy.yml", POLICY_2)
        self.write(g, "projects.yml", REGISTRY_2)
        g.reload()
        e = self.wait_entry(g, "policy.reload", hash=h12(POLICY_2))
        self.assertEqual((e["detail"]["previous_hash"], e["detail"]["reason"]), (h12(POLICY_1), "reload"))
        e = self.wait_entry(g, "registry.reload", hash=h12(REGISTRY_2))
        self.assertEqual((e["detail"]["previous_hash"], e["detail"]["reason"]), (h12(REGISTRY_1), "reload"))
        self.assertEqual(e["detail"]["source"], os.path.join(g.dir, "projects.yml"))
        # the registry changed on disk, seen by a notify request (reason mtime)
        self.write(g, "projects.yml", REGISTRY_1)
        time.sleep(1.1)
        self.call(g, "GET", "/v1/notify/projects", SECRETS["ALERTS_TOKEN"], listener="notify")
        e = self.wait_entry(g, "registry.reload", reason="mtime")
        self.assertEqual((e["detail"]["hash"], e["detail"]["previous_hash"]), (h12(REGISTRY_1), h12(REGISTRY_2)))
        projects = self.call(g, "GET", "/v1/notify/projects", SECRETS["ALERTS_TOKEN"], listener="notify").json()
        self.assertEqual(projects["hash"], e["detail"]["hash"])

        # admin-scope calls: counted per token, route, status and hour, the gateway token too
        for _ in range(2):
            self.assertEqual(self.call(g, "POST", "/v1/ws/broadcast", SECRETS["ADMIN_TOKEN"], body={}).status, 400)
        for _ in range(3):
            self.assertEqual(self.call(g, "GET", "/mine").json(), {"who": "gateway"})
        self.assertEqual(self.call(g, "GET", "/mine", SECRETS["READ_TOKEN"]).status, 403)
        e = self.wait_entry(g, "admin.call", count=2, who="root", what="POST /v1/ws/broadcast")
        self.assertEqual((e["addr"], e["detail"]["status"], e["detail"]["method"]), ("127.0.0.1", 400, "POST"))
        self.assertGreaterEqual(e["last_at"], e["at"])
        self.assertTrue(e["last_time"].endswith("Z"))
        self.wait_entry(g, "admin.call", count=3, who="gateway", what="GET /mine", status=200)
        self.wait_entry(g, "admin.call", count=1, who="reader", what="GET /mine", status=403)
        # calls of other scopes are not admin calls
        self.call(g, "GET", "/health", SECRETS["READ_TOKEN"])
        self.assertEqual(self.entries(g, "admin.call", what="GET /health"), [])

        # notify calls: one counter row per token (and route) and hour
        body = {"target": "telegram", "chat_id": "100", "text": "hello"}
        for _ in range(3):
            self.assertEqual(self.call(g, "POST", "/v1/notify/text", SECRETS["ALERTS_TOKEN"], body, "notify").status, 200)
        for _ in range(2):
            self.assertEqual(self.call(g, "POST", "/v1/notify/text", SECRETS["ALERTS2_TOKEN"], body, "notify").status, 200)
        e = self.wait_entry(g, "notify.call", count=3, who="alerts", what="POST /v1/notify/text")
        self.assertEqual(e["addr"], "127.0.0.1")
        self.wait_entry(g, "notify.call", count=2, who="alerts2", what="POST /v1/notify/text")
        self.assertEqual(len(self.entries(g, "notify.call", what="POST /v1/notify/text")), 2)
        self.assertEqual(self.entries(g, "admin.call", what="POST /v1/notify/text"), [])

        # no secret in any entry: the API, the export, the table itself
        r = self.call(g, "GET", "/v1/audit/export", SECRETS["ADMIN_TOKEN"])
        self.assertEqual(r.status, 200)
        self.assert_no_secret_in_store(g)
        for s in ALL_SECRETS:
            self.assertNotIn(s, g.stderr_text())

    def test_filters_cursor_and_export(self):
        g = self.start()
        t0 = time.time()
        self.assertEqual(self.call(g, "POST", "/rec", body={"n": 5, "kind": "batch.one"}).status, 200)
        time.sleep(1.2)
        t1 = time.time()
        self.assertEqual(self.call(g, "POST", "/rec", body={"n": 7, "kind": "batch.two"}).status, 200)
        self.assertEqual(self.call(g, "POST", "/rec", SECRETS["READ_TOKEN"], {"kind": "other"}).status, 200)
        # handlers' kinds are app.*; who, addr and what as given
        e = self.audit(g, "?kind=app.other")["entries"]
        self.assertEqual([(x["who"], x["addr"], x["what"]) for x in e], [("reader", "127.0.0.1", "entry 1")])
        # kind: exact and prefix
        self.assertEqual(len(self.audit(g, "?kind=app.batch.one")["entries"]), 5)
        self.assertEqual(len(self.audit(g, "?kind=app.batch.*")["entries"]), 12)
        self.assertEqual(len(self.audit(g, "?kind=app.batch")["entries"]), 0)
        # since: epoch seconds and ISO-8601 (the newer batch only)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t1)) + ".%03dZ" % int((t1 % 1) * 1000)
        for since in ("%.3f" % t1, iso):
            got = self.audit(g, "?kind=app.batch.*&since=" + since)["entries"]
            self.assertEqual({x["kind"] for x in got}, {"app.batch.two"}, since)
            self.assertEqual(len(got), 7, since)
        self.assertEqual(len(self.audit(g, "?kind=app.batch.*&since=%d" % int(t0 - 5))["entries"]), 12)
        # newest first; limit and cursor walk every entry once
        seen, cursor, pages = [], None, 0
        while True:
            q = "?kind=app.batch.*&limit=5" + ("&cursor=" + cursor if cursor else "")
            page = self.audit(g, q)
            pages += 1
            self.assertLessEqual(len(page["entries"]), 5)
            seen += [x["id"] for x in page["entries"]]
            cursor = page["next"]
            if cursor is None:
                break
            self.assertIsInstance(cursor, str)
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), 12)
        self.assertEqual(seen, sorted(seen, reverse=True))
        e = self.audit(g, "?kind=app.batch.two&limit=1")["entries"][0]
        self.assertEqual(e["what"], "entry 7")
        self.assertTrue(e["time"].endswith("Z") and e["time"].startswith(time.strftime("%Y-", time.gmtime(e["at"]))))
        self.assertNotIn("count", e)
        # bad parameters: clear 400s
        for q, code in [("?since=yesterday", "invalid_since"), ("?since=2024-13-01", "invalid_since"),
                        ("?since=-5", "invalid_since"), ("?kind=Bad*Kind", "invalid_kind"), ("?kind=a%20b", "invalid_kind"),
                        ("?limit=0", "invalid_limit"), ("?limit=1001", "invalid_limit"), ("?limit=ten", "invalid_limit"),
                        ("?cursor=abc", "invalid_cursor"), ("?cursor=0", "invalid_cursor")]:
            r = self.call(g, "GET", "/v1/audit" + q, SECRETS["ADMIN_TOKEN"])
            self.assertEqual((r.status, r.json()), (400, {"ok": False, "error": code}), q)
        r = self.call(g, "GET", "/v1/audit/export?since=nope", SECRETS["ADMIN_TOKEN"])
        self.assertEqual((r.status, r.json()), (400, {"ok": False, "error": "invalid_since"}))
        self.assertEqual(len(self.audit(g, "?limit=1000")["entries"]) > 12, True)
        # export: JSON lines, oldest first, filtered like the list
        r = self.call(g, "GET", "/v1/audit/export?kind=app.batch.*", SECRETS["ADMIN_TOKEN"])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "application/x-ndjson")
        self.assertTrue(r.text.endswith("\n"))
        lines = [json.loads(line) for line in r.text.splitlines()]
        self.assertEqual(len(lines), 12)
        self.assertEqual([x["id"] for x in lines], sorted(seen))
        r = self.call(g, "GET", "/v1/audit/export?since=%.3f" % t1, SECRETS["ADMIN_TOKEN"])
        kinds = {json.loads(line)["kind"] for line in r.text.splitlines()}
        self.assertNotIn("app.batch.one", kinds)
        self.assertIn("app.batch.two", kinds)
        # misuse from a handler raises, naming the function
        m = self.call(g, "GET", "/misuse").json()
        self.assertTrue(m["raised"], m)
        self.assertIn("chatgw.audit.record: kind must be", m["err"])
        self.assertIn("chatgw.audit.record: fields must be a table", m["err2"])

    def test_only_admin_tokens_read_the_ledger(self):
        g = self.start()
        for token in (SECRETS["READ_TOKEN"], SECRETS["ALERTS_TOKEN"]):
            for path in ("/v1/audit", "/v1/audit/export"):
                r = self.call(g, "GET", path, token)
                self.assertEqual((r.status, r.json()), (403, {"ok": False, "error": "forbidden", "scope": "admin"}), path)
        self.assertEqual(self.call(g, "GET", "/v1/audit", "wrong").status, 401)
        self.assertEqual(self.call(g, "GET", "/v1/audit", TOKEN).status, 200)
        self.assertEqual(self.call(g, "GET", "/v1/audit", SECRETS["ADMIN_TOKEN"]).status, 200)
        # the refused reads are admin calls too (status 403)
        self.wait_entry(g, "admin.call", count=1, who="reader", what="GET /v1/audit/export", status=403)

    def test_counts_survive_a_stop_and_a_reload(self):
        g = self.start()
        for _ in range(5):
            self.call(g, "GET", "/mine", SECRETS["ADMIN_TOKEN"])
        self.assertEqual(g.stop(), 0)  # the pending counts are written at the stop
        g.restart()
        for _ in range(2):
            self.call(g, "GET", "/mine", SECRETS["ADMIN_TOKEN"])
        g.reload()
        self.call(g, "GET", "/mine", SECRETS["ADMIN_TOKEN"])
        # one row for the hour, in every process and state (two if the clock hour turned meanwhile)
        rows = self.wait(lambda: (lambda es: es if sum(e["count"] for e in es) == 8 else None)(
            self.entries(g, "admin.call", who="root", what="GET /mine")), 10, "8 counted calls")
        self.assertEqual(len(rows), len({int(e["at"] // 3600) for e in rows}), rows)

    def test_no_secret_in_detail(self):
        g = self.start()
        detail = {"token": "handler-given-secret", "api_key": "handler-given-secret", "Password": "handler-given-secret",
                  "nested": {"client_secret": "handler-given-secret", "credentials": ["handler-given-secret"], "n": 1},
                  "keep": "visible", "count": 3}
        self.assertEqual(self.call(g, "POST", "/rec", body={"kind": "secret.test", "detail": detail}).status, 200)
        e = self.audit(g, "?kind=app.secret.test")["entries"][0]
        self.assertEqual(e["detail"], {"nested": {"n": 1}, "keep": "visible", "count": 3})
        self.assert_no_secret_in_store(g)
        # events are append-only: the table refuses an UPDATE of one
        db = sqlite3.connect(os.path.join(g.dir, "data", "chatgw.db"), timeout=10)
        try:
            with self.assertRaisesRegex(sqlite3.DatabaseError, "append-only"):
                db.execute("UPDATE audit_log SET who = 'someone else' WHERE id = ?", (e["id"],))
        finally:
            db.rollback()
            db.close()

    def test_retention_prunes_old_entries(self):
        # 0.00003 days = 2.6 s; the prune runs every 200 ms in tests (at most hourly otherwise)
        g = self.start("audit:\n  retention_days: 0.00003\n", env={"CHATGW_TEST_AUDIT_PRUNE_MS": "200"})
        self.assertEqual(self.call(g, "POST", "/rec", body={"kind": "old"}).status, 200)
        self.assertEqual(len(self.audit(g, "?kind=app.old")["entries"]), 1)
        time.sleep(3.0)
        self.assertEqual(self.call(g, "POST", "/rec", body={"kind": "new"}).status, 200)
        self.wait(lambda: not self.audit(g, "?kind=app.old")["entries"], 5, "the old entry pruned")
        self.assertEqual(len(self.audit(g, "?kind=app.new")["entries"]), 1)
        self.assertEqual(self.entries(g, "policy.reload"), [], "the boot entries are older too")
        g.wait_log(lambda r: r.get("msg") == "audit: pruned old entries")


if __name__ == "__main__":
    import unittest
    unittest.main()
