"""E2E: a seed 000 deployment moved to chatgw unchanged (docs/migrating.md). chatgw is started
the way the seed's README starts its all-in-one entrypoint: environment variables only
(CHAT_GATEWAY_TOKEN, TELEGRAM_BOT_TOKEN, FEISHU_APP_ID/SECRET/VERIFICATION_TOKEN/BOT_*,
DEEPSEEK_API_KEY, INTEGRATIONS_PORT, FEISHU_WEBHOOK_PORT, CHAT_GATEWAY_INTERNAL_URL), no
--config and no config file, against the local fakes of Telegram, Feishu and DeepSeek (their
*_API_BASE / *_BASE_URL variables). Then the seed's documented requests, sent as its callers
send them (`curl -d`: a form Content-Type), get the seed's answer shapes: GET /health, POST
/v1/tasks (analyze), POST /v1/notify/text to telegram, feishu and both, POST
/v1/notify/image, and Feishu's url_verification on the webhook port."""
import json
import os
import socket
import time
import unittest

from harness import SLOW, TOKEN, Gateway
from fake_feishu import FakeFeishu
from fake_llm import FakeLLM
from fake_telegram import FakeTelegram
from test_notify import png

TG_TOKEN = "123456:SEED-token-abcdefghijklmnopqrstu"
APP, APP_SECRET, VT = "cli_seed000", "seed-app-secret-0123456789", "seed-verification-token"
KEY = "sk-seed-DEEPSEEK-0123456789"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
GATE_KEYS = ("sent", "delivery_priority", "global_min_priority", "channel_min_priority",
             "target_override_min_priority", "effective_min_priority", "skip_reason")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeedGateway(Gateway):
    """`chatgw run DIR` with no --config, in a directory with no ./config/chatgw.yml, and no
    CHAT_GATEWAY_DATA_DIR: the seed's callers know neither."""

    def start(self, wait_ready=True, timeout=20):
        if os.path.exists(self.config_path):
            os.unlink(self.config_path)
        self.env.pop("CHAT_GATEWAY_DATA_DIR", None)
        self.use_config = False
        return super().start(wait_ready, timeout)


class Seed000Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 123456, "username": "seed_bot",
                                                 "first_name": "Seed"}}).start()
        cls.fs = FakeFeishu(apps={APP: {"secret": APP_SECRET,
                                        "bot": {"open_id": "ou_seed_bot", "app_name": "SeedBot"}}}).start()
        cls.llm = FakeLLM(keys={"openai": KEY}).start()
        cls.notify_port, cls.feishu_port = free_port(), free_port()
        # the seed README's all-in-one environment, plus the fakes' addresses
        env = {"CHAT_GATEWAY_TOKEN": TOKEN,
               "CHAT_GATEWAY_INTERNAL_URL": "http://127.0.0.1:8787",
               "DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": cls.llm.url,
               "TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_API_BASE": cls.tg.url,
               "FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": APP_SECRET,
               "FEISHU_VERIFICATION_TOKEN": VT, "FEISHU_BOT_USER_ID": "u_seed_bot",
               "FEISHU_BOT_OPEN_ID": "ou_seed_bot", "FEISHU_API_BASE": cls.fs.url,
               "INTEGRATIONS_PORT": str(cls.notify_port), "FEISHU_WEBHOOK_PORT": str(cls.feishu_port)}
        cls.g = SeedGateway(env=env)
        for k in ("CHATGW_TEST_CHANNEL", "CHATGW_LUA_DIR", "PROJECTS_REGISTRY_PATH"):
            cls.g.env.pop(k, None)
        cls.images = os.path.join(cls.g.dir, "data", "images")
        os.makedirs(cls.images)
        cls.png = png(4, 3)
        with open(os.path.join(cls.images, "cpu.png"), "wb") as f:
            f.write(cls.png)
        try:
            cls.g.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.g.proc and cls.g.proc.poll() is None:
                code = cls.g.stop()
                assert code == 0, "chatgw exit code %s\n%s" % (code, cls.g.stderr_text()[-3000:])
            else:
                cls.g.check_sanitizers()
        finally:
            cls.g.cleanup()
            cls.tg.stop()
            cls.fs.stop()
            cls.llm.stop()

    def wait(self, pred, what, timeout=10):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.02)
        self.fail("timed out waiting for " + what)

    def curl_d(self, path, body, listener):
        """`curl -H "Authorization: Bearer $CHAT_GATEWAY_TOKEN" URL -d '<json>'`."""
        r = self.g.request("POST", path, body=json.dumps(body), headers=FORM, listener=listener, timeout=30)
        self.assertEqual(r.status, 200, r.text)
        return r.json()

    def assert_sent(self, answer, target, chat_id):
        e = answer["sent"][target][chat_id]
        self.assertLessEqual(set(GATE_KEYS), set(e), e)
        self.assertEqual((e["sent"], e["skip_reason"]), (True, None), e)

    def test_the_seeds_ports_and_no_config(self):
        self.assertFalse(os.path.exists(os.path.join(self.g.dir, "config", "chatgw.yml")))
        self.assertEqual(self.g.port("notify"), self.notify_port)
        self.assertEqual(self.g.port("feishu"), self.feishu_port)
        self.assertTrue(os.path.exists(os.path.join(self.g.dir, "data", "chatgw.db")), "./data by default")

    def test_health(self):
        r = self.g.get("/health")
        self.assertEqual(r.status, 200, r.text)
        self.assertIs(r.json()["ok"], True)
        self.assertEqual(self.g.get("/health", auth=False).status, 401)

    def test_tasks_analyze(self):
        self.llm.reply("The API is down since 10:02.")
        a = self.curl_d("/v1/tasks", {"task_id": "seed-1", "stage": "analyze",
                                      "prompt": "Why did the API fail?", "context": {"log": "502"}}, "main")
        self.assertEqual(set(a), {"ok", "task_id", "stage", "ts_utc", "latency_ms", "summary"}, a)
        self.assertEqual((a["ok"], a["task_id"], a["stage"], a["summary"]),
                         (True, "seed-1", "analyze", "The API is down since 10:02."))
        req = self.llm.calls()[-1]["json"]
        self.assertEqual(req["model"], "deepseek-chat")
        self.assertEqual(req["messages"][1]["content"],
                         'CONTEXT:\n{"log":"502"}\n\nPROMPT:\nWhy did the API fail?')
        again = self.curl_d("/v1/tasks", {"task_id": "seed-1", "stage": "analyze", "prompt": "x"}, "main")
        self.assertEqual(again, dict(a, cached=True))

    def test_notify_text_to_telegram_feishu_and_both(self):
        r = self.curl_d("/v1/notify/text", {"target": "telegram", "chat_id": "-1001234567890",
                                            "text": "deploy done"}, "notify")
        self.assertIs(r["ok"], True)
        self.assertEqual(r["target_overrides"]["telegram"], {"-1001234567890": None})
        self.assert_sent(r, "telegram", "-1001234567890")
        self.wait(lambda: self.tg.texts(-1001234567890) == ["deploy done"], "the Telegram message")

        r = self.curl_d("/v1/notify/text", {"target": "feishu", "chat_ids": ["oc_seed1"],
                                            "text": "feishu only"}, "notify")
        self.assert_sent(r, "feishu", "oc_seed1")
        self.wait(lambda: [m["text"] for m in self.fs.messages("oc_seed1")] == ["feishu only"],
                  "the Feishu message")

        r = self.curl_d("/v1/notify/text", {"chat_ids_by_target": {"telegram": [4242], "feishu": ["oc_seed2"]},
                                            "text": "to both"}, "notify")  # no target: both
        self.assertEqual(r["target_overrides"], {"telegram": {"4242": None}, "feishu": {"oc_seed2": None}})
        self.assert_sent(r, "telegram", "4242")
        self.assert_sent(r, "feishu", "oc_seed2")
        self.wait(lambda: self.tg.texts(4242) == ["to both"], "the Telegram message")
        self.wait(lambda: [m["text"] for m in self.fs.messages("oc_seed2")] == ["to both"],
                  "the Feishu message")

        # the seed's errors and auth
        r = self.g.request("POST", "/v1/notify/text", body='{"target":"both","chat_id":"1","text":"x"}',
                           headers=FORM, listener="notify")
        self.assertEqual((r.status, r.json()), (400, {"ok": False, "error": "chat_id_requires_single_target"}))
        r = self.g.request("POST", "/v1/notify/text", body="{}", headers=FORM, listener="notify", auth=False)
        self.assertEqual(r.status, 401)

    def test_notify_image(self):
        r = self.curl_d("/v1/notify/image", {"target": "telegram", "chat_id": "5151",
                                             "image_path": os.path.join(self.images, "cpu.png"),
                                             "caption": "CPU, last hour"}, "notify")
        self.assertIs(r["ok"], True)
        self.assert_sent(r, "telegram", "5151")
        m = self.wait(lambda: self.tg.sent(5151), "the photo")
        self.assertEqual((m[0]["kind"], m[0]["caption_plain"], m[0]["photo"]["bytes"]),
                         ("photo", "CPU, last hour", self.png))

    def test_feishu_url_verification_on_the_webhook_port(self):
        status, answer = self.fs.event("http://127.0.0.1:%d/feishu/events" % self.feishu_port,
                                       self.fs.url_verification(VT, "seed-challenge"), sign=False)
        self.assertEqual((status, answer), (200, {"challenge": "seed-challenge"}))


if __name__ == "__main__":
    unittest.main()
