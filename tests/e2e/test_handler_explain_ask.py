"""E2E: the default handlers' /explain (handlers/explain.lua) and /ask (handlers/ask.lua) as the
default deployment runs them: the whole handlers/ directory, config/chatgw.yml, config/policy.yml
and config/projects.yml copied side by side (so chat.policy finds policy.yml beside chatgw.yml),
OWNER_TELEGRAM_USER_ID set, against the fake Telegram Bot API (long polling), the fake Feishu
open platform (encrypted, signed events) and the fake LLM (OpenAI-compatible, as DeepSeek).

explain: a reply to an alert the notify API posted (POST /v1/notify/text on the notify
listener) sends the tasks API's facts-only system prompt and, as CONTEXT, the alert's text and
its notify metadata (project_id, meta) to the model; the answer streams into the chat (Telegram
drafts in a private chat, edits in a group) and is cut to the policy's output limits (60 lines,
the owner 120); /explain <text>; the usage line. In groups config/policy.yml's `groups` rule
requires an @mention and a reply: without either the command gets nothing (a silent denial,
counted in chatgw_policy_denials_total), on Telegram and Feishu. ask: memory on Feishu (card
streaming, user/assistant turns, /reset), per user in a Feishu group, and the 6000-character
limit of the defaults. Without a provider key both commands say how to configure one."""
import json
import os
import re
import shutil
import unittest

from harness import GatewayTest
from fake_feishu import FakeFeishu
from fake_llm import FakeLLM
from fake_telegram import FakeTelegram
from platform_chat import PlatformChat

SRC = os.environ.get("CHATGW_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")

TG_TOKEN = "777888:EXPLAIN-token_SECRET-abcdefghijklmn"
TG_BOT = {"id": 777888, "username": "alerts_bot", "first_name": "Alerts"}
APP, SECRET = "cli_explain_app", "explain-SECRET-0123456789abcd"
VT, EK = "explain-VT-0123456789abcdef", "explain-EK-0123456789abcdefghi"
BOT_OPEN_ID = "ou_explainbot0000000000000000000001"
LLM_KEY = "sk-explain-ask-0123456789"
OWNER = 9001

ANALYZE_SYSTEM = "You are a rigorous engineering assistant. Facts-only. No predictions. No risky actions."
DEFAULT_QUESTION = "Explain this message: what happened, and what it means."
USAGE = "Usage: /explain <text>, or reply /explain to a message."
RESET_DONE = "Done: this conversation starts afresh."
KEY_VARS = ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
            "GROQ_API_KEY", "MISTRAL_API_KEY", "XAI_API_KEY", "GROK_API_KEY", "OLLAMA_HOST",
            "OLLAMA_BASE_URL", "OWNER_FEISHU_USER_ID", "CHAT_GATEWAY_OWNER_TELEGRAM_ID",
            "CHAT_GATEWAY_OWNER_FEISHU_ID", "CHAT_GATEWAY_RESPONSE_LANG", "GW_RESPONSE_LANG",
            "PROJECTS_REGISTRY_PATH", "TELEGRAM_MODE", "TELEGRAM_BOT_USERNAME")


def split_prompt(content):
    """(context, prompt) of an analyze prompt: "CONTEXT:\\n<json>\\n\\nPROMPT:\\n<prompt>"."""
    m = re.match(r"\ACONTEXT:\n(.*)\n\nPROMPT:\n(.*)\Z", content, re.S)
    assert m, "not an analyze prompt: %r" % content
    return json.loads(m.group(1)), m.group(2)


class ExplainAskTest(PlatformChat, GatewayTest):
    TG_TOKEN, FS_APP, FS_VT, FS_EK = TG_TOKEN, APP, VT, EK

    CHAT = 4343             # private Telegram chats: the user's id
    GROUP = -1004343434343
    FS_P2P = "oc_p2p_explain1"
    FS_GROUP = "oc_group_explain1"

    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: TG_BOT})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.fs = FakeFeishu(apps={APP: {"secret": SECRET,
                                         "bot": {"open_id": BOT_OPEN_ID, "app_name": "Alerts"}}})
        self.fs.start()
        self.addCleanup(self.fs.stop)
        self.llm = FakeLLM(keys={"openai": LLM_KEY})
        self.llm.start()
        self.addCleanup(self.llm.stop)
        self.llm.delta_chars = 40
        self.llm.chunking(size=None, delay=0.05)  # a model that takes its time: the stream shows

    def start(self, provider=True):
        g = self.gw(start=False, env={
            "TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TG_TOKEN,
            "FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": SECRET, "FEISHU_API_BASE": self.fs.url,
            "FEISHU_WEBHOOK_PORT": "0", "FEISHU_VERIFICATION_TOKEN": VT, "FEISHU_ENCRYPT_KEY": EK,
            "OWNER_TELEGRAM_USER_ID": str(OWNER), "CHAT_GATEWAY_LOCK_RETRY_MS": "200",
            "no_proxy": "*"})
        for k in KEY_VARS:
            g.env.pop(k, None)
        if provider:
            g.env.update({"DEEPSEEK_API_KEY": LLM_KEY, "DEEPSEEK_BASE_URL": self.llm.url})
        # the default deployment: handlers/ and config/ as shipped (a short poll for the test)
        shutil.rmtree(g.handlers_dir)
        shutil.copytree(os.path.join(SRC, "handlers"), g.handlers_dir)
        for name in ("policy.yml", "projects.yml"):
            shutil.copy(os.path.join(SRC, "config", name), os.path.join(g.dir, name))
        with open(os.path.join(SRC, "config", "chatgw.yml")) as f:
            config = f.read()
        with open(g.config_path, "w") as f:
            f.write(config + "\nchannels:\n  telegram:\n    poll_timeout_s: 2\n")
        g.start()
        self.g = g
        self.wait(lambda: self.fs.token_requests and self.tg.polls, 10, "both channels up")
        return g

    # ---- helpers ----
    def notify(self, target, chat_id, text, **fields):
        body = {"target": target, "chat_id": chat_id, "text": text, "wait": True}
        body.update(fields)
        r = self.g.request("POST", "/v1/notify/text", listener="notify", json_body=body)
        self.assertEqual(r.status, 200, r.text)
        e = r.json()["sent"][target][str(chat_id)]
        self.assertTrue(e["sent"], e)
        return e

    def metric(self, pattern):
        m = re.search(r"^" + pattern + r" (\d+)", self.g.get("/metrics").text, re.M)
        return int(m.group(1)) if m else 0

    def denials(self, reason):
        return self.metric(r'chatgw_policy_denials_total\{capability="alerts\.explain",reason="%s"\}' % reason)

    def wait_handled(self, channel, n):
        """Handlers add to the memory after stream:finish (which, on Feishu, closes the card the
        test sees): wait until n handler calls on the channel have returned."""
        self.wait(lambda: self.metric(r'chatgw_chat_handler_seconds_count\{channel="%s"\}' % channel) >= n,
                  10, "%d handlers done on %s" % (n, channel))

    def wait_detail(self):
        g = getattr(self, "g", None)
        return "\nllm: %r\nfeishu: %r\nlog tail:\n%s" % (
            [(c["path"], c["status"], (c["prompt"] or "")[:80]) for c in self.llm.requests],
            ["%s %s %s" % (c["method"], c["path"], c["code"]) for c in self.fs.calls()][-10:],
            g.stderr_text()[-3000:] if g else "")

    # ---- explain ----
    def test_telegram_explain_of_an_alert_gets_its_text_and_metadata_and_keeps_to_the_limits(self):
        self.start()
        alert_text = "[HIGH] shop: disk 91% on db-1 (/var/lib/postgresql)"
        meta = {"delivery_priority": "HIGH", "host": "db-1", "runbook": "disk-full"}
        alert = self.notify("telegram", self.CHAT, alert_text, project_id="shop", priority="HIGH", meta=meta)
        self.assertEqual(self.wait_tg(self.CHAT, 1), [alert_text])
        lines = ["line %d: the disk of db-1 is 91%% full" % i for i in range(1, 101)]
        self.llm.reply("\n".join(lines))
        self.say(self.CHAT, "/explain", reply_to_message=int(alert["message_id"]))
        want = "\n".join(lines[:60]) + "\n… (truncated: 40 more lines)"
        self.assertEqual(self.wait_tg(self.CHAT, 2)[1], want, "cut to the policy's 60 lines")
        drafts = [d["plain"] for ds in self.tg.drafts(self.CHAT).values() for d in ds]
        self.assertGreaterEqual(len(drafts), 1, "streamed as drafts")
        for d in drafts:
            self.assertLessEqual(d.count("\n"), 60, "a draft keeps to the limits too")
        # what the model got: seed 000's analyze prompt with the alert as context
        call = self.llm.calls("openai")[-1]
        self.assertTrue(call["stream"])
        msgs = call["json"]["messages"]
        self.assertEqual(msgs[0], {"role": "system", "content": ANALYZE_SYSTEM})
        self.assertEqual(len(msgs), 2, "no memory")
        ctx, prompt = split_prompt(msgs[1]["content"])
        self.assertEqual(prompt, DEFAULT_QUESTION)
        self.assertEqual(ctx, {"replied_text": alert_text, "replied_from_bot": True,
                               "alert": {"project_id": "shop", "priority": "HIGH", "meta": meta, "text": alert_text}})
        # /explain <question> as a reply: the question is the prompt, the context the same
        self.llm.reply("The partition holding the database is nearly full.")
        self.say(self.CHAT, "/explain which partition?", reply_to_message=int(alert["message_id"]))
        self.wait_tg(self.CHAT, 3)
        ctx2, prompt2 = split_prompt(self.llm.last("openai")["prompt"])
        self.assertEqual((ctx2, prompt2), (ctx, "which partition?"))
        # a reply to a message that is not an alert: its text, no alert
        note = self.say(self.CHAT, "backup job exited with code 137", user_id=self.CHAT)
        self.llm.reply("Code 137 means the process was killed (SIGKILL).")
        self.say(self.CHAT, "/explain", reply_to_message=note)
        self.wait_tg(self.CHAT, 4)
        ctx3, _ = split_prompt(self.llm.last("openai")["prompt"])
        self.assertEqual(ctx3, {"replied_text": "backup job exited with code 137", "replied_from_bot": False})
        # /explain <text>: no context
        self.say(self.CHAT, "/explain OOMKilled in pod api-7")
        self.assertTrue(self.wait_tg(self.CHAT, 5)[4].startswith("echo: CONTEXT:\n"), "the (unscripted) answer")
        ctx4, prompt4 = split_prompt(self.llm.last("openai")["prompt"])
        self.assertEqual(prompt4, "OOMKilled in pod api-7")
        self.assertEqual(ctx4, {}, "an empty context")
        # nothing to explain
        n = len(self.llm.requests)
        self.say(self.CHAT, "/explain")
        self.assertEqual(self.wait_tg(self.CHAT, 6)[5], USAGE)
        self.assertEqual(len(self.llm.requests), n, "no model call")
        # the owner (OWNER_TELEGRAM_USER_ID): the owner rule's larger limits (120 lines)
        self.notify("telegram", OWNER, alert_text, project_id="shop", priority="HIGH", meta=meta)
        self.wait_tg(OWNER, 1)
        self.llm.reply("\n".join(lines))
        self.say(OWNER, "/explain", reply_to_message=self.tg.sent(OWNER)[0]["message_id"])
        self.assertEqual(self.wait_tg(OWNER, 2)[1], "\n".join(lines), "100 lines are within the owner's 120")
        self.assertEqual(self.llm.errors, [])

    def test_groups_need_a_mention_and_a_reply(self):
        self.start()
        self.tg.chat(self.GROUP, type="supergroup", title="Ops")
        alert_text = "[CRITICAL] billing: api-gw 5xx rate 12% over 5 min"
        alert = self.notify("telegram", self.GROUP, alert_text, project_id="billing", priority="CRITICAL",
                            meta={"delivery_priority": "CRITICAL"})
        mid = int(alert["message_id"])
        self.wait_tg(self.GROUP, 1)
        # a reply without a mention; a mention without a reply: each denied in silence
        # (docs/config.md, the policy file, rule 7)
        self.say(self.GROUP, "/explain", user_id=71, reply_to_message=mid)
        self.say(self.GROUP, "/explain @alerts_bot", user_id=73)
        self.wait(lambda: self.denials("mention_required") == 1 and self.denials("reply_required") == 1,
                  10, "two denials (have mention %d, reply %d)" % (self.denials("mention_required"),
                                                                  self.denials("reply_required")))
        self.assertEqual(self.tg.texts(self.GROUP), [alert_text], "nothing answered")
        self.assertEqual(self.llm.requests, [])
        # mentioned and a reply: it runs, streamed by edits of one message quoting the command;
        # the mention is not the question
        answer = "The gateway answered 12% of requests with server errors for five minutes."
        self.llm.reply(answer)
        cmd = self.say(self.GROUP, "/explain @alerts_bot", user_id=74, reply_to_message=mid)
        self.wait(lambda: self.tg.texts(self.GROUP) == [alert_text, answer], 15, "the explanation")
        sent = self.tg.sent(self.GROUP)
        self.assertEqual(sent[1]["reply_to"], cmd)
        self.assertGreaterEqual(len(self.tg.calls("editMessageText")), 1, "streamed by edits")
        ctx, prompt = split_prompt(self.llm.last("openai")["prompt"])
        self.assertEqual(prompt, DEFAULT_QUESTION)
        self.assertEqual(ctx["alert"], {"project_id": "billing", "priority": "CRITICAL",
                                        "meta": {"delivery_priority": "CRITICAL"}, "text": alert_text})
        # /explain@alerts_bot, Telegram's own way to address a bot in a group, is a mention too
        answer2 = "Same alert, same answer."
        self.llm.reply(answer2)
        self.say(self.GROUP, "/explain@alerts_bot", user_id=72, reply_to_message=mid)
        self.wait(lambda: self.tg.texts(self.GROUP) == [alert_text, answer, answer2], 15, "the second explanation")
        self.assertEqual(self.denials("mention_required"), 1)
        # Feishu: the same rule (Feishu events carry no replied-to text: the notify record has it)
        fs_alert = self.notify("feishu", self.FS_GROUP, alert_text, project_id="billing", priority="CRITICAL")
        self.wait_fs(self.FS_GROUP, lambda t: t == [alert_text], "the alert")
        self.fs_say(self.FS_GROUP, "/explain", parent_id=fs_alert["message_id"], sender_open_id="ou_u71")
        self.wait(lambda: self.denials("mention_required") == 2, 10, "the Feishu denial")
        self.llm.reply(answer)
        fcmd = self.fs_say(self.FS_GROUP, "@_user_1 /explain", parent_id=fs_alert["message_id"],
                           mentions=[self.fs.bot_mention(APP)], sender_open_id="ou_u74")
        self.wait_fs(self.FS_GROUP, lambda t: t == [alert_text, answer], "the Feishu explanation")
        self.assertEqual(self.fs.messages(self.FS_GROUP)[1]["reply_to"], fcmd, "quotes the command")
        ctx, prompt = split_prompt(self.llm.last("openai")["prompt"])
        self.assertEqual(prompt, DEFAULT_QUESTION)
        self.assertEqual(ctx, {"replied_text": alert_text, "replied_from_bot": True,
                               "alert": {"project_id": "billing", "priority": "CRITICAL", "text": alert_text}},
                         "no meta was given")
        self.assertEqual(len(self.llm.requests), 3)
        self.assertEqual(self.fs.violations, [])
        self.assertEqual(self.tg.violations, [])

    # ---- ask ----
    def test_feishu_ask_remembers_per_chat_and_per_user_in_groups_and_reset_forgets(self):
        self.start()
        first = "A circuit breaker stops calls to a failing service for a while."
        self.llm.reply(first)
        self.fs_say(self.FS_P2P, "/ask what is a circuit breaker?")
        self.wait(lambda: self.fs.cards and all(not c["streaming_mode"] for c in self.fs.cards.values()),
                  15, "the card closed")
        self.assertEqual(self.fs_texts(self.FS_P2P), [first], "the streaming card's final text")
        call = self.llm.calls("openai")[-1]
        self.assertTrue(call["stream"])
        self.assertEqual(call["json"]["messages"], [{"role": "user", "content": "what is a circuit breaker?"}])
        self.wait_handled("feishu", 1)
        self.llm.reply("After five failures in a row.")
        self.fs_say(self.FS_P2P, "/ask when does it open?")
        self.wait_fs(self.FS_P2P, lambda t: t[1:] == ["After five failures in a row."], "the second answer")
        self.assertEqual(self.llm.calls("openai")[-1]["json"]["messages"],
                         [{"role": "user", "content": "what is a circuit breaker?"},
                          {"role": "assistant", "content": first},
                          {"role": "user", "content": "when does it open?"}], "remembered")
        self.wait_handled("feishu", 2)  # its exchange is in the memory before the reset
        self.fs_say(self.FS_P2P, "/reset")
        self.wait_fs(self.FS_P2P, lambda t: t[2:] == [RESET_DONE], "the reset")
        # the defaults' 6000 characters apply to /ask (a handler without a capability)
        self.llm.delta_chars = 700
        self.llm.reply("word " * 1400)
        self.fs_say(self.FS_P2P, "/ask a long answer please")
        t = self.wait_fs(self.FS_P2P, lambda t: len(t) >= 4 and t[3].endswith("… (truncated)"), "the long answer")
        self.assertEqual(t[3], ("word " * 1400)[:5986].rstrip("\n") + "\n… (truncated)")
        self.assertEqual(len(t[3]), 6000)
        self.assertEqual([m["role"] for m in self.llm.calls("openai")[-1]["json"]["messages"]], ["user"],
                         "forgotten after /reset")
        # a group: each user has a memory of their own
        self.llm.delta_chars = 40
        self.llm.reply("Answer for u1.")
        self.fs_say(self.FS_GROUP, "@_user_1 /ask first question", mentions=[self.fs.bot_mention(APP)],
                    sender_open_id="ou_g1")
        self.wait_fs(self.FS_GROUP, lambda t: t == ["Answer for u1."], "u1's answer")
        self.wait_handled("feishu", 5)
        self.fs_say(self.FS_GROUP, "@_user_1 /ask second question", mentions=[self.fs.bot_mention(APP)],
                    sender_open_id="ou_g2")
        self.wait_fs(self.FS_GROUP, lambda t: len(t) == 2, "u2's answer")
        self.assertEqual(self.llm.calls("openai")[-1]["json"]["messages"],
                         [{"role": "user", "content": "second question"}], "u2 does not see u1's turns")
        self.wait_handled("feishu", 6)
        self.fs_say(self.FS_GROUP, "@_user_1 /ask and then?", mentions=[self.fs.bot_mention(APP)],
                    sender_open_id="ou_g1")
        self.wait_fs(self.FS_GROUP, lambda t: len(t) == 3, "u1's second answer")
        self.assertEqual([m["content"] for m in self.llm.calls("openai")[-1]["json"]["messages"]],
                         ["first question", "Answer for u1.", "and then?"])
        self.assertEqual(self.fs.violations, [])
        self.assertEqual(self.fs.errors, [])

    # ---- no provider ----
    def test_without_a_provider_both_say_how_to_configure_one(self):
        self.start(provider=False)
        self.say(self.CHAT, "/explain disk 91% on db-1")
        self.assertEqual(self.wait_tg(self.CHAT, 1), [
            "No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key) to use /explain."])
        self.say(self.CHAT, "/ask anyone there?")
        self.assertEqual(self.wait_tg(self.CHAT, 2)[1],
                         "No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key) to use /ask.")
        self.fs_say(self.FS_P2P, "/ask anyone there?")
        self.assertEqual(self.wait_fs(self.FS_P2P, lambda t: len(t) >= 1, "the answer"),
                         ["No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key) to use /ask."])
        # still usage first: nothing to explain is said before the provider is looked at
        self.say(self.CHAT, "/explain")
        self.assertEqual(self.wait_tg(self.CHAT, 3)[2], USAGE)
        self.assertEqual(self.llm.requests, [])


if __name__ == "__main__":
    unittest.main()
