"""E2E: the handler shape (public API): routes, the request table, return forms, auth, and
load-time validation of handler files."""
import json
import os
import re
import textwrap
import unittest

from harness import SANITIZER_MARKERS, Gateway, GatewayTest, TOKEN, run_cli

ECHO = """
local function echo(req)
  return {
    method = req.method, path = req.path, params = req.params, query = req.query,
    headers = req.headers, body = req.body, json = req.json,
    remote_addr = req.remote_addr, id = req.id,
  }
end
return {
  routes = {
    ["GET /users/:uid/posts/:pid"] = echo,
    ["GET /q"] = echo,
    ["POST /echo"] = echo,
    ["GET /pub"] = { function() return "public ok" end, public = true },
    ["GET /priv"] = function() return "private ok" end,
  },
}
"""

RETURNS = """
return {
  routes = {
    ["GET /table"] = function() return { a = 1, s = "x" } end,
    ["GET /string"] = function() return "hello text" end,
    ["GET /triple"] = function()
      return 201, "<b>hi</b>", { ["Content-Type"] = "text/html; charset=utf-8", ["X-Custom"] = "yes" }
    end,
    ["GET /triple-table"] = function() return 202, { queued = true } end,
    ["GET /nothing"] = function() end,
    ["GET /bad-status"] = function() return 99, "nope" end,
    ["GET /bad-status-big"] = function() return 600 end,
    ["GET /bad-status-frac"] = function() return 200.5, "x" end,
    ["GET /after"] = function() return "still alive" end,
    ["GET /many-headers"] = function()
      local h = {}
      for i = 1, 60 do h["X-H" .. i] = "v" .. i end
      return 200, "many", h
    end,
  },
}
"""


class HandlerShapeTest(GatewayTest):
    def test_params_query_headers_body(self):
        g = self.gw({"echo.lua": ECHO})
        r = g.get("/users/42/posts/a%20b")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        j = r.json()
        self.assertEqual(j["params"], {"uid": "42", "pid": "a b"})
        self.assertEqual(j["method"], "GET")
        self.assertEqual(j["path"], "/users/42/posts/a%20b")

        r = g.get("/q?a=1&b=hello%20world&c=x+y&tag=t1&tag=t2&tag=t3&empty=&flag&enc%3Dkey=v%26w")
        self.assertEqual(r.status, 200, r)
        q = r.json()["query"]
        self.assertEqual(q["a"], "1")
        self.assertEqual(q["b"], "hello world")
        self.assertEqual(q["c"], "x y")
        self.assertEqual(q["tag"], ["t1", "t2", "t3"])
        self.assertEqual(q["empty"], "")
        self.assertEqual(q["flag"], "")
        self.assertEqual(q["enc=key"], "v&w")

        # no query string: an empty table (encodes as {})
        r = g.get("/q")
        self.assertEqual(r.json()["query"], {})

        r = g.get("/q", headers={"X-Mixed-Case": "Val", "ACCEPT": "text/x-test"})
        h = r.json()["headers"]
        self.assertEqual(h["x-mixed-case"], "Val")
        self.assertEqual(h["accept"], "text/x-test")
        for k in h:
            self.assertEqual(k, k.lower(), "header names must be lower-case: %r" % k)
        self.assertEqual(r.json()["remote_addr"], "127.0.0.1")

    def test_body_and_json(self):
        g = self.gw({"echo.lua": ECHO})
        r = g.request("POST", "/echo", json_body={"x": [1, 2], "s": "a/b"})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["json"], {"x": [1, 2], "s": "a/b"})
        self.assertEqual(json.loads(j["body"]), {"x": [1, 2], "s": "a/b"})

        r = g.request("POST", "/echo", body=b'{"k": "v"}',
                      headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(r.json()["json"], {"k": "v"})

        # a non-JSON content type: raw body, no json
        r = g.request("POST", "/echo", body=b"a=1&b=2",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        j = r.json()
        self.assertEqual(j["body"], "a=1&b=2")
        self.assertNotIn("json", j)

        # invalid JSON with a JSON content type: 400 JSON, the handler is not called
        r = g.request("POST", "/echo", body=b'{"broken": ',
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        j = r.json()
        self.assertIs(j["ok"], False)
        self.assertEqual(j["error"], "invalid_json")

        # the process keeps serving
        self.assertEqual(g.request("POST", "/echo", json_body={"a": 1}).json()["json"], {"a": 1})

    def test_request_id(self):
        g = self.gw({"echo.lua": ECHO})
        r = g.get("/q")
        rid = r.headers.get("x-request-id")
        self.assertTrue(rid, r.headers)
        self.assertEqual(r.json()["id"], rid)
        r2 = g.get("/q")
        self.assertNotEqual(r2.headers["x-request-id"], rid)
        self.assertEqual(r2.json()["id"], r2.headers["x-request-id"])
        # a client-supplied id is used
        r3 = g.get("/q", headers={"X-Request-Id": "client-id-123"})
        self.assertEqual(r3.headers["x-request-id"], "client-id-123")
        self.assertEqual(r3.json()["id"], "client-id-123")

    def test_return_forms(self):
        g = self.gw({"ret.lua": RETURNS})
        r = g.get("/table")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        self.assertEqual(r.json(), {"a": 1, "s": "x"})

        r = g.get("/string")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain"), r.headers)
        self.assertEqual(r.text, "hello text")

        r = g.get("/triple")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(r.headers["x-custom"], "yes")
        self.assertEqual(r.text, "<b>hi</b>")

        r = g.get("/triple-table")
        self.assertEqual(r.status, 202)
        self.assertEqual(r.json(), {"queued": True})
        self.assertTrue(r.headers["content-type"].startswith("application/json"))

        r = g.get("/nothing")
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")

        for path in ("/bad-status", "/bad-status-big", "/bad-status-frac"):
            r = g.get(path)
            self.assertEqual(r.status, 500, path)
            j = r.json()
            self.assertEqual(j["error"], "internal_error")
            self.assertEqual(j["request_id"], r.headers["x-request-id"])
        self.assertEqual(g.get("/after").text, "still alive")

        # More headers than fit the response builder's stack array: every one is sent.
        r = g.get("/many-headers")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.text, "many")
        for i in range(1, 61):
            self.assertEqual(r.headers.get("x-h%d" % i), "v%d" % i, "header %d" % i)

    def test_auth(self):
        g = self.gw({"echo.lua": ECHO})
        r = g.get("/pub", auth=False)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.text, "public ok")

        r = g.get("/priv", auth=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        self.assertEqual(r.json()["error"], "unauthorized")

        r = g.get("/priv", auth=False, headers={"Authorization": "Bearer wrong-token"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")

        r = g.get("/priv", auth=False, headers={"Authorization": "Basic " + TOKEN})
        self.assertEqual(r.status, 401)

        r = g.get("/priv", auth=False, headers={"Authorization": "Bearer " + TOKEN + "x"})
        self.assertEqual(r.status, 401)

        r = g.get("/priv")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.text, "private ok")

    def test_not_found_and_method(self):
        g = self.gw({"echo.lua": ECHO})
        r = g.get("/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"], "not_found")
        r = g.request("DELETE", "/q")
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.headers.get("allow", ""))


class LoadErrorTest(unittest.TestCase):
    """Handler files that must be refused at start (chatgw run exits 1 naming file:line)."""

    def load_fails(self, handlers, check):
        """Runs `chatgw run` and `chatgw check` on handlers; both must refuse to start with
        exit code 1. check(stderr, handlers_dir) asserts the messages (run first, so a wrong
        exit code does not hide what the messages say)."""
        g = Gateway(handlers)
        try:
            for cmd in ("run", "check"):
                code, out, err = run_cli([cmd, g.handlers_dir, "--config", g.config_path],
                                         env=g.env, cwd=g.dir, timeout=15)
                self.assertNotEqual(code, 0, "%s: expected a load failure:\n%s" % (cmd, err[-3000:]))
                check(err, g.handlers_dir)
                for m in SANITIZER_MARKERS:
                    self.assertFalse(m in err, "%s: sanitizer report:\n%s" % (cmd, err[-6000:]))
                self.assertEqual(code, 1, "chatgw %s must exit 1 on a load error (negative = killed"
                                 " by that signal):\n%s" % (cmd, err[-3000:]))
        finally:
            g.cleanup()

    def test_duplicate_route_across_files(self):
        a = 'return { routes = { ["GET /same"] = function() return "a" end } }\n'
        b = '-- b\n\nreturn { routes = { ["GET /same"] = function() return "b" end } }\n'

        def check(err, d):
            self.assertIn("%s:3: route 'GET /same' is already declared by %s:1"
                          % (os.path.join(d, "b.lua"), os.path.join(d, "a.lua")), err)
        self.load_fails({"a.lua": a, "b.lua": b}, check)

    def test_unknown_key_with_line(self):
        src = textwrap.dedent("""\
            -- a handler with a typo
            return {
              routes = {
                ["GET /x"] = function() return "x" end,
              },
              on_shutdwon = function() end,
            }
            """)

        def check(err, d):
            self.assertIn(os.path.join(d, "typo.lua") + ":6: unknown key 'on_shutdwon'", err)
        self.load_fails({"typo.lua": src}, check)

    def test_routes_wrong_type(self):
        def check(err, d):
            self.assertIn(os.path.join(d, "r.lua") + ":2: routes must be a table", err)
        self.load_fails({"r.lua": 'return {\n  routes = "GET /x",\n}\n'}, check)

    def test_on_shutdown_wrong_type(self):
        def check(err, d):
            self.assertIn(os.path.join(d, "s.lua") + ":3: on_shutdown must be a function", err)
        self.load_fails({"s.lua": 'return {\n  routes = {},\n  on_shutdown = true,\n}\n'}, check)

    def test_route_option_typo(self):
        src = textwrap.dedent("""\
            return {
              routes = {
                ["GET /ok"] = function() return "ok" end,
                ["GET /typo"] = { function() return "x" end, publc = true },
              },
            }
            """)

        def check(err, d):
            self.assertIn(os.path.join(d, "o.lua") + ":4:", err)
            self.assertIn("unknown option 'publc'", err)
        self.load_fails({"o.lua": src}, check)

    def test_bad_route_keys(self):
        for key in ("FETCH /x", "GET x", "get /x", "GET  /x", "GET"):
            with self.subTest(key=key):
                src = 'return {\n  routes = {\n    ["%s"] = function() return "x" end,\n  },\n}\n' % key

                def check(err, d):
                    self.assertIn(os.path.join(d, "k.lua") + ":3:", err)
                    self.assertIn("'%s'" % key, err)
                self.load_fails({"k.lua": src}, check)

    def test_not_a_table(self):
        def check(err, d):
            self.assertIn(os.path.join(d, "n.lua") + ":2: a handler must return a table", err)
        self.load_fails({"n.lua": "local x = 1\nreturn 42\n"}, check)

    def test_syntax_error(self):
        def check(err, d):
            self.assertRegex(err, re.escape(os.path.join(d, "syn.lua")) + r":3:")
        self.load_fails({"syn.lua": 'return {\n  routes = {\n    ["GET /x"] = function( end,\n}\n'},
                        check)

    def test_raise_while_loading(self):
        def check(err, d):
            self.assertIn(os.path.join(d, "raise.lua") + ":2: cannot load me", err)
        self.load_fails({"raise.lua": "local x = 1\nerror('cannot load me')\nreturn {}\n"}, check)


if __name__ == "__main__":
    unittest.main()
