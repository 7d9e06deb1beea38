"""Graceful stop (SIGTERM/SIGINT): drain, on_shutdown hooks, exit 0; second signal exits now."""
import os
import signal
import socket
import threading
import time
import unittest

from harness import GatewayTest, SLOW

SLOW_HANDLER = """
local marker = os.getenv("MARKER_FILE")
return {
  routes = {
    ["GET /slow"] = function(req)
      chatgw.sleep(tonumber(req.query.ms) or 500)
      return { done = true }
    end,
    ["GET /fast"] = function() return { ok = true } end,
  },
  on_shutdown = function()
    chatgw.sleep(20) -- hooks may wait too
    local f = assert(io.open(marker, "w"))
    f:write("shutdown hook ran")
    f:close()
  end,
}
"""


class ShutdownTest(GatewayTest):
    def make(self, config=None):
        self.marker = os.path.join(self._tmp(), "marker")
        return self.gw({"s.lua": SLOW_HANDLER}, config=config, env={"MARKER_FILE": self.marker})

    def _tmp(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="chatgw-marker-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d

    def test_sigterm_drains_in_flight_requests_and_runs_hooks(self):
        gw = self.make()
        results = []
        threads = [threading.Thread(target=lambda: results.append(gw.get("/slow?ms=500")))
                   for _ in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.2 * SLOW)
        t0 = time.time()
        code = gw.stop(signal.SIGTERM)
        for t in threads:
            t.join(10)
        self.assertEqual(code, 0, gw.stderr_text()[-3000:])
        self.assertEqual([r.status for r in results], [200] * 5)
        self.assertTrue(all(r.json() == {"done": True} for r in results))
        self.assertLess(time.time() - t0, 5 * SLOW)
        with open(self.marker) as f:
            self.assertEqual(f.read(), "shutdown hook ran")
        msgs = [r.get("msg") for r in gw.records()]
        self.assertIn("stopped", msgs)

    def test_stop_refuses_new_connections(self):
        gw = self.make()
        port = gw.port()
        t = threading.Thread(target=lambda: gw.get("/slow?ms=800"))
        t.start()
        time.sleep(0.2 * SLOW)
        gw.signal(signal.SIGTERM)
        time.sleep(0.2 * SLOW)
        with self.assertRaises(OSError):
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.close()
        t.join(10)
        self.assertEqual(gw.proc.wait(10 * SLOW), 0)

    def test_drain_timeout_bounds_the_wait(self):
        gw = self.make(config="shutdown:\n  drain_timeout_ms: 300\n")
        t = threading.Thread(target=lambda: self._swallow(gw.get, "/slow?ms=30000"))
        t.start()
        time.sleep(0.2 * SLOW)
        t0 = time.time()
        code = gw.stop(signal.SIGTERM)
        self.assertEqual(code, 0)
        self.assertLess(time.time() - t0, 3 * SLOW)
        gw.wait_log(lambda r: "drain timeout" in r.get("msg", ""))
        t.join(10)

    def _swallow(self, fn, *a):
        try:
            fn(*a)
        except Exception:
            pass

    def test_second_signal_exits_at_once(self):
        gw = self.make(config="shutdown:\n  drain_timeout_ms: 60000\n")
        t = threading.Thread(target=lambda: self._swallow(gw.get, "/slow?ms=30000"))
        t.start()
        time.sleep(0.2 * SLOW)
        gw.signal(signal.SIGTERM)
        time.sleep(0.2 * SLOW)
        t0 = time.time()
        gw.signal(signal.SIGINT)
        code = gw.proc.wait(5 * SLOW)
        self.assertLess(time.time() - t0, 2 * SLOW)
        self.assertNotEqual(code, 0)
        t.join(10)

    def test_sigint_stops_like_sigterm(self):
        gw = self.make()
        self.assertEqual(gw.get("/fast").status, 200)
        self.assertEqual(gw.stop(signal.SIGINT), 0)

    def test_sigpipe_is_ignored(self):
        # A client that sends a request and resets the connection before the answer.
        gw = self.make()
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", gw.port()))
            s.sendall(b"GET /slow?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        time.sleep(0.3 * SLOW)
        self.assertEqual(gw.get("/fast").status, 200)


if __name__ == "__main__":
    unittest.main()
