"""E2E: chatgw.lock and supervise{lock = ...} - one instance per channel: a second chatgw on
the same data directory keeps the channel off (visibly, in /health) and takes over when the
first one dies, whether it stops (SIGTERM) or is killed (SIGKILL, with a child left behind)."""
import os
import signal
import tempfile
import shutil
import time
import unittest

from harness import SLOW, GatewayTest

LOCKED = """
local marker = chatgw.config.app.marker
local WHO = chatgw.env.WHO
local function mark(...)
  local f = assert(io.open(marker, "a"))
  f:write(table.concat({ ... }, " "), "\\n")
  f:close()
end
chatgw.supervise{ name = "tg", module = "telegram", lock = "telegram", run = function(ctx)
  mark("run", WHO, ctx.attempt)
  if chatgw.config.app.child then
    -- a child that outlives a SIGKILLed gateway must not keep the lock (O_CLOEXEC)
    chatgw.spawn(function()
      chatgw.exec{ argv = { "/bin/sh", "-c", "echo $$ > " .. marker .. ".child; exec sleep 60" } }
    end)
  end
  while true do
    if not chatgw.sleep(20) then return end
  end
end }
return {
  routes = {
    ["GET /lock/:name"] = function(req)
      local ok, r, err = pcall(chatgw.lock, req.params.name)
      if not ok then return { raised = r } end
      return { ok = r, err = err }
    end,
    ["GET /loops"] = function() return chatgw.loops() end,
    ["GET /fds"] = function()
      local r = chatgw.exec{ argv = { "/bin/sh", "-c", "ls -l /proc/$$/fd" } }
      return { out = r.stdout }
    end,
  },
}
"""


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class LockCase(GatewayTest):
    def setUp(self):
        super().setUp()
        self.shared = tempfile.mkdtemp(prefix="chatgw-lock-")
        self.marker = os.path.join(self.shared, "marker.log")
        self.data = os.path.join(self.shared, "data")
        self.children = []

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for pid in self.children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            shutil.rmtree(self.shared, ignore_errors=True)

    def instance(self, who, child=False):
        config = "app:\n  marker: %s\n  child: %s\n" % (self.marker, "true" if child else "false")
        return self.gw({"chan.lua": LOCKED}, config=config,
                       env={"WHO": who, "CHAT_GATEWAY_DATA_DIR": self.data,
                            "CHAT_GATEWAY_LOCK_RETRY_MS": "200"})

    def runs(self, who=None):
        try:
            with open(self.marker) as f:
                lines = [l.split() for l in f.read().splitlines()]
        except FileNotFoundError:
            return []
        return [l for l in lines if l[0] == "run" and (who is None or l[1] == who)]


class LockTest(LockCase):
    def test_lock_is_held_for_the_process_and_kept_across_reloads(self):
        a = self.instance("A")
        self.assertEqual(a.get("/lock/ops").json(), {"ok": True})
        self.assertEqual(a.get("/lock/ops").json(), {"ok": True})  # again: still ours
        path = os.path.join(self.data, "locks", "ops.lock")
        with open(path) as f:
            self.assertEqual(int(f.read()), a.proc.pid)
        self.assertEqual(os.stat(os.path.join(self.data, "locks")).st_mode & 0o777, 0o700)
        a.reload()
        self.assertEqual(a.get("/lock/ops").json(), {"ok": True})
        self.assertTrue(os.path.exists(path))
        # children do not inherit the descriptor (O_CLOEXEC)
        self.wait(lambda: self.runs("A"), 5, "the loop")
        self.assertNotIn(".lock", a.get("/fds").json()["out"])
        j = a.get("/lock/Bad!").json()
        self.assertIn("chatgw.lock: name must match [a-z0-9_-]+", j["raised"])

    def test_lock_at_load_time_is_an_error(self):
        g = self.gw({"x.lua": "chatgw.lock('x')\nreturn {}\n"}, start=False,
                    env={"CHAT_GATEWAY_DATA_DIR": self.data})
        g.start(wait_ready=False)
        self.assertEqual(g.proc.wait(20 * SLOW), 1)
        self.assertIn("x.lua:1: chatgw.lock: not available while handlers load", g.stderr_text())

    def test_second_instance_waits_then_takes_over_after_sigterm(self):
        a = self.instance("A")
        self.wait(lambda: self.runs("A"), 5, "A's loop")
        b = self.instance("B")
        self.wait(lambda: b.get("/loops").json()["tg"]["state"] == "waiting_lock", 5, "B waiting")
        st = b.get("/loops").json()["tg"]
        self.assertEqual(st["lock"], "telegram")
        self.assertEqual(st["lock_state"], "waiting")
        self.assertIn("held: lock 'telegram' is held by another process (pid %d)" % a.proc.pid,
                      st["lock_error"])
        self.assertLessEqual(st["next_start_in_ms"], 200)
        h = b.health()
        self.assertEqual(h["status"], "ok")  # a standby is not degraded
        self.assertEqual(h["checks"]["loops"]["loops"]["tg"]["state"], "waiting_lock")
        self.assertIn('chatgw_supervise_state{name="tg"} 5', b.get("/metrics").text)
        j = b.get("/lock/telegram").json()
        self.assertEqual(j["ok"], False)
        self.assertTrue(j["err"].startswith("held: "), j)
        # A reloads: it keeps the lock, B keeps waiting, A's loop runs again
        a.reload()
        self.wait(lambda: len(self.runs("A")) >= 2, 5, "A's loop after the reload")
        time.sleep(0.5 * SLOW)
        self.assertEqual(self.runs("B"), [])
        self.assertEqual(b.get("/loops").json()["tg"]["state"], "waiting_lock")
        # A stops: B takes over within its retry period
        self.assertEqual(a.stop(), 0)
        t0 = time.time()
        self.wait(lambda: self.runs("B"), 5, "B taking over")
        self.assertLess(time.time() - t0, 1.0 * SLOW + 0.5)
        self.assertEqual(b.get("/loops").json()["tg"]["state"], "running")
        self.assertEqual(b.get("/loops").json()["tg"]["lock_state"], "held")
        b.wait_log(lambda r: r.get("msg") == "supervised loop got its lock")
        self.assertEqual(len(self.runs("A")), 2)

    def test_takeover_after_sigkill_even_with_a_surviving_child(self):
        a = self.instance("A", child=True)
        child_file = self.marker + ".child"
        self.wait(lambda: read(child_file).strip(), 5, "A's child")
        child = int(read(child_file))
        self.children.append(child)
        b = self.instance("B")
        self.wait(lambda: b.get("/loops").json()["tg"]["state"] == "waiting_lock", 5, "B waiting")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        self.assertTrue(os.path.exists("/proc/%d" % child), "the child should outlive a SIGKILLed gateway")
        self.wait(lambda: self.runs("B"), 5, "B taking over while A's child still runs")
        self.assertEqual(b.get("/loops").json()["tg"]["state"], "running")


if __name__ == "__main__":
    unittest.main()
