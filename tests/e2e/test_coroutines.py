"""E2E: the coroutine runtime and the chatgw.* library as handlers see it: sleep, spawn,
every, now, load-time waits, user coroutines, json, yaml, env, shared dicts, log, sandbox."""
import threading
import time
import unittest

from harness import SLOW, GatewayTest


def poll(fn, timeout=5.0, interval=0.02):
    """Calls fn() until it returns a truthy value or the (SLOW-stretched) timeout passes."""
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


SLEEP = """
return {
  routes = {
    ["GET /sleep"] = function(req)
      local t0 = chatgw.now()
      local ok = chatgw.sleep(tonumber(req.query.ms) or 200)
      return { ok = ok, elapsed = chatgw.now() - t0, t0 = t0 }
    end,
    ["GET /now"] = function() return { now = chatgw.now() } end,
    ["GET /busy-then-sleep"] = function()
      local t = chatgw.now()
      while chatgw.now() - t < 100 do end   -- 100 ms of CPU work in this loop turn
      local t0 = chatgw.now()
      chatgw.sleep(100)
      return { elapsed = chatgw.now() - t0 }
    end,
  },
}
"""


class SleepTest(GatewayTest):
    def test_concurrent_sleeps_overlap(self):
        g = self.gw({"sleep.lua": SLEEP})
        n = 100
        results = [None] * n
        errors = []

        def one(i):
            try:
                results[i] = g.get("/sleep?ms=200", timeout=20)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30 * SLOW)
        total = time.time() - t0
        self.assertEqual(errors, [])
        for r in results:
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertIs(j["ok"], True)
            # it did sleep (exact duration: test_sleep_waits_its_full_time_after_cpu_work)
            self.assertGreaterEqual(j["elapsed"], 150)
        # serial would be 20 s
        self.assertLess(total, 3.0 * SLOW, "100 x sleep(200) took %.2fs: not concurrent" % total)

    def test_now_is_monotonic_ms(self):
        g = self.gw({"sleep.lua": SLEEP})
        a = g.get("/now").json()["now"]
        time.sleep(0.1)
        b = g.get("/now").json()["now"]
        self.assertGreater(b, a)
        self.assertGreaterEqual(b - a, 95)      # milliseconds, not seconds
        self.assertLess(b - a, 5000 * SLOW)
        j = g.get("/sleep?ms=100").json()
        self.assertGreaterEqual(j["elapsed"], 98)
        self.assertLess(j["elapsed"], 2000 * SLOW)

    def test_sleep_waits_its_full_time_after_cpu_work(self):
        # chatgw.sleep(ms) must not return early when the handler (or the loop turn) spent
        # CPU time before calling it.
        g = self.gw({"sleep.lua": SLEEP})
        for _ in range(2):
            r = g.get("/busy-then-sleep")
            self.assertEqual(r.status, 200, r)
            self.assertGreaterEqual(r.json()["elapsed"], 98,
                                    "chatgw.sleep(100) returned early after 100 ms of CPU work")


BACKGROUND = """
local d = chatgw.shared("bg_test")
local ticker
return {
  routes = {
    ["POST /spawn"] = function(req)
      local ok = chatgw.spawn(function(key, value, n)
        chatgw.sleep(100)
        d:set(key, value .. ":" .. n)
      end, "spawned", "hello", 3)
      return { spawned = ok, now = d:get("spawned") }
    end,
    ["POST /every/start"] = function()
      d:set("ticks", 0)
      ticker = chatgw.every(50, function() d:incr("ticks", 1, 0) end)
      return { ok = true, handle = tostring(ticker) ~= nil }
    end,
    ["POST /every/stop"] = function()
      return { cancelled = ticker:cancel() }
    end,
    ["GET /get/:key"] = function(req)
      return { value = d:get(req.params.key) }
    end,
  },
}
"""


class BackgroundTest(GatewayTest):
    def test_spawn_runs_in_background(self):
        g = self.gw({"bg.lua": BACKGROUND})
        t0 = time.time()
        r = g.request("POST", "/spawn")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertIs(j["spawned"], True)
        self.assertNotIn("now", j)  # the task had not finished when the handler returned
        self.assertLess(time.time() - t0, 2.0 * SLOW)
        v = poll(lambda: g.get("/get/spawned").json().get("value"))
        self.assertEqual(v, "hello:3")

    def test_every_ticks_and_cancel_stops_it(self):
        g = self.gw({"bg.lua": BACKGROUND})
        self.assertEqual(g.request("POST", "/every/start").status, 200)
        ticks = lambda: g.get("/get/ticks").json().get("value") or 0  # noqa: E731
        self.assertTrue(poll(lambda: ticks() >= 4), "every(50) did not tick: %r" % ticks())
        r = g.request("POST", "/every/stop")
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json()["cancelled"], True)
        time.sleep(0.1)
        frozen = ticks()
        time.sleep(0.4)
        self.assertEqual(ticks(), frozen, "the ticker kept running after cancel()")
        # a second cancel reports it is no longer running
        self.assertIs(g.request("POST", "/every/stop").json()["cancelled"], False)


LOAD_SLEEP = """
local t0 = chatgw.now()
local ok = chatgw.sleep(50)
local waited = chatgw.now() - t0
return {
  routes = {
    ["GET /loaded"] = function() return { ok = ok, waited = waited } end,
  },
}
"""

USER_CO = """
return {
  routes = {
    ["GET /wrap"] = function()
      local gen = coroutine.wrap(function(a)
        for i = 1, 3 do
          chatgw.sleep(10)
          a = coroutine.yield(a * 10 + i)
        end
        return "done"
      end)
      local out = {}
      out[1] = gen(1)
      out[2] = gen(2)
      out[3] = gen(3)
      out[4] = gen(4)
      return { values = out }
    end,
    ["GET /resume"] = function()
      local co = coroutine.create(function(x, y)
        chatgw.sleep(20)
        local z = coroutine.yield(x + y, "first")
        chatgw.sleep(20)
        return z * 2, "second"
      end)
      local ok1, a1, b1 = coroutine.resume(co, 2, 3)
      local st1 = coroutine.status(co)
      local ok2, a2, b2 = coroutine.resume(co, 21)
      local st2 = coroutine.status(co)
      local ok3, e3 = coroutine.resume(co)
      return { r1 = { ok1, a1, b1, st1 }, r2 = { ok2, a2, b2, st2 }, r3 = { ok3, e3 } }
    end,
    ["GET /co-error"] = function()
      local co = coroutine.create(function() chatgw.sleep(5); error("inner boom", 0) end)
      local ok, err = coroutine.resume(co)
      return { ok = ok, err = err }
    end,
  },
}
"""


class CoroutineTest(GatewayTest):
    def test_sleep_while_loading(self):
        g = self.gw({"load.lua": LOAD_SLEEP})
        j = g.get("/loaded").json()
        self.assertIs(j["ok"], True)
        # the loop clock has ms resolution: allow 2 ms, not more
        self.assertGreaterEqual(j["waited"], 48, "chatgw.sleep(50) while loading returned early")

    def test_user_coroutines_with_sleep(self):
        g = self.gw({"co.lua": USER_CO})
        r = g.get("/wrap")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["values"], [11, 22, 33, "done"])

        r = g.get("/resume")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["r1"], [True, 5, "first", "suspended"])
        self.assertEqual(j["r2"], [True, 42, "second", "dead"])
        self.assertIs(j["r3"][0], False)
        self.assertIn("dead coroutine", j["r3"][1])

        r = g.get("/co-error")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"ok": False, "err": "inner boom"})

    def test_concurrent_user_coroutines(self):
        g = self.gw({"co.lua": USER_CO})
        results = [None] * 20

        def one(i):
            results[i] = g.get("/wrap")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20 * SLOW)
        for r in results:
            self.assertIsNotNone(r)
            self.assertEqual(r.json()["values"], [11, 22, 33, "done"])


LIBS = """
local json = chatgw.json
return {
  routes = {
    ["POST /json/ids"] = function(req)
      local j = req.json
      return { id = j.chat_id, id_type = type(j.chat_id), small = j.small,
               small_type = type(j.small), neg = j.neg, neg_type = type(j.neg),
               float = j.float, float_type = type(j.float) }
    end,
    ["GET /json/encode"] = function()
      return json.encode({ url = "https://example.com/a/b", list = json.empty_array,
                           nested = { empty = json.empty_array, n = json.null } })
    end,
    ["GET /json/return-empty"] = function()
      return { items = json.empty_array, path = "/x/y" }
    end,
    ["GET /json/bad"] = function()
      local v, err = json.decode("{not json")
      local v2, err2 = json.decode("")
      return { v_is_nil = v == nil, err = err, v2_is_nil = v2 == nil, err2 = err2 }
    end,
    ["GET /json/decode-big"] = function()
      local v = json.decode('{"id": -98765432109876543, "s": "1234567890123456789", "f": 1.5e3}')
      return { id = v.id, id_type = type(v.id), s = v.s, f = v.f }
    end,
    ["GET /yaml"] = function()
      local v = chatgw.yaml.load("name: bot\\nlist: [a, b]\\nnested:\\n  n: 3\\n")
      local bad, err = chatgw.yaml.load("a: [unclosed\\n")
      return { v = v, bad_is_nil = bad == nil, err = err }
    end,
    ["GET /env"] = function()
      return {
        path = chatgw.env.PATH,
        var = chatgw.env.CHATGW_E2E_VAR,
        missing = chatgw.env.CHATGW_E2E_MISSING,
        dflt = chatgw.env("CHATGW_E2E_MISSING", "default"),
        set = chatgw.env("CHATGW_E2E_VAR", "default"),
      }
    end,
  },
}
"""


class LibTest(GatewayTest):
    def test_json_big_ids(self):
        g = self.gw({"libs.lua": LIBS})
        body = ('{"chat_id": 1234567890123456789, "small": 42, "neg": -1234567890123456789,'
                ' "float": 2.5}')
        r = g.request("POST", "/json/ids", body=body, headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["id"], "1234567890123456789")
        self.assertEqual(j["id_type"], "string")
        self.assertEqual(j["small"], 42)
        self.assertEqual(j["small_type"], "number")
        self.assertEqual(j["neg"], "-1234567890123456789")
        self.assertEqual(j["float"], 2.5)
        self.assertEqual(j["float_type"], "number")
        self.assertIn('"1234567890123456789"', r.text)

        j = g.get("/json/decode-big").json()
        self.assertEqual(j["id"], "-98765432109876543")
        self.assertEqual(j["id_type"], "string")
        self.assertEqual(j["s"], "1234567890123456789")
        self.assertEqual(j["f"], 1500)

    def test_json_encode(self):
        g = self.gw({"libs.lua": LIBS})
        r = g.get("/json/encode")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("\\/", r.text)
        self.assertIn('"https://example.com/a/b"', r.text)
        import json as pyjson
        v = pyjson.loads(r.text)
        self.assertEqual(v["list"], [])
        self.assertEqual(v["nested"], {"empty": [], "n": None})

        r = g.get("/json/return-empty")
        self.assertEqual(r.json(), {"items": [], "path": "/x/y"})
        self.assertNotIn("\\/", r.text)

        j = g.get("/json/bad").json()
        self.assertIs(j["v_is_nil"], True)
        self.assertTrue(j["err"].startswith("json: "), j)
        self.assertIs(j["v2_is_nil"], True)
        self.assertTrue(j["err2"].startswith("json: "), j)

    def test_yaml(self):
        g = self.gw({"libs.lua": LIBS})
        r = g.get("/yaml")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["v"]["name"], "bot")
        self.assertEqual(j["v"]["list"], ["a", "b"])
        self.assertEqual(j["v"]["nested"]["n"], 3)
        self.assertIs(j["bad_is_nil"], True)
        self.assertTrue(j["err"].startswith("yaml: "), j)

    def test_env(self):
        g = self.gw({"libs.lua": LIBS}, env={"CHATGW_E2E_VAR": "from-env"})
        j = g.get("/env").json()
        self.assertEqual(j["path"], g.env["PATH"])
        self.assertEqual(j["var"], "from-env")
        self.assertNotIn("missing", j)
        self.assertEqual(j["dflt"], "default")
        self.assertEqual(j["set"], "from-env")


SHARED = """
local d = chatgw.shared("e2e_dict")
local small = chatgw.shared("e2e_small", { max_bytes = 1000 })
return {
  routes = {
    ["GET /basic"] = function()
      local r = {}
      r.set = { d:set("s", "str") }
      r.get_s = d:get("s")
      d:set("n", 1.5)
      r.get_n = d:get("n")
      d:set("b", false)
      r.get_b = d:get("b")
      r.get_missing = d:get("missing")
      r.add_new = { d:add("a", "first") }
      r.add_again = { d:add("a", "second") }
      r.get_a = d:get("a")
      r.incr_new = d:incr("c", 5, 10)
      r.incr = d:incr("c", 1)
      r.incr_missing = { d:incr("nope", 1) }
      r.incr_str = { d:incr("s", 1) }
      r.del = d:delete("a")
      r.get_after_del = d:get("a")
      r.ttl_none = d:ttl("s")
      d:set("t", "short", 150)
      r.ttl_t = d:ttl("t")
      r.get_t = d:get("t")
      return r
    end,
    ["GET /get/:key"] = function(req) return { value = d:get(req.params.key), ttl = d:ttl(req.params.key) } end,
    ["POST /set/:key/:value"] = function(req) return { d:set(req.params.key, req.params.value) } end,
    ["GET /fill"] = function()
      local out, v = {}, string.rep("x", 100)
      for i = 1, 10 do
        local ok, err, forcible = small:set("k" .. i, v)
        out[i] = { ok = ok, forcible = forcible }
      end
      local present = {}
      for i = 1, 10 do present[i] = small:get("k" .. i) ~= nil end
      local used, max = small:bytes()
      local big_ok, big_err = small:set("big", string.rep("y", 2000))
      return { sets = out, present = present, used = used, max = max,
               big_ok = big_ok, big_err = big_err }
    end,
  },
}
"""


class SharedTest(GatewayTest):
    def test_operations(self):
        g = self.gw({"shared.lua": SHARED})
        r = g.get("/basic")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["set"], [True, None, False])  # ok, err=nil, forcible=false
        self.assertEqual(j["get_s"], "str")
        self.assertEqual(j["get_n"], 1.5)
        self.assertIs(j["get_b"], False)
        self.assertNotIn("get_missing", j)
        self.assertEqual(j["add_new"], [True, None, False])
        self.assertEqual(j["add_again"], [False, "exists", False])
        self.assertEqual(j["get_a"], "first")
        self.assertEqual(j["incr_new"], 15)
        self.assertEqual(j["incr"], 16)
        self.assertTrue(j["incr_missing"][1].startswith("not_found"), j)
        self.assertTrue(j["incr_str"][1].startswith("not_a_number"), j)
        self.assertIs(j["del"], True)
        self.assertNotIn("get_after_del", j)
        self.assertEqual(j["ttl_none"], 0)  # 0 = no expiry
        self.assertGreater(j["ttl_t"], 100)
        self.assertLessEqual(j["ttl_t"], 150)
        self.assertEqual(j["get_t"], "short")

        # TTL expiry
        gone = poll(lambda: "value" not in g.get("/get/t").json(), timeout=3)
        self.assertTrue(gone, "a 150 ms TTL entry did not expire")
        self.assertEqual(g.get("/get/s").json()["value"], "str")
        self.assertNotIn("ttl", g.get("/get/never-set").json())  # absent: nil

    def test_max_bytes_forcible_eviction(self):
        g = self.gw({"shared.lua": SHARED})
        r = g.get("/fill")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["max"], 1000)
        self.assertLessEqual(j["used"], 1000)
        sets = j["sets"]
        self.assertTrue(all(s["ok"] for s in sets), sets)
        self.assertIs(sets[0]["forcible"], False)
        self.assertTrue(any(s["forcible"] for s in sets), "no set reported forcible eviction")
        present = j["present"]
        self.assertIs(present[-1], True, "the newest key must stay")
        self.assertIs(present[0], False, "the oldest key must be evicted")
        self.assertLess(sum(present), 10)
        self.assertNotIn("big_ok", j)
        self.assertTrue(j["big_err"].startswith("too_large"), j)

    def test_survives_reload(self):
        g = self.gw({"shared.lua": SHARED})
        self.assertEqual(g.request("POST", "/set/keep/me").status, 200)
        rel = g.reload()
        self.assertEqual(rel.get("last_result"), "ok", rel)
        self.assertEqual(g.get("/get/keep").json()["value"], "me")


LOG_SANDBOX = """
return {
  routes = {
    ["GET /log"] = function()
      chatgw.log.info("e2e log line", { k = 1, s = "str", t = { a = true } })
      chatgw.log.warn("e2e warn line")
      return "logged"
    end,
    ["GET /print"] = function()
      print("printed", 42)
      return "printed"
    end,
    ["GET /os.exit"] = function() os.exit(3) end,
    ["GET /os.execute"] = function() return tostring(os.execute("true")) end,
    ["GET /io.popen"] = function() return tostring(io.popen("echo hi")) end,
    ["GET /io.read"] = function() return tostring(io.read("*l")) end,
    ["GET /io.lines"] = function() for l in io.lines() do end return "x" end,
    ["GET /sort-yield"] = function()
      local t = { 3, 1, 2 }
      table.sort(t, function(a, b) chatgw.sleep(1); return a < b end)
      return t
    end,
    ["GET /ok"] = function() return "alive" end,
  },
}
"""


class LogSandboxTest(GatewayTest):
    def test_log_fields(self):
        g = self.gw({"ls.lua": LOG_SANDBOX})
        self.assertEqual(g.get("/log").status, 200)
        rec = g.wait_log(lambda r: r.get("msg") == "e2e log line")
        self.assertEqual(rec["level"], "info")
        self.assertEqual(rec["k"], 1)
        self.assertEqual(rec["s"], "str")
        self.assertEqual(rec["t"], {"a": True})
        self.assertIn("ts", rec)
        rec = g.wait_log(lambda r: r.get("msg") == "e2e warn line")
        self.assertEqual(rec["level"], "warn")

    def test_print_is_a_log_line(self):
        g = self.gw({"ls.lua": LOG_SANDBOX})
        self.assertEqual(g.get("/print").status, 200)
        rec = g.wait_log(lambda r: r.get("msg") == "printed\t42")
        self.assertEqual(rec["level"], "info")
        self.assertEqual(rec.get("source"), "print")
        # nothing went to stdout/stderr raw
        self.assertNotIn("printed\t42", [l for l in g.lines if not l.startswith("{")])

    def test_disabled_functions(self):
        g = self.gw({"ls.lua": LOG_SANDBOX})
        for name in ("os.exit", "os.execute", "io.popen", "io.read", "io.lines"):
            with self.subTest(fn=name):
                r = g.get("/" + name)
                self.assertEqual(r.status, 500, r)
                rid = r.json()["request_id"]
                rec = g.wait_log(lambda x: x.get("msg") == "handler error"
                                 and x.get("request_id") == rid)
                self.assertIn(name, rec["error"])
                self.assertIn("disabled in chatgw", rec["error"])
                self.assertEqual(g.get("/ok").text, "alive")
        self.assertIsNone(g.proc.poll())

    def test_yield_across_c_boundary(self):
        g = self.gw({"ls.lua": LOG_SANDBOX})
        r = g.get("/sort-yield")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["error"], "internal_error")
        rid = r.json()["request_id"]
        rec = g.wait_log(lambda x: x.get("msg") == "handler error" and x.get("request_id") == rid)
        self.assertIn("attempt to yield across C-call boundary", rec["error"])
        time.sleep(0.2 * SLOW)  # the failed wait's timer would have fired by now
        self.assertIsNone(g.proc.poll(), "chatgw died after a failed yield:\n"
                          + g.stderr_text()[-3000:])
        self.assertEqual(g.get("/ok").text, "alive")


if __name__ == "__main__":
    unittest.main()
