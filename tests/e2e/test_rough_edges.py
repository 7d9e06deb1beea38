"""E2E: what a new handler author tripped on (issue 20): their own modules with require, the
runtime's routes, reload state in /health, error texts, check's verdict, unknown env names,
reason phrases, informational statuses, and the /healthz liveness probe."""
import json
import os
import re
import signal
import socket
import threading
import time
import unittest

from harness import Gateway, GatewayTest, run_cli, SLOW


def errors(g, msg="handler error"):
    return [r for r in g.records() if r.get("level") == "error" and r.get("msg") == msg]


class RequireTest(GatewayTest):
    def test_own_modules_from_the_handlers_dir_and_lib_beside_it(self):
        g = self.gw(start=False, handlers={
            "a.lua": """
                local util = require "lib.util"      -- handlers/lib/util.lua
                local shared = require "shared"      -- lib/shared.lua, beside handlers/
                return { routes = { ["GET /mods"] = function() return { util = util.x, shared = shared.y } end } }
                """})
        os.makedirs(os.path.join(g.handlers_dir, "lib"))
        with open(os.path.join(g.handlers_dir, "lib", "util.lua"), "w") as f:
            f.write("return { x = 'util' }\n")
        os.makedirs(os.path.join(g.dir, "lib"))
        with open(os.path.join(g.dir, "lib", "shared.lua"), "w") as f:
            f.write("return { y = 'shared' }\n")
        # another working directory: the paths do not depend on it
        other = os.path.join(g.dir, "elsewhere")
        os.makedirs(other)
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env, cwd=other)
        self.assertEqual(code, 0, err)
        g.start()
        self.assertEqual(g.get("/mods").json(), {"util": "util", "shared": "shared"})
        # handlers/lib/*.lua are modules, not handler files
        self.assertEqual([h["name"] for h in g.health()["handlers"]], ["a"])

    def test_waiting_while_a_module_loads_says_where_waits_work(self):
        g = Gateway({"a.lua": 'local m = require "slow"\nreturn {}\n'})
        self.addCleanup(g.cleanup)
        with open(os.path.join(g.handlers_dir, "slow.lua"), "w") as f:
            f.write("chatgw.sleep(1)\nreturn {}\n")
        os.rename(os.path.join(g.handlers_dir, "slow.lua"), os.path.join(g.dir, "slow.lua"))
        os.makedirs(os.path.join(g.dir, "lib"))
        os.rename(os.path.join(g.dir, "slow.lua"), os.path.join(g.dir, "lib", "slow.lua"))
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env, cwd=g.dir)
        self.assertEqual(code, 1, err)
        self.assertIn("lib/slow.lua:1: chatgw.sleep: can only wait inside a handler, task or timer", err)
        self.assertNotIn("table.sort", err)


class LoadCheckTest(unittest.TestCase):
    def check(self, handlers, config=""):
        g = Gateway(handlers, config)
        self.addCleanup(g.cleanup)
        return run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env, cwd=g.dir)

    def test_a_route_on_the_websocket_path_is_a_load_error(self):
        for key in ("GET /ws", "POST /ws"):
            code, out, err = self.check({"a.lua": 'return { routes = {\n  ["%s"] = function() end,\n} }\n' % key})
            self.assertEqual(code, 1, err)
            self.assertRegex(err, r"a\.lua:2: route '%s' is already declared by the runtime \(the WebSocket path, ws\.path\)" % key)
        # another ws.path frees /ws; the new path is the runtime's
        code, out, err = self.check({"a.lua": 'return { routes = { ["GET /ws"] = function() end } }\n'},
                                    "ws:\n  path: /socket\n")
        self.assertEqual(code, 0, err)
        code, out, err = self.check({"a.lua": 'return { routes = { ["GET /socket"] = function() end } }\n'},
                                    "ws:\n  path: /socket\n")
        self.assertEqual(code, 1, err)
        # with WebSocket off the path is an ordinary route
        code, out, err = self.check({"a.lua": 'return { routes = { ["GET /ws"] = function() end } }\n'},
                                    "ws:\n  enabled: false\n")
        self.assertEqual(code, 0, err)

    def test_problems_come_in_line_order(self):
        src = "return { routes = {\n" + "".join(
            '  ["GET /r%d"] = { function() end, colour%d = 1 },\n' % (i, i) for i in range(1, 9)) + "} }\n"
        code, out, err = self.check({"a.lua": src})
        self.assertEqual(code, 1, err)
        lines = [int(m) for m in re.findall(r"a\.lua:(\d+): route", err)]
        self.assertEqual(lines, list(range(2, 10)), err)

    def test_unknown_chat_gateway_variables_are_named_with_the_nearest(self):
        g = Gateway({})
        self.addCleanup(g.cleanup)
        env = dict(g.env, CHAT_GATEWAY_PROT="9000", CHAT_GATEWAY_EXEC_MAX_CHARTS="2",
                   CHAT_GATEWAY_OWNER_TELEGRAM_ID="1", CHAT_GATEWAY_LOG_LEVLE="debug")
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=env, cwd=g.dir)
        self.assertEqual(code, 0, err)
        warns = [json.loads(l) for l in err.splitlines() if l.startswith("{") and "unknown environment" in l]
        self.assertEqual([(w["variable"], w["nearest"]) for w in warns],
                         [("CHAT_GATEWAY_LOG_LEVLE", "CHAT_GATEWAY_LOG_LEVEL"),
                          ("CHAT_GATEWAY_PROT", "CHAT_GATEWAY_PORT")])
        self.assertEqual(warns[0]["level"], "warn")
        self.assertNotIn("9000", err, "values are not logged")


class ReloadStateTest(GatewayTest):
    def test_generation_counts_successful_reloads_and_a_failed_one_degrades_health(self):
        g = self.gw({"a.lua": 'return { routes = { ["GET /v"] = function() return "1" end } }\n'})
        self.assertEqual(g.health()["generation"], 1)
        self.assertEqual(g.get("/health").json(), {"ok": True})
        g.write_handler("a.lua", 'return { routes = { ["GET /v"] = function() return "2" end } }\n')
        self.assertEqual(g.reload()["last_result"], "ok")
        self.assertEqual(g.health()["generation"], 2)
        g.write_handler("a.lua", 'return { routes = { ["GET /v"] = function() return "3" end }\n')
        self.assertEqual(g.reload()["last_result"], "failed")
        h = g.health()
        self.assertEqual(h["generation"], 2, "a failed reload is not a generation")
        self.assertEqual(h["status"], "degraded")
        self.assertIn("a.lua", h["checks"]["reload"]["last_error"])
        plain = g.get("/health").json()
        self.assertEqual(plain["status"], "degraded")
        self.assertIn("a.lua:", plain["reload_error"])
        self.assertEqual(g.get("/v").text, "2", "the old handlers run on")
        self.assertEqual(g.get("/healthz", auth=False).json(), {"ok": True}, "alive all the same")
        g.write_handler("a.lua", 'return { routes = { ["GET /v"] = function() return "4" end } }\n')
        self.assertEqual(g.reload()["last_result"], "ok")
        h = g.health()
        self.assertEqual((h["generation"], h["status"]), (3, "ok"))
        self.assertEqual(g.get("/health").json(), {"ok": True})


ERRORS = """
return { routes = {
  ["GET /table"] = function() error({ code = 1, why = "nope" }) end,
  ["GET /tail"] = function()
    return chatgw.http.request{ url = 5 }
  end,
  ["GET /s101"] = function() return 101, "switch" end,
  ["GET /s100"] = function() return 100 end,
  ["GET /s/:n"] = function(req) return tonumber(req.params.n), "x" end,
} }
"""


class ErrorTextTest(GatewayTest):
    def test_table_errors_tail_calls_and_informational_statuses(self):
        g = self.gw({"e.lua": ERRORS})
        r = g.get("/table")
        self.assertEqual(r.status, 500)
        e = self.wait(lambda: errors(g) and errors(g)[-1], 5, "the error line")
        self.assertTrue(e["error"].startswith('error object: {"'), e)
        self.assertIn('"code":1', e["error"])
        self.assertIn("stack traceback:", e["error"])
        self.assertIn("e.lua:3", e["error"])
        self.assertEqual(e["request_id"], r.json()["request_id"])

        n = len(errors(g))
        self.assertEqual(g.get("/tail").status, 500)
        e = self.wait(lambda: len(errors(g)) > n and errors(g)[-1], 5, "the tail call's error")
        self.assertRegex(e["error"], r"^[^\n]*e\.lua:4: \(in a tail call from the function defined here\) "
                                     r"chatgw\.http\.request: url must be a string")

        for path in ("/s101", "/s100"):
            n = len(errors(g))
            r = g.get(path)
            self.assertEqual(r.status, 500, path)
            e = self.wait(lambda: len(errors(g)) > n and errors(g)[-1], 5, "the status error")
            self.assertIn("informational status", e["error"])
            self.assertEqual(e["request_id"], r.json()["request_id"])

    def test_reason_phrases(self):
        g = self.gw({"e.lua": ERRORS})
        want = {418: "I'm a teapot", 425: "Too Early", 426: "Upgrade Required",
                451: "Unavailable For Legal Reasons", 599: "Server Error", 299: "Success",
                422: "Unprocessable Entity", 507: "Insufficient Storage"}
        for status, phrase in want.items():
            raw = g.raw(b"GET /s/%d HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n"
                        % (status, g.token.encode()))
            self.assertTrue(raw.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())), raw[:80])
        raw = g.raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), raw[:80])


class HealthzTest(GatewayTest):
    def test_liveness_without_a_token_and_503_while_draining(self):
        g = self.gw({"slow.lua": 'return { routes = { ["GET /slow"] = function() chatgw.sleep(1500) return "done" end } }\n'},
                    "listeners:\n  ops:\n    port: 0\n")
        r = g.get("/healthz", auth=False)
        self.assertEqual((r.status, r.json()), (200, {"ok": True}))
        self.assertEqual(g.get("/healthz", auth=False, listener="ops").json(), {"ok": True}, "every listener")
        self.assertEqual(g.get("/health", auth=False).status, 401, "/health keeps its token")
        # a request whose head is half sent when the stop comes is answered while draining
        s = socket.create_connection(("127.0.0.1", g.port()))
        s.settimeout(10 * SLOW)
        slow = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", g.get("/slow", timeout=20)))
        t.start()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3 * SLOW)
        g.signal(signal.SIGTERM)
        g.wait_log(lambda r: r.get("msg", "").startswith("stopping"), 5)
        s.sendall(b"\r\n")
        got = s.recv(4096)
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 503 "), got[:200])
        self.assertTrue(got.endswith(b'{"ok":false}'), got[-100:])
        t.join(20)
        self.assertEqual(g.proc.wait(20 * SLOW), 0)
        self.assertEqual(slow["r"].text, "done", "the request in flight finished")


if __name__ == "__main__":
    unittest.main()
