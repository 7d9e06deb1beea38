"""E2E: examples/ai-bot (handlers and chatgw.yml as shipped, plus a short Telegram poll timeout)
against the fake Telegram Bot API (long polling), the fake Feishu open platform (encrypted,
signed events posted to the feishu listener) and the fake LLM (OpenAI-compatible, as DeepSeek
through DEEPSEEK_BASE_URL), all on 127.0.0.1.

Telegram: /ask streams its answer (drafts while it comes, then the final message, exact); a
second /ask carries the memory (system, user, assistant, user to the model); /reset forgets
it; /explain as a reply sends the replied-to text to the model (private chat by drafts, group
by edits of one message), /explain <text> and the usage line. Feishu: /ask streams into a
CardKit card whose final text is the answer, remembers, /reset forgets; /explain replying to
an alert the notify API posted gets the alert's text (Feishu events carry no replied-to text:
chatgw.notify.lookup has it). Without a provider key: /ask answers with chatgw.ai.chat's
"unavailable: no AI provider is configured" error, /explain says so, on both channels, and no
model is called."""
import os
import re
import shutil
import unittest

from harness import Gateway, GatewayTest
from fake_feishu import FakeFeishu
from fake_llm import FakeLLM
from fake_telegram import FakeTelegram
from platform_chat import PlatformChat

ROOT = os.environ.get("CHATGW_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLE = os.path.join(ROOT, "examples", "ai-bot")

TG_TOKEN = "654321:AIBOT-token_SECRET-abcdefghijklmno"
TG_BOT = {"id": 654321, "username": "ai_example_bot", "first_name": "AI"}
APP, SECRET = "cli_aibot_app", "aibot-SECRET-0123456789abcdef"
VT, EK = "aibot-VT-0123456789abcdef", "aibot-EK-0123456789abcdefghij"
BOT_OPEN_ID = "ou_aibot000000000000000000000000001"
LLM_KEY = "sk-aibot-example-0123456789"

SYSTEM_ASK = "Answer briefly."
RESET_DONE = "Done: this conversation starts afresh."
NO_PROVIDER = "no AI provider is configured"
KEY_VARS = ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
            "GROQ_API_KEY", "MISTRAL_API_KEY", "XAI_API_KEY", "GROK_API_KEY", "OLLAMA_HOST",
            "OLLAMA_BASE_URL")


class AiBotTest(PlatformChat, GatewayTest):
    TG_TOKEN, FS_APP, FS_VT, FS_EK = TG_TOKEN, APP, VT, EK

    CHAT = 5151            # a private Telegram chat (the user's id)
    GROUP = -1005151515151
    FS_P2P = "oc_p2p_aibot1"
    FS_GROUP = "oc_group_aibot1"

    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: TG_BOT})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.fs = FakeFeishu(apps={APP: {"secret": SECRET,
                                         "bot": {"open_id": BOT_OPEN_ID, "app_name": "AiBot"}}})
        self.fs.start()
        self.addCleanup(self.fs.stop)
        self.llm = FakeLLM(keys={"openai": LLM_KEY})
        self.llm.start()
        self.addCleanup(self.llm.stop)
        self.llm.chunking(size=None, delay=0.06)  # a model that takes its time: drafts show

    def start(self, provider=True):
        """The example, as shipped, on both channels; the provider is the fake LLM."""
        with open(os.path.join(EXAMPLE, "chatgw.yml")) as f:
            config = f.read() + "\nchannels:\n  telegram:\n    poll_timeout_s: 2\n"
        env = {"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TG_TOKEN,
               "FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": SECRET, "FEISHU_API_BASE": self.fs.url,
               "FEISHU_WEBHOOK_PORT": "0", "FEISHU_VERIFICATION_TOKEN": VT,
               "FEISHU_ENCRYPT_KEY": EK, "CHAT_GATEWAY_LOCK_RETRY_MS": "200", "no_proxy": "*"}
        if provider:
            env.update({"DEEPSEEK_API_KEY": LLM_KEY, "DEEPSEEK_BASE_URL": self.llm.url})
        g = Gateway(config=config, env=env)
        for k in KEY_VARS:
            if not provider or k != "DEEPSEEK_API_KEY":
                g.env.pop(k, None)
        shutil.rmtree(g.handlers_dir)
        shutil.copytree(os.path.join(EXAMPLE, "handlers"), g.handlers_dir)
        self._gws.append(g)
        g.start()
        self.g = g
        self.wait(lambda: self.fs.token_requests and self.tg.polls, 10, "both channels up")
        return g

    def handled(self, channel):
        """How many chat handler calls on the channel have returned (the chat layer's histogram)."""
        m = re.search(r'^chatgw_chat_handler_seconds_count\{channel="%s"\} (\d+)' % channel,
                      self.g.get("/metrics").text, re.M)
        return int(m.group(1)) if m else 0

    def wait_handled(self, channel, n):
        """A streaming card is closed inside stream:finish, so the handler adds the exchange to
        its memory just after the fake shows the final text: wait for the handler to return."""
        self.wait(lambda: self.handled(channel) >= n, 10, "%d handlers done on %s" % (n, channel))

    def roles(self, call):
        return [m["role"] for m in call["json"]["messages"]]

    def wait_detail(self):
        g = getattr(self, "g", None)
        return "\nllm calls: %r\nfeishu calls: %r\nlog tail:\n%s" % (
            [(c["path"], c["status"], c["prompt"]) for c in self.llm.requests],
            ["%s %s %s" % (c["method"], c["path"], c["code"]) for c in self.fs.calls()][-10:],
            g.stderr_text()[-3000:] if g else "")

    # ---- the tests ----
    def test_telegram_ask_streams_remembers_and_reset_forgets(self):
        self.start()
        first = "Paris is the capital of France, and has been for a very long time."
        self.llm.reply(first)
        self.say(self.CHAT, "/ask capital of France?")
        self.assertEqual(self.wait_tg(self.CHAT, 1), [first], "the final text, exact")
        drafts = [d["plain"] for ds in self.tg.drafts(self.CHAT).values() for d in ds]
        self.assertGreaterEqual(len(drafts), 1, "drafts while the answer came")
        for d in drafts:
            self.assertTrue(first.startswith(d) and len(d) < len(first), "a draft is a prefix: %r" % d)
        self.assertEqual(self.tg.calls("editMessageText"), [], "a private chat streams by drafts")
        call = self.llm.calls("openai")[-1]
        self.assertTrue(call["stream"], "the answer was streamed")
        self.assertEqual(call["path"], "/v1/chat/completions")
        self.assertEqual(call["headers"]["authorization"], "Bearer " + LLM_KEY)
        self.assertEqual(call["json"]["messages"],
                         [{"role": "system", "content": SYSTEM_ASK},
                          {"role": "user", "content": "capital of France?"}])
        # the second question carries the first exchange
        self.wait_handled("telegram", 1)
        self.llm.reply("Rome.")
        self.say(self.CHAT, "/ask and Italy?")
        self.assertEqual(self.wait_tg(self.CHAT, 2)[1], "Rome.")
        msgs = self.llm.calls("openai")[-1]["json"]["messages"]
        self.assertEqual([m["role"] for m in msgs], ["system", "user", "assistant", "user"], "remembered")
        self.assertEqual([m["content"] for m in msgs[1:]], ["capital of France?", first, "and Italy?"])
        # /reset forgets it (once the second exchange is in the memory)
        self.wait_handled("telegram", 2)
        self.say(self.CHAT, "/reset")
        self.assertEqual(self.wait_tg(self.CHAT, 3)[2], RESET_DONE)
        self.say(self.CHAT, "/ask and Spain?")
        self.assertEqual(self.wait_tg(self.CHAT, 4)[3], "echo: and Spain?")
        self.assertEqual(self.roles(self.llm.calls("openai")[-1]), ["system", "user"], "forgotten")
        self.assertEqual(self.llm.errors, [])

    def test_telegram_explain_a_reply_a_text_and_in_a_group(self):
        self.start()
        answer = "It says the disk of db-1 is 91% full: little room is left for writes."
        # /explain replying to a message of the bot (here the answer to an /ask)
        self.llm.reply("Disk usage alert for db-1: disk 91% on db-1.")
        self.say(self.CHAT, "/ask what is the alert?")
        self.wait_tg(self.CHAT, 1)
        bot_msg = self.tg.sent(self.CHAT)[0]
        self.llm.reply(answer)
        self.say(self.CHAT, "/explain", reply_to_message=bot_msg["message_id"])
        self.assertEqual(self.wait_tg(self.CHAT, 2)[1], answer)
        call = self.llm.calls("openai")[-1]
        self.assertTrue(call["stream"])
        msgs = call["json"]["messages"]
        self.assertEqual([m["role"] for m in msgs], ["system", "user"], "an explanation has no memory")
        self.assertIn("Facts only", msgs[0]["content"])
        self.assertEqual(msgs[1]["content"], "The message:\nDisk usage alert for db-1: disk 91% on db-1.")
        # /explain <text>, and a question with the reply
        self.say(self.CHAT, "/explain HTTP 503 from the load balancer")
        self.assertEqual(self.wait_tg(self.CHAT, 3)[2], "echo: HTTP 503 from the load balancer")
        self.assertEqual(self.llm.calls("openai")[-1]["json"]["messages"][1]["content"],
                         "HTTP 503 from the load balancer")
        self.say(self.CHAT, "/explain is it bad?", reply_to_message=bot_msg["message_id"])
        self.wait_tg(self.CHAT, 4)
        self.assertEqual(self.llm.last("openai")["prompt"],
                         "The message:\nDisk usage alert for db-1: disk 91% on db-1.\n\nQuestion: is it bad?")
        # nothing to explain: the usage line, and no model call
        n = len(self.llm.calls())
        self.say(self.CHAT, "/explain")
        self.assertEqual(self.wait_tg(self.CHAT, 5)[4],
                         "Usage: /explain <text>, or reply /explain to a message.")
        self.assertEqual(len(self.llm.calls()), n)
        # a group: a user's message, replied to with /explain; streamed by edits of one message
        self.tg.chat(self.GROUP, type="supergroup", title="Ops")
        oom = self.say(self.GROUP, "kernel: Out of memory: Killed process 4242 (java)", user_id=77)
        self.llm.reply(answer * 3)
        cmd = self.say(self.GROUP, "/explain@ai_example_bot", user_id=78, reply_to_message=oom)
        self.wait(lambda: self.tg.texts(self.GROUP) == [answer * 3], 15, "the group's final text")
        self.assertEqual(self.llm.last("openai")["prompt"],
                         "The message:\nkernel: Out of memory: Killed process 4242 (java)")
        sent = self.tg.sent(self.GROUP)
        self.assertEqual(len(sent), 1, "one message, edited as it grew")
        self.assertEqual(sent[0]["reply_to"], cmd, "it quotes the /explain in the group")
        self.assertGreaterEqual(len(self.tg.calls("editMessageText")), 1)
        self.assertEqual(self.tg.violations, [])

    def test_feishu_ask_streams_into_a_card_remembers_and_reset_forgets(self):
        self.start()
        first = "A circuit breaker stops calls to a failing service for a while."
        self.llm.reply(first)
        self.fs_say(self.FS_P2P, "/ask what is a circuit breaker?")
        self.wait(lambda: self.fs.cards and all(not c["streaming_mode"] for c in self.fs.cards.values()),
                  15, "the card closed")
        self.assertEqual(self.fs_texts(self.FS_P2P), [first], "the card shows the final text")
        card = list(self.fs.cards.values())[0]
        self.assertEqual(list(card["elements"].values()), [first])
        self.assertGreater(len(card["sequences"]), 2, "updated while it grew")
        self.assertEqual(card["sequences"], sorted(set(card["sequences"])))
        self.assertEqual(self.fs.messages(self.FS_P2P)[0]["card_id"], card["card_id"])
        self.assertEqual(self.llm.calls("openai")[-1]["json"]["messages"],
                         [{"role": "system", "content": SYSTEM_ASK},
                          {"role": "user", "content": "what is a circuit breaker?"}])
        self.wait_handled("feishu", 1)
        self.llm.reply("It opens after repeated failures.")
        self.fs_say(self.FS_P2P, "/ask when does it open?")
        self.wait_fs(self.FS_P2P, lambda t: t[1:] == ["It opens after repeated failures."], "the second answer")
        msgs = self.llm.calls("openai")[-1]["json"]["messages"]
        self.assertEqual([m["role"] for m in msgs], ["system", "user", "assistant", "user"], "remembered")
        self.assertEqual(msgs[2]["content"], first)
        self.wait_handled("feishu", 2)  # its exchange is in the memory before the reset
        self.fs_say(self.FS_P2P, "/reset")
        self.wait_fs(self.FS_P2P, lambda t: t[2:] == [RESET_DONE], "the reset")
        self.fs_say(self.FS_P2P, "/ask again?")
        self.wait_fs(self.FS_P2P, lambda t: t[3:] == ["echo: again?"], "an answer without memory")
        self.assertEqual(self.roles(self.llm.calls("openai")[-1]), ["system", "user"], "forgotten")
        # Telegram's memory is its own: a chat there starts empty
        self.say(self.CHAT, "/ask hello?")
        self.wait_tg(self.CHAT, 1)
        self.assertEqual(self.roles(self.llm.calls("openai")[-1]), ["system", "user"])
        self.assertEqual(self.fs.violations, [])
        self.assertEqual(self.fs.errors, [])

    def test_feishu_explain_a_reply_to_an_alert(self):
        g = self.start()
        r = g.request("POST", "/v1/notify/text", listener="notify",
                      json_body={"target": "feishu", "chat_id": self.FS_GROUP, "wait": True,
                                 "text": "api-gw: 5xx rate 12% over 5 min", "priority": "HIGH"})
        self.assertEqual(r.status, 200, r.text)
        alert = r.json()["sent"]["feishu"][self.FS_GROUP]
        self.assertTrue(alert["sent"], alert)
        self.llm.reply("The gateway answered 12% of requests with server errors.")
        mid = self.fs_say(self.FS_GROUP, "@_user_1 /explain", parent_id=alert["message_id"],
                           mentions=[self.fs.bot_mention(APP)])
        self.wait_fs(self.FS_GROUP, lambda t: t[1:] == ["The gateway answered 12% of requests with server errors."],
                     "the explanation")
        self.assertEqual(self.llm.last("openai")["prompt"], "The message:\napi-gw: 5xx rate 12% over 5 min")
        self.assertEqual(self.fs.messages(self.FS_GROUP)[1]["reply_to"], mid,
                         "the explanation quotes the /explain in the group")

    def test_without_a_provider_key_it_says_so(self):
        self.start(provider=False)
        ai = self.g.health()["checks"]["ai"]
        self.assertIn(ai.get("default"), (None, ""), ai)
        self.say(self.CHAT, "/ask anyone there?")
        reply = self.wait_tg(self.CHAT, 1)[0]
        self.assertTrue(reply.startswith("(failed: unavailable: " + NO_PROVIDER), reply)
        self.assertIn("DEEPSEEK_API_KEY", reply)
        self.say(self.CHAT, "/explain a text")
        self.assertEqual(self.wait_tg(self.CHAT, 2)[1],
                         "No AI provider is configured: set DEEPSEEK_API_KEY (or another provider's key).")
        self.fs_say(self.FS_P2P, "/ask anyone there?")
        t = self.wait_fs(self.FS_P2P, lambda t: len(t) >= 1 and NO_PROVIDER in t[0], "the refusal")
        self.assertTrue(t[0].startswith("(failed: unavailable: " + NO_PROVIDER), t)
        self.assertEqual(self.llm.requests, [], "no model was called")


if __name__ == "__main__":
    unittest.main()
