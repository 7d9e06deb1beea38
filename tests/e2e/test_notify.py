"""E2E: the notify API (seed 000's, reimplemented; issue 14) against the local fakes of Telegram
(fake_telegram.py) and Feishu (fake_feishu.py): every 400 error code, 401 and the internal-only
403 before the token (judged by the socket's peer, X-Forwarded-For ignored), both targets,
registry defaults and overrides, the priority gate (skip_gate, no priority, require_priority,
the `priority` alias, global/channel minimums, custom levels), registry reload on change and on
SIGHUP with a broken file (the last good one kept, a WARN with both hashes) and a broken file at
boot, wait mode, a channel that is off, dedupe_key, update_key edits, the storm digest,
Alertmanager's webhook (payloads shaped as in its docs), images by path and by URL,
GET /v1/outbox/:id, chatgw.notify.lookup from a handler, the listener with no config file at
all, and no secret in any response or log line."""
import hashlib
import http.client
import json
import os
import socket
import struct
import time
import unittest
import zlib

from harness import SLOW, Gateway, GatewayTest
from fake_feishu import FakeFeishu
from fake_telegram import FakeTelegram
from upstream import Upstream, refused_port

TG_TOKEN = "123456:NOTIFY-token_SECRET-abcdefghijklmnop"
APP, APP_SECRET = "cli_notify_app", "notify-app-SECRET-0123456789abcdef"
VT = "notify-VT-0123456789abcdef"
OD_TOKEN = "on-demand-SECRET-token-42"
SECRETS = (TG_TOKEN, TG_TOKEN.split(":")[1], APP_SECRET, VT, OD_TOKEN)

BASE_CONFIG = "channels:\n  telegram:\n    poll_timeout_s: 1\nchat:\n  pacing: false\n"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends

LOOKUP_HANDLER = r"""
return {
  routes = {
    ["GET /lookup"] = function(req)
      return chatgw.notify.lookup(req.query.channel, req.query.chat_id, req.query.message_id) or { none = true }
    end,
    ["POST /min"] = function(req)
      chatgw.notify.set_min_priority(req.query.channel, req.query.chat_id, req.query.level)
      return { level = chatgw.notify.min_priority(req.query.channel, req.query.chat_id) or "none" }
    end,
  },
}
"""

REGISTRY_V1 = """\
# the projects registry, seed 000's format
projects:
  alpha:
    notify:
      telegram_chat_ids: [111, "222"]
      feishu_chat_ids: oc_alpha
    notify_overrides:
      - { target: telegram, chat_id: "222", min_priority: CRITICAL }
      - { target: feishu, chat_id: oc_alpha, min_priority: high }
    on_demand:
      url: http://127.0.0.1:9/export
      token: %s
  beta:
    notify:
      telegram_chat_ids: [333]
      feishu_chat_ids: [oc_beta]
      overrides:
        telegram: { "333": HIGH }
""" % OD_TOKEN

REGISTRY_V2 = """\
projects:
  alpha:
    notify:
      telegram_chat_ids: [444]
      feishu_chat_ids: [oc_alpha2]
"""

REGISTRY_V3 = """\
projects:
  alpha:
    notify:
      telegram_chat_ids: [555]
      feishu_chat_ids: [oc_alpha3]
"""

# a level the gate does not know: refused with file:line, so the reload keeps the last good one
REGISTRY_BROKEN = """\
projects:
  alpha:
    notify:
      telegram_chat_ids: [999]
      feishu_chat_ids: [oc_broken]
    notify_overrides:
      - { target: telegram, chat_id: "999", min_priority: URGENT }
"""


def png(w=2, h=2):
    """A small valid PNG (the Telegram fake reads its dimensions)."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    raw = b"".join(b"\x00" + b"\x10\x80\xf0" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def hash12(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def alertmanager_payload(status, group_key, alertname, severity, instance="api-1:8080",
                         summary="api-1 does not answer"):
    """A webhook body as Alertmanager sends it (version 4; the shape of webhook_config's
    payload in the Alertmanager configuration docs)."""
    ends = "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-30T10:25:00.000Z"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "chatgw",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "job": "api", "severity": severity},
        "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": alertname, "instance": instance, "job": "api",
                       "severity": severity},
            "annotations": {"summary": summary},
            "startsAt": "2026-11-30T10:12:30.000Z",
            "endsAt": ends,
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=up%7Bjob%3D%22api%22%7D+%3D%3D+0&g0.tab=1",
            "fingerprint": "5b2f6e0c1d9a8e77",
        }],
    }


class NoConfigGateway(Gateway):
    """A gateway started without --config, in a directory with no ./config/chatgw.yml."""

    def start(self, wait_ready=True, timeout=20):
        if os.path.exists(self.config_path):
            os.unlink(self.config_path)
        self.use_config = False
        return super().start(wait_ready, timeout)


class NotifyTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 123456, "username": "notify_bot",
                                                  "first_name": "Notify"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.fs = FakeFeishu(apps={APP: {"secret": APP_SECRET,
                                         "bot": {"open_id": "ou_notify_bot", "app_name": "NotifyBot"}}})
        self.fs.start()
        self.addCleanup(self.fs.stop)

    # ---- helpers ----

    def start(self, extra="", env=None, handlers=None, telegram=True, feishu=True, registry=None,
              images=None, start=True):
        """A gateway against the fakes. extra: more YAML (a `notify:` section, ...); registry:
        the text of projects.yml beside chatgw.yml (the default registry path); images:
        {name: bytes} written to <data_dir>/images before the start."""
        e = {"CHAT_GATEWAY_LOCK_RETRY_MS": "200"}
        if telegram:
            e.update({"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TG_TOKEN})
        if feishu:
            e.update({"FEISHU_APP_ID": APP, "FEISHU_APP_SECRET": APP_SECRET,
                      "FEISHU_VERIFICATION_TOKEN": VT, "FEISHU_API_BASE": self.fs.url,
                      "FEISHU_WEBHOOK_PORT": "0"})
        e.update(env or {})
        g = self.gw(handlers or {}, config=BASE_CONFIG + extra, env=e, start=False)
        if registry is not None:
            self.write_registry(g, registry)
        os.makedirs(self.images_dir(g), exist_ok=True)
        for name, data in (images or {}).items():
            with open(os.path.join(self.images_dir(g), name), "wb") as f:
                f.write(data)
        if start:
            g.start()
        return g

    @staticmethod
    def images_dir(g):
        return os.path.join(g.dir, "data", "images")

    @staticmethod
    def write_registry(g, text):
        path = os.path.join(g.dir, "projects.yml")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def call(self, g, method, path, body=None, headers=None, **kw):
        """A request on the notify listener; no secret may ever be in an answer."""
        kw.setdefault("listener", "notify")
        if isinstance(body, dict) and body.get("wait"):
            # past the server's wait_ms (10 s), so a slow delivery is an answer naming it
            kw.setdefault("timeout", 25)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers = dict(headers or {"Content-Type": "application/json"})
        r = g.request(method, path, body=body, headers=headers, **kw)
        for s in SECRETS:
            self.assertNotIn(s, r.text, "a secret in the answer to %s %s" % (method, path))
        return r

    def notify(self, g, body, path="/v1/notify/text", status=200, **kw):
        r = self.call(g, "POST", path, body, **kw)
        self.assertEqual(r.status, status, r.text)
        return r.json()

    def assert_error(self, g, body, code, path="/v1/notify/text", **kw):
        r = self.call(g, "POST", path, body, **kw)
        self.assertEqual(r.status, 400, "%r -> %s" % (body, r.text))
        self.assertEqual(r.json(), {"ok": False, "error": code}, body)

    def wait_texts(self, chat_id, n, timeout=10):
        self.wait(lambda: len(self.tg.texts(chat_id)) >= n, timeout,
                  "%d Telegram messages in %s (have %r)" % (n, chat_id, self.tg.texts(chat_id)))
        return self.tg.texts(chat_id)

    def wait_fs(self, chat_id, n, timeout=10):
        self.wait(lambda: len(self.fs.messages(chat_id)) >= n, timeout,
                  "%d Feishu messages in %s (have %r)" % (n, chat_id, self.fs.messages(chat_id)))
        return self.fs.messages(chat_id)

    def warns(self, g, text):
        return [r for r in g.records() if r.get("level") == "warn" and text in r.get("msg", "")]

    def raw_from(self, g, source, method, path, body=None, headers=None):
        """A request on the notify listener from the local address `source`."""
        conn = http.client.HTTPConnection("127.0.0.1", g.port("notify"), timeout=10 * SLOW,
                                          source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    # ---- errors, access ----

    def test_text_error_codes_are_400_with_the_seeds_codes(self):
        g = self.start()
        for raw in ("{", "not json", "[1, 2]", '"text"'):
            self.assert_error(g, raw, "invalid_json")
            self.assert_error(g, raw, "invalid_json", headers=FORM)
        # a direct chat_id / chat_ids list with `both` (named, absent or unknown)
        for body in ({"target": "both", "chat_id": 42, "text": "x"},
                     {"chat_id": "42", "text": "x"},
                     {"target": "sms", "chat_id": 42, "text": "x"},
                     {"chat_ids": [42, 43], "text": "x"}):
            self.assert_error(g, body, "chat_id_requires_single_target")
        self.assert_error(g, {"target": "telegram", "text": "x"}, "missing_telegram_chat_ids")
        self.assert_error(g, {"target": "telegram", "chat_id": None, "text": "x"}, "missing_telegram_chat_ids")
        self.assert_error(g, {"target": "telegram", "project_id": "nope", "text": "x"},
                          "missing_telegram_chat_ids")
        self.assert_error(g, {"target": "feishu", "chat_ids": [], "text": "x"}, "missing_feishu_chat_ids")
        self.assert_error(g, {"text": "x"}, "missing_chat_ids_for_both")
        self.assert_error(g, {"chat_ids": {"telegram": [42]}, "text": "x"}, "missing_chat_ids_for_both")
        self.assert_error(g, {"target": "both", "chat_ids_by_target": {"feishu": ["oc_a"]}, "text": "x"},
                          "missing_chat_ids_for_both")
        # the target errors come before missing_text, as in the seed
        self.assert_error(g, {"target": "telegram"}, "missing_telegram_chat_ids")
        for text in (None, "", "   \n ", [], {}):
            body = {"target": "telegram", "chat_id": 42}
            if text is not None:
                body["text"] = text
            self.assert_error(g, body, "missing_text")
        self.assert_error(g, json.dumps({"target": "telegram", "chat_id": 42}), "missing_text", headers=FORM)
        self.assert_error(g, "", "missing_chat_ids_for_both")  # an empty body is {}
        self.assertEqual(self.tg.calls("sendMessage"), [])
        # the main listener does not serve the notify API
        self.assertEqual(g.request("POST", "/v1/notify/text", json_body={"text": "x"}).status, 404)

    def test_image_error_codes(self):
        g = self.start("notify:\n  image_max_bytes: 2048\n", images={"ok.png": png()})
        up = Upstream()
        up.route("GET /big.png", lambda r: r.reply(200, b"\x89PNG" + b"\x00" * 4996,
                                                    {"Content-Type": "image/png"}))
        up.route("GET /page", lambda r: r.reply(200, b"<html>not an image</html>",
                                                 {"Content-Type": "text/html"}))
        up.route("GET /gone.png", lambda r: r.reply(404, b"no such image"))
        up.start()
        self.addCleanup(up.stop)
        outside = os.path.join(g.dir, "outside.png")
        with open(outside, "wb") as f:
            f.write(png())
        os.symlink(outside, os.path.join(self.images_dir(g), "link.png"))
        os.symlink(self.images_dir(g), os.path.join(g.dir, "images-link"))
        tg = {"target": "telegram", "chat_id": 42, "caption": "c"}

        def img(**kw):
            b = dict(tg)
            b.update(kw)
            return b

        self.assert_error(g, "{", "invalid_json", path="/v1/notify/image")
        self.assert_error(g, {"chat_id": 42, "image_path": outside}, "chat_id_requires_single_target",
                          path="/v1/notify/image")
        self.assert_error(g, {"target": "feishu", "image_path": outside}, "missing_feishu_chat_ids",
                          path="/v1/notify/image")
        self.assert_error(g, tg, "missing_image_path_or_url", path="/v1/notify/image")
        self.assert_error(g, img(image_path="", image_url=""), "missing_image_path_or_url",
                          path="/v1/notify/image", headers=FORM)
        # outside <data_dir>/images: a file, a symlink inside images/ to it, a .. walk, /etc
        for p in (outside, os.path.join(self.images_dir(g), "link.png"),
                  os.path.join(self.images_dir(g), "..", "..", "outside.png"), "/etc/passwd"):
            self.assert_error(g, img(image_path=p), "image_path_not_allowed", path="/v1/notify/image")
        # a path that is not there: image_not_found only inside images/, so that the answer
        # tells nothing about files elsewhere
        for p in (os.path.join(self.images_dir(g), "missing.png"),
                  os.path.join(self.images_dir(g), "sub", "dir", "missing.png")):
            self.assert_error(g, img(image_path=p), "image_not_found", path="/v1/notify/image")
        for p in ("/nonexistent/x.png", os.path.join(g.dir, "missing.png"), "relative-missing.png",
                  os.path.join(self.images_dir(g), "nope", "..", "..", "outside.png")):
            self.assert_error(g, img(image_path=p), "image_path_not_allowed", path="/v1/notify/image")
        # a symlink to the images dir itself resolves inside: allowed
        r = self.notify(g, img(image_path=os.path.join(g.dir, "images-link", "ok.png")),
                        path="/v1/notify/image")
        self.assertTrue(r["sent"]["telegram"]["42"]["sent"], r)
        # image_url: too large, not an image, a 404, not http(s), nothing listening
        for url, why in ((up.url("/big.png"), "2048"), (up.url("/page"), "text/html"),
                         (up.url("/gone.png"), "404"), ("file:///etc/passwd", "http"),
                         ("http://127.0.0.1:%d/x.png" % refused_port(), "")):
            r = self.call(g, "POST", "/v1/notify/image", img(image_url=url))
            self.assertEqual(r.status, 400, r.text)
            err = r.json()["error"]
            self.assertTrue(err.startswith("image_fetch_failed"), err)
            self.assertIn(why, err)
        self.assertEqual(len(self.wait_texts(42, 1)), 1)  # only the allowed one was sent
        self.assertEqual(len(self.tg.calls("sendPhoto")), 1)

    def test_401_without_the_bearer(self):
        g = self.start()
        body = json.dumps({"target": "telegram", "chat_id": 42, "text": "x"})
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": g.token}):
            r = self.call(g, "POST", "/v1/notify/text", body, headers=headers, auth=False)
            self.assertEqual(r.status, 401, r.text)
            self.assertEqual(r.json()["error"], "unauthorized")
        r = self.call(g, "GET", "/v1/notify/projects", auth=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(self.tg.calls("sendMessage"), [])

    def test_403_forbidden_before_the_token_for_a_non_internal_peer(self):
        g = self.start('notify:\n  allow_cidrs: ["10.0.0.0/8"]\n')
        body = json.dumps({"target": "telegram", "chat_id": 42, "text": "x"})
        for auth in (False, True):
            for path in ("/v1/notify/text", "/v1/notify/image", "/v1/notify/alertmanager"):
                r = self.call(g, "POST", path, body, auth=auth, headers={"X-Forwarded-For": "10.1.2.3"})
                self.assertEqual(r.status, 403, r.text)
                self.assertEqual(r.json(), {"ok": False, "error": "forbidden"})
            for path in ("/v1/notify/projects", "/v1/outbox/1"):
                self.assertEqual(self.call(g, "GET", path, auth=auth).status, 403)
        self.assertEqual(self.tg.calls("sendMessage"), [])

    def test_the_peer_address_decides_not_x_forwarded_for(self):
        try:
            socket.create_connection(("127.0.0.1", 9), source_address=("127.0.0.2", 0), timeout=1).close()
        except ConnectionRefusedError:
            pass
        except OSError as e:
            self.skipTest("cannot use 127.0.0.2 as a source address: %s" % e)
        g = self.start('notify:\n  allow_cidrs: ["127.0.0.1/32", "::1/128"]\n')
        body = json.dumps({"target": "telegram", "chat_id": 42, "text": "from 127.0.0.1"})
        auth = {"Authorization": "Bearer " + g.token, "Content-Type": "application/json"}
        for h in ({}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"}):
            for token in (False, True):
                hs = dict(h, **(auth if token else {}))
                st, raw = self.raw_from(g, "127.0.0.2", "POST", "/v1/notify/text", body, hs)
                self.assertEqual(st, 403, raw)
                self.assertEqual(json.loads(raw), {"ok": False, "error": "forbidden"})
        st, raw = self.raw_from(g, "127.0.0.1", "POST", "/v1/notify/text", body,
                                dict(auth, **{"X-Forwarded-For": "8.8.8.8"}))
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.wait_texts(42, 1), ["from 127.0.0.1"])

    # ---- delivery ----

    def test_both_targets_are_delivered_with_priorities_in_the_response(self):
        g = self.start()
        r = self.notify(g, {"target": "both", "chat_ids": {"telegram": [42, "43"], "feishu": ["oc_a"]},
                            "text": "  disk full on db-1\nsecond line  ", "priority": "high",
                            "meta": {"global_min_priority": "MEDIUM"}, "extra": {"ignored": True}})
        self.assertTrue(r["ok"])
        self.assertEqual(r["target_overrides"], {"telegram": {"42": None, "43": None}, "feishu": {"oc_a": None}})
        ids = set()
        for side, chat in (("telegram", "42"), ("telegram", "43"), ("feishu", "oc_a")):
            e = r["sent"][side][chat]
            self.assertEqual(
                {k: e[k] for k in ("sent", "delivery_priority", "global_min_priority", "channel_min_priority",
                                   "target_override_min_priority", "effective_min_priority", "skip_reason",
                                   "status")},
                {"sent": True, "delivery_priority": "HIGH", "global_min_priority": "MEDIUM",
                 "channel_min_priority": "MEDIUM", "target_override_min_priority": None,
                 "effective_min_priority": "MEDIUM", "skip_reason": None, "status": "queued"}, (side, chat))
            self.assertIsInstance(e["outbox_id"], int)
            ids.add(e["outbox_id"])
        self.assertEqual(len(ids), 3)
        self.assertEqual(self.wait_texts(42, 1), ["disk full on db-1\nsecond line"])
        self.assertEqual(self.wait_texts(43, 1), ["disk full on db-1\nsecond line"])
        self.assertEqual([m["text"] for m in self.wait_fs("oc_a", 1)], ["disk full on db-1\nsecond line"])
        # chat_ids_by_target, sent the way curl -d sends it
        r = self.notify(g, json.dumps({"chat_ids_by_target": {"telegram": ["44"], "feishu": "oc_b"},
                                       "text": "by target", "delivery_priority": "LOW"}), headers=FORM)
        self.assertEqual(set(r["sent"]["telegram"]), {"44"})
        self.assertEqual(set(r["sent"]["feishu"]), {"oc_b"})
        self.assertEqual(self.wait_texts(44, 1), ["by target"])
        self.assertEqual([m["text"] for m in self.wait_fs("oc_b", 1)], ["by target"])
        # one target: only its chats are sent to
        r = self.notify(g, {"target": "feishu", "chat_id": "oc_c", "text": "feishu only"})
        self.assertEqual(r["sent"]["telegram"], {})
        self.assertEqual([m["text"] for m in self.wait_fs("oc_c", 1)], ["feishu only"])
        # a JSON null chat_id is absent: the chat_ids list counts
        r = self.notify(g, {"target": "telegram", "chat_id": None, "chat_ids": [45], "text": "null id",
                            "project_id": None, "meta": None, "target_ignored": None})
        self.assertEqual(list(r["sent"]["telegram"]), ["45"])
        self.assertEqual(self.wait_texts(45, 1), ["null id"])

    def test_registry_defaults_and_overrides(self):
        g = self.start(registry=REGISTRY_V1)
        r = self.notify(g, {"project_id": "alpha", "text": "alpha high", "priority": "HIGH"})
        self.assertEqual(r["target_overrides"], {"telegram": {"111": None, "222": "CRITICAL"},
                                                 "feishu": {"oc_alpha": "HIGH"}})
        t111, t222, f = r["sent"]["telegram"]["111"], r["sent"]["telegram"]["222"], r["sent"]["feishu"]["oc_alpha"]
        self.assertTrue(t111["sent"])
        self.assertEqual(t111["effective_min_priority"], "LOW")
        self.assertFalse(t222["sent"])
        self.assertEqual((t222["skip_reason"], t222["target_override_min_priority"], t222["effective_min_priority"]),
                         ("below_min_priority", "CRITICAL", "CRITICAL"))
        self.assertNotIn("outbox_id", t222)
        self.assertTrue(f["sent"])
        self.assertEqual((f["target_override_min_priority"], f["effective_min_priority"]), ("HIGH", "HIGH"))
        self.assertEqual(self.wait_texts(111, 1), ["alpha high"])
        self.assertEqual([m["text"] for m in self.wait_fs("oc_alpha", 1)], ["alpha high"])
        # CRITICAL passes the override; MEDIUM is below the Feishu one
        r = self.notify(g, {"project_id": "alpha", "text": "alpha critical", "priority": "CRITICAL"})
        self.assertTrue(r["sent"]["telegram"]["222"]["sent"])
        self.assertEqual(self.wait_texts(222, 1), ["alpha critical"])
        r = self.notify(g, {"project_id": "alpha", "text": "alpha medium", "priority": "MEDIUM"})
        self.assertEqual(r["sent"]["feishu"]["oc_alpha"]["skip_reason"], "below_min_priority")
        self.assertTrue(r["sent"]["telegram"]["111"]["sent"])
        # the map form under notify.overrides
        r = self.notify(g, {"project_id": "beta", "target": "telegram", "text": "beta", "priority": "MEDIUM"})
        self.assertEqual(r["target_overrides"]["telegram"], {"333": "HIGH"})
        self.assertEqual(r["sent"]["telegram"]["333"]["skip_reason"], "below_min_priority")
        # explicit ids win over the defaults; the project's override still applies to its chats
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "chat_id": "222", "text": "direct",
                            "priority": "HIGH"})
        self.assertEqual(list(r["sent"]["telegram"]), ["222"])
        self.assertEqual(r["sent"]["telegram"]["222"]["skip_reason"], "below_min_priority")
        r = self.notify(g, {"project_id": "alpha", "chat_ids": {"telegram": [666], "feishu": ["oc_z"]},
                            "text": "explicit map", "priority": "LOW"})
        self.assertEqual((list(r["sent"]["telegram"]), list(r["sent"]["feishu"])), (["666"], ["oc_z"]))
        self.assertEqual(self.wait_texts(666, 1), ["explicit map"])
        time.sleep(0.3)
        self.assertEqual(self.tg.texts(111), ["alpha high", "alpha critical", "alpha medium"])
        self.assertEqual(self.tg.texts(222), ["alpha critical"])
        self.assertEqual(self.tg.texts(333), [])
        # what is loaded: the projects and the file's hash, never the on_demand token
        p = self.call(g, "GET", "/v1/notify/projects").json()
        self.assertTrue(p["ok"])
        self.assertEqual(p["hash"], hash12(REGISTRY_V1))
        self.assertEqual(p["path"], os.path.join(g.dir, "projects.yml"))
        by_id = {x["id"]: x for x in p["projects"]["projects"]}
        self.assertEqual(sorted(by_id), ["alpha", "beta"])
        self.assertEqual(by_id["alpha"]["telegram_chat_ids"], ["111", "222"])
        self.assertEqual(by_id["alpha"]["feishu_chat_ids"], ["oc_alpha"])
        self.assertEqual(by_id["alpha"]["overrides"], {"telegram": {"222": "CRITICAL"}, "feishu": {"oc_alpha": "HIGH"}})
        self.assertTrue(by_id["alpha"]["on_demand"]["has_token"])

    def test_the_gate(self):
        g = self.start()

        def one(body, chat=50):
            b = {"target": "telegram", "chat_id": chat, "text": "gate %d" % chat}
            b.update(body)
            return self.notify(g, b)["sent"]["telegram"][str(chat)]

        # no priority at all: delivered (chatgw departs from the seed here)
        e = one({}, 50)
        self.assertEqual((e["sent"], e["skip_reason"], e["status"]), (True, None, "queued"))
        self.assertIsNone(e["delivery_priority"])
        # skip_gate: sent whatever the minimums say
        e = one({"priority": "LOW", "meta": {"skip_gate": True, "global_min_priority": "CRITICAL"}}, 51)
        self.assertEqual((e["sent"], e["skip_reason"]), (True, "skip_gate"))
        e = one({"meta": {"skip_gate": True}}, 52)
        self.assertEqual((e["sent"], e["skip_reason"]), (True, "skip_gate"))
        # `priority` is an alias of delivery_priority; meta.global_min_priority
        e = one({"priority": "LOW", "meta": {"global_min_priority": "MEDIUM"}}, 53)
        self.assertEqual((e["sent"], e["skip_reason"], e["delivery_priority"], e["effective_min_priority"]),
                         (False, "below_min_priority", "LOW", "MEDIUM"))
        # meta.channel_min_priority above the global one
        e = one({"meta": {"delivery_priority": "HIGH", "global_min_priority": "LOW",
                          "channel_min_priority": "CRITICAL"}}, 54)
        self.assertEqual((e["sent"], e["skip_reason"], e["global_min_priority"], e["channel_min_priority"],
                          e["effective_min_priority"]), (False, "below_min_priority", "LOW", "CRITICAL", "CRITICAL"))
        # the channel minimum defaults to the global one; top-level fields work as meta's
        e = one({"delivery_priority": "medium", "global_min_priority": "high"}, 55)
        self.assertEqual((e["sent"], e["channel_min_priority"], e["effective_min_priority"]),
                         (False, "HIGH", "HIGH"))
        e = one({"delivery_priority": "CRITICAL", "channel_min_priority": "CRITICAL"}, 56)
        self.assertEqual((e["sent"], e["skip_reason"], e["effective_min_priority"]), (True, None, "CRITICAL"))
        # meta wins over the top level
        e = one({"priority": "LOW", "meta": {"delivery_priority": "HIGH", "global_min_priority": "HIGH"}}, 57)
        self.assertEqual((e["sent"], e["delivery_priority"]), (True, "HIGH"))
        for chat in (50, 51, 52, 56, 57):
            self.assertEqual(self.wait_texts(chat, 1), ["gate %d" % chat])
        time.sleep(0.3)
        for chat in (53, 54, 55):
            self.assertEqual(self.tg.texts(chat), [])

    def test_require_priority_restores_missing_gate_meta(self):
        g = self.start("notify:\n  require_priority: true\n")
        r = self.notify(g, {"target": "telegram", "chat_id": 60, "text": "no priority"})
        e = r["sent"]["telegram"]["60"]
        self.assertEqual((e["sent"], e["skip_reason"]), (False, "missing_gate_meta"))
        r = self.notify(g, {"target": "telegram", "chat_id": 61, "text": "with priority", "priority": "LOW"})
        self.assertTrue(r["sent"]["telegram"]["61"]["sent"])
        r = self.notify(g, {"target": "telegram", "chat_id": 62, "text": "skip gate", "meta": {"skip_gate": True}})
        self.assertEqual(r["sent"]["telegram"]["62"]["skip_reason"], "skip_gate")
        self.assertEqual(self.wait_texts(61, 1), ["with priority"])
        self.assertEqual(self.wait_texts(62, 1), ["skip gate"])
        time.sleep(0.3)
        self.assertEqual(self.tg.texts(60), [])

    def test_custom_priority_levels(self):
        reg = ("projects:\n  p:\n    notify:\n      telegram_chat_ids: [71, 72]\n      feishu_chat_ids: [oc_p]\n"
               "    notify_overrides:\n      - { target: telegram, chat_id: 72, min_priority: sev1 }\n")
        g = self.start(registry=reg, env={"CHAT_GATEWAY_PRIORITY_LEVELS": "sev3, sev2,sev1"})
        r = self.notify(g, {"project_id": "p", "target": "telegram", "text": "sev2", "priority": "SEV2"})
        t71, t72 = r["sent"]["telegram"]["71"], r["sent"]["telegram"]["72"]
        self.assertEqual((t71["sent"], t71["global_min_priority"], t71["effective_min_priority"]), (True, "SEV3", "SEV3"))
        self.assertEqual((t72["sent"], t72["skip_reason"], t72["target_override_min_priority"]),
                         (False, "below_min_priority", "SEV1"))
        r = self.notify(g, {"project_id": "p", "target": "telegram", "text": "sev1", "priority": "sev1"})
        self.assertTrue(r["sent"]["telegram"]["72"]["sent"])
        r = self.notify(g, {"project_id": "p", "target": "telegram", "text": "low", "priority": "sev3",
                            "meta": {"global_min_priority": "SEV2"}})
        self.assertEqual(r["sent"]["telegram"]["71"]["skip_reason"], "below_min_priority")
        self.assertEqual(self.wait_texts(71, 2), ["sev2", "sev1"])
        self.assertEqual(self.wait_texts(72, 1), ["sev1"])
        self.assertEqual(self.call(g, "GET", "/v1/notify/projects").json()["projects"]["levels"],
                         ["SEV3", "SEV2", "SEV1"])

    # ---- the registry: reloads ----

    def test_registry_reload_on_file_change(self):
        g = self.start(registry=REGISTRY_V1)
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "v1", "priority": "HIGH"})
        self.assertEqual(set(r["sent"]["telegram"]), {"111", "222"})
        self.write_registry(g, REGISTRY_V2)
        time.sleep(1.2)  # the file is looked at, at most once a second, when a request comes
        r = self.notify(g, {"project_id": "alpha", "text": "v2", "priority": "HIGH"})
        self.assertEqual((list(r["sent"]["telegram"]), list(r["sent"]["feishu"])), (["444"], ["oc_alpha2"]))
        self.assertEqual(r["target_overrides"], {"telegram": {"444": None}, "feishu": {"oc_alpha2": None}})
        self.assertEqual(self.wait_texts(444, 1), ["v2"])
        self.assertEqual([m["text"] for m in self.wait_fs("oc_alpha2", 1)], ["v2"])
        p = self.call(g, "GET", "/v1/notify/projects").json()
        self.assertEqual(p["hash"], hash12(REGISTRY_V2))
        self.assertEqual([x["id"] for x in p["projects"]["projects"]], ["alpha"])
        self.assertTrue(any("[registry] reloaded" in x.get("msg", "") and hash12(REGISTRY_V2) in x["msg"]
                            for x in g.records()))

    def test_registry_reload_on_sighup(self):
        g = self.start(registry=REGISTRY_V1)
        self.assertEqual(self.call(g, "GET", "/v1/notify/projects").json()["hash"], hash12(REGISTRY_V1))
        self.write_registry(g, REGISTRY_V2)
        g.reload()
        rec = g.wait_log(lambda x: "[registry] reloaded (reload)" in x.get("msg", ""))
        self.assertIn("%s -> %s" % (hash12(REGISTRY_V1), hash12(REGISTRY_V2)), rec["msg"])
        self.assertEqual(self.call(g, "GET", "/v1/notify/projects").json()["hash"], hash12(REGISTRY_V2))
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "after hup"})
        self.assertEqual(list(r["sent"]["telegram"]), ["444"])
        self.assertEqual(self.wait_texts(444, 1), ["after hup"])

    def test_a_broken_reload_keeps_the_last_good_registry(self):
        g = self.start(registry=REGISTRY_V2)
        good, bad = hash12(REGISTRY_V2), hash12(REGISTRY_BROKEN)
        self.write_registry(g, REGISTRY_BROKEN)
        time.sleep(1.2)
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "still v2"})
        self.assertEqual(list(r["sent"]["telegram"]), ["444"])
        w = self.wait(lambda: self.warns(g, "reload failed"), 5, "the WARN of the failed reload")
        self.assertEqual(len(w), 1, w)
        w = w[0]
        self.assertEqual((w["good_hash"], w["failed_hash"]), (good, bad))
        self.assertIn("keep hash " + good, w["msg"])
        self.assertIn("projects.yml:7:", w["msg"])  # the file:line of the bad level
        self.assertIn("URGENT", w["msg"])
        self.assertEqual(self.call(g, "GET", "/v1/notify/projects").json()["hash"], good)
        # SIGHUP with the broken file: the same, and the reload itself succeeds
        g.reload()
        w2 = self.wait(lambda: self.warns(g, "reload failed (reload)"), 5, "the WARN of the SIGHUP")
        self.assertEqual((w2[0]["good_hash"], w2[0]["failed_hash"]), (good, bad))
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "still v2 after hup"})
        self.assertEqual(list(r["sent"]["telegram"]), ["444"])
        # the next change is tried again
        self.write_registry(g, REGISTRY_V3)
        time.sleep(1.2)
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "v3"})
        self.assertEqual(list(r["sent"]["telegram"]), ["555"])
        self.assertEqual(self.call(g, "GET", "/v1/notify/projects").json()["hash"], hash12(REGISTRY_V3))
        self.assertEqual(self.wait_texts(444, 2), ["still v2", "still v2 after hup"])
        self.assertEqual(self.wait_texts(555, 1), ["v3"])
        self.assertEqual(self.tg.texts(999), [])

    def test_a_broken_registry_at_boot_is_a_warn_and_an_empty_registry(self):
        g = self.start(registry="projects:\n  alpha: [unclosed\n")
        w = self.wait(lambda: self.warns(g, "[registry][WARN]"), 5, "the WARN at boot")
        self.assertEqual(w[0]["good_hash"], "none")
        self.assertIn("projects.yml:", w[0]["msg"])
        p = self.call(g, "GET", "/v1/notify/projects").json()
        self.assertEqual((p["hash"], p["projects"]["count"]), ("none", 0))
        self.assert_error(g, {"project_id": "alpha", "text": "x"}, "missing_chat_ids_for_both")
        r = self.notify(g, {"target": "telegram", "chat_id": 80, "text": "explicit ids work"})
        self.assertTrue(r["sent"]["telegram"]["80"]["sent"])
        self.assertEqual(self.wait_texts(80, 1), ["explicit ids work"])

    # ---- wait mode, channels ----

    def test_wait_mode_reports_delivered_with_the_message_id(self):
        g = self.start()
        r = self.notify(g, {"chat_ids": {"telegram": [90], "feishu": ["oc_w"]}, "text": "waited", "wait": True})
        t, f = r["sent"]["telegram"]["90"], r["sent"]["feishu"]["oc_w"]
        self.assertEqual((t["status"], f["status"]), ("delivered", "delivered"), r)
        self.assertEqual(t["message_id"], str(self.tg.sent(90)[0]["message_id"]))
        self.assertEqual(f["message_id"], self.fs.messages("oc_w")[0]["message_id"])
        r = self.notify(g, json.dumps({"target": "telegram", "chat_id": 91, "text": "query wait"}),
                        path="/v1/notify/text?wait=1", headers=FORM)
        e = r["sent"]["telegram"]["91"]
        self.assertEqual(e["status"], "delivered")
        self.assertEqual(e["message_id"], str(self.tg.sent(91)[0]["message_id"]))
        # a chat the platform refuses: failed, with the error, and no token in it
        self.tg.chat(92, missing=True)
        r = self.notify(g, {"target": "telegram", "chat_id": 92, "text": "nowhere", "wait": True, "wait_ms": 5000})
        e = r["sent"]["telegram"]["92"]
        self.assertEqual((e["sent"], e["status"]), (True, "failed"), e)
        self.assertIn("chat not found", e.get("error", ""))

    def test_a_channel_that_is_off_is_channel_disabled(self):
        g = self.start(feishu=False)
        r = self.notify(g, {"chat_ids": {"telegram": [93], "feishu": ["oc_off"]}, "text": "half", "priority": "HIGH"})
        f = r["sent"]["feishu"]["oc_off"]
        self.assertEqual((f["sent"], f["skip_reason"]), (False, "channel_disabled"))
        self.assertNotIn("outbox_id", f)
        self.assertTrue(r["sent"]["telegram"]["93"]["sent"])
        self.assertEqual(self.wait_texts(93, 1), ["half"])
        r = self.notify(g, {"target": "feishu", "chat_id": "oc_off", "text": "only feishu", "wait": True})
        self.assertEqual(r["sent"]["feishu"]["oc_off"]["skip_reason"], "channel_disabled")
        self.assertEqual(self.fs.calls("/im/v1/messages"), [])

    # ---- alert features ----

    def test_dedupe_key(self):
        g = self.start()
        base = {"target": "telegram", "chat_id": 100, "priority": "HIGH"}
        r1 = self.notify(g, dict(base, text="first", dedupe_key="disk:db-1"))
        self.assertEqual(r1["sent"]["telegram"]["100"]["status"], "queued")
        r2 = self.notify(g, dict(base, text="second", dedupe_key="disk:db-1"))
        e = r2["sent"]["telegram"]["100"]
        self.assertEqual((e["sent"], e["skip_reason"]), (False, "duplicate"))
        self.assertNotIn("outbox_id", e)
        r3 = self.notify(g, dict(base, text="other key", dedupe_key="disk:db-2"))
        self.assertTrue(r3["sent"]["telegram"]["100"]["sent"])
        # the key is per chat: another chat gets its first
        r4 = self.notify(g, dict(base, chat_id=101, text="other chat", dedupe_key="disk:db-1"))
        self.assertTrue(r4["sent"]["telegram"]["101"]["sent"])
        # a request's dedupe_window_s: after it, the same key is sent again
        r5 = self.notify(g, dict(base, chat_id=102, text="short 1", dedupe_key="k", dedupe_window_s=1))
        self.assertTrue(r5["sent"]["telegram"]["102"]["sent"])
        self.assertEqual(self.notify(g, dict(base, chat_id=102, text="short 2", dedupe_key="k",
                                             dedupe_window_s=1))["sent"]["telegram"]["102"]["skip_reason"], "duplicate")
        time.sleep(1.3)
        self.assertTrue(self.notify(g, dict(base, chat_id=102, text="short 3", dedupe_key="k",
                                            dedupe_window_s=1))["sent"]["telegram"]["102"]["sent"])
        self.assertEqual(self.wait_texts(100, 2), ["first", "other key"])
        self.assertEqual(self.wait_texts(101, 1), ["other chat"])
        self.assertEqual(self.wait_texts(102, 2), ["short 1", "short 3"])
        time.sleep(0.3)
        self.assertEqual(len(self.tg.texts(100)), 2)

    def test_update_key_edits_the_message_in_place(self):
        g = self.start()
        body = {"chat_ids": {"telegram": [110], "feishu": ["oc_u"]}, "update_key": "backup-job-7"}
        r1 = self.notify(g, dict(body, text="backup: running", wait=True))
        self.assertEqual(r1["sent"]["telegram"]["110"]["status"], "delivered")
        mid = self.tg.sent(110)[0]["message_id"]
        r2 = self.notify(g, dict(body, text="backup: done"))
        for side, chat in (("telegram", "110"), ("feishu", "oc_u")):
            self.assertEqual((r2["sent"][side][chat]["sent"], r2["sent"][side][chat]["status"]), (True, "edited"))
        self.wait(lambda: self.tg.texts(110) == ["backup: done"], 10, "the Telegram edit")
        edits = self.tg.calls("editMessageText")
        self.assertEqual(len(edits), 1)
        self.assertEqual(str(edits[0]["params"]["message_id"]), str(mid))
        self.assertEqual(len(self.tg.calls("sendMessage")), 1)
        self.wait(lambda: [m["text"] for m in self.fs.messages("oc_u")] == ["backup: done"], 10, "the Feishu edit")
        # waited: still "edited"; a third text edits the same message again
        r3 = self.notify(g, dict(body, text="backup: verified", wait=True))
        self.assertEqual(r3["sent"]["telegram"]["110"]["status"], "edited")
        self.wait(lambda: self.tg.texts(110) == ["backup: verified"], 10, "the second edit")
        self.assertEqual(len(self.tg.sent(110)), 1)
        # another key (or none) posts a new message
        self.notify(g, {"target": "telegram", "chat_id": 110, "text": "other job", "update_key": "backup-job-8"})
        self.assertEqual(self.wait_texts(110, 2), ["backup: verified", "other job"])

    def test_storm_digest(self):
        g = self.start("notify:\n  digest:\n    threshold: 2\n    window_s: 5\n")
        t0 = time.time()
        statuses = []
        for i in range(1, 6):
            r = self.notify(g, {"target": "telegram", "chat_id": 120, "priority": "HIGH",
                                "text": "alert %d first line\ndetails of %d" % (i, i)})
            statuses.append(r["sent"]["telegram"]["120"]["status"])
            self.assertTrue(r["sent"]["telegram"]["120"]["sent"])
        self.assertEqual(statuses, ["queued", "queued", "digested", "digested", "digested"])
        # another chat is not in this chat's storm
        self.notify(g, {"target": "telegram", "chat_id": 121, "text": "calm chat"})
        self.assertEqual(self.wait_texts(120, 2), ["alert 1 first line\ndetails of 1",
                                                   "alert 2 first line\ndetails of 2"])
        texts = self.wait_texts(120, 3, timeout=12)
        self.assertGreaterEqual(time.time() - t0, 4.0, "the digest came before its window closed")
        self.assertEqual(texts[2], "3 more alerts:\n- alert 3 first line\n- alert 4 first line\n- alert 5 first line")
        self.assertEqual(self.wait_texts(121, 1), ["calm chat"])
        time.sleep(1.5)
        self.assertEqual(len(self.tg.texts(120)), 3, "one digest message only")

    def test_alertmanager_firing_then_resolved_edits_the_message(self):
        g = self.start()
        gk = '{}/{severity="critical"}:{alertname="ApiDown"}'
        path = "/v1/notify/alertmanager?target=telegram&chat_id=130"
        r = self.notify(g, alertmanager_payload("firing", gk, "ApiDown", "critical"), path=path)
        e = r["sent"]["telegram"]["130"]
        self.assertEqual((e["sent"], e["delivery_priority"], e["status"]), (True, "CRITICAL", "queued"))
        self.assertEqual(r.get("alert_status"), "firing")
        first = self.wait_texts(130, 1)[0]
        self.assertTrue(first.startswith("[FIRING:1] ApiDown"), first)
        self.assertIn("api-1 does not answer", first)
        self.wait(lambda: self.call(g, "GET", "/v1/outbox/%d" % e["outbox_id"]).json()["status"] == "delivered",
                  10, "the firing message delivered")
        r = self.notify(g, alertmanager_payload("resolved", gk, "ApiDown", "critical"), path=path + "&wait=1")
        e2 = r["sent"]["telegram"]["130"]
        self.assertEqual((e2["sent"], e2["status"]), (True, "edited"), e2)
        self.assertEqual(r.get("alert_status"), "resolved")
        self.wait(lambda: self.tg.texts(130)[0].startswith("[RESOLVED:1] ApiDown"), 10, "the resolved edit")
        self.assertEqual(len(self.tg.sent(130)), 1)
        self.assertEqual(len(self.tg.calls("editMessageText")), 1)
        # a warning of another group: a new message, HIGH; info LOW, anything else MEDIUM
        gk2 = '{}:{alertname="SlowQueries"}'
        r = self.notify(g, alertmanager_payload("firing", gk2, "SlowQueries", "warning"),
                        path="/v1/notify/alertmanager?target=telegram&chat_id=130")
        self.assertEqual(r["sent"]["telegram"]["130"]["delivery_priority"], "HIGH")
        self.assertEqual(len(self.wait_texts(130, 2)), 2)
        for sev, prio in (("info", "LOW"), ("page", "MEDIUM")):
            r = self.notify(g, alertmanager_payload("firing", "{}:{x=\"%s\"}" % sev, "X", sev),
                            path="/v1/notify/alertmanager?target=telegram&chat_id=131")
            self.assertEqual(r["sent"]["telegram"]["131"]["delivery_priority"], prio)
        # not an Alertmanager body; the notify errors apply too
        r = self.call(g, "POST", path, {"receiver": "x"})
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid_alertmanager_payload"))
        self.assert_error(g, "{", "invalid_json", path=path)
        self.assert_error(g, alertmanager_payload("firing", gk, "ApiDown", "critical"), "missing_chat_ids_for_both",
                          path="/v1/notify/alertmanager")

    def test_alertmanager_min_priority_and_project_targets(self):
        g = self.start(registry=REGISTRY_V2)
        r = self.notify(g, alertmanager_payload("firing", "{}:{a=\"1\"}", "DiskLow", "warning"),
                        path="/v1/notify/alertmanager?project_id=alpha")
        self.assertEqual((list(r["sent"]["telegram"]), list(r["sent"]["feishu"])), (["444"], ["oc_alpha2"]))
        self.assertTrue(self.wait_texts(444, 1)[0].startswith("[FIRING:1] DiskLow"))
        self.wait_fs("oc_alpha2", 1)
        r = self.notify(g, alertmanager_payload("firing", "{}:{a=\"2\"}", "DiskLow", "warning"),
                        path="/v1/notify/alertmanager?project_id=alpha&target=telegram&min_priority=CRITICAL")
        self.assertEqual(r["sent"]["telegram"]["444"]["skip_reason"], "below_min_priority")

    # ---- images ----

    def test_image_path_goes_to_telegram_as_sendphoto_and_to_feishu_as_caption_then_image(self):
        img = png(4, 3)
        g = self.start(images={"chart.png": img}, handlers={"lookup.lua": LOOKUP_HANDLER})
        r = self.notify(g, {"chat_ids": {"telegram": [140], "feishu": ["oc_img"]},
                            "image_path": os.path.join(self.images_dir(g), "chart.png"),
                            "caption": "CPU last 24h", "priority": "HIGH", "wait": True}, path="/v1/notify/image")
        self.assertEqual(r["sent"]["telegram"]["140"]["status"], "delivered", r)
        self.assertEqual(r["sent"]["feishu"]["oc_img"]["status"], "delivered", r)
        photos = self.tg.calls("sendPhoto")
        self.assertEqual(len(photos), 1)
        m = self.tg.sent(140)
        self.assertEqual(len(m), 1)
        self.assertEqual((m[0]["kind"], m[0]["caption_plain"]), ("photo", "CPU last 24h"))
        self.assertEqual(m[0]["photo"]["bytes"], img)
        self.assertEqual(self.tg.calls("sendMessage"), [])
        fm = self.wait_fs("oc_img", 2)
        self.assertEqual([x["msg_type"] for x in fm], ["text", "image"])
        self.assertEqual(fm[0]["text"], "CPU last 24h")
        self.assertEqual(self.fs.images[fm[1]["content"]["image_key"]], img)
        # the response's message_id is the image's (the last message)
        self.assertEqual(r["sent"]["feishu"]["oc_img"]["message_id"], fm[1]["message_id"])
        # both Feishu messages and the photo are the notify's, for lookup
        for channel, chat, mid in (("feishu", "oc_img", fm[0]["message_id"]), ("feishu", "oc_img", fm[1]["message_id"]),
                                   ("telegram", "140", m[0]["message_id"])):
            n = g.request("GET", "/lookup?channel=%s&chat_id=%s&message_id=%s" % (channel, chat, mid)).json()
            self.assertEqual(n.get("text"), "CPU last 24h", (channel, mid, n))
        # no caption: Feishu gets the image alone
        self.notify(g, {"target": "feishu", "chat_id": "oc_img2",
                        "image_path": os.path.join(self.images_dir(g), "chart.png")}, path="/v1/notify/image")
        self.assertEqual([x["msg_type"] for x in self.wait_fs("oc_img2", 1)], ["image"])

    def test_image_url_is_fetched(self):
        img = png(3, 3)
        up = Upstream()
        up.route("GET /chart.png", lambda r: r.reply(200, img, {"Content-Type": "image/png"}))
        up.start()
        self.addCleanup(up.stop)
        g = self.start()
        r = self.notify(g, json.dumps({"target": "telegram", "chat_id": 141, "image_url": up.url("/chart.png"),
                                       "caption": "from a URL", "wait": True}),
                        path="/v1/notify/image", headers=FORM)
        self.assertEqual(r["sent"]["telegram"]["141"]["status"], "delivered", r)
        m = self.tg.sent(141)
        self.assertEqual((m[0]["kind"], m[0]["caption_plain"], m[0]["photo"]["bytes"]), ("photo", "from a URL", img))
        self.assertEqual(up.count("/chart.png"), 1)
        # the gate and dedupe apply to images too
        r = self.notify(g, {"target": "telegram", "chat_id": 141, "image_url": up.url("/chart.png"),
                            "priority": "LOW", "meta": {"global_min_priority": "HIGH"}}, path="/v1/notify/image")
        self.assertEqual(r["sent"]["telegram"]["141"]["skip_reason"], "below_min_priority")

    # ---- outbox, lookup ----

    def test_outbox_status_by_id(self):
        g = self.start()
        r = self.notify(g, {"target": "telegram", "chat_id": 150, "text": "track me"})
        oid = r["sent"]["telegram"]["150"]["outbox_id"]
        st = self.wait(lambda: (lambda s: s if s["status"] == "delivered" else None)(
            self.call(g, "GET", "/v1/outbox/%d" % oid).json()), 10, "the outbox row delivered")
        self.assertEqual((st["ok"], st["id"], st["channel"], st["chat_id"]), (True, oid, "telegram", "150"))
        self.assertEqual(st["message_id"], str(self.tg.sent(150)[0]["message_id"]))
        r = self.call(g, "GET", "/v1/outbox/999999")
        self.assertEqual((r.status, r.json()["error"]), (404, "not_found"))
        r = self.call(g, "GET", "/v1/outbox/abc")
        self.assertEqual(r.status, 400)
        self.assertEqual(self.call(g, "GET", "/v1/outbox/%d" % oid, auth=False).status, 401)
        self.assertEqual(g.request("GET", "/v1/outbox/%d" % oid).status, 404)  # not on the main listener

    def test_lookup_finds_the_notify_of_a_platform_message(self):
        g = self.start(handlers={"lookup.lua": LOOKUP_HANDLER}, registry=REGISTRY_V2)
        r = self.notify(g, {"project_id": "alpha", "text": "cpu hot", "priority": "HIGH",
                            "meta": {"delivery_priority": "HIGH", "rule": "cpu>90"}, "wait": True})
        tmid = r["sent"]["telegram"]["444"]["message_id"]
        fmid = r["sent"]["feishu"]["oc_alpha2"]["message_id"]
        self.assertTrue(tmid and fmid, r)

        def lookup(channel, chat, mid):
            q = "/lookup?channel=%s&chat_id=%s&message_id=%s" % (channel, chat, mid)
            resp = g.request("GET", q)
            self.assertEqual(resp.status, 200, resp.text)
            return resp.json()

        t = lookup("telegram", "444", tmid)
        self.assertEqual(t["project_id"], "alpha")
        self.assertEqual(t["meta"], {"delivery_priority": "HIGH", "rule": "cpu>90"})
        self.assertEqual(t["text"], "cpu hot")
        self.assertEqual(t["outbox_id"], r["sent"]["telegram"]["444"]["outbox_id"])
        f = lookup("feishu", "oc_alpha2", fmid)
        self.assertEqual((f["project_id"], f["text"]), ("alpha", "cpu hot"))
        # a notify with a JSON null project_id has none
        r2 = self.notify(g, {"target": "telegram", "chat_id": 446, "text": "no project", "project_id": None,
                             "wait": True})
        n = lookup("telegram", "446", r2["sent"]["telegram"]["446"]["message_id"])
        self.assertEqual(n["text"], "no project")
        self.assertNotIn("project_id", n)
        self.assertEqual(lookup("telegram", "444", "987654"), {"none": True})
        self.assertEqual(lookup("telegram", "445", tmid), {"none": True})
        self.assertEqual(lookup("feishu", "444", tmid), {"none": True})

    def test_a_run_time_minimum_wins_over_the_registry_override(self):
        g = self.start(handlers={"lookup.lua": LOOKUP_HANDLER}, registry=REGISTRY_V1)

        def setmin(chat, level=None):
            q = "/min?channel=telegram&chat_id=%s" % chat + ("&level=%s" % level if level else "")
            resp = g.request("POST", q)
            self.assertEqual(resp.status, 200, resp.text)
            return resp.json()["level"]

        self.assertEqual(setmin("111", "critical"), "CRITICAL")
        self.assertEqual(setmin("222", "low"), "LOW")  # below the registry's CRITICAL: it still wins
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "run time", "priority": "HIGH"})
        t111, t222 = r["sent"]["telegram"]["111"], r["sent"]["telegram"]["222"]
        self.assertEqual((t111["sent"], t111["target_override_min_priority"], t111["skip_reason"]),
                         (False, "CRITICAL", "below_min_priority"))
        self.assertEqual((t222["sent"], t222["target_override_min_priority"]), (True, "LOW"))
        self.assertEqual(self.wait_texts(222, 1), ["run time"])
        self.assertEqual(setmin("111"), "none")  # cleared: the registry's (none) applies again
        r = self.notify(g, {"project_id": "alpha", "target": "telegram", "text": "cleared", "priority": "HIGH"})
        self.assertTrue(r["sent"]["telegram"]["111"]["sent"])
        self.assertEqual(self.wait_texts(111, 1), ["cleared"])

    # ---- the listener, secrets ----

    def test_the_notify_listener_exists_with_no_config_file(self):
        port = refused_port()
        g = NoConfigGateway({}, env={"INTEGRATIONS_PORT": str(port), "TELEGRAM_API_BASE": self.tg.url,
                                     "TELEGRAM_BOT_TOKEN": TG_TOKEN})
        self._gws.append(g)
        g.start()
        self.assertFalse(os.path.exists(os.path.join(g.dir, "config", "chatgw.yml")))
        self.assertEqual(g.port("notify"), port)
        self.assertEqual(self.call(g, "POST", "/v1/notify/text", {}, auth=False).status, 401)
        self.assert_error(g, {"target": "telegram", "chat_id": 160}, "missing_text")
        r = self.notify(g, {"target": "telegram", "chat_id": 160, "text": "no config", "wait": True})
        self.assertEqual(r["sent"]["telegram"]["160"]["status"], "delivered", r)
        p = self.call(g, "GET", "/v1/notify/projects").json()
        self.assertEqual((p["hash"], p["path"]), ("none", "./config/projects.yml"))

    def test_secrets_are_never_in_responses_or_the_log(self):
        up = Upstream()
        up.route("GET /c.png", lambda r: r.reply(200, png(), {"Content-Type": "image/png"}))
        up.start()
        self.addCleanup(up.stop)
        g = self.start(registry=REGISTRY_V1, images={"a.png": png()},
                       extra="log:\n  level: debug\n")
        self.tg.chat(171, missing=True)
        self.notify(g, {"project_id": "alpha", "text": "s1", "priority": "CRITICAL", "wait": True})
        self.notify(g, {"chat_ids": {"telegram": [171], "feishu": ["oc_s"]}, "text": "s2", "wait": True})
        self.notify(g, {"chat_ids": {"telegram": [170], "feishu": ["oc_s"]}, "caption": "s3",
                        "image_path": os.path.join(self.images_dir(g), "a.png"), "wait": True}, path="/v1/notify/image")
        self.notify(g, {"target": "telegram", "chat_id": 170, "image_url": up.url("/c.png"), "wait": True},
                    path="/v1/notify/image")
        self.call(g, "POST", "/v1/notify/text", "{")
        self.call(g, "GET", "/v1/notify/projects")
        self.call(g, "POST", "/v1/notify/text", {"text": "x"}, auth=False)
        g.reload()
        self.write_registry(g, REGISTRY_BROKEN)
        time.sleep(1.2)
        self.call(g, "GET", "/v1/notify/projects")
        self.wait(lambda: self.warns(g, "reload failed"), 5, "the failed reload's WARN")
        log = g.stderr_text()
        for s in SECRETS:
            self.assertNotIn(s, log, "a secret in the log")


if __name__ == "__main__":
    unittest.main()
