"""E2E: chatgw.supervise - restart with the fixed backoff (1 s, 2 s, ...), circuit breaker,
reset after healthy running, hourly restart cap, per-module env names of the Node.js gateway,
state in chatgw.loops() and /health, reload without two copies, clean shutdown."""
import os
import signal
import time
import unittest

from harness import SLOW, GatewayTest, alive, run_cli

FAST = {"CHATGW_SUPERVISE_BACKOFF_SCALE": "0.01"}  # backoff steps 10 ms, 20 ms, 50 ms, ...

# A handler with a marker file (config app.marker) and a /loops route; {loops} is Lua code.
TEMPLATE = """
local marker = chatgw.config.app.marker
local function mark(...)
  local f = assert(io.open(marker, "a"))
  f:write(table.concat({ ... }, " "), "\\n")
  f:close()
end
%s
return {
  routes = {
    ["GET /loops"] = function() return chatgw.loops() end,
  },
}
"""


def handler(code):
    return TEMPLATE % code


class SuperviseCase(GatewayTest):
    def start(self, code, env=None, config=""):
        g = self.gw(start=False, env=env, config=None)
        self.marker = os.path.join(g.dir, "marker.log")
        with open(g.config_path, "w") as f:
            f.write(config + "app:\n  marker: %s\n" % self.marker)
        g.write_handler("loop.lua", handler(code))
        g.start()
        return g

    def lines(self):
        try:
            with open(self.marker) as f:
                return [l.split() for l in f.read().splitlines()]
        except FileNotFoundError:
            return []

    def runs(self):
        return [l for l in self.lines() if l and l[0] == "run"]

    def wait_detail(self):
        return "; markers: %r" % self.lines()[-20:]

    def loop(self, g, name):
        return g.get("/loops").json()[name]

    def check(self, g, name):
        return g.health()["checks"]["loops"]["loops"][name]


FAILING = """
chatgw.supervise{ name = "flaky", run = function(ctx)
  mark("run", ctx.attempt, string.format("%.3f", chatgw.now()))
  error("boom " .. ctx.attempt)
end }
"""


class BackoffTest(SuperviseCase):
    def test_restarts_after_1s_then_2s(self):
        g = self.start(FAILING)
        self.wait(lambda: len(self.runs()) >= 2, 5, "the first restart")
        st = self.loop(g, "flaky")
        self.assertEqual(st["state"], "backoff")
        self.assertIs(st["running"], False)
        self.assertIn("boom 2", st["last_error"])
        self.assertEqual(st["restarts"], 1)
        self.assertLessEqual(st["next_start_in_ms"], 2250)
        h = g.health()
        self.assertEqual(h["status"], "degraded")
        self.assertEqual(h["checks"]["loops"]["status"], "degraded")
        self.assertEqual(g.get("/health").json(), {"ok": True, "status": "degraded"})
        self.wait(lambda: len(self.runs()) >= 3, 6, "the second restart")
        t = [float(r[2]) for r in self.runs()]
        self.assertGreaterEqual(t[1] - t[0], 1000)
        self.assertLess(t[1] - t[0], 1250 + 200 * SLOW)
        self.assertGreaterEqual(t[2] - t[1], 2000)
        self.assertLess(t[2] - t[1], 2250 + 200 * SLOW)
        warn = g.wait_log(lambda r: r.get("msg") == "supervised loop failed")
        self.assertEqual(warn["level"], "warn")
        self.assertIn("boom 1", warn["error"])

    def test_a_loop_that_returns_is_restarted_too(self):
        g = self.start("""
chatgw.supervise{ name = "ret", run = function(ctx) mark("run", ctx.attempt) end }
""", env=FAST)
        self.wait(lambda: len(self.runs()) >= 3, 5, "restarts")
        self.assertEqual(self.loop(g, "ret")["last_error"], "returned")


class CircuitTest(SuperviseCase):
    def test_circuit_opens_after_n_consecutive_failures(self):
        env = dict(FAST, CHAT_GATEWAY_CIRCUIT_OPEN_AFTER="3", CHAT_GATEWAY_CIRCUIT_OPEN_MS="1500")
        g = self.start(FAILING, env=env)
        self.wait(lambda: len(self.runs()) >= 3, 5, "three failures")
        rec = g.wait_log(lambda r: r.get("msg", "").startswith("supervised loop circuit open"))
        self.assertEqual(rec["consecutive_failures"], 3)
        self.assertEqual(rec["open_ms"], 1500)
        st = self.loop(g, "flaky")
        self.assertEqual(st["state"], "circuit_open")
        self.assertEqual(g.health()["status"], "degraded")
        self.wait(lambda: len(self.runs()) >= 4, 5, "the run after the circuit closed")
        t = [float(r[2]) for r in self.runs()]
        self.assertLess(t[2] - t[0], 500 * SLOW)            # backoff 10 ms, 20 ms
        self.assertGreaterEqual(t[3] - t[2], 1500)           # then the circuit's pause
        self.assertLess(t[3] - t[2], 1500 + 500 * SLOW)
        # a failure right after the circuit closes opens it again
        self.wait(lambda: self.loop(g, "flaky")["state"] == "circuit_open", 3, "reopened")

    def test_healthy_running_resets_the_backoff(self):
        env = dict(FAST, CHAT_GATEWAY_SUPERVISE_RESET_MS="300", CHAT_GATEWAY_CIRCUIT_OPEN_AFTER="2",
                   CHAT_GATEWAY_CIRCUIT_OPEN_MS="100000")
        g = self.start("""
chatgw.supervise{ name = "steady", run = function(ctx)
  mark("run", ctx.attempt)
  chatgw.sleep(350)
  error("late failure")
end }
chatgw.supervise{ name = "quick", run = function(ctx) error("early failure") end }
""", env=env)
        self.wait(lambda: len(self.runs()) >= 4, 10, "four runs of the steady loop")
        st = self.loop(g, "steady")
        self.assertIn(st["state"], ("running", "backoff"))
        self.assertLessEqual(st["consecutive_failures"], 1)
        self.assertEqual(self.loop(g, "quick")["state"], "circuit_open")
        opened = [r for r in g.records() if r.get("msg", "").startswith("supervised loop circuit open")]
        self.assertEqual([r["name"] for r in opened], ["quick"])


class RestartCapTest(SuperviseCase):
    def test_restart_cap_stops_the_loop_for_good(self):
        env = dict(FAST, CHAT_GATEWAY_MAX_RESTARTS_PER_HOUR="3", CHAT_GATEWAY_CIRCUIT_OPEN_AFTER="100")
        g = self.start(FAILING, env=env)
        rec = g.wait_log(lambda r: r.get("level") == "error" and "stopped for good" in r.get("msg", ""))
        self.assertEqual(rec["name"], "flaky")
        self.assertEqual(rec["restarts_last_hour"], 3)
        self.assertIn("boom 4", rec["last_error"])
        time.sleep(0.5 * SLOW)
        self.assertEqual(len(self.runs()), 4)  # the first run and three restarts
        st = self.loop(g, "flaky")
        self.assertEqual((st["state"], st["restarts"], st["restarts_last_hour"]), ("failed", 3, 3))
        self.assertNotIn("next_start_in_ms", st)
        self.assertEqual(g.health()["status"], "degraded")
        m = g.get("/metrics").text
        self.assertIn('chatgw_supervise_restarts_total{name="flaky"} 3', m)
        self.assertIn('chatgw_supervise_state{name="flaky"} 4', m)

    def test_per_module_overrides_use_the_seed_names(self):
        env = dict(FAST, CHAT_GATEWAY_MAX_RESTARTS_TELEGRAM_PER_HOUR="1",
                   CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_NOTIFY="2",
                   CHAT_GATEWAY_CIRCUIT_OPEN_MS_NOTIFY="100000",
                   CHAT_GATEWAY_CIRCUIT_OPEN_AFTER="4", CHAT_GATEWAY_CIRCUIT_OPEN_MS="100000")
        g = self.start("""
for _, spec in ipairs({ { "tg", "telegram" }, { "nt", "notify" }, { "fs", "feishu" }, { "plain" } }) do
  chatgw.supervise{ name = spec[1], module = spec[2], run = function(ctx)
    mark("run", spec[1], ctx.attempt)
    error("down")
  end }
end
""", env=env, config="supervise:\n  modules:\n    feishu:\n      max_restarts_per_hour: 0\n")

        def count(name):
            return len([r for r in self.runs() if r[1] == name])

        self.wait(lambda: self.loop(g, "plain")["state"] == "circuit_open", 5, "plain circuit")
        self.wait(lambda: self.loop(g, "tg")["state"] == "failed", 5, "telegram stopped")
        self.wait(lambda: self.loop(g, "fs")["state"] == "failed", 5, "feishu stopped")
        self.wait(lambda: self.loop(g, "nt")["state"] == "circuit_open", 5, "notify circuit")
        self.assertEqual(count("tg"), 2)     # CHAT_GATEWAY_MAX_RESTARTS_TELEGRAM_PER_HOUR=1
        self.assertEqual(count("fs"), 1)     # supervise.modules.feishu.max_restarts_per_hour: 0
        self.assertEqual(count("nt"), 2)     # CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_NOTIFY=2
        self.assertEqual(count("plain"), 4)  # CHAT_GATEWAY_CIRCUIT_OPEN_AFTER=4
        self.assertEqual(self.loop(g, "tg")["module"], "telegram")


class StateTest(SuperviseCase):
    def test_state_in_lua_and_verbose_health(self):
        g = self.start("""
local h = chatgw.supervise{ name = "poller", module = "notify", run = function(ctx)
  mark("run", ctx.attempt)
  while true do
    if not chatgw.sleep(20) then return end
  end
end }
assert(h.name == "poller" and h:status().state == "starting")
""")
        self.wait(lambda: self.runs(), 5, "the loop to start")
        st = self.loop(g, "poller")
        self.assertEqual((st["state"], st["running"], st["restarts"], st["module"]),
                         ("running", True, 0, "notify"))
        self.assertIsInstance(st["started_at"], float)
        h = g.health()
        self.assertEqual(h["status"], "ok")
        self.assertEqual(h["checks"]["loops"]["status"], "ok")
        self.assertEqual(self.check(g, "poller")["state"], "running")
        self.assertEqual(g.get("/health").json(), {"ok": True})
        self.assertIn('chatgw_supervise_state{name="poller"} 1', g.get("/metrics").text)

    def test_misuse_is_a_load_error_with_file_and_line(self):
        cases = [
            ('chatgw.supervise{ name = "Bad Name", run = function() end }', "name must match"),
            ('chatgw.supervise{ name = "x" }', "run must be a function"),
            ('chatgw.supervise{ name = "x", run = function() end, restart = 1 }', "unknown option 'restart'"),
            ('chatgw.supervise{ name = "x", module = "Tele", run = function() end }', "module must match"),
            ('chatgw.supervise{ name = "x", lock = "a/b", run = function() end }', "lock must match"),
            ('chatgw.supervise{ name = "x", run = function() end }\n'
             'chatgw.supervise{ name = "x", run = function() end }', "a loop named 'x' already exists"),
        ]
        for code, want in cases:
            g = self.gw({"bad.lua": "\n" + code + "\nreturn {}\n"}, start=False)
            code_, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env)
            self.assertEqual(code_, 1, err)
            self.assertRegex(err, r"bad\.lua:\d+: chatgw\.supervise: " + want.replace("(", r"\("), err)

    def test_bad_env_value_is_a_load_error(self):
        g = self.gw({"x.lua": "return {}"}, start=False,
                    env={"CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_TELEGRAM": "soon"})
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env)
        self.assertEqual(code, 1)
        self.assertIn("env CHAT_GATEWAY_CIRCUIT_OPEN_AFTER_TELEGRAM: expected integer 1..1000000, got 'soon'", err)

    def test_check_does_not_run_loops(self):
        g = self.gw(start=False)
        marker = os.path.join(g.dir, "marker.log")
        with open(g.config_path, "w") as f:
            f.write("app:\n  marker: %s\n" % marker)
        g.write_handler("loop.lua", handler('chatgw.supervise{ name = "l", run = function() mark("run") end }'))
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path], env=g.env)
        self.assertEqual(code, 0, err)
        time.sleep(0.1)
        self.assertFalse(os.path.exists(marker))


MARKED = """
local ID = string.format("%d", chatgw.time() * 1000000)
chatgw.supervise{ name = "chan", run = function(ctx)
  mark("start", ID)
  while true do
    local ok, err = chatgw.sleep(15)
    if not ok then mark("end", ID, err) return end
    mark("tick", ID)
  end
end }
"""


class ReloadShutdownTest(SuperviseCase):
    def test_reload_stops_the_old_loop_before_the_new_one_runs(self):
        g = self.start(MARKED)
        self.wait(lambda: any(l[0] == "tick" for l in self.lines()), 5, "ticks")
        for i in range(3):
            g.reload()
            time.sleep(0.1 * SLOW)
        self.wait(lambda: len([l for l in self.lines() if l[0] == "start"]) == 4, 5, "four starts")
        self.wait(lambda: self.lines()[-1][0] == "tick", 5, "the last loop ticking")
        running, ids = set(), []
        for l in self.lines():
            kind, id_ = l[0], l[1]
            if kind == "start":
                self.assertEqual(running, set(), "two copies ran at once: %r" % self.lines())
                running.add(id_)
                ids.append(id_)
            elif kind == "tick":
                self.assertEqual(running, {id_}, "a tick from a stopped loop")
            elif kind == "end":
                self.assertEqual(l[2:], ["cancelled:", "reload"])
                running.discard(id_)
        self.assertEqual(len(set(ids)), 4)
        self.assertEqual(running, {ids[-1]})
        self.assertEqual(self.loop(g, "chan")["state"], "running")

    def test_shutdown_cancels_loops_and_waits_for_them(self):
        g = self.start(MARKED + """
chatgw.supervise{ name = "worker", run = function()
  local r, err = chatgw.exec{ argv = { "/bin/sh", "-c", "echo $$ >> " .. marker .. ".pids; exec sleep 60" } }
  mark("exec", tostring(err))
end }
""")
        pids_file = self.marker + ".pids"
        self.wait(lambda: os.path.exists(pids_file) and any(l[0] == "tick" for l in self.lines()), 5, "loops")
        with open(pids_file) as f:
            pid = int(f.read().split()[0])
        try:
            self.assertEqual(g.stop(), 0, g.stderr_text()[-3000:])
            ends = [l for l in self.lines() if l[0] == "end"]
            self.assertEqual(len(ends), 1)
            self.assertEqual(ends[0][2:], ["cancelled:", "shutdown"])
            self.assertIn(["exec", "cancelled:", "shutdown"], [l[:3] for l in self.lines()])
            stopped = [r for r in g.records() if r.get("msg") == "supervised loop stopped"]
            self.assertEqual(sorted(r["name"] for r in stopped), ["chan", "worker"])
            self.assertTrue(all(r["reason"] == "shutdown" for r in stopped))
            deadline = time.time() + 3 * SLOW
            while time.time() < deadline and alive(pid):
                time.sleep(0.02)
            self.assertFalse(alive(pid), "the loop's child survived the shutdown")
        finally:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    unittest.main()
