"""E2E: the built-in routes GET /health and GET /metrics."""
import os
import re

from harness import GatewayTest

APP = """
local hits = chatgw.metrics.counter{ name = "e2e_app_hits_total", help = "Hits by kind",
                                     labels = { "kind" } }
local plain = chatgw.metrics.counter{ name = "e2e_plain_total", help = "No labels" }
return {
  name = "app-handler",
  routes = {
    ["GET /items/:id"] = function(req)
      hits:inc({ kind = "item" })
      plain:inc()
      return { id = req.params.id }
    end,
    ["GET /fail"] = function() error("x") end,
  },
}
"""

OTHER = """
return {
  routes = {
    ["GET /other"] = function() return "other v1" end,
  },
}
"""


def parse_prom(text):
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$', line)
        if not m:
            raise AssertionError("bad exposition line: %r" % line)
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


class HealthTest(GatewayTest):
    def test_health_auth_and_plain(self):
        g = self.gw({"app.lua": APP})
        r = g.get("/health", auth=False)
        self.assertEqual(r.status, 401)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        self.assertEqual(r.json(), {"ok": False, "error": "unauthorized"})
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        r = g.get("/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"ok": True})

    def test_health_verbose(self):
        g = self.gw({"app.lua": APP, "other.lua": OTHER})
        r = g.get("/health?verbose=1")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertIs(j["ok"], True)
        self.assertIsInstance(j["uptime_s"], (int, float))
        self.assertGreaterEqual(j["uptime_s"], 0)
        self.assertIsInstance(j["version"], str)
        self.assertTrue(j["version"])
        handlers = j["handlers"]
        self.assertEqual(
            sorted((h["name"], h["file"]) for h in handlers),
            [("app-handler", os.path.join(g.handlers_dir, "app.lua")),
             ("other", os.path.join(g.handlers_dir, "other.lua"))])
        self.assertEqual(j["reloads"]["count"], 0)
        self.assertEqual(j["reloads"]["ok"], 0)
        self.assertEqual(j["reloads"]["failed"], 0)
        self.assertEqual(g.get("/health?verbose=true").json()["reloads"]["count"], 0)

    def test_no_handlers_lists_empty_array(self):
        g = self.gw({})
        j = g.health()
        self.assertEqual(j["handlers"], [])

    def test_failed_then_fixed_reload(self):
        g = self.gw({"app.lua": APP, "other.lua": OTHER})
        # a broken file: the old handlers keep serving
        g.write_handler("other.lua", 'return {\n  routes = {\n    ["GET /other"] = 42,\n  },\n}\n')
        rel = g.reload()
        self.assertEqual(rel["count"], 1)
        self.assertEqual(rel["failed"], 1)
        self.assertEqual(rel["ok"], 0)
        self.assertEqual(rel["last_result"], "failed")
        self.assertIn(os.path.join(g.handlers_dir, "other.lua") + ":3:", rel["last_error"])
        self.assertEqual(g.get("/other").text, "other v1")
        self.assertEqual(g.get("/items/7").json(), {"id": "7"})
        g.wait_log(lambda x: x.get("level") == "error" and "reload failed" in x.get("msg", ""))

        # fixed: the new code is served and the record says ok
        g.write_handler("other.lua", 'return { routes = { ["GET /other"] = function() return "other v2" end } }\n')
        rel = g.reload()
        self.assertEqual(rel["count"], 2)
        self.assertEqual(rel["ok"], 1)
        self.assertEqual(rel["failed"], 1)
        self.assertEqual(rel["last_result"], "ok")
        self.assertEqual(g.get("/other").text, "other v2")
        self.assertEqual(g.get("/items/8").json(), {"id": "8"})


class MetricsTest(GatewayTest):
    def test_metrics_auth(self):
        g = self.gw({"app.lua": APP})
        r = g.get("/metrics", auth=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["error"], "unauthorized")

    def test_metrics_exposition(self):
        g = self.gw({"app.lua": APP})
        for i in range(3):
            self.assertEqual(g.get("/items/%d" % i).status, 200)
        self.assertEqual(g.get("/fail").status, 500)
        self.assertEqual(g.get("/nope").status, 404)
        r = g.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/plain"), r.headers)
        text = r.text
        self.assertIn("# TYPE chatgw_http_requests_total counter", text)
        self.assertIn("# HELP chatgw_http_requests_total ", text)
        s = parse_prom(text)
        self.assertEqual(sample(s, "chatgw_http_requests_total", route="GET /items/:id", status="200"), 3)
        self.assertEqual(sample(s, "chatgw_http_requests_total", route="GET /fail", status="500"), 1)
        self.assertIn("# TYPE chatgw_http_request_duration_seconds histogram", text)
        self.assertEqual(
            sample(s, "chatgw_http_request_duration_seconds_bucket", route="GET /items/:id", le="+Inf"), 3)
        self.assertEqual(
            sample(s, "chatgw_http_request_duration_seconds_count", route="GET /items/:id"), 3)
        self.assertIsNotNone(
            sample(s, "chatgw_http_request_duration_seconds_sum", route="GET /items/:id"))
        self.assertIn("# TYPE chatgw_http_connections_open gauge", text)
        # this very connection is open while /metrics renders
        self.assertGreaterEqual(sample(s, "chatgw_http_connections_open"), 1)
        self.assertIn("# TYPE chatgw_reloads_total counter", text)
        # the Lua-defined counters
        self.assertIn("# TYPE e2e_app_hits_total counter", text)
        self.assertIn("# HELP e2e_app_hits_total Hits by kind", text)
        self.assertEqual(sample(s, "e2e_app_hits_total", kind="item"), 3)
        self.assertEqual(sample(s, "e2e_plain_total"), 3)

    def test_reloads_and_lua_counter_survive_reload(self):
        g = self.gw({"app.lua": APP})
        self.assertEqual(g.get("/items/1").status, 200)
        g.reload()
        g.write_handler("broken.lua", "return 1\n")
        g.reload()
        g.remove_handler("broken.lua")
        self.assertEqual(g.get("/items/2").status, 200)
        s = parse_prom(g.get("/metrics").text)
        self.assertEqual(sample(s, "chatgw_reloads_total", result="ok"), 1)
        self.assertEqual(sample(s, "chatgw_reloads_total", result="failed"), 1)
        # the counter re-registered by the reloaded state keeps counting
        self.assertEqual(sample(s, "e2e_app_hits_total", kind="item"), 2)


if __name__ == "__main__":
    import unittest
    unittest.main()
