"""E2E: the notify examples (examples/notify-only, examples/alertmanager-bridge) started as
shipped, against the local fakes of Telegram (fake_telegram.py) and Feishu (fake_feishu.py):
what a chat member sees after a monitoring job or Alertmanager posts to the notify listener
(main's port + 2). The examples' registries are their own projects.yml, found beside their
chatgw.yml (a relative notify.registry_path is beside the config file, not the working
directory): example_gateway writes the config into the gateway's temporary directory, and the
example's projects.yml is copied beside it."""
import json
import time
import os
import shutil
import urllib.parse

from harness import Gateway, GatewayTest
from fake_feishu import FakeFeishu
from fake_telegram import FakeTelegram
from test_examples import EXAMPLES, example_gateway

TG_TOKEN = "123456:EXAMPLES-notify_SECRET-abcdefghijklm"
APP, APP_SECRET = "cli_examples_app", "examples-app-SECRET-0123456789abcd"
VT = "examples-VT-0123456789abcdef"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends

# the chats of the examples' projects.yml
SHOP_TG, SHOP_FS = -1001234567890, "oc_shop_ops"
BACKUPS_TG = 123456789
AM_SHOP_TG, AM_SHOP_FS = -1001234567890, "oc_shop_oncall"
AM_PAY_TG, AM_PAY_FS = -1009876543210, "oc_payments_oncall"


def alertmanager_payload(status, group_key, alertname, severity, alerts, group_labels=None):
    """A webhook body as Alertmanager (version 4) sends it: alerts = [(instance, summary,
    status)]; the shape of webhook_config's payload in the Alertmanager docs."""
    gl = dict(group_labels or {}, alertname=alertname)
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "chatgw-shop",
        "groupLabels": gl,
        "commonLabels": dict(gl, job="api", severity=severity),
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": [{
            "status": st,
            "labels": dict(gl, instance=inst, job="api", severity=severity),
            "annotations": {"summary": summary},
            "startsAt": "2026-11-30T10:12:30.000Z",
            "endsAt": "0001-01-01T00:00:00Z" if st == "firing" else "2026-11-30T10:25:00.000Z",
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=up%3D%3D0",
            "fingerprint": "%016x" % (hash(inst) & 0xffffffffffffffff),
        } for inst, summary, st in alerts],
    }


class ExampleNotifyBase(GatewayTest):
    EXAMPLE = None
    FEISHU_EVENTS = True  # FEISHU_VERIFICATION_TOKEN set (events accepted)

    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 123456, "username": "example_bot",
                                                  "first_name": "Example"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.fs = FakeFeishu(apps={APP: {"secret": APP_SECRET,
                                         "bot": {"open_id": "ou_example_bot", "app_name": "ExampleBot"}}})
        self.fs.start()
        self.addCleanup(self.fs.stop)

    def env(self):
        e = {"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TG_TOKEN,
             "FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": APP_SECRET, "FEISHU_API_BASE": self.fs.url,
             "FEISHU_WEBHOOK_PORT": "0", "CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        if self.FEISHU_EVENTS:
            e["FEISHU_VERIFICATION_TOKEN"] = VT
        return e

    def start_example(self):
        """The example as shipped: its chatgw.yml and handlers/, its projects.yml beside the
        config (where its relative registry_path points)."""
        g = example_gateway(self.EXAMPLE, env=self.env())
        for k in ("PROJECTS_REGISTRY_PATH", "TELEGRAM_MODE", "TELEGRAM_WEBHOOK_URL"):
            g.env.pop(k, None)
        shutil.copy(os.path.join(EXAMPLES, self.EXAMPLE, "projects.yml"), os.path.join(g.dir, "projects.yml"))
        self._gws.append(g)
        g.start()
        return g

    def call(self, g, method, path, body=None, headers=None, **kw):
        kw.setdefault("listener", "notify")
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        r = g.request(method, path, body=body, headers=dict(headers or {}), **kw)
        for s in (TG_TOKEN, APP_SECRET, VT):
            self.assertNotIn(s, r.text)
        return r

    def notify(self, g, body, path="/v1/notify/text", status=200, **kw):
        r = self.call(g, "POST", path, body, **kw)
        self.assertEqual(r.status, status, r.text)
        return r.json()

    def wait_tg(self, chat_id, pred, what):
        return self.wait(lambda: pred(self.tg.texts(chat_id)) and self.tg.texts(chat_id), 10,
                         "%s (Telegram %s has %r)" % (what, chat_id, self.tg.texts(chat_id)))

    def fs_texts(self, chat_id):
        return [m["text"] for m in self.fs.messages(chat_id) if not m.get("deleted")]

    def wait_fs(self, chat_id, pred, what):
        return self.wait(lambda: pred(self.fs_texts(chat_id)) and self.fs_texts(chat_id), 10,
                         "%s (Feishu %s has %r)" % (what, chat_id, self.fs_texts(chat_id)))

    def wait_delivered(self, g, outbox_id):
        return self.wait(lambda: (lambda s: s if s.get("status") == "delivered" else None)(
            self.call(g, "GET", "/v1/outbox/%d" % outbox_id).json()), 10,
            "outbox row %d delivered" % outbox_id)


class NotifyOnlyExampleTest(ExampleNotifyBase):
    EXAMPLE = "notify-only"
    FEISHU_EVENTS = False  # the example leaves FEISHU_VERIFICATION_TOKEN unset: no inbound

    def test_a_project_notify_reaches_its_telegram_and_feishu_chats(self):
        g = self.start_example()
        # as the README's curl sends it (a form Content-Type, a JSON body)
        r = self.notify(g, json.dumps({"project_id": "shop", "text": "disk 91% on db-1", "priority": "HIGH"}),
                        headers=FORM)
        self.assertTrue(r["ok"], r)
        t, f = r["sent"]["telegram"][str(SHOP_TG)], r["sent"]["feishu"][SHOP_FS]
        self.assertEqual((t["sent"], t["status"], t["delivery_priority"]), (True, "queued", "HIGH"))
        self.assertEqual((f["sent"], f["status"], f["effective_min_priority"]), (True, "queued", "HIGH"))
        self.assertEqual(self.wait_tg(SHOP_TG, lambda x: len(x) >= 1, "the shop alert"), ["disk 91% on db-1"])
        self.assertEqual(self.wait_fs(SHOP_FS, lambda x: len(x) >= 1, "the shop alert"), ["disk 91% on db-1"])
        # the receipt: delivered, with the platform's message id
        st = self.wait_delivered(g, t["outbox_id"])
        self.assertEqual((st["channel"], st["chat_id"]), ("telegram", str(SHOP_TG)))
        self.assertEqual(st["message_id"], str(self.tg.sent(SHOP_TG)[0]["message_id"]))
        st = self.wait_delivered(g, f["outbox_id"])
        self.assertEqual(st["message_id"], self.fs.messages(SHOP_FS)[0]["message_id"])
        # MEDIUM: the Telegram group gets it; the registry keeps the Feishu group at HIGH
        r = self.notify(g, {"project_id": "shop", "text": "deploy 1.4.2 done", "priority": "MEDIUM"})
        self.assertTrue(r["sent"]["telegram"][str(SHOP_TG)]["sent"])
        f = r["sent"]["feishu"][SHOP_FS]
        self.assertEqual((f["sent"], f["skip_reason"], f["target_override_min_priority"]),
                         (False, "below_min_priority", "HIGH"))
        self.wait_tg(SHOP_TG, lambda x: len(x) >= 2, "the deploy notice")
        # backups has only a Telegram chat: target telegram, with wait (delivered at once)
        r = self.notify(g, {"project_id": "backups", "target": "telegram", "text": "nightly backup ok",
                            "wait": True})
        e = r["sent"]["telegram"][str(BACKUPS_TG)]
        self.assertEqual(e["status"], "delivered", e)
        self.assertEqual(self.tg.texts(BACKUPS_TG), ["nightly backup ok"])
        self.assertEqual(e["message_id"], str(self.tg.sent(BACKUPS_TG)[0]["message_id"]))
        self.assertEqual(self.tg.texts(SHOP_TG), ["disk 91% on db-1", "deploy 1.4.2 done"])
        self.assertEqual(self.fs_texts(SHOP_FS), ["disk 91% on db-1"])

    def test_an_unknown_project_and_other_errors(self):
        g = self.start_example()
        for body, code in (({"project_id": "nope", "text": "x"}, "missing_chat_ids_for_both"),
                           ({"project_id": "nope", "target": "telegram", "text": "x"}, "missing_telegram_chat_ids"),
                           ({"project_id": "nope", "target": "feishu", "text": "x"}, "missing_feishu_chat_ids"),
                           # backups has no Feishu chat: `both` (the default) needs chats on both sides
                           ({"project_id": "backups", "text": "x"}, "missing_chat_ids_for_both"),
                           ({"project_id": "shop"}, "missing_text"),
                           ("{not json", "invalid_json")):
            r = self.call(g, "POST", "/v1/notify/text", body)
            self.assertEqual((r.status, r.json()), (400, {"ok": False, "error": code}), body)
        r = self.call(g, "POST", "/v1/notify/text", {"project_id": "shop", "text": "x"}, auth=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(self.call(g, "GET", "/v1/outbox/999999").status, 404)
        # the main listener does not serve the notify API
        self.assertEqual(g.request("POST", "/v1/notify/text", json_body={"project_id": "shop", "text": "x"}).status, 404)
        self.assertEqual(self.tg.calls("sendMessage"), [])
        self.assertEqual(self.fs.calls("/im/v1/messages", method="POST"), [])

    def test_the_registry_is_found_beside_the_config_wherever_chatgw_starts(self):
        """The README's command, with the example's own files (no copies) and another working
        directory: the registry is examples/notify-only/projects.yml."""
        src = os.path.join(EXAMPLES, "notify-only")
        g = Gateway(env=self.env())
        g.env.pop("PROJECTS_REGISTRY_PATH", None)
        g.handlers_dir = os.path.join(src, "handlers")
        g.config_path = os.path.join(src, "chatgw.yml")
        self._gws.append(g)
        g.start()
        p = self.call(g, "GET", "/v1/notify/projects").json()
        self.assertTrue(p["ok"], p)
        self.assertTrue(os.path.samefile(p["path"], os.path.join(src, "projects.yml")), p["path"])
        by_id = {x["id"]: x for x in p["projects"]["projects"]}
        self.assertEqual(sorted(by_id), ["backups", "shop"])
        self.assertEqual(by_id["shop"]["telegram_chat_ids"], [str(SHOP_TG)])
        self.assertEqual(by_id["shop"]["overrides"]["feishu"], {SHOP_FS: "HIGH"})
        r = self.notify(g, {"project_id": "backups", "target": "telegram", "text": "from the example dir"})
        self.assertTrue(r["sent"]["telegram"][str(BACKUPS_TG)]["sent"])
        self.wait_tg(BACKUPS_TG, lambda x: x == ["from the example dir"], "the notify")

    def test_quiet_a_chat_at_run_time(self):
        g = self.start_example()
        q = "/v1/quiet/telegram/%s" % urllib.parse.quote(str(SHOP_TG))
        r = g.request("PUT", q + "?min_priority=critical")
        self.assertEqual((r.status, r.json()["min_priority"]), (200, "CRITICAL"), r.text)
        self.assertEqual(g.get(q).json()["min_priority"], "CRITICAL")
        r = self.notify(g, {"project_id": "shop", "text": "cpu 95% on web-2", "priority": "HIGH"})
        t = r["sent"]["telegram"][str(SHOP_TG)]
        self.assertEqual((t["sent"], t["skip_reason"], t["effective_min_priority"]),
                         (False, "below_min_priority", "CRITICAL"))
        self.assertTrue(r["sent"]["feishu"][SHOP_FS]["sent"])
        self.wait_fs(SHOP_FS, lambda x: x == ["cpu 95% on web-2"], "the Feishu alert")
        r = g.request("DELETE", q)
        self.assertEqual((r.status, r.json()["min_priority"]), (200, None))
        r = self.notify(g, {"project_id": "shop", "text": "cpu 97% on web-2", "priority": "HIGH"})
        self.assertTrue(r["sent"]["telegram"][str(SHOP_TG)]["sent"])
        self.wait_tg(SHOP_TG, lambda x: x == ["cpu 97% on web-2"], "the alert after the quiet hours")
        self.assertEqual(g.request("PUT", q + "?min_priority=URGENT").json()["error"], "invalid_min_priority")
        self.assertEqual(g.request("PUT", "/v1/quiet/sms/1?min_priority=LOW").json()["error"], "unknown_channel")
        self.assertEqual(g.request("PUT", q + "?min_priority=LOW", auth=False).status, 401)

    def test_the_bot_serves_no_chat(self):
        g = self.start_example()
        # Telegram in send-only mode: getMe, then no getUpdates, no webhook, no command menu
        self.wait(lambda: g.health()["checks"]["channels"]["channels"]["telegram:default"]["state"] == "ok",
                  10, "telegram ok")
        r = self.notify(g, {"project_id": "backups", "target": "telegram", "text": "sent all the same",
                            "wait": True})
        self.assertEqual(r["sent"]["telegram"]["123456789"]["status"], "delivered", r)
        self.tg.push_update(TG_TOKEN, self.tg.text_update(777001, "/help"))
        time.sleep(1.0)
        self.assertEqual(self.tg.texts(777001), [], "nobody is answered")
        self.assertEqual(len(self.tg.pending(TG_TOKEN)), 1, "the update is left for whoever reads them")
        for m in ("getUpdates", "setWebhook", "deleteWebhook", "setMyCommands"):
            self.assertEqual(self.tg.calls(m), [], m)
        self.assertEqual(len(self.tg.calls("getMe")), 1)
        # Feishu: without FEISHU_VERIFICATION_TOKEN every event is refused
        body = self.fs.message_event(APP, "oc_someone", "hello bot", VT)
        status, answer = self.fs.event("http://127.0.0.1:%d/feishu/events" % g.port("feishu"), body)
        self.assertEqual(status, 503, answer)
        self.assertEqual(answer.get("error"), "verification_token_missing", answer)
        self.assertEqual(self.fs.messages(), [])


class AlertmanagerBridgeExampleTest(ExampleNotifyBase):
    EXAMPLE = "alertmanager-bridge"

    GK = '{}/{team="shop"}:{alertname="ApiDown", cluster="eu1"}'
    ALERTS = [("api-1:8080", "api-1 does not answer", "firing"),
              ("api-2:8080", "api-2 does not answer", "firing")]

    def expected(self, status, n, alerts):
        lines = ["[%s:%d] ApiDown (cluster=eu1)" % (status, n)]
        for inst, summary, _ in alerts:
            lines.append("- %s [cluster=eu1, instance=%s, job=api]" % (summary, inst))
        lines.append("http://alertmanager.example.org:9093")
        return "\n".join(lines)

    def post_alert(self, g, payload, project="shop"):
        # what Alertmanager's webhook_config sends: JSON, the bearer from http_config
        return self.notify(g, payload, path="/v1/notify/alertmanager?project_id=" + project,
                           headers={"Content-Type": "application/json"})

    def test_firing_then_resolved_edits_the_same_message_in_each_chat(self):
        g = self.start_example()
        firing = alertmanager_payload("firing", self.GK, "ApiDown", "critical", self.ALERTS,
                                      group_labels={"cluster": "eu1"})
        r = self.post_alert(g, firing)
        self.assertEqual(r.get("alert_status"), "firing", r)
        t, f = r["sent"]["telegram"][str(AM_SHOP_TG)], r["sent"]["feishu"][AM_SHOP_FS]
        for e in (t, f):
            self.assertEqual((e["sent"], e["delivery_priority"], e["status"]), (True, "CRITICAL", "queued"), e)
        text = self.expected("FIRING", 2, self.ALERTS)
        self.assertEqual(self.wait_tg(AM_SHOP_TG, lambda x: len(x) >= 1, "the firing alert"), [text])
        self.assertEqual(self.wait_fs(AM_SHOP_FS, lambda x: len(x) >= 1, "the firing alert"), [text])
        tmid = self.wait_delivered(g, t["outbox_id"])["message_id"]
        fmid = self.wait_delivered(g, f["outbox_id"])["message_id"]
        # Alertmanager repeats the firing group (repeat_interval): the same message, no new one
        r = self.post_alert(g, firing)
        for side, chat in (("telegram", str(AM_SHOP_TG)), ("feishu", AM_SHOP_FS)):
            self.assertEqual(r["sent"][side][chat]["status"], "edited", (side, r))
        # the group resolves: the same groupKey, so the firing message is edited in place
        resolved_alerts = [(i, s, "resolved") for i, s, _ in self.ALERTS]
        r = self.post_alert(g, alertmanager_payload("resolved", self.GK, "ApiDown", "critical", resolved_alerts,
                                                    group_labels={"cluster": "eu1"}))
        self.assertEqual(r.get("alert_status"), "resolved", r)
        for side, chat in (("telegram", str(AM_SHOP_TG)), ("feishu", AM_SHOP_FS)):
            e = r["sent"][side][chat]
            self.assertEqual((e["sent"], e["status"]), (True, "edited"), (side, e))
        text2 = self.expected("RESOLVED", 2, resolved_alerts)
        self.assertEqual(self.wait_tg(AM_SHOP_TG, lambda x: x == [text2], "the resolved edit"), [text2])
        self.assertEqual(self.wait_fs(AM_SHOP_FS, lambda x: x == [text2], "the resolved edit"), [text2])
        # Telegram: one message, edited once by editMessageText; no second sendMessage
        self.assertEqual(len(self.tg.sent(AM_SHOP_TG)), 1)
        self.assertEqual(str(self.tg.sent(AM_SHOP_TG)[0]["message_id"]), tmid)
        edits = self.tg.calls("editMessageText")
        self.assertGreaterEqual(len(edits), 1)
        self.assertEqual({str(e["params"]["message_id"]) for e in edits}, {tmid})
        self.assertEqual(edits[-1]["params"]["text"], text2)
        self.assertEqual(len(self.tg.calls("sendMessage")), 1)
        # Feishu: one message, updated in place (PUT /im/v1/messages/<id>)
        msgs = self.fs.messages(AM_SHOP_FS)
        self.assertEqual([m["message_id"] for m in msgs], [fmid])
        puts = self.fs.calls("/im/v1/messages/" + fmid, method="PUT")
        self.assertGreaterEqual(len(puts), 1, self.fs.calls("/im/v1/messages"))
        self.assertEqual(self.fs.message(fmid)["text"], text2)
        self.assertEqual(len(self.fs.calls("/im/v1/messages", method="POST")), 1)
        # another group is another message
        gk2 = '{}/{team="shop"}:{alertname="SlowQueries"}'
        r = self.post_alert(g, alertmanager_payload("firing", gk2, "SlowQueries", "warning",
                                                    [("db-1:5432", "p99 over 2 s", "firing")]))
        self.assertEqual(r["sent"]["telegram"][str(AM_SHOP_TG)]["delivery_priority"], "HIGH")
        texts = self.wait_tg(AM_SHOP_TG, lambda x: len(x) >= 2, "the second group")
        self.assertEqual(texts[0], text2)
        self.assertTrue(texts[1].startswith("[FIRING:1] SlowQueries\n- p99 over 2 s"), texts[1])
        self.wait_fs(AM_SHOP_FS, lambda x: len(x) >= 2, "the second group")
        # without the bearer: 401, nothing sent
        r = self.call(g, "POST", "/v1/notify/alertmanager?project_id=shop", firing, auth=False)
        self.assertEqual(r.status, 401)
        # not an Alertmanager body
        r = self.call(g, "POST", "/v1/notify/alertmanager?project_id=shop", {"receiver": "x"})
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid_alertmanager_payload"))

    def test_the_payments_telegram_group_hears_only_critical_alerts(self):
        g = self.start_example()
        warn = alertmanager_payload("firing", '{}:{alertname="QueueLag"}', "QueueLag", "warning",
                                    [("worker-1", "queue lag 5 min", "firing")])
        r = self.post_alert(g, warn, project="payments")
        t, f = r["sent"]["telegram"][str(AM_PAY_TG)], r["sent"]["feishu"][AM_PAY_FS]
        self.assertEqual((t["sent"], t["skip_reason"], t["target_override_min_priority"]),
                         (False, "below_min_priority", "CRITICAL"))
        self.assertTrue(f["sent"])
        self.wait_fs(AM_PAY_FS, lambda x: len(x) == 1 and x[0].startswith("[FIRING:1] QueueLag"), "the warning")
        crit = alertmanager_payload("firing", '{}:{alertname="PaymentsDown"}', "PaymentsDown", "critical",
                                    [("pay-1", "payments API down", "firing")])
        r = self.post_alert(g, crit, project="payments")
        self.assertTrue(r["sent"]["telegram"][str(AM_PAY_TG)]["sent"])
        texts = self.wait_tg(AM_PAY_TG, lambda x: len(x) >= 1, "the critical alert")
        self.assertEqual(len(texts), 1)
        self.assertTrue(texts[0].startswith("[FIRING:1] PaymentsDown"), texts)
        self.assertEqual(self.tg.texts(AM_SHOP_TG), [])

    def test_ack_as_a_reply_to_an_alert(self):
        g = self.start_example()
        r = self.post_alert(g, alertmanager_payload("firing", self.GK, "ApiDown", "critical", self.ALERTS[:1],
                                                    group_labels={"cluster": "eu1"}))
        mid = int(self.wait_delivered(g, r["sent"]["telegram"][str(AM_SHOP_TG)]["outbox_id"])["message_id"])
        self.tg.push_update(TG_TOKEN, self.tg.text_update(AM_SHOP_TG, "/ack", user_id=4242, username="alice",
                                                          reply_to_message=mid))
        texts = self.wait_tg(AM_SHOP_TG, lambda x: len(x) >= 2, "the /ack answer")
        self.assertEqual(texts[1], "@alice is on it: [FIRING:1] ApiDown (cluster=eu1)")
        self.tg.push_update(TG_TOKEN, self.tg.text_update(AM_SHOP_TG, "/ack", user_id=4242, username="alice"))
        texts = self.wait_tg(AM_SHOP_TG, lambda x: len(x) >= 3, "the /ack hint")
        self.assertEqual(texts[2], "Reply /ack to an alert message.")


if __name__ == "__main__":
    import unittest
    unittest.main()
