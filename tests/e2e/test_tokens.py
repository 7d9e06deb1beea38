"""E2E: API tokens with scopes (issue 16): the config's tokens, each route's scope (a table of
route x token -> status), /v1/whoami, the WebSocket connect, and bad token config."""
import hashlib
import json
import unittest

from harness import Gateway, GatewayTest, run_cli, TOKEN
from test_ws import RawWs

SECRETS = {"NOTIFY_TOKEN": "notify-secret-1", "TASKS_TOKEN": "tasks-secret-2", "READ_TOKEN": "read-secret-3",
           "WS_TOKEN": "ws-secret-4", "ADMIN_TOKEN": "admin-secret-5", "OLD_WS_TOKEN": "old-ws-secret-6"}
HASHED = "hashed-secret-7"

CONFIG = """
tokens:
  notifier: { token_env: NOTIFY_TOKEN, scopes: [notify] }
  tasker:   { token_env: TASKS_TOKEN, scopes: tasks }
  reader:   { token_env: READ_TOKEN, scopes: [read] }
  hashed:   { sha256: "%s", scopes: [read, notify] }
  console:  { token_env: WS_TOKEN, scopes: [ws], roles: [operator], ws_scopes: [chat.read] }
  root:     { token_env: ADMIN_TOKEN, scopes: [admin] }
  unset:    { token_env: NOBODY_SETS_THIS, scopes: [admin] }
ws:
  tokens:
    - { token_env: OLD_WS_TOKEN, roles: [node], scopes: ["*"] }
""" % hashlib.sha256(HASHED.encode()).hexdigest()

HANDLER = """
return { routes = {
  ["GET /mine"] = function(req) return { who = req.auth.name } end,
  ["GET /mine/read"] = { scope = "read", function(req) return { who = req.auth.name } end },
  ["GET /open"] = { public = true, function(req) return { who = req.auth and req.auth.name or "nobody" } end },
} }
"""

# (method, path, listener, scope); the notify and tasks calls carry bodies that fail validation
# with a 400 once past the scope check, so nothing is sent anywhere
ROUTES = [
    ("GET", "/health", "main", "read"),
    ("GET", "/metrics", "main", "read"),
    ("GET", "/v1/channels", "main", "read"),
    ("GET", "/health", "notify", "read"),
    ("POST", "/v1/notify/text", "notify", "notify"),
    ("GET", "/v1/notify/projects", "notify", "notify"),
    ("GET", "/v1/outbox/999", "notify", "notify"),
    ("POST", "/v1/tasks", "main", "tasks"),
    ("GET", "/v1/tasks/nope", "main", "tasks"),
    ("POST", "/v1/ws/broadcast", "main", "admin"),
    ("GET", "/v1/gateways", "main", "admin"),
    ("POST", "/v1/gateways", "main", "admin"),
    ("GET", "/mine", "main", "admin"),
    ("GET", "/mine/read", "main", "read"),
]

TOKENS = {  # name -> (the token, its scopes)
    "gateway": (TOKEN, {"notify", "tasks", "ws", "read", "admin"}),
    "notifier": (SECRETS["NOTIFY_TOKEN"], {"notify"}),
    "tasker": (SECRETS["TASKS_TOKEN"], {"tasks"}),
    "reader": (SECRETS["READ_TOKEN"], {"read"}),
    "hashed": (HASHED, {"read", "notify"}),
    "console": (SECRETS["WS_TOKEN"], {"ws"}),
    "root": (SECRETS["ADMIN_TOKEN"], {"notify", "tasks", "ws", "read", "admin"}),
    "ws.tokens[1]": (SECRETS["OLD_WS_TOKEN"], {"ws"}),
}


class TokenScopesTest(GatewayTest):
    def start(self):
        return self.gw({"mine.lua": HANDLER}, CONFIG, env=dict(SECRETS))

    def call(self, g, method, path, listener, token):
        body = "{}" if method == "POST" else None
        return g.request(method, path, body=body, auth=False, listener=listener,
                         headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})

    def test_every_route_answers_each_token_by_its_scopes(self):
        g = self.start()
        for method, path, listener, scope in ROUTES:
            for name, (token, scopes) in TOKENS.items():
                r = self.call(g, method, path, listener, token)
                what = "%s %s (%s) with %s" % (method, path, listener, name)
                if scope in scopes or "admin" in scopes:
                    self.assertNotIn(r.status, (401, 403), what + ": " + r.text)
                else:
                    self.assertEqual(r.status, 403, what + ": " + r.text)
                    self.assertEqual(r.json(), {"ok": False, "error": "forbidden", "scope": scope}, what)
            for bad in ("wrong", SECRETS["NOTIFY_TOKEN"] + "x", "", hashlib.sha256(HASHED.encode()).hexdigest()):
                r = self.call(g, method, path, listener, bad)
                self.assertEqual(r.status, 401, "%s %s with %r" % (method, path, bad))
        # the handler sees who called
        self.assertEqual(self.call(g, "GET", "/mine/read", "main", HASHED).json(), {"who": "hashed"})
        self.assertEqual(self.call(g, "GET", "/mine", "main", TOKEN).json(), {"who": "gateway"})
        self.assertEqual(g.get("/open", auth=False).json(), {"who": "nobody"})
        # no token value in the log
        text = g.stderr_text()
        for v in list(SECRETS.values()) + [HASHED]:
            self.assertNotIn(v, text)

    def test_whoami(self):
        g = self.start()
        for name, (token, scopes) in TOKENS.items():
            r = self.call(g, "GET", "/v1/whoami", "main", token)
            self.assertEqual(r.status, 200, name)
            order = ["notify", "tasks", "ws", "read", "admin"]
            self.assertEqual(r.json(), {"ok": True, "name": name, "scopes": [s for s in order if s in scopes]})
        self.assertEqual(self.call(g, "GET", "/v1/whoami", "main", "nope").status, 401)
        self.assertEqual(g.get("/v1/whoami", auth=False).status, 401)

    def ws_connect(self, g, token, role="operator", scopes=None):
        ws = RawWs(g.port())
        self.addCleanup(ws.close)
        op, ch = ws.recv()
        self.assertEqual(json.loads(ch)["event"], "connect.challenge")
        params = {"role": role, "auth": {"token": token}}
        if scopes is not None:
            params["scopes"] = scopes
        ws.send({"type": "req", "id": 1, "method": "connect", "params": params})
        op, hello = ws.recv()
        return json.loads(hello)

    def test_websocket_connect_by_scope(self):
        g = self.start()
        res = self.ws_connect(g, SECRETS["WS_TOKEN"], scopes=["chat.read", "chat.write"])
        self.assertTrue(res["ok"], res)
        self.assertEqual(res["payload"]["auth"]["scopes"], ["chat.read"], "its ws_scopes only")
        res = self.ws_connect(g, SECRETS["WS_TOKEN"], role="node")
        self.assertFalse(res["ok"], "not its role")
        res = self.ws_connect(g, SECRETS["OLD_WS_TOKEN"], role="node", scopes=["x.y"])
        self.assertTrue(res["ok"], res)
        res = self.ws_connect(g, SECRETS["ADMIN_TOKEN"], scopes=["anything"])
        self.assertTrue(res["ok"], res)
        for token in (SECRETS["READ_TOKEN"], SECRETS["NOTIFY_TOKEN"], "nope"):
            res = self.ws_connect(g, token)
            self.assertFalse(res["ok"], token)
            self.assertEqual(res["error"]["code"], "unauthorized", res)


class TokenConfigTest(unittest.TestCase):
    def check(self, config, handlers=None):
        g = Gateway(handlers or {}, config)
        self.addCleanup(g.cleanup)
        return run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env, cwd=g.dir)

    def test_bad_entries_are_load_errors_with_their_line(self):
        cases = [
            ("tokens:\n  a: { scopes: [read] }\n", r"chatgw\.yml:2: tokens\.a: give exactly one of token_env and sha256"),
            ("tokens:\n  a: { token_env: X, sha256: '%s', scopes: [read] }\n" % ("0" * 64),
             r"chatgw\.yml:2: tokens\.a: give exactly one"),
            ("tokens:\n  a:\n    sha256: '%s'\n    scopes: [read]\n" % ("g" * 64),
             r"chatgw\.yml:3: tokens\.a\.sha256: must be 64 hex digits"),
            ("tokens:\n  a: { token_env: X, scopes: [] }\n", r"tokens\.a\.scopes: give at least one"),
            ("tokens:\n  a: { token_env: X, scopes: [write] }\n", r"chatgw\.yml:2: .*write"),
        ]
        for config, want in cases:
            code, out, err = self.check(config)
            self.assertEqual(code, 1, config + err)
            self.assertRegex(err, want, config)

    def test_a_route_scope_must_be_known(self):
        code, out, err = self.check("", {"a.lua": 'return { routes = {\n  ["GET /x"] = { scope = "rw", function() end },\n} }\n'})
        self.assertEqual(code, 1, err)
        self.assertIn("a.lua:2: route 'GET /x': scope must be one of notify, tasks, ws, read, admin, got 'rw'", err)


if __name__ == "__main__":
    unittest.main()
