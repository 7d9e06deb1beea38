"""Reload on SIGHUP: the contract users rely on (DESIGN.md, issue "runtime core" point 9)."""
import json
import os
import signal
import threading
import time
import unittest
import http.client

from harness import GatewayTest, SLOW, TOKEN

VERSIONED = """
local V = %d
return {
  routes = {
    ["GET /version"] = function(req) return { version = V } end,
    ["GET /slow"] = function(req)
      chatgw.sleep(tonumber(req.query.ms) or 300)
      return { version = V, slept = true }
    end,
  },
}
"""

BROKEN = """
return {
  routes = {
    ["GET /version"] = function(req) return { version = "broken" } end
  -- missing closing brace on purpose
"""


class Load:
    """Clients hammering GET /version on keep-alive connections until stopped."""

    def __init__(self, gw, threads=4):
        self.gw, self.stop_flag = gw, threading.Event()
        self.failures, self.versions, self.count = [], [], 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        conn = None
        deadline = time.time() + 120 * SLOW  # bounded even if stop is never called
        while not self.stop_flag.is_set() and time.time() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.gw.port(), timeout=10 * SLOW)
                conn.request("GET", "/version", headers={"Authorization": "Bearer " + TOKEN})
                r = conn.getresponse()
                body = r.read()
                with self.lock:
                    self.count += 1
                    if r.status != 200:
                        self.failures.append((r.status, body))
                    else:
                        self.versions.append(json.loads(body)["version"])
            except Exception as e:  # a dropped request is a failure
                with self.lock:
                    self.failures.append(repr(e))
                conn = None
        if conn:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


class ReloadTest(GatewayTest):
    def test_twenty_reloads_half_broken_under_load_drop_nothing(self):
        gw = self.gw({"v.lua": VERSIONED % 0})
        good_versions = []
        with Load(gw) as load:
            for i in range(1, 21):
                if i % 2 == 0:
                    gw.write_handler("v.lua", BROKEN)
                    r = gw.reload()
                    self.assertEqual(r["last_result"], "failed")
                    self.assertIn("v.lua:", r["last_error"])
                    # the previous good version keeps answering
                    self.assertEqual(gw.get("/version").json()["version"], good_versions[-1])
                else:
                    gw.write_handler("v.lua", VERSIONED % i)
                    r = gw.reload()
                    self.assertEqual(r["last_result"], "ok", r)
                    self.assertEqual(gw.get("/version").json()["version"], i)
                    good_versions.append(i)
                time.sleep(0.05)
        self.assertEqual(load.failures, [], "requests failed during reloads")
        self.assertGreater(load.count, 100)
        seen = set(load.versions)
        self.assertNotIn("broken", seen)
        # clients saw several of the new versions as they were loaded
        self.assertGreaterEqual(len(seen & set(good_versions)), 5, sorted(seen, key=str))
        h = gw.health()
        self.assertEqual(h["reloads"]["count"], 20)
        self.assertEqual(h["reloads"]["ok"], 10)
        self.assertEqual(h["reloads"]["failed"], 10)

    def test_in_flight_request_finishes_on_old_state(self):
        gw = self.gw({"v.lua": VERSIONED % 1})
        result = {}

        def slow():
            result["r"] = gw.get("/slow?ms=600")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2 * SLOW)
        gw.write_handler("v.lua", VERSIONED % 2)
        gw.reload()
        self.assertEqual(gw.get("/version").json()["version"], 2)
        t.join(10 * SLOW)
        self.assertEqual(result["r"].status, 200)
        self.assertEqual(result["r"].json(), {"version": 1, "slept": True})
        # the old state is closed once its last request is done
        deadline = time.time() + 5 * SLOW
        while time.time() < deadline and gw.health()["lua_states"] != 1:
            time.sleep(0.05)
        self.assertEqual(gw.health()["lua_states"], 1)

    def test_timers_and_tasks_of_retired_state_are_cancelled(self):
        gw = self.gw({"t.lua": """
            local d = chatgw.shared("t")
            local gen = (d:get("gen") or 0) + 1
            d:set("gen", gen)
            chatgw.every(20, function() d:incr("ticks_" .. gen, 1, 0) end)
            chatgw.spawn(function()
              local ok, err = chatgw.sleep(60000)
              d:set("task_result_" .. gen, tostring(ok) .. "|" .. tostring(err))
              -- a second wait after being told is an error, so a loop cannot spin forever
              local ok2, e2 = pcall(chatgw.sleep, 1)
              d:set("second_wait_" .. gen, tostring(ok2) .. "|" .. tostring(e2))
            end)
            return { routes = { ["GET /t"] = function()
              return { gen = gen, t1 = d:get("ticks_1"), t2 = d:get("ticks_2"),
                       task1 = d:get("task_result_1"), second1 = d:get("second_wait_1") }
            end } }
        """})
        time.sleep(0.2 * SLOW)
        gw.reload()
        time.sleep(0.1 * SLOW)
        a = gw.get("/t").json()
        time.sleep(0.3 * SLOW)
        b = gw.get("/t").json()
        self.assertEqual(b["gen"], 2)
        self.assertEqual(a["t1"], b["t1"], "generation 1's timer kept ticking after the reload")
        self.assertGreater(b["t2"], a["t2"] or 0)
        self.assertEqual(b["task1"], "nil|cancelled: reload")
        self.assertIn("false|", b["second1"])
        self.assertIn("cancelled: reload", b["second1"])

    def test_failed_reload_keeps_state_and_reports_file_line(self):
        gw = self.gw({"v.lua": VERSIONED % 1})
        gw.write_handler("x.lua", "return { routes = { ['GET /x'] = function() end }, bogus = 1 }\n")
        r = gw.reload()
        self.assertEqual(r["last_result"], "failed")
        self.assertRegex(r["last_error"], r"x\.lua:1: unknown key 'bogus'")
        self.assertEqual(gw.get("/version").json()["version"], 1)
        self.assertEqual(gw.get("/x").status, 404)
        rec = gw.wait_log(lambda r: r.get("msg", "").startswith("reload failed"))
        self.assertIn("x.lua:1", rec["error"])
        gw.remove_handler("x.lua")
        r = gw.reload()
        self.assertEqual(r["last_result"], "ok")
        self.assertNotIn("last_error", r)

    def test_reload_rereads_config_but_not_listeners(self):
        gw = self.gw({"v.lua": """
            return { routes = { ["GET /cfg"] = function() return chatgw.config.app end } }
        """}, config="app:\n  colour: red\n")
        self.assertEqual(gw.get("/cfg").json(), {"colour": "red"})
        # CHAT_GATEWAY_PORT=0 from the env wins over a main port in the file, so a new
        # listener is what makes the listener set differ
        with open(gw.config_path, "w") as f:
            f.write("app:\n  colour: blue\nlisteners:\n  extra:\n    port: 0\n")
        r = gw.reload()
        self.assertEqual(r["last_result"], "ok")
        self.assertEqual(gw.get("/cfg").json(), {"colour": "blue"})
        gw.wait_log(lambda r: r.get("level") == "warn" and "restart" in r.get("msg", ""))

    def test_bad_config_on_reload_keeps_running(self):
        gw = self.gw({"v.lua": VERSIONED % 1})
        with open(gw.config_path, "w") as f:
            f.write("http:\n  max_body_bytes: lots\n")
        r = gw.reload()
        self.assertEqual(r["last_result"], "failed")
        self.assertIn("chatgw.yml:2:", r["last_error"])
        self.assertEqual(gw.get("/version").json()["version"], 1)

    def test_many_signals_at_once_are_all_handled(self):
        gw = self.gw({"v.lua": VERSIONED % 1})
        for _ in range(5):
            gw.signal(signal.SIGHUP)
        time.sleep(0.5 * SLOW)
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            h = gw.health()
            if h["reloads"]["count"] >= 1 and "last_result" in h["reloads"]:
                break
            time.sleep(0.05)
        h = gw.health()
        self.assertGreaterEqual(h["reloads"]["count"], 1)
        self.assertEqual(h["reloads"]["failed"], 0)
        self.assertEqual(gw.get("/version").json()["version"], 1)


if __name__ == "__main__":
    unittest.main()
