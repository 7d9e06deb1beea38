"""End-to-end tests of configuration: environment overrides, data dir and API token, listeners,
the `app` section as seen by handlers, and config errors."""
import http.client
import json
import os
import re
import stat
import subprocess
import time
import unittest

from harness import SLOW, Gateway, GatewayTest

ECHO_CFG = """\
return {
  routes = {
    ["GET /app"] = function(req) return { app = chatgw.config.app } end,
    ["GET /secret"] = function(req) return { ok = true } end,
    ["GET /open"] = { function(req) return { ok = true, listener = req.listener } end, public = true },
  },
}
"""

NOTIFY = """\
return {
  routes = {
    ["POST /notify/hook"] = { function(req)
      return { ok = true, listener = req.listener, got = req.json }
    end, listener = "notify", public = true },
    ["GET /main-only"] = { function(req) return { ok = true, listener = req.listener } end,
      public = true },
  },
}
"""


def http_get(port, path, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


class ConfigTest(GatewayTest):
    def start_failing(self, gw, timeout=10):
        """Starts gw expecting it to fail at boot; returns (exit code, stderr text)."""
        gw.start(wait_ready=False)
        try:
            code = gw.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.fail("chatgw kept running although its config is bad:\n" + gw.stderr_text())
        time.sleep(0.1)  # let the pump threads catch the last lines
        text = gw.stderr_text()
        gw.check_sanitizers()
        self.assertNotIn('"listening"', text)
        return code, text

    def assertJsonError(self, status, body, want_status, want_error=None):
        self.assertEqual(status, want_status, body)
        doc = json.loads(body)
        self.assertIs(doc.get("ok"), False, body)
        self.assertIsInstance(doc.get("error"), str, body)
        if want_error:
            self.assertEqual(doc["error"], want_error)

    # ---- env overrides ----

    def test_env_host_and_port_override_file(self):
        # The file asks for an address that cannot be bound here; the environment wins.
        g = self.gw({"h.lua": ECHO_CFG}, config="""\
            listeners:
              main:
                host: "192.0.2.1"
                port: 1
            """, env={"CHAT_GATEWAY_HOST": "127.0.0.1", "CHAT_GATEWAY_PORT": "0"})
        rec = g.wait_log(lambda r: r.get("msg") == "listening" and r.get("listener") == "main")
        self.assertEqual(rec["host"], "127.0.0.1")
        self.assertIsInstance(rec["port"], int)
        self.assertGreater(rec["port"], 1024)  # an ephemeral port
        status, _, body = http_get(g.port(), "/open")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["listener"], "main")

    def test_env_port_zero_twice_gives_distinct_ports(self):
        a = self.gw({"h.lua": ECHO_CFG})
        b = self.gw({"h.lua": ECHO_CFG})
        self.assertNotEqual(a.port(), b.port())
        for g in (a, b):
            self.assertEqual(http_get(g.port(), "/open")[0], 200)

    def test_empty_env_is_ignored(self):
        g = self.gw({"h.lua": ECHO_CFG}, config="""\
            listeners:
              main:
                port: 0
            """, env={"CHAT_GATEWAY_PORT": "", "CHAT_GATEWAY_HOST": ""})
        self.assertEqual(http_get(g.port(), "/open")[0], 200)

    def test_bad_env_port(self):
        for bad in ("abc", "70000", "-1", "80.5"):
            g = self.gw({"h.lua": ECHO_CFG}, start=False, env={"CHAT_GATEWAY_PORT": bad})
            code, text = self.start_failing(g)
            self.assertEqual(code, 1, text)
            self.assertIn("env CHAT_GATEWAY_PORT", text)
            self.assertIn(bad, text)

    def test_bad_env_log_level(self):
        g = self.gw({"h.lua": ECHO_CFG}, start=False, env={"CHAT_GATEWAY_LOG_LEVEL": "loud"})
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        self.assertIn("env CHAT_GATEWAY_LOG_LEVEL", text)

    # ---- data dir and token ----

    def test_data_dir_created_private(self):
        g = Gateway({"h.lua": ECHO_CFG})
        data = os.path.join(g.dir, "var", "lib", "chatgw")
        g.env["CHAT_GATEWAY_DATA_DIR"] = data
        self._gws.append(g)
        g.start()
        self.assertTrue(os.path.isdir(data))
        self.assertEqual(stat.S_IMODE(os.stat(data).st_mode), 0o700)

    def test_data_dir_from_config_relative_to_cwd(self):
        g = Gateway({"h.lua": ECHO_CFG}, config='data_dir: "state/here"\n', token=None)
        del g.env["CHAT_GATEWAY_DATA_DIR"]
        self._gws.append(g)
        g.start()
        path = os.path.join(g.dir, "state", "here")
        self.assertTrue(os.path.isdir(path))
        self.assertTrue(os.path.isfile(os.path.join(path, "token")))

    def test_generated_token(self):
        g = self.gw({"h.lua": ECHO_CFG}, token=None)
        data = g.env["CHAT_GATEWAY_DATA_DIR"]
        token_path = os.path.join(data, "token")
        self.assertTrue(os.path.isfile(token_path), os.listdir(data))
        self.assertEqual(stat.S_IMODE(os.stat(token_path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(data).st_mode), 0o700)
        with open(token_path) as f:
            token = f.read().strip()
        self.assertGreaterEqual(len(token), 32)
        # The log says where the token is, and never shows the token itself.
        self.assertTrue(any(token_path in json.dumps(r) for r in g.records()),
                        g.stderr_text())
        self.assertNotIn(token, g.stderr_text())

        status, headers, body = http_get(g.port(), "/secret")
        self.assertJsonError(status, body, 401, "unauthorized")
        self.assertIn("bearer", headers.get("www-authenticate", "").lower())
        status, _, body = http_get(g.port(), "/secret", {"Authorization": "Bearer wrong" + token})
        self.assertJsonError(status, body, 401)
        status, _, body = http_get(g.port(), "/secret", {"Authorization": "Bearer " + token})
        self.assertEqual(status, 200, body)
        # public routes need no token
        self.assertEqual(http_get(g.port(), "/open")[0], 200)

        # A restart with the same data dir reuses the stored token.
        self.assertEqual(g.stop(), 0, g.stderr_text())
        g2 = Gateway({"h.lua": ECHO_CFG}, token=None, workdir=g.dir)
        self._gws.insert(0, g2)  # stop g2 before g's cleanup removes the directory
        g2.start()
        with open(token_path) as f:
            self.assertEqual(f.read().strip(), token)
        self.assertEqual(stat.S_IMODE(os.stat(token_path).st_mode), 0o600)
        self.assertEqual(http_get(g2.port(), "/secret", {"Authorization": "Bearer " + token})[0],
                         200)
        self.assertEqual(http_get(g2.port(), "/secret")[0], 401)
        self.assertTrue(any(token_path in json.dumps(r) for r in g2.records()),
                        g2.stderr_text())
        self.assertNotIn(token, g2.stderr_text())

    def test_env_token_wins_over_file(self):
        g = self.gw({"h.lua": ECHO_CFG}, token=None)
        token_path = os.path.join(g.env["CHAT_GATEWAY_DATA_DIR"], "token")
        with open(token_path) as f:
            file_token = f.read().strip()
        self.assertEqual(g.stop(), 0)
        g2 = Gateway({"h.lua": ECHO_CFG}, token="from-env-token-42", workdir=g.dir)
        self._gws.insert(0, g2)
        g2.start()
        port = g2.port()
        self.assertEqual(http_get(port, "/secret", {"Authorization": "Bearer from-env-token-42"})[0],
                         200)
        self.assertEqual(http_get(port, "/secret", {"Authorization": "Bearer " + file_token})[0],
                         401)
        self.assertNotIn("from-env-token-42", g2.stderr_text())

    # ---- listeners ----

    def test_notify_listener(self):
        g = self.gw({"n.lua": NOTIFY}, config="""\
            listeners:
              notify:
                port: 0
            """)
        self.assertIn("notify", g.ports)
        main, notify = g.port("main"), g.port("notify")
        self.assertNotEqual(main, notify)
        r = g.request("POST", "/notify/hook", json_body={"x": 1}, listener="notify", auth=False)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"ok": True, "listener": "notify", "got": {"x": 1}})
        # not on main
        r = g.request("POST", "/notify/hook", json_body={"x": 1}, listener="main", auth=False)
        self.assertEqual(r.status, 404, r)
        self.assertIs(r.json()["ok"], False)
        # and main's routes are not on notify
        self.assertEqual(g.get("/main-only", auth=False).status, 200)
        r = g.get("/main-only", auth=False, listener="notify")
        self.assertEqual(r.status, 404, r)
        self.assertIs(r.json()["ok"], False)

    def test_notify_listener_declared_without_settings(self):
        # `notify:` alone declares it; with main on port 0, its derived port stays 0 (ephemeral)
        g = self.gw({"n.lua": NOTIFY}, config="""\
            listeners:
              notify:
            """)
        self.assertIn("notify", g.ports)
        self.assertNotEqual(g.port("notify"), 0)
        r = g.request("POST", "/notify/hook", json_body={}, listener="notify", auth=False)
        self.assertEqual(r.status, 200, r)

    def test_route_on_undeclared_listener(self):
        # (notify always exists now, as the notify API's listener: another name is undeclared)
        g = self.gw({"n.lua": NOTIFY.replace('listener = "notify"', 'listener = "hooks"')}, start=False)
        path = os.path.join(g.handlers_dir, "n.lua")
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        self.assertRegex(text, re.escape(path) + r":\d+: .*hooks")

    def test_the_notify_listener_exists_without_a_config_file(self):
        g = self.gw({"n.lua": NOTIFY}, env={"INTEGRATIONS_PORT": "0"})
        r = g.request("POST", "/notify/hook", json_body={"a": 1}, listener="notify")
        self.assertEqual(r.json()["listener"], "notify")

    def test_bad_listener_name(self):
        g = self.gw({"h.lua": ECHO_CFG}, start=False, config="""\
            listeners:
              Admin:
                port: 0
            """)
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        self.assertIn(g.config_path + ":2:", text)

    # ---- app section ----

    def test_app_section_visible_to_handlers(self):
        g = self.gw({"h.lua": ECHO_CFG}, config="""\
            app:
              greeting: hello
              count: 42
              ratio: 0.5
              beta: false
              quoted: "on"
              nothing: ~
              list: [1, "two"]
              nested:
                deep: yes
            """)
        r = g.get("/app")
        self.assertEqual(r.status, 200, r)
        app = r.json()["app"]
        self.assertEqual(app["greeting"], "hello")
        self.assertEqual(app["count"], 42)
        self.assertEqual(app["ratio"], 0.5)
        self.assertIs(app["beta"], False)
        self.assertEqual(app["quoted"], "on")
        self.assertIsNone(app["nothing"])
        self.assertEqual(app["list"], [1, "two"])
        self.assertEqual(app["nested"], {"deep": True})

    def test_config_values_take_effect(self):
        g = self.gw({"h.lua": """\
            return { routes = { ["POST /echo"] = { function(req) return req.body end,
                                                   public = true } } }
            """}, config="""\
            http:
              max_body_bytes: 10
            """)
        r = g.request("POST", "/echo", body="0123456789", auth=False)
        self.assertEqual((r.status, r.body), (200, b"0123456789"))
        r = g.request("POST", "/echo", body="0123456789A", auth=False)
        self.assertEqual(r.status, 413, r)
        self.assertIs(r.json()["ok"], False)

    # ---- config errors ----

    def test_unknown_config_key(self):
        g = self.gw({"h.lua": ECHO_CFG}, start=False, config="""\
            log:
              level: info
            http:
              max_body_byte: 10
            """)
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        self.assertIn(g.config_path + ":4:", text)
        self.assertIn("max_body_byte", text)

    def test_unknown_top_level_key(self):
        g = self.gw({"h.lua": ECHO_CFG}, start=False, config="listen:\n  port: 1\n")
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        self.assertIn(g.config_path + ":1:", text)
        self.assertIn("listen", text)

    def test_all_config_problems_reported(self):
        g = self.gw({"h.lua": ECHO_CFG}, start=False, config="""\
            http:
              idle_timeout_ms: 0
              max_connections: lots
            log:
              level: loud
            """)
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        for line in (2, 3, 5):
            self.assertIn("%s:%d:" % (g.config_path, line), text)

    def test_duplicate_config_key(self):
        g = self.gw({"h.lua": ECHO_CFG}, start=False, config="""\
            log:
              level: info
            log:
              level: debug
            """)
        code, text = self.start_failing(g)
        self.assertEqual(code, 1, text)
        self.assertIn(g.config_path + ":3:", text)
        self.assertIn("line 1", text)


if __name__ == "__main__":
    unittest.main()
