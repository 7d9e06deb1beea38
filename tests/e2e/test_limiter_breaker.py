"""E2E: chatgw.limiter (token buckets and sliding windows, take/wait, accuracy in real time,
state kept across reloads) and chatgw.breaker (transitions with short durations against a fake
upstream answering 5xx bursts, growing open time, ratio trips, errors and is_failure, stats,
logs and metrics)."""
import threading
import time
import unittest

from harness import SLOW, GatewayTest
from upstream import Upstream

NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}

LIMITS = r"""
local function limiter(q)
  if q.kind == "window" then
    return chatgw.limiter{ name = q.name, limit = tonumber(q.limit), window_ms = tonumber(q.window_ms) }
  end
  return chatgw.limiter{ name = q.name, rate = tonumber(q.rate), burst = tonumber(q.burst) }
end

return { routes = {
  -- take in a tight loop (1 ms apart) for `ms`: how many were allowed, and the first refusal
  ["GET /spin"] = { function(req)
    local q = req.query
    local lim = limiter(q)
    local t0, allowed, refused, first_retry = chatgw.now(), 0, 0, nil
    while chatgw.now() - t0 < tonumber(q.ms) do
      local ok, retry = lim:take(q.key or "k")
      if ok then allowed = allowed + 1 else
        refused = refused + 1
        first_retry = first_retry or retry
      end
      chatgw.sleep(1)
    end
    return { allowed = allowed, refused = refused, first_retry = first_retry }
  end, public = true },
  ["GET /take"] = { function(req)
    local q = req.query
    local ok, retry = limiter(q):take(q.key or "k", tonumber(q.n))
    return { ok = ok, retry = retry }
  end, public = true },
  -- n tasks call lim:wait at once; returns when each got through, in order
  ["GET /waits"] = { function(req)
    local q = req.query
    local lim = limiter(q)
    local n, done, times = tonumber(q.n), 0, {}
    local t0 = chatgw.now()
    for i = 1, n do
      chatgw.spawn(function()
        local ok, err = lim:wait(q.key or "k")
        times[#times + 1] = { i = i, t = chatgw.now() - t0, ok = ok, err = err }
        done = done + 1
      end)
    end
    while done < n do chatgw.sleep(5) end
    return { times = times }
  end, public = true },
  ["GET /misuse"] = { function(req)
    local out = {}
    local function try(f) local ok, e = pcall(f); out[#out + 1] = ok and "no error" or tostring(e) end
    try(function() chatgw.limiter{ rate = 1 } end)
    try(function() chatgw.limiter{ name = "m", rate = 1, limit = 3, window_ms = 10 } end)
    try(function() chatgw.limiter{ name = "m", limit = 3 } end)
    try(function() chatgw.limiter{ name = "m" } end)
    try(function() chatgw.limiter{ name = "m", rate = 1, burst = 2, typo = 1 } end)
    try(function() chatgw.limiter{ name = "m", rate = 1, burst = 2 }:take("k", 3) end)
    try(function() chatgw.limiter{ name = "m", rate = 1, burst = 2 }:take({}) end)
    try(function() chatgw.breaker{ failures = 1 } end)
    try(function() chatgw.breaker{ name = "m", ratio = 2 } end)
    try(function() chatgw.breaker{ name = "m", is_failure = 5 } end)
    try(function() chatgw.breaker{ name = "m", open_ms = 100, max_open_ms = 50 } end)
    try(function() chatgw.breaker{ name = "m" }:call(5) end)
    return { errors = out }
  end, public = true },
  ["GET /bg-wait"] = { function(req)
    local lim = chatgw.limiter{ name = "bgwait", rate = 0.1, burst = 1 }
    lim:take("k")                                  -- empty: the next wait is ~10 s
    chatgw.spawn(function()
      local t0 = chatgw.now()
      local ok, err = lim:wait("k")
      chatgw.log.info("bg wait done", { err = err or "none", elapsed = chatgw.now() - t0 })
    end)
    return { ok = true }
  end, public = true },
}}
"""

BREAKER = r"""
local function br(q)
  return chatgw.breaker{
    name = q.name or "up", failures = tonumber(q.failures) or 3, open_ms = tonumber(q.open_ms) or 300,
    max_open_ms = tonumber(q.max_open_ms) or 1000, half_open_calls = tonumber(q.half) or 1,
    is_failure = function(res, err) return res == nil or res.status >= 500 end,
  }
end

return { routes = {
  ["GET /call"] = { function(req)
    local b = br(req.query)
    local res, err, retry = b:call(chatgw.http.request, { url = req.query.url, timeout_ms = 5000 })
    return { status = res and res.status, err = err, retry = retry, state = b:state() }
  end, public = true },
  ["GET /stats"] = { function(req) return br(req.query):stats() end, public = true },
  ["GET /ratio"] = { function(req)
    -- consecutive rule off; trips on > 50% failures once 6 calls are in the window
    local b = chatgw.breaker{ name = "ratio", failures = 0, ratio = 0.5, min_calls = 6,
                              window_ms = 10000, open_ms = 200 }
    local seq, states = req.query.seq, {}
    for i = 1, #seq do
      local ok = seq:sub(i, i) == "s"
      b:call(function() if ok then return true end return nil, "io: boom" end)
      states[i] = b:state()
    end
    return { states = states, stats = b:stats() }
  end, public = true },
  ["GET /errors"] = { function(req)
    local b = chatgw.breaker{ name = "errs", failures = 2, open_ms = 5000 }
    local out = {}
    local ok, e = pcall(b.call, b, function() error("kaput") end)
    out.raised = tostring(e)
    out.after_one = b:state()
    -- cancelled results do not count
    b:call(function() return nil, "cancelled: reload" end)
    out.after_cancelled = b:stats().failures
    -- values pass through unchanged
    out.values = { b:call(function(a, c) return a + c, "second" end, 2, 3) }
    b:call(function() return false end)
    b:call(function() return nil, "timeout: slow" end)
    out.after_two = b:state()
    local r1, r2, r3 = b:call(function() return "never" end)
    out.rejected = { r1, r2, r3 }
    b:reset()
    out.after_reset = b:state()
    return out
  end, public = true },
}}
"""


class LimiterTest(GatewayTest):
    def get(self, g, path, timeout=30):
        r = g.get(path, auth=False, timeout=timeout)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_token_bucket_accuracy_in_real_time(self):
        g = self.gw({"limits.lua": LIMITS})
        out = self.get(g, "/spin?name=acc&rate=20&burst=5&ms=1000")
        # burst + rate * 1 s = 25 (loop ticks are ~1 ms; allow scheduling slack)
        self.assertGreaterEqual(out["allowed"], 23, out)
        self.assertLessEqual(out["allowed"], 26, out)
        self.assertGreater(out["refused"], 100)
        self.assertTrue(1 <= out["first_retry"] <= 50, out)

    def test_sliding_window_limits_and_tells_when(self):
        g = self.gw({"limits.lua": LIMITS})
        q = "/take?kind=window&name=win&limit=3&window_ms=400&key=u1"
        for _ in range(3):
            self.assertEqual(self.get(g, q)["ok"], True)
        out = self.get(g, q)
        self.assertEqual(out["ok"], False)
        self.assertTrue(0 < out["retry"] <= 400, out)
        time.sleep(out["retry"] / 1000 + 0.05)
        self.assertEqual(self.get(g, q)["ok"], True)
        # keys are independent
        self.assertEqual(self.get(g, q.replace("u1", "u2"))["ok"], True)
        # accuracy over 1.2 s: 3 per 400 ms
        out = self.get(g, "/spin?kind=window&name=win2&limit=3&window_ms=400&ms=1200")
        self.assertGreaterEqual(out["allowed"], 8, out)
        self.assertLessEqual(out["allowed"], 9, out)

    def test_take_n_and_retry_after(self):
        g = self.gw({"limits.lua": LIMITS})
        q = "/take?name=n&rate=10&burst=10&key=a&n="
        self.assertEqual(self.get(g, q + "7")["ok"], True)
        out = self.get(g, q + "5")
        self.assertEqual(out["ok"], False)
        self.assertTrue(100 <= out["retry"] <= 200, out)   # 2 missing tokens at 10/s

    def test_wait_paces_callers_in_arrival_order(self):
        g = self.gw({"limits.lua": LIMITS})
        out = self.get(g, "/waits?name=pace&rate=10&burst=1&n=5")
        times = out["times"]
        self.assertEqual([t["ok"] for t in times], [True] * 5)
        self.assertEqual([t["i"] for t in times], [1, 2, 3, 4, 5])   # FIFO
        ts = [t["t"] for t in times]
        for a, b in zip(ts, ts[1:]):
            self.assertGreaterEqual(b - a, 90, ts)                   # 1 per 100 ms
        self.assertGreaterEqual(ts[-1], 390, ts)
        self.assertLess(ts[-1], 400 + 300 * SLOW, ts)

    def test_limiter_state_survives_reload(self):
        g = self.gw({"limits.lua": LIMITS})
        q = "/take?name=keep&rate=0.01&burst=2&key=x"
        self.assertEqual(self.get(g, q)["ok"], True)
        self.assertEqual(self.get(g, q)["ok"], True)
        self.assertEqual(self.get(g, q)["ok"], False)
        g.reload()
        self.assertEqual(self.get(g, q)["ok"], False)       # same bucket, still empty
        m = g.get("/metrics").text
        self.assertIn('chatgw_limiter_rejections_total{name="keep"} 2', m)

    def test_wait_in_a_task_is_cancelled_by_reload(self):
        g = self.gw({"limits.lua": LIMITS})
        self.get(g, "/bg-wait")
        time.sleep(0.1)
        g.reload()
        rec = g.wait_log(lambda r: r.get("msg") == "bg wait done", timeout=5)
        self.assertTrue(rec["err"].startswith("cancelled:"), rec)
        self.assertLess(rec["elapsed"], 5000)

    def test_misuse_raises_with_the_function_name(self):
        g = self.gw({"limits.lua": LIMITS})
        errs = self.get(g, "/misuse")["errors"]
        expect = [
            "chatgw.limiter: name must be a non-empty string",
            "chatgw.limiter: give rate/burst (token bucket) or limit/window_ms",
            "chatgw.limiter: window_ms must be a number > 0",
            "chatgw.limiter: give rate (and burst)",
            "chatgw.limiter: unknown option 'typo'",
            "lim:take: n must be > 0 and <= burst",
            "lim:take: key must be a string",
            "chatgw.breaker: name must be a non-empty string",
            "chatgw.breaker: ratio must be a number in 0..1",
            "chatgw.breaker: is_failure must be a function",
            "chatgw.breaker: max_open_ms must be",
            "br:call: fn must be a function",
        ]
        self.assertEqual(len(errs), len(expect))
        for e, want in zip(errs, expect):
            self.assertIn(want, e)


class BreakerTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = Upstream().start()
        self.addCleanup(self.up.stop)
        self.mode = {"status": 500}
        self.up.route("/svc", lambda r: r.reply(self.mode["status"], b"x"))

    def get(self, g, path):
        r = g.get(path, auth=False, timeout=30)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def call(self, g, **q):
        extra = "".join("&%s=%s" % kv for kv in q.items())
        return self.get(g, "/call?url=" + self.up.url("/svc") + extra)

    def test_transitions_closed_open_half_open_closed(self):
        g = self.gw({"br.lua": BREAKER}, env=NO_PROXY)
        for _ in range(2):
            out = self.call(g)
            self.assertEqual((out["status"], out["state"]), (500, "closed"))
        out = self.call(g)                                   # third 5xx in a row
        self.assertEqual((out["status"], out["state"]), (500, "open"))
        hits = self.up.count("/svc")
        out = self.call(g)                                   # rejected at once
        self.assertIsNone(out.get("status"))
        self.assertTrue(out["err"].startswith("open: "), out)
        self.assertTrue(0 < out["retry"] <= 300, out)
        self.assertEqual(self.up.count("/svc"), hits)        # upstream not called
        time.sleep(0.35)
        self.mode["status"] = 200                            # upstream recovered
        out = self.call(g)                                   # the half-open trial
        self.assertEqual((out["status"], out["state"]), (200, "closed"))
        st = self.get(g, "/stats")
        self.assertEqual(st["state"], "closed")
        self.assertEqual(st["opens"], 1)
        self.assertEqual(st["open_ms"], 300)
        self.assertGreaterEqual(st["rejections"], 1)
        m = g.get("/metrics").text
        self.assertIn('chatgw_breaker_state{name="up"} 0', m)
        self.assertIn('chatgw_breaker_transitions_total{name="up",from="closed",to="open"} 1', m)
        self.assertIn('chatgw_breaker_transitions_total{name="up",from="open",to="half_open"} 1', m)
        self.assertIn('chatgw_breaker_transitions_total{name="up",from="half_open",to="closed"} 1',
                      m)
        self.assertIn('chatgw_breaker_calls_total{name="up",result="rejected"} 1', m)
        self.assertIn('chatgw_breaker_calls_total{name="up",result="failure"} 3', m)
        g.wait_log(lambda r: r.get("msg") == "circuit breaker state change"
                   and r.get("to") == "closed")        # stderr is read by another thread
        logs = [r for r in g.records() if r.get("msg") == "circuit breaker state change"]
        self.assertEqual([(r["from"], r["to"], r["level"]) for r in logs],
                         [("closed", "open", "warn"), ("open", "half_open", "info"),
                          ("half_open", "closed", "info")])

    def test_failed_trials_grow_the_open_time_up_to_the_cap(self):
        g = self.gw({"br.lua": BREAKER}, env=NO_PROXY)
        q = dict(name="grow", failures=1, open_ms=100, max_open_ms=250)
        self.assertEqual(self.call(g, **q)["state"], "open")
        retries = []
        for _ in range(3):
            out = self.call(g, **q)
            self.assertTrue(out["err"].startswith("open:"), out)
            retries.append(out["retry"])
            time.sleep(out["retry"] / 1000 + 0.03)
            out = self.call(g, **q)                              # trial fails: re-opened
            self.assertEqual((out["status"], out["state"]), (500, "open"), out)
        st = self.get(g, "/stats?name=grow&failures=1&open_ms=100&max_open_ms=250")
        self.assertEqual(st["open_ms"], 250)                     # 100 -> 200 -> 250 (capped)
        self.assertTrue(150 < st["retry_after_ms"] <= 250, st)
        self.assertLessEqual(retries[0], 100)
        self.assertTrue(100 < retries[1] <= 200, retries)
        self.assertTrue(200 < retries[2] <= 250, retries)
        self.assertEqual(st["opens"], 4)

    def test_half_open_lets_only_the_trial_calls_through(self):
        def slow(r):
            r.sleep(0.4)
            r.reply(200, b"ok")

        self.up.route("/slow", slow)
        g = self.gw({"br.lua": BREAKER}, env=NO_PROXY)
        q = "&name=trial&failures=1&open_ms=100"
        self.get(g, "/call?url=" + self.up.url("/svc") + q)       # opens it
        time.sleep(0.15)
        results = []

        def one():
            results.append(self.get(g, "/call?url=" + self.up.url("/slow") + q))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(10 * SLOW)
        ok = [r for r in results if r.get("status") == 200]
        rejected = [r for r in results if (r.get("err") or "").startswith("open:")]
        self.assertEqual((len(ok), len(rejected)), (1, 3), results)
        self.assertIn("half-open", rejected[0]["err"])
        self.assertEqual(self.up.count("/slow"), 1)

    def test_ratio_over_the_window_trips_it(self):
        g = self.gw({"br.lua": BREAKER})
        out = self.get(g, "/ratio?seq=sfsfsf")          # 3 of 6 = 0.5: not above
        self.assertEqual(out["states"][-1], "closed", out)
        out = self.get(g, "/ratio?seq=f")               # 4 of 7 > 0.5
        self.assertEqual(out["states"], ["open"], out)
        self.assertEqual(out["stats"]["opens"], 1)

    def test_errors_and_results_and_cancelled(self):
        g = self.gw({"br.lua": BREAKER})
        out = self.get(g, "/errors")
        self.assertIn("kaput", out["raised"])
        self.assertEqual(out["after_one"], "closed")
        self.assertEqual(out["after_cancelled"], 1)       # only the raise counted
        self.assertEqual(out["values"], [5, "second"])
        self.assertEqual(out["after_two"], "open")        # false, then nil, "timeout: ..."
        self.assertIsNone(out["rejected"][0])
        self.assertTrue(out["rejected"][1].startswith("open: circuit breaker 'errs' is open"))
        self.assertTrue(4000 < out["rejected"][2] <= 5000)
        self.assertEqual(out["after_reset"], "closed")

    def test_breaker_state_survives_reload(self):
        g = self.gw({"br.lua": BREAKER}, env=NO_PROXY)
        q = dict(name="keep", failures=1, open_ms=60000, max_open_ms=60000)
        self.assertEqual(self.call(g, **q)["state"], "open")
        g.reload()
        out = self.call(g, **q)
        self.assertTrue(out["err"].startswith("open:"), out)
        self.assertEqual(self.up.count("/svc"), 1)


if __name__ == "__main__":
    unittest.main()
