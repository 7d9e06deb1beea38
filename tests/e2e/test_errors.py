"""E2E: errors in handlers, tasks and timers, and misuse of the chatgw.* functions."""
import os
import time

from harness import SLOW, GatewayTest

BOOM = """\
-- line 1
local function inner()
  error("boom")
end

return {
  routes = {
    ["GET /boom"] = function() inner() end,
    ["GET /boom-after-wait"] = function()
      chatgw.sleep(20)
      error("late boom")
    end,
    ["GET /boom-table"] = function() error({ code = 42 }) end,
    ["GET /boom-bad-body"] = function() return 200, function() end end,
    ["GET /boom-bad-header"] = function() return 200, "x", { ["X-A"] = {} } end,
    ["GET /ok"] = function() return { ok = true } end,
  },
}
"""


class HandlerErrorTest(GatewayTest):
    def check_500(self, g, path):
        r = g.get(path)
        self.assertEqual(r.status, 500, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        rid = r.headers.get("x-request-id")
        self.assertTrue(rid)
        self.assertEqual(r.json(), {"ok": False, "error": "internal_error", "request_id": rid})
        rec = g.wait_log(lambda x: x.get("level") == "error" and x.get("request_id") == rid)
        return rec

    def test_raise_gives_500_and_logs_traceback(self):
        g = self.gw({"boom.lua": BOOM})
        f = os.path.join(g.handlers_dir, "boom.lua")
        rec = self.check_500(g, "/boom")
        self.assertIn(f + ":3: boom", rec["error"])
        self.assertIn("stack traceback", rec["error"])
        self.assertIn(f + ":8", rec["error"])  # the route function's frame
        self.assertEqual(rec.get("route"), "GET /boom")
        # the body never leaks the error text
        self.assertEqual(g.get("/ok").json(), {"ok": True})

        rec = self.check_500(g, "/boom-after-wait")
        self.assertIn(f + ":11: late boom", rec["error"])

        self.check_500(g, "/boom-table")
        rec = self.check_500(g, "/boom-bad-body")
        self.assertIn("body of type function", rec["error"])
        rec = self.check_500(g, "/boom-bad-header")
        self.assertIn("X-A", rec["error"])
        self.assertEqual(g.get("/ok").json(), {"ok": True})

    def test_many_errors_keep_serving(self):
        g = self.gw({"boom.lua": BOOM})
        for _ in range(30):
            self.assertEqual(g.get("/boom").status, 500)
        self.assertEqual(g.get("/ok").status, 200)
        self.assertIsNone(g.proc.poll())


MISUSE = """
local function msg(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return "no error" end
  return tostring(err)
end
local noop = function() end
return {
  routes = {
    ["GET /misuse"] = function()
      return {
        sleep = msg(chatgw.sleep, "x"),
        sleep_neg = msg(chatgw.sleep, -5),
        every_zero = msg(chatgw.every, 0, noop),
        every_fn = msg(chatgw.every, 10, "nope"),
        spawn = msg(chatgw.spawn, 1),
        shared_nil = msg(chatgw.shared, nil),
        shared_opts = msg(chatgw.shared, "x", 5),
        dict_set = msg(function() return chatgw.shared("x"):set({}, 1) end),
        dict_set_value = msg(function() return chatgw.shared("x"):set("k", {}) end),
        dict_incr = msg(function() return chatgw.shared("x"):incr("k", "one") end),
        log_info = msg(chatgw.log.info, {}),
        log_fields = msg(chatgw.log.warn, "m", "not a table"),
        counter = msg(chatgw.metrics.counter, {}),
        counter_arg = msg(chatgw.metrics.counter, "name"),
        env = msg(function() return chatgw.env(42) end),
        json_decode = msg(chatgw.json.decode, 42),
        json_encode = msg(chatgw.json.encode, { f = noop }),
        yaml_load = msg(chatgw.yaml.load, 42),
      }
    end,
    ["GET /unprotected"] = function() chatgw.sleep("soon") end,
    ["GET /ok"] = function() return "ok" end,
  },
}
"""

EXPECT_PREFIX = {
    "sleep": "chatgw.sleep:",
    "sleep_neg": "chatgw.sleep:",
    "every_zero": "chatgw.every:",
    "every_fn": "chatgw.every:",
    "spawn": "chatgw.spawn:",
    "shared_nil": "chatgw.shared:",
    "shared_opts": "chatgw.shared:",
    "dict_set": "dict:set:",
    "dict_set_value": "dict:set:",
    "dict_incr": "dict:incr:",
    "log_info": "chatgw.log.info:",
    "log_fields": "chatgw.log.warn:",
    "counter": "chatgw.metrics.counter:",
    "counter_arg": "chatgw.metrics.counter:",
    "env": "chatgw.env:",
    "json_decode": "chatgw.json.decode:",
    "json_encode": "chatgw.json.encode:",
    "yaml_load": "chatgw.yaml.load:",
}


class MisuseTest(GatewayTest):
    def test_wrong_arguments_name_the_function(self):
        g = self.gw({"misuse.lua": MISUSE})
        r = g.get("/misuse")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        for key, prefix in EXPECT_PREFIX.items():
            with self.subTest(call=key):
                self.assertIn(key, j)
                # the message may carry a "file:line: " position in front of the name
                self.assertIn(prefix, j[key])
                self.assertNotEqual(j[key], "no error")
        # the documented texts for the two most common mistakes
        self.assertIn("chatgw.sleep: ms must be a number, got string", j["sleep"])
        self.assertIn("chatgw.every: ms must be >= 1", j["every_zero"])
        self.assertIn("chatgw.spawn: fn must be a function, got number", j["spawn"])
        self.assertIn("dict:set: key must be a non-empty string", j["dict_set"])
        self.assertIn("dict:set: value must be a string, number or boolean", j["dict_set_value"])
        self.assertIn("chatgw.log.info: msg must be a string, got table", j["log_info"])
        self.assertIn("chatgw.metrics.counter: name is required", j["counter"])

    def test_unprotected_misuse_is_a_500(self):
        g = self.gw({"misuse.lua": MISUSE})
        r = g.get("/unprotected")
        self.assertEqual(r.status, 500, r)
        rid = r.json()["request_id"]
        rec = g.wait_log(lambda x: x.get("msg") == "handler error" and x.get("request_id") == rid)
        self.assertIn("chatgw.sleep: ms must be a number, got string", rec["error"])
        self.assertIn(os.path.join(g.handlers_dir, "misuse.lua") + ":", rec["error"])
        self.assertEqual(g.get("/ok").text, "ok")


BACKGROUND = """
local d = chatgw.shared("err_bg")
local ticker
return {
  routes = {
    ["POST /spawn-fail"] = function()
      chatgw.spawn(function(what)
        chatgw.sleep(10)
        error("task " .. what)
      end, "boom")
      chatgw.spawn(function() error("instant task boom") end)
      return { ok = true }
    end,
    ["POST /every-fail"] = function()
      ticker = chatgw.every(30, function()
        d:incr("ticks", 1, 0)
        error("tick boom")
      end)
      return { ok = true }
    end,
    ["POST /every-stop"] = function() return { cancelled = ticker:cancel() } end,
    ["GET /ticks"] = function() return { ticks = d:get("ticks") or 0 } end,
    ["GET /ok"] = function() return "ok" end,
  },
}
"""


class BackgroundErrorTest(GatewayTest):
    def test_spawned_task_error_is_logged(self):
        g = self.gw({"bg.lua": BACKGROUND})
        self.assertEqual(g.request("POST", "/spawn-fail").status, 200)
        rec = g.wait_log(lambda x: x.get("level") == "error" and ": task boom" in str(x.get("error")))
        self.assertIn(os.path.join(g.handlers_dir, "bg.lua") + ":9: task boom", rec["error"])
        self.assertIn("spawn", rec["msg"])
        g.wait_log(lambda x: x.get("level") == "error" and "instant task boom" in str(x.get("error")))
        self.assertEqual(g.get("/ok").text, "ok")

    def test_every_callback_error_is_logged_and_ticks_go_on(self):
        g = self.gw({"bg.lua": BACKGROUND})
        self.assertEqual(g.request("POST", "/every-fail").status, 200)
        rec = g.wait_log(lambda x: x.get("level") == "error" and "tick boom" in str(x.get("error")))
        self.assertIn(os.path.join(g.handlers_dir, "bg.lua") + ":17: tick boom", rec["error"])
        self.assertIn("every", rec["msg"])
        # a failing tick does not stop the timer
        deadline = time.time() + 5 * SLOW
        while time.time() < deadline and g.get("/ticks").json()["ticks"] < 3:
            time.sleep(0.03)
        self.assertGreaterEqual(g.get("/ticks").json()["ticks"], 3)
        self.assertIs(g.request("POST", "/every-stop").json()["cancelled"], True)
        self.assertEqual(g.get("/ok").text, "ok")
        self.assertIsNone(g.proc.poll())


if __name__ == "__main__":
    import unittest
    unittest.main()
