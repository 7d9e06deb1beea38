"""E2E: the gateway registry (issue 16): /v1/gateways CRUD and errors, credentials encrypted at
rest and never answered, live start and stop of a Telegram bot against the fake Bot API, an AI
gateway tested and used, a generic webhook, a wrong key at boot, and the read-only env bots."""
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import time
import unittest

from harness import GatewayTest
from fake_telegram import FakeTelegram
from fake_llm import FakeLLM
from fake_feishu import FakeFeishu

KEY = "ab" * 32
OTHER_KEY = base64.b64encode(b"k" * 32).decode()
TG_TOKEN = "123456:" + "A" * 35
TG_TOKEN2 = "654321:" + "B" * 35
AI_KEY = "sk-registry-secret-0123456789"
HOOK_SECRET = "hook-secret-0123456789"

HANDLER = """
return {
  commands = { hi = "say hi" },
  on_command = function(msg) msg:reply("hi from " .. msg.account) end,
  webhooks = {
    deploys = function(req, gw)
      chatgw.shared("hooks"):set("last", req.json.service .. "@" .. gw.id)
      return { ok = true, seen = req.json.service }
    end,
  },
  routes = { ["GET /last"] = function() return { last = chatgw.shared("hooks"):get("last") } end },
}
"""


class RegistryTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 123456, "username": "reg_bot"},
                                       TG_TOKEN2: {"id": 654321, "username": "other_bot"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)

    def start(self, key=KEY, **env):
        e = {"TELEGRAM_API_BASE": self.tg.url, "CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        if key:
            e["CHAT_GATEWAY_ENCRYPTION_KEY"] = key
        e.update(env)
        self.g = self.gw({"bot.lua": HANDLER}, "channels:\n  telegram:\n    poll_timeout_s: 1\n", env=e)
        return self.g

    def api(self, method, path, body=None, status=None, **kw):
        r = self.g.request(method, path, json_body=body, **kw)
        for s in (TG_TOKEN, TG_TOKEN2, AI_KEY, HOOK_SECRET, KEY):
            self.assertNotIn(s, r.text, "a secret in an answer")
        if status is not None:
            self.assertEqual(r.status, status, r.text)
        return r

    def create_bot(self, id="alerts", token=TG_TOKEN, **extra):
        body = {"id": id, "name": "Alerts bot", "type": "telegram_bot", "credentials": {"botToken": token}}
        body.update(extra)
        return self.api("POST", "/v1/gateways", body, 201).json()["gateway"]

    def wait_status(self, id, status, timeout=10):
        return self.wait(lambda: (lambda g: g if g["status"] == status else None)(
            self.api("GET", "/v1/gateways/" + id, status=200).json()["gateway"]), timeout,
            "%s %s" % (id, status))

    def test_a_telegram_bot_created_polls_at_once_and_stops_when_deleted(self):
        self.start()
        gw = self.create_bot()
        self.assertEqual(gw["id"], "alerts")
        self.assertEqual(gw["credential_info"], {"type": "telegram_bot", "hint": "123456:…AAAA", "bot_id": "123456"})
        self.assertNotIn("credentials", gw)
        self.wait_status("alerts", "connected")
        self.tg.push_update(TG_TOKEN, self.tg.text_update(777, "/hi"))
        self.wait(lambda: self.tg.texts(777) == ["hi from alerts"], 10, "the reply through the registry bot")
        # the list shows it, and the env bot (off: no TELEGRAM_BOT_TOKEN) read only
        lst = self.api("GET", "/v1/gateways", status=200).json()
        ids = {x["id"]: x for x in lst["gateways"]}
        self.assertFalse(ids["alerts"]["read_only"])
        self.assertTrue(ids["default"]["read_only"])
        self.assertEqual(ids["default"]["status"], "disconnected")
        self.assertEqual(self.api("GET", "/v1/gateways?type=ai", status=200).json()["gateways"], [])
        self.assertEqual([x["id"] for x in self.api("GET", "/v1/gateways?status=connected", status=200)
                          .json()["gateways"]], ["alerts"])
        page = self.api("GET", "/v1/gateways?limit=1", status=200).json()
        self.assertEqual(len(page["gateways"]), 1)
        page2 = self.api("GET", "/v1/gateways?limit=1&cursor=" + page["next_cursor"], status=200).json()
        self.assertNotEqual(page2["gateways"][0]["id"], page["gateways"][0]["id"])
        # /v1/channels sees the account
        chans = {c["accountId"]: c for c in self.api("GET", "/v1/channels", status=200).json()["channels"]
                 if c["channelId"] == "telegram"}
        self.assertEqual(chans["alerts"]["status"], "connected")
        # the test endpoint: getMe
        t = self.api("POST", "/v1/gateways/alerts/test", {}, 200).json()
        self.assertTrue(t["success"], t)
        self.assertEqual(t["details"]["username"], "reg_bot")
        self.assertGreaterEqual(t["latency_ms"], 0)
        # delete: it stops polling
        self.api("DELETE", "/v1/gateways/alerts", status=200)
        time.sleep(1.5)
        polls = len(self.tg.calls("getUpdates", token=TG_TOKEN))
        time.sleep(2.5)
        self.assertLessEqual(len(self.tg.calls("getUpdates", token=TG_TOKEN)), polls + 1, "no polling after delete")
        self.api("GET", "/v1/gateways/alerts", status=404)
        # each action is in the audit ledger, with no secret
        entries = self.api("GET", "/v1/audit?kind=gateway.*", status=200).json()["entries"]
        self.assertEqual(sorted(e["kind"] for e in entries), ["gateway.create", "gateway.delete", "gateway.test"])
        for e in entries:
            self.assertEqual((e["who"], e["what"]), ("gateway", "alerts"), e)
            self.assertNotIn("AAAA", json.dumps(e))
        self.tg.push_update(TG_TOKEN, self.tg.text_update(778, "/hi"))
        time.sleep(1.0)
        self.assertEqual(self.tg.texts(778), [])

    def test_credentials_are_encrypted_at_rest_with_a_random_iv_and_survive_a_restart(self):
        g = self.start()
        self.create_bot("one")
        self.create_bot("two", token=TG_TOKEN2)
        db = sqlite3.connect(os.path.join(g.dir, "data", "chatgw.db"))
        rows = dict(db.execute("SELECT id, credentials_enc FROM gateways").fetchall())
        db.close()
        for id, enc in rows.items():
            self.assertTrue(enc.startswith("v1:"), enc)
            self.assertNotIn("AAAA", enc)
            self.assertNotIn(TG_TOKEN, enc)
        # the same token twice gets two different ciphertexts (random IV)
        self.api("PUT", "/v1/gateways/two", {"credentials": {"botToken": TG_TOKEN2}}, 200)
        db = sqlite3.connect(os.path.join(g.dir, "data", "chatgw.db"))
        again = dict(db.execute("SELECT id, credentials_enc FROM gateways").fetchall())
        db.close()
        self.assertNotEqual(again["two"], rows["two"])
        with open(os.path.join(g.dir, "data", "chatgw.db"), "rb") as f:
            raw = f.read()
        self.assertNotIn(TG_TOKEN.encode(), raw)
        # a reload and a restart bring both back
        self.assertEqual(g.reload()["last_result"], "ok")
        self.wait_status("one", "connected")
        g.stop()
        g.restart()
        self.wait_status("one", "connected")
        self.wait_status("two", "connected")
        self.assertNotIn(TG_TOKEN, g.stderr_text())
        self.assertNotIn(TG_TOKEN2, g.stderr_text())

    def test_a_wrong_key_at_boot_puts_the_gateways_in_error_without_a_crash(self):
        g = self.start()
        self.create_bot("one")
        enc = sqlite3.connect(os.path.join(g.dir, "data", "chatgw.db")).execute(
            "SELECT credentials_enc FROM gateways").fetchone()[0]
        g.stop()
        g.env["CHAT_GATEWAY_ENCRYPTION_KEY"] = OTHER_KEY
        g.restart()
        gw = self.wait_status("one", "error")
        self.assertEqual(gw["last_error"], "cannot decrypt credentials")
        self.assertEqual(self.api("POST", "/v1/gateways/one/test", {}, 200).json()["success"], False)
        self.assertNotIn(enc[3:20], g.stderr_text(), "no ciphertext in the log")
        # without any key: creating answers 503, nothing stored
        g.stop()
        del g.env["CHAT_GATEWAY_ENCRYPTION_KEY"]
        g.restart()
        r = self.api("POST", "/v1/gateways", {"name": "x", "type": "telegram_bot",
                                              "credentials": {"botToken": TG_TOKEN2}}, 503)
        self.assertEqual(r.json()["error"], "encryption_key_missing")
        self.assertEqual(self.wait_status("one", "error")["last_error"],
                         "cannot decrypt credentials: CHAT_GATEWAY_ENCRYPTION_KEY is not set")

    def test_validation_errors(self):
        self.start()
        cases = [
            ({"name": "x", "type": "telegram_bot", "credentials": {"botToken": "123:short"}}, 400, "invalid_field", "credentials.botToken"),
            ({"name": "x", "type": "telegram_bot", "credentials": {}}, 400, "missing_field", "credentials.botToken"),
            ({"name": "x", "type": "telegram_bot"}, 400, "missing_field", "credentials"),
            ({"type": "telegram_bot", "credentials": {"botToken": TG_TOKEN}}, 400, "missing_field", "name"),
            ({"name": "x", "type": "pager", "credentials": {}}, 400, "invalid_type", "type"),
            ({"id": "Bad Id", "name": "x", "type": "telegram_bot", "credentials": {"botToken": TG_TOKEN}}, 400, "invalid_field", "id"),
            ({"name": "x", "type": "ai", "credentials": {"provider": "openai"}}, 400, "missing_field", "credentials.apiKey"),
            ({"name": "x", "type": "ai", "credentials": {"provider": "nope", "apiKey": "k"}}, 400, "invalid_field", "credentials.provider"),
            ({"name": "x", "type": "ai", "credentials": {"provider": "ollama", "baseUrl": "ftp://x"}}, 400, "invalid_field", "credentials.baseUrl"),
            ({"name": "x", "type": "feishu_app", "credentials": {"appId": "cli_1"}}, 400, "missing_field", "credentials.appSecret"),
            ({"name": "x", "type": "webhook", "credentials": {"secret": HOOK_SECRET}}, 400, "missing_field", "config.handler"),
            ({"name": "x", "type": "telegram_bot", "credentials": {"botToken": TG_TOKEN}, "config": {"mode": "webhook"}}, 400, "missing_field", "config.webhook_url"),
        ]
        for body, status, code, field in cases:
            r = self.api("POST", "/v1/gateways", body, status)
            j = r.json()
            self.assertEqual((j["ok"], j["error"], j["field"]), (False, code, field), body)
        r = self.g.request("POST", "/v1/gateways", body="[1]", headers={"Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid_request"))
        self.create_bot("dup")
        self.assertEqual(self.api("POST", "/v1/gateways", {"id": "dup", "name": "x", "type": "telegram_bot",
                                  "credentials": {"botToken": TG_TOKEN2}}, 409).json()["error"], "id_taken")
        self.assertEqual(self.api("POST", "/v1/gateways", {"id": "default", "name": "x", "type": "telegram_bot",
                                  "credentials": {"botToken": TG_TOKEN2}}, 409).json()["error"], "id_taken")
        self.api("PUT", "/v1/gateways/dup", {"type": "ai"}, 400)
        self.assertEqual(self.api("PUT", "/v1/gateways/default", {"name": "y"}, 409).json()["error"], "read_only")
        self.api("DELETE", "/v1/gateways/nope", status=404)
        # a generated id
        gw = self.api("POST", "/v1/gateways", {"name": "gen", "type": "telegram_bot",
                                               "credentials": {"botToken": TG_TOKEN2}}, 201).json()["gateway"]
        self.assertRegex(gw["id"], r"^tg-[0-9a-f]{8}$")
        # rename keeps the credentials
        r = self.api("PUT", "/v1/gateways/" + gw["id"], {"name": "renamed"}, 200).json()["gateway"]
        self.assertEqual(r["name"], "renamed")
        self.assertEqual(r["credential_info"]["bot_id"], "654321")

    def test_an_ai_gateway_is_a_provider_by_name(self):
        llm = FakeLLM(keys={"openai": AI_KEY})
        llm.start()
        self.addCleanup(llm.stop)
        self.start()
        gw = self.api("POST", "/v1/gateways", {"id": "brain", "name": "Brain", "type": "ai",
                      "credentials": {"provider": "openai", "apiKey": AI_KEY, "baseUrl": llm.url, "model": "gpt-test"}},
                      201).json()["gateway"]
        self.assertEqual(gw["credential_info"]["hint"], "…6789")
        self.assertEqual(gw["credential_info"]["provider"], "openai")
        t = self.api("POST", "/v1/gateways/brain/test", {}, 200).json()
        self.assertTrue(t["success"], t)
        llm.reply("Forty-two.")
        r = self.api("POST", "/v1/tasks", {"task_id": "t1", "stage": "analyze", "prompt": "what?",
                                           "provider": "brain"})
        self.assertIn(r.status, (200, 201), r.text)
        self.assertEqual(llm.calls()[-1]["json"]["model"], "gpt-test")
        # a bad key: the test says so and the status is error
        self.api("PUT", "/v1/gateways/brain", {"credentials": {"provider": "openai", "apiKey": "sk-wrong-0123456789",
                                                              "baseUrl": llm.url}}, 200)
        t = self.api("POST", "/v1/gateways/brain/test", {}, 200).json()
        self.assertFalse(t["success"])
        self.assertEqual(t["details"]["code"], "auth")
        self.assertEqual(self.api("GET", "/v1/gateways/brain", status=200).json()["gateway"]["status"], "error")
        self.api("DELETE", "/v1/gateways/brain", status=200)
        self.assertNotIn("brain", self.api("GET", "/health?verbose=1", status=200).json()["checks"]["ai"]["providers"])

    def test_a_feishu_app_fetches_its_tenant_token(self):
        fs = FakeFeishu(apps={"cli_reg": {"secret": "fs-app-secret-0123456789",
                                          "bot": {"open_id": "ou_reg", "app_name": "RegBot"}}})
        fs.start()
        self.addCleanup(fs.stop)
        self.start(FEISHU_API_BASE=fs.url)
        gw = self.api("POST", "/v1/gateways", {"id": "lark1", "name": "Lark", "type": "feishu_app",
                      "credentials": {"appId": "cli_reg", "appSecret": "fs-app-secret-0123456789"}}, 201).json()["gateway"]
        self.assertEqual(gw["credential_info"]["app_id"], "cli_reg")
        self.assertNotIn("fs-app-secret", json.dumps(gw))
        t = self.api("POST", "/v1/gateways/lark1/test", {}, 200).json()
        self.assertTrue(t["success"], t)
        self.wait_status("lark1", "connected")
        self.api("PUT", "/v1/gateways/lark1", {"credentials": {"appId": "cli_reg", "appSecret": "wrong-secret-0123456789"}}, 200)
        t = self.api("POST", "/v1/gateways/lark1/test", {}, 200).json()
        self.assertFalse(t["success"])
        self.assertIn("tenant_access_token refused", t["error"])
        self.assertNotIn("wrong-secret", self.g.stderr_text())
        self.api("DELETE", "/v1/gateways/lark1", status=200)

    def test_a_webhook_gateway_calls_its_handler(self):
        g = self.start()
        self.api("POST", "/v1/gateways", {"id": "ci", "name": "CI", "type": "webhook",
                 "credentials": {"secret": HOOK_SECRET}, "config": {"handler": "deploys"}}, 201)
        body = json.dumps({"service": "api"})
        r = g.request("POST", "/webhooks/ci", body=body, auth=False,
                      headers={"Authorization": "Bearer " + HOOK_SECRET, "Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()), (200, {"ok": True, "seen": "api"}))
        self.assertEqual(g.get("/last").json(), {"last": "api@ci"})
        sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        r = g.request("POST", "/webhooks/ci", body=body, auth=False,
                      headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r.text)
        for headers in ({"Authorization": "Bearer wrong"}, {"X-Hub-Signature-256": "sha256=00"}, {}):
            headers["Content-Type"] = "application/json"
            self.assertEqual(g.request("POST", "/webhooks/ci", body=body, auth=False, headers=headers).status, 401)
        self.assertEqual(g.request("POST", "/webhooks/nope", body=body, auth=False).status, 404)
        r = g.request("POST", "/webhooks/ci", body="not json", auth=False,
                      headers={"Authorization": "Bearer " + HOOK_SECRET, "Content-Type": "text/plain"})
        self.assertEqual(r.status, 400)


if __name__ == "__main__":
    unittest.main()
