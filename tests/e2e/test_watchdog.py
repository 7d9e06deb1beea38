"""The watchdog and the process model (issue 17): no handler freezes the gateway, and signals
always work. Every loop a handler runs here is bounded in time (and count), so a broken
watchdog fails a test instead of hanging it; every process is stopped by PID."""
import os
import signal
import tempfile
import threading
import time
import unittest

from harness import GatewayTest, SLOW, alive

# A busy loop bounded in time: `ms` of CPU without yielding (os.clock is process CPU time).
# tostring is not compiled by the JIT, so a hook reaches this loop with the JIT on too.
SPIN = """
local function spin(ms)
  local t0, s = os.clock(), nil
  for _ = 1, 1e9 do
    s = tostring(os.clock())
    if os.clock() - t0 > ms / 1000 then break end
  end
  return s
end
"""

ROUTES = SPIN + """
local hits = 0
return {
  routes = {
    ["GET /spin"] = { function(req) spin(tonumber(req.query.ms) or 20000) return { spun = true } end,
                      public = true },
    -- a pcall around the loop does not keep the watchdog's error
    ["GET /spin_pcall"] = { function()
      local t0 = os.clock()
      for _ = 1, 1e6 do
        pcall(spin, 20000)
        hits = hits + 1
        if os.clock() - t0 > 20 then break end
      end
      return { spun = true }
    end, public = true },
    -- JIT-compiled: no hook reaches it (bounded: 1e11 additions, many seconds)
    ["GET /hot"] = { function()
      local x = 0
      for i = 1, 1e11 do x = x + i end
      return { x = x }
    end, public = true },
    ["GET /fast"] = { function() return { ok = true } end, public = true },
  },
}
"""

TIMER = SPIN + """
local ticks = 0
chatgw.every(300, function()
  ticks = ticks + 1
  if ticks == 1 then spin(20000) end
end)
return { routes = { ["GET /fast"] = { function() return { ok = true, ticks = ticks } end,
                                      public = true } } }
"""

FAST_CONFIG = "watchdog:\n  stall_ms: 500\n  abort_ms: 60000\n"

CHILD_HANDLER = SPIN + """
local marker = os.getenv("PID_FILE")
return {
  routes = {
    ["GET /spin"] = { function(req) spin(tonumber(req.query.ms) or 20000) return { spun = true } end,
                      public = true },
    ["GET /child"] = { function()
      chatgw.spawn(function()
        chatgw.exec{ argv = { "sh", "-c", "echo $$ > " .. marker .. ".tmp && mv " .. marker
          .. ".tmp " .. marker .. " && exec sleep 30" }, timeout_ms = 60000 }
      end)
      return { started = true }
    end, public = true },
    ["GET /fast"] = { function() return { ok = true } end, public = true },
  },
}
"""


class WatchdogTest(GatewayTest):
    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="chatgw-wd-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d

    def background_get(self, gw, path, timeout=30):
        out = []

        def run():
            try:
                out.append(gw.get(path, auth=False, timeout=timeout))
            except Exception as e:  # the process may die under it
                out.append(e)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, out

    def read_pid(self, path):
        def read():
            try:
                with open(path) as f:
                    return int(f.read().strip() or 0)
            except (FileNotFoundError, ValueError):
                return 0
        return self.wait(read, 10, "the exec child's pid file")

    def served_within(self, gw, limit):
        """A request sent now is answered within limit seconds (stretched by SLOW)."""
        t0 = time.time()
        r = gw.get("/fast", auth=False, timeout=limit * 4)
        took = time.time() - t0
        self.assertEqual(r.status, 200)
        self.assertLess(took, limit * SLOW, "served after %.2f s" % took)
        return took

    def test_a_route_spinning_is_interrupted_and_others_are_served(self):
        gw = self.gw({"w.lua": ROUTES}, config=FAST_CONFIG)
        t, out = self.background_get(gw, "/spin?ms=20000")
        time.sleep(0.1 * SLOW)
        took = self.served_within(gw, 0.5 + 1.0)
        t.join(5 * SLOW)
        self.assertEqual(out[0].status, 500, out)
        self.assertEqual(out[0].json()["error"], "internal_error")
        err = gw.wait_log(lambda r: r.get("msg", "").startswith("watchdog: a coroutine ran"))
        self.assertEqual(err["level"], "error")
        self.assertEqual(err["kind"], "request")
        self.assertIn("GET /spin", err["running"])
        self.assertIn("w.lua", err["running"])
        failed = gw.wait_log(lambda r: "watchdog:" in str(r.get("error", "")))
        self.assertRegex(failed["error"], r"w\.lua:\d+: watchdog: GET /spin \(.*w\.lua\) ran for \d+ "
                                          r"ms without yielding")
        gw.wait_log(lambda r: r.get("msg") == "watchdog: the loop runs again")
        print("route spin: other request served after %.3f s (stall_ms 500)" % took)
        self.assertEqual(gw.get("/fast", auth=False).status, 200)

    def test_a_pcall_around_the_loop_does_not_keep_it(self):
        gw = self.gw({"w.lua": ROUTES}, config=FAST_CONFIG)
        t, out = self.background_get(gw, "/spin_pcall")
        time.sleep(0.1 * SLOW)
        self.served_within(gw, 0.5 + 1.0)
        t.join(5 * SLOW)
        self.assertEqual(out[0].status, 500, out)

    def test_a_timer_spinning_is_interrupted(self):
        gw = self.gw({"t.lua": TIMER}, config=FAST_CONFIG)
        err = gw.wait_log(lambda r: r.get("msg", "").startswith("watchdog: a coroutine ran"))
        self.assertEqual(err["kind"], "background")
        self.assertIn("chatgw.every", err["running"])
        self.assertIn("t.lua", err["running"])
        self.served_within(gw, 1.0)
        gw.wait_log(lambda r: r.get("msg") == "chatgw.every: callback failed"
                    and "watchdog:" in r.get("error", ""))
        # the timer goes on ticking
        self.wait(lambda: gw.get("/fast", auth=False).json()["ticks"] >= 3, 5, "more ticks")

    def test_a_jit_compiled_loop_replaces_the_worker(self):
        # the repro: `while true do end` is compiled by the JIT; no hook reaches it
        pid_file = os.path.join(self.tmpdir(), "child.pid")
        handlers = {"w.lua": ROUTES.replace(
                        '["GET /fast"]', '["GET /forever"] = { function() while true do end end, '
                        'public = true },\n    ["GET /fast"]'),
                    "c.lua": CHILD_HANDLER.replace("/spin", "/spin_c").replace("/fast", "/fast_c")}
        gw = self.gw(handlers, config="watchdog:\n  stall_ms: 300\n  abort_ms: 1500\n",
                     env={"PID_FILE": pid_file})
        before = gw.health()["process"]
        self.assertEqual(before["master_pid"], gw.proc.pid)
        self.assertEqual(before["worker_restarts"], 0)
        self.assertNotIn("last_worker_exit", before)
        gw.get("/child", auth=False)
        child = self.read_pid(pid_file)
        t0 = time.time()
        t, out = self.background_get(gw, "/forever")
        gw.wait_log(lambda r: r.get("msg", "").startswith("watchdog: no hook reached"), 10)
        aborted = time.time() - t0
        # the master's socket stays bound: requests wait in its backlog for the next worker
        deadline = time.time() + 10 * SLOW
        while True:
            try:
                if gw.get("/fast", auth=False, timeout=5).status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.time(), deadline, gw.stderr_text()[-3000:])
            time.sleep(0.02)
        served = time.time() - t0
        self.assertLess(aborted, 1.5 + 2 * SLOW)
        self.assertLess(served, 1.5 + 4 * SLOW)
        self.assertIsNone(gw.proc.poll(), "the master stays")
        after = gw.health()["process"]
        self.assertEqual(after["master_pid"], gw.proc.pid)
        self.assertNotEqual(after["worker_pid"], before["worker_pid"])
        self.assertEqual(after["worker_restarts"], 1)
        last = after["last_worker_exit"]
        self.assertEqual((last["code"], last["cause"], last["pid"]), (70, "watchdog", before["worker_pid"]))
        self.assertGreater(last["at"], 0)
        self.assertFalse(alive(before["worker_pid"]))
        self.wait(lambda: not alive(child), 5, "the exec child to be gone")
        t.join(5)
        self.assertIsInstance(out[0], Exception, "the request in the stuck loop is lost")
        gw.wait_log(lambda r: r.get("msg") == "master: worker died: starting another"
                    and r.get("cause") == "watchdog" and r.get("code") == 70)
        print("JIT-hot loop (abort_ms 1500): aborted after %.3f s, served again after %.3f s"
              % (aborted, served))

    def test_check_names_a_stuck_file(self):
        from harness import run_cli
        d = self.tmpdir()
        os.makedirs(os.path.join(d, "h"))
        with open(os.path.join(d, "h", "a.lua"), "w") as f:
            f.write("local n = 0\nfor i = 1, 1e12 do n = n + i end -- bounded: 1e12 additions\nreturn {}\n")
        with open(os.path.join(d, "c.yml"), "w") as f:
            f.write("watchdog:\n  stall_ms: 500\n")
        t0 = time.time()
        code, out, err = run_cli(["check", os.path.join(d, "h"), "--config", os.path.join(d, "c.yml")],
                                 env={"CHAT_GATEWAY_DATA_DIR": os.path.join(d, "data")}, timeout=20)
        took = time.time() - t0
        self.assertEqual(code, 1, err)
        self.assertLess(took, 0.5 + 2 * SLOW)
        self.assertRegex(err, r"h/a\.lua:2: watchdog: loading \(.*a\.lua\) ran for \d+ ms")
        print("chatgw check with a stuck file: exit 1 after %.3f s (stall_ms 500)" % took)

    def test_a_stuck_file_fails_the_boot_and_a_reload(self):
        stuck = "local n = 0\nfor i = 1, 1e12 do n = n + i end\nreturn {}\n"
        gw = self.gw({"a.lua": stuck}, config=FAST_CONFIG, start=False)
        gw.start(wait_ready=False)
        code = gw.proc.wait(10 * SLOW)
        self.assertEqual(code, 1)
        self.assertIn("watchdog: loading", gw.stderr_text())
        gw2 = self.gw({"w.lua": ROUTES}, config=FAST_CONFIG)
        gw2.write_handler("b.lua", stuck)
        t0 = time.time()
        r = gw2.reload()
        self.assertLess(time.time() - t0, 0.5 + 3 * SLOW)
        self.assertEqual(r["last_result"], "failed")
        self.assertIn("watchdog: loading", r["last_error"])
        self.assertEqual(gw2.get("/fast", auth=False).status, 200)
        gw2.remove_handler("b.lua")
        self.assertEqual(gw2.reload()["last_result"], "ok")
        # the live state runs with the JIT on again
        self.assertEqual(gw2.get("/fast", auth=False).status, 200)

    def test_handlers_cannot_disarm_the_watchdog(self):
        probe = """
return { routes = { ["GET /probe"] = { function()
  local out = {}
  for name, fn in pairs({
    sethook = function() debug.sethook() end,
    registry = function() return debug.getregistry() end,
    jit_off = function() jit.off() end,
    jit_util = function() return require "jit.util" end,
    ffi = function() return require "ffi" end,
  }) do
    local ok, err = pcall(fn)
    out[name] = ok and "allowed" or tostring(err)
  end
  out.status = type(jit.status)
  out.traceback = type(debug.traceback)
  local d = chatgw.config.data_dir .. "/made"
  out.mkdir = tostring((chatgw.fs.mkdir(d)))
  out.again = select(2, chatgw.fs.mkdir(d))
  return out
end, public = true } } }
"""
        gw = self.gw({"p.lua": probe}, config=FAST_CONFIG)
        r = gw.get("/probe", auth=False).json()
        self.assertIn("debug.sethook is disabled in chatgw", r["sethook"])
        self.assertIn("debug.getregistry is disabled", r["registry"])
        self.assertIn("attempt to call field 'off'", r["jit_off"])
        self.assertIn("jit.util is disabled in chatgw", r["jit_util"])
        self.assertIn("ffi is disabled in chatgw", r["ffi"])
        self.assertEqual(r["status"], "function")
        self.assertEqual(r["traceback"], "function")
        self.assertEqual(r["mkdir"], "true")
        self.assertTrue(r["again"].startswith("exists: "))

    def test_an_allocation_bomb_fails_alone(self):
        bomb = """
return { routes = {
  ["GET /bomb"] = { function()
    local t = {}
    for i = 1, 3e8 do t[i] = i end -- 2.4 GB uncapped; bounded in count
    return { n = #t }
  end, public = true },
  ["GET /some"] = { function()
    local t = {}
    for i = 1, 1e6 do t[i] = i end -- 8 MB: fits
    return { n = #t }
  end, public = true },
  ["GET /fast"] = { function() return { ok = true } end, public = true },
} }
"""
        gw = self.gw({"b.lua": bomb}, config="lua:\n  max_memory_mb: 64\n" + FAST_CONFIG)
        for _ in range(3):
            t0 = time.time()
            r = gw.get("/bomb", auth=False, timeout=30)
            took = time.time() - t0
            self.assertEqual(r.status, 500, r)
            self.assertLess(took, 3 * SLOW)
            self.assertEqual(gw.get("/fast", auth=False).status, 200)
            self.assertEqual(gw.get("/some", auth=False).json(), {"n": 1000000})
        gw.wait_log(lambda r: "not enough memory" in str(r.get("error", "")))
        print("allocation bomb: 500 after %.3f s (64 MB cap)" % took)

    def test_second_sigterm_exits_while_a_route_spins(self):
        pid_file = os.path.join(self.tmpdir(), "child.pid")
        gw = self.gw({"w.lua": CHILD_HANDLER},
                     config="watchdog:\n  stall_ms: 60000\n  abort_ms: 120000\n",
                     env={"PID_FILE": pid_file})
        self.assertEqual(gw.get("/child", auth=False).json(), {"started": True})
        child = self.read_pid(pid_file)
        self.assertTrue(alive(child))
        t, _ = self.background_get(gw, "/spin?ms=20000")
        time.sleep(0.3 * SLOW)  # the loop is in the spin now
        gw.signal(signal.SIGTERM)
        time.sleep(0.2 * SLOW)
        self.assertIsNone(gw.proc.poll(), "the first signal drains: it waits for the loop")
        t0 = time.time()
        gw.signal(signal.SIGTERM)
        code = gw.proc.wait(5 * SLOW)
        took = time.time() - t0
        self.assertEqual(code, 1, gw.stderr_text()[-3000:])
        self.assertLess(took, 2 * SLOW)
        self.wait(lambda: not alive(child), 5, "the exec child to be gone")
        gw.wait_log(lambda r: r.get("msg") == "second signal: exiting now")
        t.join(1)


if __name__ == "__main__":
    unittest.main()
