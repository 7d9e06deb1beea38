"""E2E: seed 000's tasks API (POST /v1/tasks, GET /v1/tasks/:id) and conversation memory,
against the fake model server (tests/e2e/fake_llm.py, OpenAI format as DeepSeek): every error
code in the seed's order, JSON whatever the Content-Type, analyze's prompt, suggest's checks on
real-looking model outputs, the cache (no second model call, across a restart), concurrent
requests with one new id making one call, a provider failure stored as the seed does, the
tasks limit, chatgw.ai.task from Lua, the chat rate limits, memory across a restart and
/reset, and streaming an answer into a chat."""
import json
import threading
import time
import unittest
import uuid

from harness import GatewayTest
from fake_llm import FakeLLM

KEY = "sk-test-DEEPSEEK-0123456789"

BOT = r"""
return {
  commands = { ask = "ask the model", astream = "a streamed answer", task = "a task from Lua" },
  on_command = function(msg, args)
    if msg.command == "task" then
      local r, err = chatgw.ai.task{ task_id = msg.argv[1], stage = "analyze", prompt = "from lua" }
      return msg:reply(r and ("task " .. tostring(r.ok) .. " " .. tostring(r.cached) .. " " .. r.summary) or err)
    end
    local mem = chatgw.ai.memory(msg)
    local messages = mem:messages()
    messages[#messages + 1] = { role = "user", content = args }
    if msg.command == "astream" then
      local s = msg:stream()
      local r, err = chatgw.ai.chat{ messages = messages, stream = function(d) s:write(d) end }
      if not r then return s:fail(err) end
      s:finish(r.text)
      mem:add("user", args) mem:add("assistant", r.text)
      return
    end
    local r, err = chatgw.ai.chat{ messages = messages }
    if not r then return msg:reply("failed: " .. err) end
    mem:add("user", args)
    mem:add("assistant", r.text)
    return msg:reply(r.text)
  end,
}
"""

PATCH = ("diff --git a/src/retry.c b/src/retry.c\n--- a/src/retry.c\n+++ b/src/retry.c\n"
         "@@ -1,3 +1,3 @@\n int retry(int n) {\n-  return n + 1;\n+  return n;\n }\n")


class TasksTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.llm = FakeLLM(keys={"openai": KEY})
        self.llm.start()
        self.addCleanup(self.llm.stop)

    def start(self, config="", env=None, workdir=None):
        e = {"DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": self.llm.url, "CHATGW_TEST_CHANNEL": "1"}
        e.update(env or {})
        self.g = self.gw({"bot.lua": BOT}, config=config, env=e, workdir=workdir)
        return self.g

    def task(self, body, content_type="application/json", raw=None):
        data = raw if raw is not None else json.dumps(body)
        r = self.g.request("POST", "/v1/tasks", body=data, headers={"Content-Type": content_type}, timeout=30)
        return r.status, r.json()

    def say(self, text, chat_id="c1", user_id="u1", chat_type="private"):
        r = self.g.request("POST", "/v1/test/inbound", json_body={"chat_id": chat_id, "text": text,
                           "user_id": user_id, "chat_type": chat_type, "update_id": uuid.uuid4().hex})
        self.assertEqual(r.status, 200, r.text)

    def sent(self, chat_id="c1"):
        r = self.g.get("/v1/test/sent?chat_id=" + chat_id)
        return [m["text"] for m in r.json()["messages"]]

    def wait_sent(self, n, chat_id="c1", timeout=10):
        return self.wait(lambda: len(self.sent(chat_id)) >= n and self.sent(chat_id), timeout,
                         "%d replies in %s (have %r)" % (n, chat_id, self.sent(chat_id)))

    # ---- the API ----

    def test_errors_in_the_seeds_order_whatever_the_content_type(self):
        self.start()
        cases = [
            (None, "{not json", "invalid_json"),
            (None, "[1, 2]", "invalid_json"),
            (None, "", "missing_task_id"),
            ({}, None, "missing_task_id"),
            ({"task_id": "", "stage": "nope"}, None, "missing_task_id"),
            ({"task_id": "t1", "stage": "nope", "prompt": "x"}, None, "unsupported_stage"),
            ({"task_id": "t1"}, None, "unsupported_stage"),
            ({"task_id": "t1", "stage": "analyze"}, None, "missing_prompt"),
            ({"task_id": "t1", "stage": "suggest", "prompt": ""}, None, "missing_prompt"),
        ]
        for body, raw, code in cases:
            for ctype in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
                status, answer = self.task(body, content_type=ctype, raw=raw)
                self.assertEqual((status, answer["ok"], answer["error"]), (400, False, code), (body, raw, ctype))
        self.assertEqual(self.llm.calls(), [], "no model call for a bad request")
        # curl -d sends a form type: the JSON is read anyway
        status, answer = self.task({"task_id": "form1", "stage": "analyze", "prompt": "p"},
                                   content_type="application/x-www-form-urlencoded")
        self.assertEqual((status, answer["ok"]), (200, True), answer)
        # the bearer is required
        r = self.g.request("POST", "/v1/tasks", body="{}", auth=False)
        self.assertEqual(r.status, 401)

    def test_analyze_prompt_answer_and_cache_across_a_restart(self):
        g = self.start()
        ctx = {"service": "api", "log": "x" * 9000}
        self.llm.reply("The API is down since 10:02.")
        status, a = self.task({"task_id": "a1", "stage": "analyze", "prompt": "why is it down?", "context": ctx})
        self.assertEqual(status, 200)
        self.assertEqual(set(a), {"ok", "task_id", "stage", "ts_utc", "latency_ms", "summary"}, a)
        self.assertEqual((a["ok"], a["task_id"], a["stage"], a["summary"]), (True, "a1", "analyze", "The API is down since 10:02."))
        self.assertRegex(a["ts_utc"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        req = self.llm.calls()[0]["json"]
        self.assertEqual(req["model"], "deepseek-chat")
        self.assertEqual(req["max_tokens"], 800)
        self.assertEqual(req["temperature"], 0.2)
        self.assertEqual(req["messages"][0], {"role": "system", "content":
                         "You are a rigorous engineering assistant. Facts-only. No predictions. No risky actions."})
        user = req["messages"][1]["content"]
        self.assertTrue(user.startswith("CONTEXT:\n{"), user[:40])
        ctx_text = user[len("CONTEXT:\n"):user.index("\n\nPROMPT:\n")]
        self.assertEqual(len(ctx_text), 8000, "the context is capped at 8000 characters")
        self.assertTrue(user.endswith("\n\nPROMPT:\nwhy is it down?"))
        status, again = self.task({"task_id": "a1", "stage": "analyze", "prompt": "something else"})
        self.assertEqual(again, dict(a, cached=True))
        self.assertEqual(len(self.llm.calls()), 1, "no second model call")
        self.assertEqual(g.get("/v1/tasks/a1").json(), a)
        self.assertEqual(g.get("/v1/tasks/nope").status, 404)
        self.assertEqual(g.stop(), 0)
        g.restart()
        status, again = self.task({"task_id": "a1", "stage": "analyze", "prompt": "p"})
        self.assertEqual(again, dict(a, cached=True), "the store keeps it across a restart")
        self.assertEqual(len(self.llm.calls()), 1)

    def test_concurrent_requests_with_one_new_id_make_one_call(self):
        self.start()
        self.llm.answer_delay = 0.5
        self.llm.reply("only once")
        answers, threads = [], []
        def go():
            answers.append(self.task({"task_id": "same", "stage": "analyze", "prompt": "p"}))
        for _ in range(10):
            t = threading.Thread(target=go)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(30)
        self.assertEqual(len(answers), 10)
        self.assertEqual(len(self.llm.calls()), 1, "exactly one model call")
        bodies = [a for _, a in answers]
        self.assertTrue(all(s == 200 for s, _ in answers))
        self.assertEqual({b["summary"] for b in bodies}, {"only once"})
        self.assertEqual({b["ts_utc"] for b in bodies}, {bodies[0]["ts_utc"]}, "the same answer for everyone")

    def test_a_provider_failure_is_stored_and_answered_200(self):
        self.start(config="providers:\n  deepseek:\n    timeout_ms: 3000\n")
        self.llm.error(401, kind="openai")
        status, a = self.task({"task_id": "f1", "stage": "analyze", "prompt": "p"})
        self.assertEqual(status, 200)
        self.assertEqual((a["ok"], a["task_id"], a["stage"]), (False, "f1", "analyze"))
        self.assertTrue(a["error"].startswith("llm_failed: auth:"), a)
        self.assertIn("ts_utc", a)
        status, again = self.task({"task_id": "f1", "stage": "analyze", "prompt": "p"})
        self.assertEqual(again, dict(a, cached=True), "failures are cached too, as the seed does")
        self.assertNotIn(KEY, self.g.stderr_text())

    def test_suggest_checks_on_real_looking_outputs(self):
        self.start()
        ok_json = json.dumps({"summary": "off by one", "suggested_patch": PATCH, "files_touched": ["/srv/app/src/retry.c"],
                              "verify_cmds": ["cd /srv/app && make test"], "warnings": []})
        cases = [
            ("s-ok", "Here is the fix:\n```json\n" + ok_json + "\n```\nLet me know {if} it helps.", None),
            ("s-prose", "I think the retry loop is wrong, but I cannot produce JSON.", "llm_non_json"),
            ("s-trunc", json.dumps({"summary": "x", "suggested_patch": PATCH.split("@@")[0], "files_touched": [],
                                    "verify_cmds": [], "warnings": []}), "patch_truncated_or_invalid"),
            ("s-long", json.dumps({"summary": "x", "suggested_patch": PATCH.replace("+  return n;\n", "+" + "y" * 20001 + "\n"),
                                   "files_touched": ["src/retry.c"], "verify_cmds": [], "warnings": []}), "patch_too_long"),
        ]
        for tid, output, err in cases:
            self.llm.reply(output)
            status, a = self.task({"task_id": tid, "stage": "suggest", "prompt": "fix the retry count",
                                   "context": {"file_snippets": {"src/retry.c": "int retry(int n) {\n  return n + 1;\n}\n"}}})
            self.assertEqual(status, 200, a)
            if err:
                self.assertEqual((a["ok"], a["error"]), (False, err), (tid, a))
            else:
                self.assertTrue(a["ok"], (tid, a))
                self.assertEqual(a["summary"], output, "summary is the model's output, as the seed answers")
                self.assertEqual(a["files_touched"], ["src/retry.c"], "/srv/<project>/ stripped")
                self.assertTrue(any("files_touched_not_repo_relative" in w for w in a["warnings"]), a["warnings"])
                self.assertEqual(a["suggested_patch"], PATCH)
        sysmsg = self.llm.calls()[0]["json"]["messages"][0]["content"]
        self.assertIn("JSON", sysmsg)
        user = self.llm.calls()[0]["json"]["messages"][1]["content"]
        self.assertIn("src/retry.c", user)
        self.assertIn("fix the retry count", user)

    def test_the_tasks_limit_answers_429_with_retry_after(self):
        self.start(config="ai:\n  tasks:\n    per_min: 2\n")
        for i in range(2):
            self.assertEqual(self.task({"task_id": "l%d" % i, "stage": "analyze", "prompt": "p"})[0], 200)
        r = self.g.request("POST", "/v1/tasks", json_body={"task_id": "l9", "stage": "analyze", "prompt": "p"})
        self.assertEqual(r.status, 429)
        body = r.json()
        self.assertEqual((body["ok"], body["error"]), (False, "rate_limited"))
        self.assertGreater(body["retry_after"], 0)
        self.assertEqual(r.headers["retry-after"], str(body["retry_after"]))

    # ---- in chat ----

    def test_memory_across_a_restart_and_reset(self):
        g = self.start()
        self.llm.reply("nice to meet you, Ann")
        self.say("/ask my name is Ann")
        self.assertEqual(self.wait_sent(1), ["nice to meet you, Ann"])
        self.assertEqual(g.stop(), 0)
        g.restart()
        self.llm.reply("your name is Ann")
        self.say("/ask what is my name?")
        self.wait_sent(1)  # the test channel's record of sent messages starts again
        msgs = self.llm.calls()[-1]["json"]["messages"]
        self.assertEqual([(m["role"], m["content"]) for m in msgs],
                         [("user", "my name is Ann"), ("assistant", "nice to meet you, Ann"), ("user", "what is my name?")])
        self.say("/reset")
        self.assertIn("afresh", self.wait_sent(2)[1])
        self.say("/ask hello")
        self.wait_sent(3)
        self.assertEqual([m["role"] for m in self.llm.calls()[-1]["json"]["messages"]], ["user"], "forgotten")

    def test_memory_keeps_max_turns_and_groups_per_user(self):
        self.start(config="ai:\n  memory:\n    max_turns: 2\n  rate_limit:\n    per_user_per_min: 0\n    global_per_min: 0\n")
        for i in range(4):
            self.say("/ask q%d" % i)
            self.wait_sent(i + 1)
        msgs = self.llm.calls()[-1]["json"]["messages"]
        self.assertEqual([m["content"] for m in msgs if m["role"] == "user"], ["q1", "q2", "q3"],
                         "two turns kept, then the question")
        self.say("/ask from bob", chat_id="g1", user_id="bob", chat_type="group")
        self.wait_sent(1, chat_id="g1")
        self.assertEqual([m["content"] for m in self.llm.calls()[-1]["json"]["messages"]], ["from bob"],
                         "a group's memory is per user")

    def test_chat_rate_limits_global_first_then_per_user(self):
        self.start(config="ai:\n  rate_limit:\n    per_user_per_min: 2\n    global_per_min: 3\n")
        for i in range(3):
            self.say("/ask a%d" % i, user_id="u1")
        self.wait_sent(3)
        texts = self.sent()
        self.assertEqual(sum(1 for t in texts if t.startswith("failed: rate_limited:")), 1, texts)
        self.say("/ask b0", chat_id="c2", user_id="u2")
        self.say("/ask b1", chat_id="c2", user_id="u2")
        t2 = self.wait_sent(2, chat_id="c2")
        self.assertEqual(sum(1 for t in t2 if "rate_limited" in t), 1, "the global limit (3) is spent: " + repr(t2))
        self.assertEqual(len(self.llm.calls()), 3, "refused calls never reach the provider")

    def test_streaming_an_answer_into_a_chat_and_a_task_from_lua(self):
        self.start()
        self.llm.reply("streamed words arrive one by one")
        self.say("/astream tell me")
        self.wait(lambda: "streamed words arrive one by one" in self.sent(), 10, "the final text")
        self.say("/task lua1")
        self.say("/task lua1")
        texts = self.wait_sent(3)
        self.assertTrue(texts[1].startswith("task true nil "), texts)
        self.assertTrue(texts[2].startswith("task true true "), texts)


if __name__ == "__main__":
    unittest.main()
