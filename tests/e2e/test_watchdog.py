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
SPIN = """
local function spin(ms)
  local t0 = os.clock()
  while os.clock() - t0 < ms / 1000 do end
end
"""

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

    def test_second_sigterm_exits_while_a_route_spins(self):
        pid_file = os.path.join(self.tmpdir(), "child.pid")
        gw = self.gw({"w.lua": CHILD_HANDLER},
                     config=None,
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
