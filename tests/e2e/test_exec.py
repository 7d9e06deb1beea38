"""E2E: chatgw.exec - subprocesses without a shell under global and per-module caps, results,
secrets kept out of the child's environment, output caps, timeouts that kill the whole
process group, the bounded wait queue, observability, reload and shutdown."""
import json
import os
import re
import signal
import stat
import threading
import time
import unittest

from harness import SLOW, GatewayTest, alive


def wait_dead(pids, timeout=5.0):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def kill_quietly(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


EXEC = """
local results = chatgw.shared("exec_results")
local function call(opts)
  local ok, r, err = pcall(chatgw.exec, opts)
  if not ok then return { raised = tostring(r) } end
  return { r = r, err = err }
end
return {
  routes = {
    ["POST /exec"] = function(req) return call(req.json) end,
    -- n calls at once from background tasks; waits for all of them
    ["POST /many"] = function(req)
      local j = req.json
      local done, out = 0, { ok = 0, failed = 0, errors = {} }
      local t0 = chatgw.now()
      for i = 1, j.n do
        chatgw.spawn(function()
          local argv = {}
          for k, v in ipairs(j.argv) do argv[k] = (v:gsub("{i}", tostring(i))) end
          local r, err = chatgw.exec{ argv = argv, module = j.module }
          if r and r.code == 0 then out.ok = out.ok + 1
          else out.failed = out.failed + 1; out.errors[#out.errors + 1] = err or r.code end
          done = done + 1
        end)
      end
      while done < j.n do chatgw.sleep(10) end
      out.elapsed_ms = chatgw.now() - t0
      if #out.errors == 0 then out.errors = nil end
      return out
    end,
    -- a call left running in a background task (reload / shutdown tests)
    ["POST /bg"] = function(req)
      chatgw.spawn(function()
        local r, err = chatgw.exec(req.json)
        results:set(req.query.key or "bg", err or ("code " .. tostring(r and r.code)))
      end)
      return { started = true }
    end,
    ["GET /result/:key"] = function(req) return { value = results:get(req.params.key) } end,
    ["GET /limits/:module"] = function(req)
      return require("chatgw.exec").limits(req.params.module)
    end,
  },
}
"""


class ExecCase(GatewayTest):
    def setUp(self):
        super().setUp()
        self.tmp = None

    def gw_exec(self, env=None, config=None):
        g = self.gw({"exec.lua": EXEC}, config=config, env=env)
        self.tmp = os.path.join(g.dir, "work")
        os.makedirs(self.tmp, exist_ok=True)
        return g

    def script(self, name, body):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, stat.S_IRWXU)
        return path

    def call(self, g, opts, timeout=20):
        r = g.request("POST", "/exec", json_body=opts, timeout=timeout)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def read_pids(self, path):
        with open(path) as f:
            return [int(x) for x in f.read().split()]


class ResultTest(ExecCase):
    def test_result_fields_and_nonzero_exit_is_a_result(self):
        g = self.gw_exec()
        j = self.call(g, {"argv": ["/bin/sh", "-c", "printf out; printf err >&2; exit 3"]})
        r = j["r"]
        self.assertEqual((r["code"], r["stdout"], r["stderr"], r["truncated"]), (3, "out", "err", False))
        self.assertNotIn("signal", r)
        self.assertNotIn("err", j)

    def test_argv_is_not_a_shell(self):
        g = self.gw_exec()
        j = self.call(g, {"argv": ["/bin/echo", "$HOME", "a;b", "*", "`id`"]})
        self.assertEqual(j["r"]["stdout"], "$HOME a;b * `id`\n")
        # argv[0] is looked up in PATH
        self.assertEqual(self.call(g, {"argv": ["echo", "x"]})["r"]["stdout"], "x\n")

    def test_killed_by_signal(self):
        g = self.gw_exec()
        r = self.call(g, {"argv": ["/bin/sh", "-c", "kill -KILL $$"]})["r"]
        self.assertEqual(r["signal"], "SIGKILL")
        self.assertEqual(r["code"], 128 + 9)

    def test_stdin_cwd_and_env(self):
        g = self.gw_exec()
        r = self.call(g, {"argv": ["cat"], "stdin": "line1\nline2\n"})["r"]
        self.assertEqual(r["stdout"], "line1\nline2\n")
        r = self.call(g, {"argv": ["/bin/pwd"], "cwd": self.tmp})["r"]
        self.assertEqual(r["stdout"].strip(), os.path.realpath(self.tmp))
        # no stdin given: /dev/null, so a reader does not hang
        r = self.call(g, {"argv": ["cat"], "timeout_ms": 5000})["r"]
        self.assertEqual((r["code"], r["stdout"]), (0, ""))

    def test_output_cap_keeps_reading_so_the_child_never_blocks(self):
        g = self.gw_exec()
        t0 = time.time()
        r = self.call(g, {"argv": ["/bin/sh", "-c", "head -c 8000000 /dev/zero; echo done >&2"],
                          "max_output": 1000, "timeout_ms": 20000})["r"]
        self.assertEqual(r["code"], 0)
        self.assertIs(r["truncated"], True)
        self.assertEqual(len(r["stdout"]), 1000)
        self.assertEqual(r["stderr"], "done\n")
        self.assertLess(time.time() - t0, 10 * SLOW)

    def test_default_output_cap_from_env(self):
        g = self.gw_exec(env={"CHAT_GATEWAY_EXEC_OUTPUT_MAX_BYTES": "10"})
        r = self.call(g, {"argv": ["/bin/sh", "-c", "printf 0123456789abcdef"]})["r"]
        self.assertEqual((r["stdout"], r["truncated"]), ("0123456789", True))

    def test_spawn_errors_are_returned(self):
        g = self.gw_exec()
        j = self.call(g, {"argv": ["/nonexistent/prog"]})
        self.assertTrue(j["err"].startswith("spawn: /nonexistent/prog"), j)
        self.assertIn("no such file", j["err"])
        j = self.call(g, {"argv": ["/bin/true"], "cwd": "/nonexistent-dir"})
        self.assertTrue(j["err"].startswith("spawn: "), j)
        # the slot was given back: more calls run
        self.assertEqual(self.call(g, {"argv": ["/bin/true"]})["r"]["code"], 0)

    def test_misuse_raises_naming_the_function(self):
        g = self.gw_exec()
        cases = [
            ({}, "chatgw.exec: argv must be a non-empty array of strings"),
            ({"argv": []}, "chatgw.exec: argv must be a non-empty array of strings"),
            ({"argv": ["/bin/true", 5]}, "chatgw.exec: argv must be a non-empty array of strings"),
            ({"argv": ["/bin/true"], "timeout": 5}, "chatgw.exec: unknown option 'timeout'"),
            ({"argv": ["/bin/true"], "module": "Bad Name"}, "chatgw.exec: module must match"),
            ({"argv": ["/bin/true"], "module": "global"}, "chatgw.exec: module name 'global' is reserved"),
            ({"argv": ["/bin/true"], "timeout_ms": 0}, "chatgw.exec: timeout_ms must be"),
            ({"argv": ["/bin/true"], "env": {"A-B": "x"}}, "chatgw.exec: env names must match"),
            ({"argv": ["/bin/true"], "env": {"A": {}}}, "chatgw.exec: env.A must be"),
            ({"argv": ["/bin/true"], "stdin": 5}, "chatgw.exec: stdin must be a string"),
            ({"argv": ["/bin/true"], "max_output": -1}, "chatgw.exec: max_output must be"),
        ]
        for opts, want in cases:
            j = self.call(g, opts)
            self.assertIn("raised", j, opts)
            self.assertIn(want, j["raised"], opts)


class EnvTest(ExecCase):
    def test_secrets_are_withheld_and_call_env_applies(self):
        secrets = {"CHAT_GATEWAY_TOKEN": "t1", "TELEGRAM_BOT_TOKEN": "t2", "FEISHU_APP_SECRET": "t3",
                   "FEISHU_VERIFICATION_TOKEN": "t4", "FEISHU_ENCRYPT_KEY": "t5",
                   "DEEPSEEK_API_KEY": "t6", "SOME_PASSWORD": "t7", "OTHER_SECRET": "t8",
                   "lower_token": "t9"}
        env = dict(secrets)
        env.update({"KEEP_ME": "kept", "DROP_ME": "x", "REPLACE_ME": "old"})
        g = self.gw_exec(env=env)
        g.token = "t1"
        j = self.call(g, {"argv": ["/usr/bin/env"],
                          "env": {"ADDED": "a b", "REPLACE_ME": "new", "DROP_ME": False,
                                  "NUM": 5, "EXPLICIT_TOKEN": "given"}})
        lines = dict(l.split("=", 1) for l in j["r"]["stdout"].splitlines() if "=" in l)
        for k in secrets:
            self.assertNotIn(k, lines)
        self.assertEqual(lines.get("KEEP_ME"), "kept")
        self.assertEqual(lines.get("ADDED"), "a b")
        self.assertEqual(lines.get("REPLACE_ME"), "new")
        self.assertEqual(lines.get("NUM"), "5")
        self.assertNotIn("DROP_ME", lines)
        self.assertIn("PATH", lines)
        # a secret the call passes on purpose reaches the child
        self.assertEqual(lines.get("EXPLICIT_TOKEN"), "given")


class CapTest(ExecCase):
    CHILD = ('echo "start $$ $(date +%s%N)" >> "$1"\n'
             'sleep 0.05\n'
             'echo "end $$ $(date +%s%N)" >> "$1"\n')

    def concurrency(self, log):
        events = []
        with open(log) as f:
            for line in f:
                kind, pid, ts = line.split()
                events.append((int(ts), 0 if kind == "end" else 1, int(pid)))
        events.sort()  # at equal times an end comes before a start
        cur = peak = 0
        starts = ends = 0
        for _, kind, _ in events:
            if kind == 1:
                cur += 1
                starts += 1
            else:
                cur -= 1
                ends += 1
            peak = max(peak, cur)
        return peak, starts, ends

    def test_200_calls_under_a_cap_of_8_never_run_more_than_8(self):
        g = self.gw_exec(env={"CHAT_GATEWAY_EXEC_MAX_GLOBAL": "8",
                              "CHAT_GATEWAY_EXEC_WARN_QUEUE": "50",
                              "CHAT_GATEWAY_EXEC_WARN_WAIT_MS": "100",
                              "CHAT_GATEWAY_EXEC_LOG_INTERVAL_MS": "200"})
        child = self.script("child.sh", self.CHILD)
        log = os.path.join(self.tmp, "events.log")
        r = g.request("POST", "/many", timeout=120,
                      json_body={"n": 200, "argv": ["/bin/sh", child, log], "module": "bulk"})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual((j["ok"], j["failed"]), (200, 0), j)
        peak, starts, ends = self.concurrency(log)
        self.assertEqual((starts, ends), (200, 200))
        self.assertLessEqual(peak, 8, "more than 8 children ran at once")
        self.assertGreaterEqual(peak, 6, "the cap was not used: peak %d" % peak)
        # observability: WARNs and stats lines while calls waited, and the metrics
        g.wait_log(lambda x: x.get("level") == "warn" and x.get("msg", "").startswith("exec queue is long"))
        g.wait_log(lambda x: x.get("level") == "warn" and x.get("msg", "").startswith("exec call waited long"))
        stats = g.wait_log(lambda x: x.get("msg") == "exec stats")
        self.assertIn("bulk", stats["modules"])
        m = g.get("/metrics").text
        self.assertIn('chatgw_exec_total{module="bulk",result="ok"} 200', m)
        self.assertIn('chatgw_exec_wait_seconds_count{module="bulk"} 200', m)
        self.assertIn('chatgw_exec_inflight{module="bulk"} 0', m)
        self.assertIn('chatgw_exec_queue_length{module="bulk"} 0', m)
        # the stats lines stop once the contention is over
        time.sleep(0.6 * SLOW)
        n = len([x for x in g.records() if x.get("msg") == "exec stats"])
        time.sleep(0.6 * SLOW)
        self.assertEqual(n, len([x for x in g.records() if x.get("msg") == "exec stats"]))

    def test_per_module_caps_defaults_env_and_config(self):
        g = self.gw_exec(env={"CHAT_GATEWAY_EXEC_MAX_NOTIFY": "2"},
                         config="exec:\n  modules:\n    pdf:\n      max: 3\n")
        child = self.script("child.sh", self.CHILD)
        for module, cap in (("charts", 1), ("notify", 2), ("pdf", 3), ("telegram", 4)):
            log = os.path.join(self.tmp, module + ".log")
            r = g.request("POST", "/many", timeout=60,
                          json_body={"n": 12, "argv": ["/bin/sh", child, log], "module": module})
            self.assertEqual(r.json()["ok"], 12, r)
            peak, _, _ = self.concurrency(log)
            self.assertLessEqual(peak, cap, module)
            self.assertEqual(peak, cap, "%s: cap %d was not reached (%d)" % (module, cap, peak))
        lim = g.get("/limits/feishu").json()
        self.assertEqual((lim["max"], lim["max_global"], lim["timeout_ms"]), (4, 8, 60000))

    def test_modules_share_the_global_cap(self):
        g = self.gw_exec(env={"CHAT_GATEWAY_EXEC_MAX_GLOBAL": "3"})
        child = self.script("child.sh", self.CHILD)
        log = os.path.join(self.tmp, "all.log")
        results = []

        def run(module):
            results.append(g.request("POST", "/many", timeout=60, json_body={
                "n": 10, "argv": ["/bin/sh", child, log], "module": module}).json())

        ts = [threading.Thread(target=run, args=(m,)) for m in ("telegram", "feishu", "other")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * SLOW)
        self.assertEqual(sorted(r["ok"] for r in results), [10, 10, 10])
        peak, starts, _ = self.concurrency(log)
        self.assertEqual(starts, 30)
        self.assertLessEqual(peak, 3)

    def test_queue_is_bounded_busy_beyond_it(self):
        g = self.gw_exec(env={"CHAT_GATEWAY_EXEC_MAX_GLOBAL": "1", "CHAT_GATEWAY_EXEC_QUEUE_MAX": "2"})
        release = os.path.join(self.tmp, "release")
        hold = ["/bin/sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.02; done', release]
        for i in range(3):  # one runs (until released), two wait
            g.request("POST", "/bg?key=q%d" % i, json_body={"argv": hold})
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline and 'chatgw_exec_queue_length{module="default"} 2' not in g.get("/metrics").text:
            time.sleep(0.02)
        self.assertIn('chatgw_exec_inflight{module="default"} 1', g.get("/metrics").text)
        j = self.call(g, {"argv": ["/bin/true"]})
        self.assertTrue(j.get("err", "").startswith("busy: exec queue is full"), j)
        self.assertIn('result="busy"} 1', g.get("/metrics").text)
        open(release, "w").close()
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline and g.get("/result/q2").json().get("value") is None:
            time.sleep(0.02)
        self.assertEqual([g.get("/result/q%d" % i).json().get("value") for i in range(3)], ["code 0"] * 3)


class TimeoutTest(ExecCase):
    def test_timeout_kills_the_group_grandchildren_included(self):
        g = self.gw_exec()
        pidfile = os.path.join(self.tmp, "pids")
        # a grandchild that ignores SIGTERM and does not hold the pipes, one that does
        child = self.script("t.sh", (
            "(trap '' TERM; exec sleep 60) >/dev/null 2>&1 &\n"
            "echo $! >> \"$1\"\n"
            "sleep 60 &\n"
            "echo $! >> \"$1\"\n"
            "echo $$ >> \"$1\"\n"
            "wait\n"))
        t0 = time.time()
        try:
            j = self.call(g, {"argv": ["/bin/sh", child, pidfile], "timeout_ms": 400})
            took = time.time() - t0
            self.assertTrue(j.get("err", "").startswith("timeout: "), j)
            self.assertIn("400 ms", j["err"])
            # SIGTERM, then SIGKILL after the default 2 s grace for the one ignoring SIGTERM
            self.assertGreaterEqual(took, 0.35)
            self.assertLess(took, 6 * SLOW)
            pids = self.read_pids(pidfile)
            self.assertEqual(len(pids), 3)
            self.assertEqual(wait_dead(pids, 2), [], "a process of the group survived the timeout")
        finally:
            if os.path.exists(pidfile):
                kill_quietly(self.read_pids(pidfile))
        self.assertIn('result="timeout"} 1', g.get("/metrics").text)

    def test_module_timeout_env(self):
        g = self.gw_exec(env={"CHAT_GATEWAY_EXEC_TIMEOUT_TELEGRAM_MS": "200",
                              "CHAT_GATEWAY_EXEC_KILL_GRACE_MS": "100"})
        j = self.call(g, {"argv": ["/bin/sleep", "3"], "module": "telegram"})
        self.assertTrue(j.get("err", "").startswith("timeout: "), j)
        j = self.call(g, {"argv": ["/bin/sleep", "0.5"], "module": "feishu"})
        self.assertEqual(j["r"]["code"], 0)
        # the call's own timeout_ms wins
        j = self.call(g, {"argv": ["/bin/sleep", "0.5"], "module": "telegram", "timeout_ms": 5000})
        self.assertEqual(j["r"]["code"], 0)

    def test_grandchild_holding_the_pipes_after_the_leader_exits(self):
        g = self.gw_exec()
        pidfile = os.path.join(self.tmp, "pids")
        child = self.script("bg.sh", "sleep 60 &\necho $! > \"$1\"\necho started\n")
        t0 = time.time()
        try:
            j = self.call(g, {"argv": ["/bin/sh", child, pidfile]})
            self.assertEqual((j["r"]["code"], j["r"]["stdout"]), (0, "started\n"))
            self.assertLess(time.time() - t0, 3 * SLOW, "waited for the grandchild instead of killing it")
            self.assertEqual(wait_dead(self.read_pids(pidfile), 2), [])
        finally:
            if os.path.exists(pidfile):
                kill_quietly(self.read_pids(pidfile))


class LifecycleTest(ExecCase):
    def start_sleepers(self, g, n):
        pidfile = os.path.join(self.tmp, "pids")
        child = self.script("s.sh", "sleep 60 &\necho $! >> \"$1\"\necho $$ >> \"$1\"\nwait\n")
        for i in range(n):
            g.request("POST", "/bg?key=s%d" % i, json_body={"argv": ["/bin/sh", child, pidfile]})
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            if os.path.exists(pidfile) and len(self.read_pids(pidfile)) == 2 * n:
                return pidfile
            time.sleep(0.02)
        self.fail("children did not start")

    def test_shutdown_leaves_no_child_behind(self):
        g = self.gw_exec()
        pidfile = self.start_sleepers(g, 3)
        pids = self.read_pids(pidfile)
        try:
            t0 = time.time()
            self.assertEqual(g.stop(), 0, g.stderr_text()[-3000:])
            self.assertLess(time.time() - t0, 10 * SLOW)
            self.assertEqual(wait_dead(pids, 2), [], "children survived the shutdown")
        finally:
            kill_quietly(pids)

    def test_reload_cancels_the_call_and_kills_its_child(self):
        g = self.gw_exec()
        pidfile = self.start_sleepers(g, 1)
        pids = self.read_pids(pidfile)
        try:
            g.reload()
            self.assertEqual(wait_dead(pids, 5), [], "the child of a cancelled call survived")
            deadline = time.time() + 5 * SLOW
            while time.time() < deadline and '{module="default",result="cancelled"} 1' not in g.get("/metrics").text:
                time.sleep(0.05)
            self.assertIn('chatgw_exec_inflight{module="default"} 0', g.get("/metrics").text)
            self.assertEqual(self.call(g, {"argv": ["/bin/true"]})["r"]["code"], 0)
        finally:
            kill_quietly(pids)

    def test_bad_env_value_is_a_load_error(self):
        g = self.gw({"exec.lua": EXEC}, start=False, env={"CHAT_GATEWAY_EXEC_MAX_GLOBAL": "abc"})
        g.start(wait_ready=False)
        code = g.proc.wait(20 * SLOW)
        self.assertEqual(code, 1)
        self.assertIn("env CHAT_GATEWAY_EXEC_MAX_GLOBAL: expected integer 1..1024, got 'abc'",
                      g.stderr_text())


if __name__ == "__main__":
    unittest.main()
