"""E2E: the default handlers handlers/feedback.lua and handlers/ops.lua (issue 15), copied alone
into a gateway's handlers directory.

feedback: an alert sent by the notify API through the fake Telegram (tests/e2e/fake_telegram.py),
a user's reply to it ("too many", "only push HIGH") as a Telegram update with
reply_to_message, the acknowledgement in the chat, the notify gate honouring the new minimum at
once (a lower priority answers below_min_priority), the cooldown, a group where a reply to the
alert needs no mention and chatter gets nothing, and GET /v1/feedback (bearer token).

ops: on the test channel (CHATGW_TEST_CHANNEL=1, POST /v1/test/inbound, GET /v1/test/sent) with
a policy that gives ops to the owner: /ps and /logs with argv configured to harmless commands,
a service off the allowlist refused, 200 lines clipped to the default output limits with a
note, a failing command and a timeout, /status with the channels, and a non-owner refused."""
import itertools
import os
import time
import unittest

from harness import GatewayTest, SLOW
from fake_telegram import FakeTelegram

SRC = os.environ.get("CHATGW_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
TG_TOKEN = "123456:FEEDBACK-token_SECRET-abcdefghijklmnop"
BOT_ID = 123456


def handler(name):
    with open(os.path.join(SRC, "handlers", name)) as f:
        return f.read()


class HandlerTest(GatewayTest):
    def gateway(self, config="", env=None, policy=None):
        g = self.gw({"feedback.lua": handler("feedback.lua"), "ops.lua": handler("ops.lua")},
                    config=config, env=env, start=False)
        if policy is not None:
            with open(os.path.join(g.dir, "policy.yml"), "w") as f:
                f.write(policy)
        g.start()
        return g


class FeedbackTest(HandlerTest):
    CHAT = 4242
    GROUP = -1001234567890

    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": BOT_ID, "username": "alerts_bot",
                                                  "first_name": "Alerts"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.g = self.gateway(
            config="channels:\n  telegram:\n    poll_timeout_s: 1\nchat:\n  pacing: false\n",
            env={"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TG_TOKEN,
                 "CHAT_GATEWAY_LOCK_RETRY_MS": "200"})

    def notify(self, chat_id, text, priority, project="shop"):
        r = self.g.request("POST", "/v1/notify/text", listener="notify",
                           json_body={"target": "telegram", "chat_id": chat_id, "text": text,
                                      "priority": priority, "project_id": project, "wait": True})
        self.assertEqual(r.status, 200, r.text)
        return r.json()["sent"]["telegram"][str(chat_id)]

    def say(self, chat_id, text, user_id, reply_to=None, **kw):
        self.tg.push_update(TG_TOKEN, self.tg.text_update(chat_id, text, user_id=user_id,
                                                          reply_to_message=reply_to, **kw))

    def wait_texts(self, chat_id, n):
        self.wait(lambda: len(self.tg.texts(chat_id)) >= n, 10,
                  "%d messages in %s (have %r)" % (n, chat_id, self.tg.texts(chat_id)))
        return self.tg.texts(chat_id)

    def feedback(self, **query):
        q = "&".join("%s=%s" % kv for kv in query.items())
        r = self.g.get("/v1/feedback" + ("?" + q if q else ""))
        self.assertEqual(r.status, 200, r.text)
        return r.json()

    def test_a_reply_to_an_alert_raises_the_minimum_and_the_gate_honours_it_at_once(self):
        alert = self.notify(self.CHAT, "disk 91% on db-1", "MEDIUM")
        self.assertTrue(alert["sent"], alert)
        self.assertEqual(self.wait_texts(self.CHAT, 1), ["disk 91% on db-1"])
        self.say(self.CHAT, "too many alerts", user_id=self.CHAT, reply_to=alert["message_id"],
                 username="ann", first_name="Ann")
        self.assertEqual(self.wait_texts(self.CHAT, 2)[1],
                         "OK: this chat now gets MEDIUM and above (was LOW).")
        # the gate: a LOW notify is not sent any more, a MEDIUM one is
        low = self.notify(self.CHAT, "a low one", "LOW")
        self.assertEqual((low["sent"], low["skip_reason"], low["effective_min_priority"]),
                         (False, "below_min_priority", "MEDIUM"))
        self.assertTrue(self.notify(self.CHAT, "a medium one", "MEDIUM")["sent"])
        self.assertEqual(self.wait_texts(self.CHAT, 3)[2], "a medium one")
        out = self.feedback()
        rec = out["records"][0]
        self.assertEqual((rec["channel"], rec["chat_id"], rec["user_id"], rec["user_name"], rec["username"]),
                         ("telegram", str(self.CHAT), str(self.CHAT), "Ann", "ann"))
        self.assertEqual((rec["project_id"], rec["alert_text"], rec["alert_outbox_id"], rec["alert_message_id"]),
                         ("shop", "disk 91% on db-1", alert["outbox_id"], str(alert["message_id"])))
        self.assertEqual((rec["text"], rec["action"], rec["old_level"], rec["new_level"], rec["result"]),
                         ("too many alerts", "raise", "LOW", "MEDIUM", "changed"))
        self.assertAlmostEqual(rec["created_at"], time.time(), delta=60)
        self.assertEqual(out["minimums"], [{"channel": "telegram", "chat_id": str(self.CHAT),
                                            "min_priority": "MEDIUM", "set": True}])
        self.assertEqual(out["levels"], ["LOW", "MEDIUM", "HIGH", "CRITICAL"])
        self.assertEqual(out["cooldown_s"], 600)
        self.assertEqual(self.g.get("/v1/feedback", auth=False).status, 401, "bearer-protected")

    def test_cooldown_only_push_and_chinese(self):
        alert = self.notify(self.CHAT, "cpu hot", "HIGH")
        mid = alert["message_id"]
        self.say(self.CHAT, "告警太多", user_id=self.CHAT, reply_to=mid)
        self.assertEqual(self.wait_texts(self.CHAT, 2)[1], "OK: this chat now gets MEDIUM and above (was LOW).")
        self.say(self.CHAT, "still too noisy", user_id=self.CHAT, reply_to=mid)
        ack = self.wait_texts(self.CHAT, 3)[2]
        self.assertIn("stays MEDIUM", ack)
        self.say(self.CHAT, "只推 HIGH", user_id=self.CHAT, reply_to=mid)
        self.assertEqual(self.wait_texts(self.CHAT, 4)[3], "OK: this chat now gets HIGH and above (was MEDIUM).")
        med = self.notify(self.CHAT, "medium", "MEDIUM")
        self.assertEqual((med["sent"], med["skip_reason"]), (False, "below_min_priority"))
        results = [r["result"] for r in self.feedback(chat_id=self.CHAT)["records"]]
        self.assertEqual(results, ["changed", "cooldown", "changed"])

    def test_groups_a_reply_needs_no_mention_and_chatter_gets_nothing(self):
        self.tg.chat(self.GROUP, type="supergroup", title="Ops")
        alert = self.notify(self.GROUP, "api down", "CRITICAL", project="billing")
        self.say(self.GROUP, "thanks, on it", user_id=77, reply_to=alert["message_id"])
        self.say(self.GROUP, "too many meetings today", user_id=78)
        self.say(self.GROUP, "/feedback too quiet", user_id=79)
        self.assertEqual(self.wait_texts(self.GROUP, 2)[1],
                         "This chat already gets every alert (LOW and above, the lowest level): nothing changed.")
        self.say(self.GROUP, "this is too noisy", user_id=77, reply_to=alert["message_id"])
        self.assertEqual(self.wait_texts(self.GROUP, 3)[2], "OK: this chat now gets MEDIUM and above (was LOW).")
        time.sleep(0.5 * SLOW)
        self.assertEqual(len(self.tg.texts(self.GROUP)), 3, "nothing for the chatter")
        sent = self.tg.sent(self.GROUP)
        self.assertIsNotNone(sent[2]["reply_to"], "the acknowledgement quotes the reply")
        recs = self.feedback(chat_id=self.GROUP)["records"]
        self.assertEqual([(r["user_id"], r.get("project_id")) for r in recs],
                         [("77", "billing"), ("79", None)])


OPS_POLICY = """\
rules:
  - name: owner
    match: { channel: test, user_id: "42" }
    allow: ["*"]
  - match: { capability: [ops.status, ops.logs, ops.ps] }
    allow: []
    deny_message: "Only the owner may use ops commands."
"""


class OpsTest(HandlerTest):
    ids = itertools.count(5000)

    def start(self, app):
        return self.gateway(config="app:\n  ops:\n" + "".join("    %s\n" % l for l in app.splitlines()),
                            env={"CHATGW_TEST_CHANNEL": "1"}, policy=OPS_POLICY)

    def send(self, g, text, user_id="42", chat_id="ops-chat"):
        before = len(self.sent(g, chat_id))
        r = g.request("POST", "/v1/test/inbound", timeout=30,
                      json_body={"chat_id": chat_id, "user_id": user_id, "text": text,
                                 "update_id": next(self.ids)})
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(r.json()["recorded"], r.text)
        new = self.sent(g, chat_id)[before:]
        self.assertEqual(len(new), 1, "one reply to %r: %r" % (text, new))
        return new[0]["text"]

    @staticmethod
    def sent(g, chat_id):
        return g.get("/v1/test/sent?chat_id=" + chat_id).json()["messages"]

    def test_ps_logs_allowlist_clipping_status_and_the_owner(self):
        g = self.start('services: [api]\n'
                       'logs_argv: ["/bin/echo", "logs of {service} n={n}"]\n'
                       'ps_argv: ["/bin/sh", "-c", "seq 1 200"]\n')
        self.assertEqual(self.send(g, "/logs api 7"), "logs of api (last 7 lines):\nlogs of api n=7")
        self.assertEqual(self.send(g, "/logs api"), "logs of api (last 50 lines):\nlogs of api n=50")
        self.assertEqual(self.send(g, "/logs sshd"),
                         "/logs: sshd is not on the list of services (app.ops.services): api.")
        self.assertIn("n must be a whole number from 1 to 500", self.send(g, "/logs api 9999"))
        # 200 lines under the default limits (60 lines, 6000 characters)
        ps = self.send(g, "/ps").split("\n")
        self.assertEqual(len(ps), 60)
        self.assertEqual(ps[:3], ["ps:", "1", "2"])
        self.assertEqual(ps[-2:], ["58", "… (142 more lines cut)"])
        status = self.send(g, "/status")
        self.assertRegex(status, r"^chatgw \S+, up \d+s: ok\n")
        self.assertIn("\nChannels:\n", status)
        self.assertIn("  test:default: ok, outbox 0", status)
        self.assertIn("  telegram:default: off (TELEGRAM_BOT_TOKEN is not set)", status)
        self.assertIn("\nBreakers: ", status)
        self.assertIn("\nExec: 0 running, 0 waiting; done: ", status)  # the /logs and /ps above
        for cmd in ("/status", "/ps", "/logs api"):
            self.assertEqual(self.send(g, cmd, user_id="7", chat_id="other"),
                             "Only the owner may use ops commands.", cmd)

    def test_no_services_a_failing_command_and_a_timeout(self):
        g = self.start('logs_argv: ["/bin/sh", "-c", "echo oops >&2; exit 3"]\n'
                       'ps_argv: ["/bin/sleep", "5"]\n'
                       'timeout_ms: 300\n')
        self.assertIn("app.ops.services", self.send(g, "/logs api"))
        t0 = time.time()
        self.assertIn("ps: /bin/sleep did not finish in time and was stopped", self.send(g, "/ps"))
        self.assertLess(time.time() - t0, 4 * SLOW, "stopped at the timeout")
        g2 = self.start('services: [api]\nlogs_argv: ["/bin/sh", "-c", "echo oops >&2; exit 3"]\n'
                        'ps_argv: ["/nonexistent/ps"]\n')
        self.assertEqual(self.send(g2, "/logs api"), "logs of api (last 50 lines): /bin/sh exited with code 3:\noops")
        self.assertIn("ps: could not run /nonexistent/ps (spawn:", self.send(g2, "/ps"))


if __name__ == "__main__":
    unittest.main()
