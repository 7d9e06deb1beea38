"""E2E: AI providers (chatgw.ai) against a local fake of the four wire formats
(tests/e2e/fake_llm.py): every kind streamed and not, chunk boundaries inside an SSE event and
inside a UTF-8 character, mid-stream errors and dropped streams, 429 with retry-after, the
breaker opening and recovering half-open, failover before and never after the first token,
validate with a bad key versus a dead server, listModels, usage metrics, and the keys kept out
of logs, /metrics and /health."""
import json
import re
import time
import unittest

from harness import GatewayTest
from fake_llm import FakeLLM

KEYS = {"openai": "sk-test-OPENAI-0123456789", "anthropic": "ak-test-ANTHROPIC-0123456789",
        "gemini": "gk-test-GEMINI-0123456789"}

AI = r"""
local function run(req)
  local b = req.json or {}
  local deltas = {}
  local args = { provider = b.provider, model = b.model, system = b.system,
                 messages = b.messages or { { role = "user", content = b.prompt or "hi" } },
                 timeout_ms = b.timeout_ms, failover = b.failover }
  if b.stream then args.stream = function(d) deltas[#deltas + 1] = d end end
  local r, err, partial = chatgw.ai.chat(args)
  if not r then return { ok = false, error = err, deltas = deltas, partial = partial } end
  r.ok, r.deltas = true, deltas
  return r
end
return {
  routes = {
    ["POST /ai"] = run,
    ["GET /models/:p"] = function(req)
      local ids, err = chatgw.ai.models(req.params.p)
      return { ids = ids, error = err }
    end,
    ["GET /validate/:p"] = function(req) return chatgw.ai.validate(req.params.p) end,
    ["GET /breaker/:p"] = function(req) return chatgw.breaker{ name = "ai." .. req.params.p }:stats() end,
  },
}
"""


class AITest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.llm = FakeLLM(keys=KEYS)
        self.llm.start()
        self.addCleanup(self.llm.stop)

    def env(self, **extra):
        u = self.llm.url
        e = {"OPENAI_API_KEY": KEYS["openai"], "OPENAI_BASE_URL": u + "/v1",
             "DEEPSEEK_API_KEY": KEYS["openai"], "DEEPSEEK_BASE_URL": u,
             "ANTHROPIC_API_KEY": KEYS["anthropic"], "ANTHROPIC_BASE_URL": u,
             "GEMINI_API_KEY": KEYS["gemini"], "GEMINI_BASE_URL": u,
             "OLLAMA_HOST": u.replace("http://", "")}
        e.update(extra)
        return e

    def start(self, config="", **extra):
        self.g = self.gw({"ai.lua": AI}, config=config, env=self.env(**extra))
        return self.g

    def ai(self, **body):
        r = self.g.request("POST", "/ai", json_body=body, timeout=30)
        self.assertEqual(r.status, 200, r.text)
        return r.json()

    def assert_no_keys(self):
        g = self.g
        for where, text in (("logs", g.stderr_text()), ("/metrics", g.get("/metrics").text),
                            ("/health", json.dumps(g.get("/health?verbose=1").json()))):
            for k in KEYS.values():
                self.assertNotIn(k, text, "an API key in " + where)

    # ---- every kind ----

    def test_every_provider_kind_streamed_and_not(self):
        self.start()
        for provider, kind in [("deepseek", "openai"), ("openai", "openai"), ("anthropic", "anthropic"),
                               ("gemini", "gemini"), ("ollama", "ollama")]:
            for stream in (False, True):
                self.llm.reply("héllo 世界 🙂 from " + provider, kind=kind)
                r = self.ai(provider=provider, prompt="q", stream=stream, system="be brief")
                what = "%s stream=%s" % (provider, stream)
                self.assertTrue(r["ok"], (what, r))
                self.assertEqual(r["text"], "héllo 世界 🙂 from " + provider, what)
                self.assertEqual(r["provider"], provider)
                self.assertTrue(r["model"], what)
                self.assertIn(r["finish_reason"], ("stop", "end_turn", "STOP"), what)
                if stream:
                    self.assertGreater(len(r["deltas"]), 1, what)
                    self.assertEqual("".join(r["deltas"]), r["text"], what)
                req = self.llm.calls(kind)[-1]
                self.assertEqual(req["stream"], stream, what)
                if kind != "ollama" or not stream:
                    self.assertGreater(r["usage"].get("input_tokens", 0), 0, what)
        # each format's request carries the system prompt its own way
        self.assertEqual(self.llm.calls("anthropic")[-1]["json"]["system"], "be brief")
        self.assertEqual(self.llm.calls("gemini")[-1]["json"]["systemInstruction"]["parts"][0]["text"], "be brief")
        self.assertEqual(self.llm.calls("openai")[-1]["json"]["messages"][0], {"role": "system", "content": "be brief"})
        self.assertEqual(self.llm.calls("anthropic")[-1]["headers"]["anthropic-version"], "2023-06-01")
        self.assertIs(self.llm.calls("ollama")[-1]["json"]["stream"], True)
        # deepseek's base URL without /v1 gets it added
        paths = {c["path"] for c in self.llm.calls("openai")}
        self.assertEqual(paths, {"/v1/chat/completions"})
        m = self.g.get("/metrics").text
        self.assertRegex(m, r'chatgw_ai_requests_total\{provider="anthropic",model="[^"]+",result="ok"\} 2')
        self.assertRegex(m, r'chatgw_ai_tokens_total\{provider="gemini",model="[^"]+",direction="out"\} \d+')
        self.assertIn("chatgw_ai_latency_seconds_bucket", m)
        self.assert_no_keys()

    def test_chunk_boundaries_inside_events_and_characters(self):
        self.start()
        text = "añb😀c" * 20
        for size in (1, 3, 7):
            self.llm.chunking(size=size)
            for provider, kind in [("openai", "openai"), ("anthropic", "anthropic"), ("gemini", "gemini"),
                                   ("ollama", "ollama")]:
                self.llm.reply(text, kind=kind)
                r = self.ai(provider=provider, stream=True)
                self.assertTrue(r["ok"], (size, provider, r))
                self.assertEqual(r["text"], text, (size, provider))
        self.llm.chunking(size=None)

    def test_mid_stream_errors_and_a_dropped_stream_are_errors_not_text(self):
        self.start()
        for provider, kind in [("openai", "openai"), ("anthropic", "anthropic"), ("gemini", "gemini"),
                               ("ollama", "ollama")]:
            self.llm.reply("one two three four five six seven", kind=kind)
            self.llm.mid_stream_error(after_deltas=2, kind=kind)
            r = self.ai(provider=provider, stream=True, failover=False)
            self.assertFalse(r["ok"], (provider, r))
            self.assertRegex(r["error"], r"^(upstream|overloaded):", provider)
            self.assertEqual(len(r["deltas"]), 2, provider)
            self.assertGreater(r["partial"]["streamed_bytes"], 0)
        self.llm.drop_after(after_deltas=2, kind="openai")
        r = self.ai(provider="openai", stream=True)
        self.assertFalse(r["ok"])
        self.assertRegex(r["error"], r"^upstream:")

    # ---- errors, retries, the breaker ----

    def test_error_codes_of_each_status(self):
        self.start()
        cases = [(401, "auth"), (403, "auth"), (400, "bad_request"), (404, "bad_request"), (500, "upstream"),
                 (529, "overloaded")]
        for status, code in cases:
            self.llm.error(status, kind="anthropic", times=3 if code == "overloaded" else 1, retry_after=0)
            r = self.ai(provider="anthropic", failover=False)
            self.assertFalse(r["ok"])
            self.assertTrue(r["error"].startswith(code + ":"), (status, r["error"]))
        # the provider's own message is in the error
        self.llm.error(400, kind="openai", message="max_tokens is too large")
        r = self.ai(provider="openai")
        self.assertIn("max_tokens is too large", r["error"])
        r = self.ai(provider="nope")
        self.assertTrue(r["error"].startswith("unavailable:"), r)

    def test_429_with_retry_after_is_retried_before_the_first_token(self):
        self.start()
        self.llm.error(429, kind="openai", retry_after=1)
        t0 = time.time()
        r = self.ai(provider="openai", stream=True)
        self.assertTrue(r["ok"], r)
        self.assertGreaterEqual(time.time() - t0, 0.9, "retry-after was honoured")
        self.assertEqual(len(self.llm.calls("openai")), 2)
        # 529 (overloaded) too; and a 429 three times gives up with rate_limited
        self.llm.error(529, kind="anthropic", retry_after=0)
        self.assertTrue(self.ai(provider="anthropic")["ok"])
        self.llm.error(429, kind="gemini", retry_after=0, times=3)
        r = self.ai(provider="gemini", failover=False)
        self.assertTrue(r["error"].startswith("rate_limited:"), r)
        self.assertEqual(len(self.llm.calls("gemini")), 3, "the first try and two retries")

    def test_the_breaker_opens_then_recovers_half_open(self):
        cfg = "providers:\n  openai:\n    timeout_ms: 2000\n"
        self.start(config=cfg)
        self.llm.error(500, kind="openai", times=5)
        for _ in range(5):
            self.assertTrue(self.ai(provider="openai", failover=False)["error"].startswith("upstream:"))
        r = self.ai(provider="openai", failover=False)
        self.assertTrue(r["error"].startswith("open:"), r)
        self.assertEqual(len(self.llm.calls("openai")), 5, "no call while open")
        st = self.g.get("/breaker/openai").json()
        self.assertEqual(st["state"], "open")
        h = self.g.health()["checks"]["ai"]["providers"]["openai"]
        self.assertEqual(h["breaker"], "open")
        # after the open time, one trial call closes it
        self.g.request("POST", "/ai", json_body={"provider": "openai"})  # still open
        wait = st["retry_after_ms"] / 1000 + 0.2
        time.sleep(wait)
        r = self.ai(provider="openai", failover=False)
        self.assertTrue(r["ok"], r)
        self.assertEqual(self.g.get("/breaker/openai").json()["state"], "closed")

    # ---- failover ----

    def test_failover_before_the_first_token_and_never_after(self):
        cfg = "providers:\n  default: anthropic\n  failover: [openai]\n"
        self.start(config=cfg)
        self.llm.error(500, kind="anthropic", times=1)
        self.llm.reply("from openai", kind="openai")
        r = self.ai(stream=True)
        self.assertTrue(r["ok"], r)
        self.assertEqual((r["provider"], r["text"]), ("openai", "from openai"))
        self.assertTrue(self.g.wait_log(lambda x: x.get("msg", "").startswith("ai: provider failed before its first token")))
        # after text has streamed: the failure is reported, nothing else is asked
        self.llm.reply("partial answer that breaks", kind="anthropic")
        self.llm.mid_stream_error(after_deltas=2, kind="anthropic")
        n = len(self.llm.calls("openai"))
        r = self.ai(stream=True)
        self.assertFalse(r["ok"])
        self.assertEqual(len(self.llm.calls("openai")), n, "no silent switch after the first token")
        self.assertEqual(len(r["deltas"]), 2)
        # a bad request is the caller's: no failover either
        self.llm.error(400, kind="anthropic")
        r = self.ai()
        self.assertTrue(r["error"].startswith("bad_request:"))
        self.assertEqual(len(self.llm.calls("openai")), n)

    # ---- models and validate ----

    def test_models_and_validate_tell_a_bad_key_from_a_dead_server(self):
        dead = FakeLLM.refused_url()
        cfg = ("providers:\n  badkey:\n    kind: openai\n    base_url: %s/v1\n    model: m\n    api_key_env: BAD_KEY\n"
               "  down:\n    kind: anthropic\n    base_url: %s\n    model: m\n    api_key_env: DOWN_KEY\n"
               % (self.llm.url, dead))
        self.start(config=cfg, BAD_KEY="sk-wrong", DOWN_KEY="ak-whatever")
        for p, kind in [("openai", "openai"), ("anthropic", "anthropic"), ("gemini", "gemini"), ("ollama", "ollama")]:
            r = self.g.get("/models/" + p).json()
            # Ollama lists names with their tag (llama3.2:latest)
            self.assertEqual([i.split(":")[0] for i in r["ids"]], self.llm.models[kind], p)
            v = self.g.get("/validate/" + p).json()
            self.assertTrue(v["valid"], (p, v))
        v = self.g.get("/validate/badkey").json()
        self.assertEqual((v["valid"], v["code"]), (False, "auth"), v)
        v = self.g.get("/validate/down").json()
        self.assertEqual((v["valid"], v["code"]), (False, "connect"), v)
        self.assertNotIn("sk-wrong", self.g.stderr_text())

    def test_off_without_a_key_and_the_default(self):
        g = self.gw({"ai.lua": AI}, config="", env={"OPENAI_API_KEY": KEYS["openai"], "OPENAI_BASE_URL": self.llm.url})
        self.g = g
        h = g.health()["checks"]["ai"]
        self.assertEqual(h["default"], "openai", "the only provider on")
        self.assertNotIn("deepseek", h["providers"], "a preset without its key is not listed")
        r = self.ai(prompt="x")
        self.assertEqual(r["provider"], "openai")
        cfg = "providers:\n  anthropic:\n    model: claude-x\n"
        g2 = self.gw({"ai.lua": AI}, config=cfg, env={"DEEPSEEK_API_KEY": KEYS["openai"], "DEEPSEEK_BASE_URL": self.llm.url})
        h = g2.health()["checks"]["ai"]
        self.assertEqual(h["default"], "deepseek", "seed 000's default")
        self.assertEqual(h["providers"]["anthropic"]["state"], "off")
        self.assertEqual(h["providers"]["anthropic"]["reason"], "ANTHROPIC_API_KEY is not set")
        self.assertTrue([x for x in g2.records() if x.get("msg") == "ai provider off" and x.get("provider") == "anthropic"])

    def test_a_bad_providers_section_is_a_load_error(self):
        import os
        import tempfile
        from harness import run_cli
        d = tempfile.mkdtemp(prefix="chatgw-ai-")
        os.makedirs(os.path.join(d, "handlers"))
        for text, want in [("providers:\n  mine:\n    model: x\n", "providers.mine: kind is required"),
                           ("providers:\n  default: nothere\n", "providers.default: 'nothere' is not a provider"),
                           ("providers:\n  openai:\n    kind: cobol\n", "providers.openai.kind")]:
            with open(os.path.join(d, "chatgw.yml"), "w") as f:
                f.write(text)
            code, out, err = run_cli(["check", os.path.join(d, "handlers"), "--config", os.path.join(d, "chatgw.yml")])
            self.assertEqual(code, 1, out + err)
            self.assertIn(want, out + err)

if __name__ == "__main__":
    unittest.main()
