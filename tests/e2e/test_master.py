"""The master process of `chatgw run` (issue 17, docs/operations.md "Process model"): it holds
the listening sockets, re-forks a worker that died (with backoff), forwards signals, kills
what a dead worker left, and reports restarts in /health?verbose=1. Every process is stopped
by PID and every wait is bounded."""
import os
import signal
import tempfile
import time
import unittest

from harness import GatewayTest, SLOW, alive, run_cli
from fake_chat_platform import FakeChatPlatform

HANDLER = """
local marker = os.getenv("PID_FILE")
return {
  routes = {
    ["GET /child"] = { function()
      chatgw.spawn(function()
        chatgw.exec{ argv = { "sh", "-c", "echo $$ > " .. marker .. ".tmp && mv " .. marker
          .. ".tmp " .. marker .. " && exec sleep 60" }, timeout_ms = 120000 }
      end)
      return { started = true }
    end, public = true },
    ["GET /fast"] = { function() return { ok = true } end, public = true },
  },
}
"""

BOT = """
return { commands = { x = "a reply" },
         on_command = function(msg) msg:reply("r" .. msg.argv[1]) end }
"""


class MasterTest(GatewayTest):
    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="chatgw-master-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d

    def start(self, **kw):
        self.pid_file = os.path.join(self.tmpdir(), "child.pid")
        env = {"PID_FILE": self.pid_file}
        env.update(kw.pop("env", {}))
        return self.gw({"m.lua": HANDLER}, env=env, **kw)

    def process(self, gw):
        return gw.health()["process"]

    def new_worker(self, gw, old_pid, timeout=10):
        """Waits until /health answers from a worker other than old_pid; returns its process."""
        def probe():
            try:
                p = self.process(gw)
            except OSError:
                return None
            return p if p["worker_pid"] != old_pid else None
        return self.wait(probe, timeout, "a new worker" + gw.stderr_text()[-2000:])

    def child_pid(self):
        def read():
            try:
                with open(self.pid_file) as f:
                    return int(f.read().strip() or 0)
            except (FileNotFoundError, ValueError):
                return 0
        return self.wait(read, 10, "the exec child's pid file")

    def test_kill9_of_the_worker_replaces_it_and_its_exec_child_goes(self):
        gw = self.start()
        p0 = self.process(gw)
        self.assertEqual(p0["master_pid"], gw.proc.pid)
        self.assertNotEqual(p0["worker_pid"], gw.proc.pid)
        self.assertEqual(gw.get("/child", auth=False).json(), {"started": True})
        child = self.child_pid()
        self.assertTrue(alive(child))
        port = gw.port()
        t0 = time.time()
        os.kill(p0["worker_pid"], signal.SIGKILL)
        # a request sent while no worker runs waits in the master's socket's backlog
        self.assertEqual(gw.get("/fast", auth=False).status, 200)
        took = time.time() - t0
        p1 = self.new_worker(gw, p0["worker_pid"])
        self.assertEqual(p1["master_pid"], gw.proc.pid)
        self.assertEqual(p1["worker_restarts"], 1)
        last = p1["last_worker_exit"]
        self.assertEqual((last["signal"], last["cause"], last["pid"]),
                         ("SIGKILL", "signal", p0["worker_pid"]))
        self.assertNotIn("code", last)
        self.wait(lambda: not alive(child), 5, "the exec child to be gone")
        self.assertFalse(alive(p0["worker_pid"]))
        self.assertEqual(gw.port(), port)
        ready = [r for r in gw.records() if r.get("msg") == "ready"]
        self.assertEqual(len(ready), 2, "one ready line per worker")
        listening = [r["port"] for r in gw.records()
                     if r.get("msg") == "listening" and r["listener"] == "main"]
        self.assertEqual(listening, [port, port])
        print("kill -9 of the worker: a request sent at once was served after %.3f s" % took)

    def test_sighup_reloads_in_the_same_worker(self):
        gw = self.start()
        p0 = self.process(gw)
        gw.write_handler("n.lua", 'return { routes = { ["GET /new"] = { function() return { n = 1 } '
                                  'end, public = true } } }')
        self.assertEqual(gw.reload()["last_result"], "ok")
        self.assertEqual(gw.get("/new", auth=False).json(), {"n": 1})
        p1 = self.process(gw)
        self.assertEqual(p1["worker_pid"], p0["worker_pid"])
        self.assertEqual(p1["worker_restarts"], 0)
        self.assertFalse([r for r in gw.records() if r.get("msg") == "master: worker started"][1:])

    def test_sigterm_drains_exits_0_and_leaves_no_process(self):
        gw = self.start()
        worker = self.process(gw)["worker_pid"]
        gw.get("/child", auth=False)
        child = self.child_pid()
        self.assertEqual(gw.stop(signal.SIGTERM), 0, gw.stderr_text()[-3000:])
        self.assertFalse(alive(worker))
        self.wait(lambda: not alive(child), 5, "the exec child to be gone")
        msgs = [r.get("msg") for r in gw.records()]
        self.assertIn("stopped", msgs)
        self.assertIn("master: worker exited: stopping", msgs)

    def test_kill9_of_the_master_takes_the_worker(self):
        gw = self.start()
        worker = self.process(gw)["worker_pid"]
        gw.signal(signal.SIGKILL)
        gw.proc.wait(10)
        self.wait(lambda: not alive(worker), 5, "the worker to die with its master")

    def test_a_boot_failure_exits_1_without_restarts(self):
        gw = self.gw({"bad.lua": "return {"}, start=False)
        gw.start(wait_ready=False)
        self.assertEqual(gw.proc.wait(20 * SLOW), 1)
        text = gw.stderr_text()
        self.assertIn("bad.lua", text)
        self.assertIn("master: the first worker failed to start: exiting", text)
        self.assertEqual(text.count("master: worker started"), 1)

    def test_workers_failing_at_once_back_off_and_recover(self):
        gw = self.start()
        w0 = self.process(gw)["worker_pid"]
        gw.write_handler("bad.lua", "return {")  # the next workers fail their boot (exit 1)
        os.kill(w0, signal.SIGKILL)
        gw.wait_log(lambda r: r.get("msg") == "master: worker died: starting another"
                    and r.get("code") == 1 and r.get("restart_in_ms") == 1000, 15)
        delays = [r["restart_in_ms"] for r in gw.records()
                  if r.get("msg") == "master: worker died: starting another"]
        self.assertEqual(delays[:3], [100, 500, 1000])
        self.assertIsNone(gw.proc.poll())
        gw.remove_handler("bad.lua")
        p = self.new_worker(gw, w0, 15)
        self.assertGreaterEqual(p["worker_restarts"], 3)
        self.assertEqual((p["last_worker_exit"]["code"], p["last_worker_exit"]["cause"]), (1, "exit"))
        self.assertEqual(gw.get("/fast", auth=False).status, 200)

    def test_no_master(self):
        for how in ({"env": {"CHATGW_NO_MASTER": "1"}},):
            gw = self.start(**how)
            p = self.process(gw)
            self.assertEqual(p["worker_pid"], gw.proc.pid)
            self.assertNotIn("master_pid", p)
            self.assertFalse([r for r in gw.records() if r.get("msg", "").startswith("master:")])
            self.assertEqual(gw.reload()["last_result"], "ok")
            self.assertEqual(gw.stop(signal.SIGTERM), 0)
        code, out, _ = run_cli(["--help"])
        self.assertIn("--no-master", out)

    def test_chat_messages_accepted_before_a_worker_kill9_are_dispatched(self):
        plat = FakeChatPlatform().start()
        self.addCleanup(plat.stop)
        gw = self.gw({"bot.lua": BOT}, env={
            "CHATGW_TEST_CHANNEL": "1", "CHATGW_TEST_CHANNEL_SINK": plat.url,
            "CHATGW_TEST_DISPATCH_DELAY_MS": "3000", "CHAT_GATEWAY_LOCK_RETRY_MS": "200"})
        w0 = self.process(gw)["worker_pid"]
        for i in range(3):
            r = gw.request("POST", "/v1/test/inbound",
                           json_body={"chat_id": "m1", "text": "/x %d" % i, "wait": False})
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.json()["recorded"], r.json())
        os.kill(w0, signal.SIGKILL)
        self.assertEqual(plat.requests, [], "nothing was dispatched before the kill")
        self.new_worker(gw, w0)
        self.wait(lambda: sorted(plat.texts("m1")) == ["r0", "r1", "r2"], 20,
                  "the three replies (have %r)" % plat.texts("m1"))
        gw.wait_log(lambda r: r.get("msg") == "chat: dispatching an update recorded before the restart")


if __name__ == "__main__":
    unittest.main()
