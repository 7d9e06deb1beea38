"""Self-test of fake_feishu.FakeFeishu, spoken to with plain urllib (no chatgw): the fake must
answer like the Feishu open platform, or the Feishu adapter's tests prove nothing. The event
encryption is checked against `openssl enc -d -aes-256-cbc`."""
import base64
import hashlib
import json
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

import fake_feishu
from fake_feishu import FakeFeishu
from upstream import Upstream

APP, SECRET = "cli_a", "sec_a"
APPS = {APP: {"secret": SECRET, "bot": {"open_id": "ou_bot", "app_name": "TestBot"}},
        "cli_b": {"secret": "sec_b", "bot": {"open_id": "ou_bot_b", "app_name": "Other"}}}
EKEY = "test-encrypt-key"
VTOKEN = "vtok-123"


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                % (boundary, k, v)).encode()
    for k, (filename, ctype, data) in files.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                "Content-Type: %s\r\n\r\n" % (boundary, k, filename, ctype)).encode()
        out += data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


def openssl(args, data):
    return subprocess.run(["openssl", "enc"] + args, input=data, capture_output=True,
                          check=True, timeout=10).stdout


class FakeFeishuTest(unittest.TestCase):
    def setUp(self):
        self.fs = self.make()
        self._tokens = {}

    def make(self, **kw):
        fs = FakeFeishu(apps=APPS, **kw).start()
        fs.IN_FLIGHT_S = 0  # these requests follow the 429 in one thread: none was in flight
        self.addCleanup(fs.stop)
        return fs

    def test_a_request_in_flight_at_a_freeze_is_not_a_violation(self):
        self.fs.IN_FLIGHT_S = 0.25
        self.fs.script("/open-apis/im/v1/messages", reset=2, method="POST")
        self.assertEqual(self.send("oc_g", "a")[0], 429)
        self.assertEqual(self.send("oc_g", "b")[0], 429, "frozen")
        self.assertEqual(self.fs.violations, [], "within IN_FLIGHT_S of the 429")
        time.sleep(0.3)
        self.assertEqual(self.send("oc_g", "c")[0], 429)
        self.assertEqual(len(self.fs.violations), 1)

    def tearDown(self):
        self.assertEqual(self.fs.errors, [])

    # ---- client ----
    def raw(self, method, path, body=None, token=None, query=None, ctype=None, headers=None,
            fs=None, timeout=10):
        """(status, decoded JSON or bytes, headers (lower-case)) of one request."""
        fs = fs or self.fs
        url = fs.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        hs = dict(headers or {})
        data = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            else:
                data = json.dumps(body).encode()
                hs.setdefault("Content-Type", "application/json; charset=utf-8")
        if ctype:
            hs["Content-Type"] = ctype
        if token:
            hs["Authorization"] = "Bearer " + token
        req = urllib.request.Request(url, data=data, headers=hs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, out, rh = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, out, rh = e.code, e.read(), e.headers
        rh = {k.lower(): v for k, v in rh.items()}
        if rh.get("content-type", "").startswith("application/json"):
            out = json.loads(out)
        return status, out, rh

    def token(self, app_id=APP, fs=None):
        fs = fs or self.fs
        key = (id(fs), app_id)
        if key not in self._tokens:
            secret = APPS[app_id]["secret"]
            st, body, _ = self.raw("POST", fake_feishu.TOKEN_PATH,
                                   {"app_id": app_id, "app_secret": secret}, fs=fs)
            self.assertEqual((st, body["code"]), (200, 0), body)
            self._tokens[key] = body["tenant_access_token"]
        return self._tokens[key]

    def api(self, method, path, body=None, app_id=APP, fs=None, **kw):
        return self.raw(method, path, body, token=self.token(app_id, fs), fs=fs, **kw)

    def ok(self, method, path, body=None, **kw):
        st, out, _ = self.api(method, path, body, **kw)
        self.assertEqual((st, out.get("code"), out.get("msg")), (200, 0, "success"), out)
        return out["data"]

    def fails(self, method, path, body, status, code, **kw):
        st, out, hs = self.api(method, path, body, **kw)
        self.assertEqual((st, out.get("code")), (status, code), out)
        self.assertIn("log_id", out["error"])
        return out, hs

    def send(self, receive_id, text="hi", rtype="chat_id", msg_type="text", content=None,
             uuid_=None, **kw):
        body = {"receive_id": receive_id, "msg_type": msg_type,
                "content": json.dumps({"text": text} if content is None else content)}
        if uuid_:
            body["uuid"] = uuid_
        return self.api("POST", "/open-apis/im/v1/messages", body,
                        query={"receive_id_type": rtype}, **kw)

    def sent(self, *a, **kw):
        st, out, _ = self.send(*a, **kw)
        self.assertEqual((st, out["code"]), (200, 0), out)
        return out["data"]

    # ---- tokens ----
    def test_token_issue_and_refusals(self):
        st, body, hs = self.raw("POST", fake_feishu.TOKEN_PATH,
                                {"app_id": APP, "app_secret": SECRET})
        self.assertEqual(st, 200)
        self.assertEqual(hs["content-type"], "application/json; charset=utf-8")
        self.assertEqual(set(body), {"code", "msg", "tenant_access_token", "expire"})
        self.assertEqual((body["code"], body["msg"], body["expire"]), (0, "ok", 7200))
        t1 = body["tenant_access_token"]
        self.assertRegex(t1, r"^t-[0-9a-f]{40}$")
        t2 = self.raw("POST", fake_feishu.TOKEN_PATH, {"app_id": APP, "app_secret": SECRET})[1][
            "tenant_access_token"]
        self.assertNotEqual(t1, t2)   # a new one per request, the old one still works
        for t in (t1, t2):
            st, out, _ = self.raw("GET", "/open-apis/bot/v3/info", token=t)
            self.assertEqual((st, out["code"]), (200, 0))
        st, body, _ = self.raw("POST", fake_feishu.TOKEN_PATH, {"app_id": APP, "app_secret": "x"})
        self.assertEqual((st, body), (200, {"code": 10014, "msg": "app secret invalid"}))
        st, body, _ = self.raw("POST", fake_feishu.TOKEN_PATH, {"app_id": "cli_zz",
                                                                "app_secret": "x"})
        self.assertEqual((st, body), (200, {"code": 10003, "data": {}, "msg": "invalid param"}))
        self.fs.token_error_status = 400
        st, body, _ = self.raw("POST", fake_feishu.TOKEN_PATH, {"app_id": APP, "app_secret": "x"})
        self.assertEqual((st, body["code"]), (400, 10014))
        self.assertEqual([(r["app_id"], r["code"]) for r in self.fs.token_requests],
                         [(APP, 0), (APP, 0), (APP, 10014), ("cli_zz", 10003), (APP, 10014)])
        self.assertEqual([r["token"] for r in self.fs.token_requests],
                         [t1, t2, None, None, None])
        self.assertFalse([c for c in self.fs.calls() if "tenant_access_token" in c["path"]])
        # the platform's rule on request: the same token while >= 30 min remain
        self.fs.reuse_tokens = True
        t3 = self.raw("POST", fake_feishu.TOKEN_PATH, {"app_id": APP, "app_secret": SECRET})[1]
        self.assertIn(t3["tenant_access_token"], (t1, t2))
        self.assertGreater(t3["expire"], 7100)

    def test_missing_invalid_and_expired_tokens(self):
        st, out, _ = self.raw("GET", "/open-apis/bot/v3/info")
        self.assertEqual((st, out["code"]), (400, 99991661))
        self.assertTrue(out["msg"].startswith("Missing access token for authorization."))
        self.assertIn("log_id", out["error"])
        st, out, _ = self.raw("GET", "/open-apis/bot/v3/info",
                              headers={"Authorization": self.token()})   # no "Bearer "
        self.assertEqual((st, out["code"]), (400, 99991661))
        st, out, _ = self.raw("GET", "/open-apis/bot/v3/info", token="t-nope")
        self.assertEqual((st, out["code"]), (400, 99991663))
        self.assertTrue(out["msg"].startswith("Invalid access token for authorization."))
        st, out, _ = self.api("GET", "/open-apis/bot/v3/info")
        self.assertEqual((st, out), (200, {"code": 0, "msg": "ok", "bot": {
            "activate_status": 2, "app_name": "TestBot", "avatar_url": "", "ip_white_list": [],
            "open_id": "ou_bot"}}))
        other = self.token("cli_b")
        self.fs.expire_tokens(APP)
        st, out, _ = self.api("GET", "/open-apis/bot/v3/info")
        self.assertEqual((st, out["code"]), (400, 99991663))
        st, out, _ = self.raw("GET", "/open-apis/bot/v3/info", token=other)
        self.assertEqual((st, out["bot"]["open_id"]), (200, "ou_bot_b"))
        self._tokens.clear()   # a new token works
        self.assertEqual(self.api("GET", "/open-apis/bot/v3/info")[0], 200)
        self.assertEqual([c["code"] for c in self.fs.calls("/bot/v3/info")],
                         [99991661, 99991661, 99991663, 0, 99991663, 0, 0])
        self.assertEqual(self.fs.calls("/bot/v3/info")[3]["app_id"], APP)

    def test_token_ttl(self):
        fs = self.make(token_ttl=1)
        tok = self.token(fs=fs)
        self.assertEqual(self.raw("GET", "/open-apis/bot/v3/info", token=tok, fs=fs)[0], 200)
        time.sleep(1.05)
        st, out, _ = self.raw("GET", "/open-apis/bot/v3/info", token=tok, fs=fs)
        self.assertEqual((st, out["code"]), (400, 99991663))

    # ---- sending ----
    def test_send_with_each_receive_id_type(self):
        d = self.sent("oc_group1", "hello")
        self.assertRegex(d["message_id"], r"^om_[0-9a-f]{32}$")
        self.assertEqual((d["chat_id"], d["msg_type"], d["deleted"], d["updated"]),
                         ("oc_group1", "text", False, False))
        self.assertEqual(d["sender"]["id"], APP)
        self.assertEqual((d["sender"]["id_type"], d["sender"]["sender_type"]), ("app_id", "app"))
        self.assertEqual(json.loads(d["body"]["content"]), {"text": "hello"})
        self.assertRegex(d["create_time"], r"^\d{13}$")
        for rtype, rid in (("open_id", "ou_u1"), ("union_id", "on_u1"),
                           ("email", "a@example.com"), ("user_id", "5d9bdxyz")):
            d = self.sent(rid, "to " + rtype, rtype=rtype)
            self.assertEqual(d["chat_id"], "oc_dm_" + rid)
            m = self.fs.messages("oc_dm_" + rid)[0]
            self.assertEqual((m["receive_id"], m["receive_id_type"], m["text"]),
                             (rid, rtype, "to " + rtype))
        for rtype, rid in (("chat_id", "ou_u1"), ("open_id", "oc_group1"), ("union_id", "ou_x"),
                           ("email", "nobody"), ("user_id", "ou_u1")):
            st, out, _ = self.send(rid, rtype=rtype)
            self.assertEqual((st, out["code"]), (400, 230001), (rtype, rid))
            self.assertIn("invalid receive_id", out["msg"])
        st, out, _ = self.send("oc_group1", rtype="chat")
        self.assertEqual((st, out["code"]), (400, 99992402))
        st, out, _ = self.api("POST", "/open-apis/im/v1/messages",
                              {"receive_id": "oc_group1", "msg_type": "text",
                               "content": json.dumps({"text": "q"})})   # no receive_id_type
        self.assertEqual((st, out["code"]), (400, 99992402))
        self.assertEqual(len(self.fs.messages()), 5)
        m = self.fs.messages("oc_group1")[0]
        self.assertEqual({k: m[k] for k in ("chat_id", "msg_type", "content", "text", "uuid",
                                            "reply_to", "edits", "deleted", "card_id")},
                         {"chat_id": "oc_group1", "msg_type": "text", "content": {"text": "hello"},
                          "text": "hello", "uuid": None, "reply_to": None, "edits": 0,
                          "deleted": False, "card_id": None})
        c = self.fs.calls("/im/v1/messages", method="POST")[0]
        self.assertEqual((c["query"], c["json"]["receive_id"], c["token"], c["status"], c["code"]),
                         ({"receive_id_type": "chat_id"}, "oc_group1", self.token(), 200, 0))
        self.assertEqual(c["headers"]["authorization"], "Bearer " + self.token())

    def test_content_validation_and_gone_chat(self):
        base = {"receive_id": "oc_g", "msg_type": "text"}
        q = {"receive_id_type": "chat_id"}
        for content in ({"text": "x"}, "not json", "[1]", json.dumps({"nope": 1})):
            st, out, _ = self.api("POST", "/open-apis/im/v1/messages",
                                  dict(base, content=content), query=q)
            self.assertEqual((st, out["code"]), (400, 230001), content)
        st, out, _ = self.send("oc_g", msg_type="bogus", content={"text": "x"})
        self.assertEqual((st, out["code"]), (400, 230001))
        st, out, _ = self.api("POST", "/open-apis/im/v1/messages", b"{not json", query=q,
                              ctype="application/json")
        self.assertEqual((st, out["code"]), (400, 230001))
        self.assertEqual(self.send("oc_g", "x" * 140000)[0], 200)      # text: 150 KB
        st, out, _ = self.send("oc_g", "x" * 160000)
        self.assertEqual((st, out["code"], out["msg"]),
                         (400, 230025, "The length of the message content reaches its limit."))
        post = {"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "y" * 31000}]]}}
        st, out, _ = self.send("oc_g", msg_type="post", content=post)
        self.assertEqual((st, out["code"]), (400, 230025))              # post: 30 KB
        post = {"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "a "},
                                                     {"tag": "at", "user_id": "ou_x",
                                                      "user_name": "Ann"}],
                                                    [{"tag": "a", "text": "link", "href": "h"}]]}}
        d = self.sent("oc_g", msg_type="post", content=post)
        self.assertEqual(self.fs.message(d["message_id"])["text"], "T\na @Ann\nlink")
        self.fs.gone("oc_left")
        st, out, _ = self.send("oc_left")
        self.assertEqual((st, out["code"], out["msg"]),
                         (400, 230002, "Bot/User can NOT be out of the chat."))
        self.fs.gone("oc_left", False)
        self.assertEqual(self.send("oc_left")[0], 200)
        self.assertEqual(len(self.fs.messages()), 3)

    def test_uuid_dedupe(self):
        a = self.sent("oc_g", "once", uuid_="u-1")
        b = self.sent("oc_g", "once again", uuid_="u-1")
        self.assertEqual(a["message_id"], b["message_id"])
        self.assertEqual([m["text"] for m in self.fs.messages("oc_g")], ["once"])
        c = self.sent("oc_g", "other", uuid_="u-2")
        self.assertNotEqual(c["message_id"], a["message_id"])
        d = self.sent("oc_g", "other app", uuid_="u-1", app_id="cli_b")   # per app
        self.assertNotEqual(d["message_id"], a["message_id"])
        self.assertEqual(self.fs.messages("oc_g")[0]["uuid"], "u-1")
        st, out, _ = self.send("oc_g", uuid_="u" * 51)
        self.assertEqual((st, out["code"]), (400, 230001))
        # after=True: the send takes effect, the client sees a failure; its retry dedupes
        self.fs.script("/im/v1/messages", code=1500, status=500, msg="internal error", after=True)
        st, out, _ = self.send("oc_h", "lost answer", uuid_="u-3")
        self.assertEqual(st, 500)
        self.assertEqual(len(self.fs.messages("oc_h")), 1)
        again = self.sent("oc_h", "lost answer", uuid_="u-3")
        self.assertEqual(again["message_id"], self.fs.messages("oc_h")[0]["message_id"])
        self.assertEqual(len(self.fs.messages("oc_h")), 1)

    def test_reply(self):
        ev = self.fs.message_event(APP, "oc_g", "question", VTOKEN)
        parent = ev["event"]["message"]["message_id"]
        d = self.ok("POST", "/open-apis/im/v1/messages/%s/reply" % parent,
                    {"msg_type": "text", "content": json.dumps({"text": "answer"}),
                     "uuid": "r-1"})
        self.assertEqual((d["chat_id"], d["parent_id"], d["root_id"]), ("oc_g", parent, parent))
        self.assertNotIn("thread_id", d)
        m = self.fs.message(d["message_id"])
        self.assertEqual((m["reply_to"], m["chat_id"], m["text"], m["uuid"]),
                         (parent, "oc_g", "answer", "r-1"))
        d2 = self.ok("POST", "/open-apis/im/v1/messages/%s/reply" % d["message_id"],
                     {"msg_type": "text", "content": json.dumps({"text": "more"}),
                      "reply_in_thread": True})
        self.assertEqual((d2["parent_id"], d2["root_id"]), (d["message_id"], parent))
        self.assertRegex(d2["thread_id"], r"^omt_")
        mid = self.fs.user_message("oc_other")
        self.assertEqual(self.ok("POST", "/open-apis/im/v1/messages/%s/reply" % mid,
                                 {"msg_type": "text", "content": json.dumps({"text": "x"})})[
            "chat_id"], "oc_other")
        out, _ = self.fails("POST", "/open-apis/im/v1/messages/om_unknown/reply",
                            {"msg_type": "text", "content": json.dumps({"text": "x"})},
                            400, 230001)
        self.assertIn("invalid message_id", out["msg"])
        self.ok("DELETE", "/open-apis/im/v1/messages/" + d["message_id"])
        out, _ = self.fails("POST", "/open-apis/im/v1/messages/%s/reply" % d["message_id"],
                            {"msg_type": "text", "content": json.dumps({"text": "x"})},
                            400, 230011)
        self.assertEqual(out["msg"], "The message is recalled.")
        self.assertEqual([m["text"] for m in self.fs.messages("oc_g")], ["answer", "more"])

    def test_edit_up_to_20_times(self):
        mid = self.sent("oc_g", "v0")["message_id"]
        path = "/open-apis/im/v1/messages/" + mid
        for i in range(1, 21):
            d = self.ok("PUT", path, {"msg_type": "text",
                                      "content": json.dumps({"text": "v%d" % i})})
            self.assertEqual((d["message_id"], d["updated"]), (mid, True))
        out, _ = self.fails("PUT", path, {"msg_type": "text",
                                          "content": json.dumps({"text": "v21"})}, 400, 230072)
        self.assertEqual(out["msg"],
                         "The message has reached the number of times it can be edited.")
        m = self.fs.message(mid)
        self.assertEqual((m["edits"], m["text"], len(m["versions"])), (20, "v20", 21))
        # a post edit, a wrong type, someone else's message, an unknown one
        mid2 = self.sent("oc_g", "p")["message_id"]
        self.ok("PUT", "/open-apis/im/v1/messages/" + mid2,
                {"msg_type": "post", "content": json.dumps(
                    {"zh_cn": {"title": "", "content": [[{"tag": "text", "text": "rich"}]]}})})
        self.assertEqual(self.fs.message(mid2)["text"], "rich")
        self.fails("PUT", "/open-apis/im/v1/messages/" + mid2,
                   {"msg_type": "image", "content": json.dumps({"image_key": "k"})}, 400, 230001)
        user = self.fs.user_message("oc_g")
        self.fails("PUT", "/open-apis/im/v1/messages/" + user,
                   {"msg_type": "text", "content": json.dumps({"text": "x"})}, 400, 230071)
        self.fails("PUT", "/open-apis/im/v1/messages/" + mid2,
                   {"msg_type": "text", "content": json.dumps({"text": "x"})}, 400, 230071,
                   app_id="cli_b")
        self.fails("PUT", "/open-apis/im/v1/messages/om_nope",
                   {"msg_type": "text", "content": json.dumps({"text": "x"})}, 400, 230001)

    def test_patch_card_and_delete(self):
        card = {"config": {"update_multi": True},
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "**one**"}},
                             {"tag": "action", "actions": [{"tag": "button", "text": {
                                 "tag": "plain_text", "content": "OK"}, "value": {"a": 1}}]}]}
        mid = self.sent("oc_g", msg_type="interactive", content=card)["message_id"]
        self.assertEqual(self.fs.message(mid)["text"], "**one**")
        card2 = {"schema": "2.0", "body": {"elements": [
            {"tag": "markdown", "content": "two"},
            {"tag": "column_set", "columns": [{"tag": "column", "elements": [
                {"tag": "markdown", "content": "three"}]}]}]}}
        self.assertEqual(self.ok("PATCH", "/open-apis/im/v1/messages/" + mid,
                                 {"content": json.dumps(card2)}), {})
        m = self.fs.message(mid)
        self.assertEqual((m["text"], m["edits"], m["content"]), ("two\nthree", 1, card2))
        text_mid = self.sent("oc_g", "plain")["message_id"]
        self.fails("PATCH", "/open-apis/im/v1/messages/" + text_mid,
                   {"content": json.dumps(card2)}, 400, 230054)
        self.fails("PATCH", "/open-apis/im/v1/messages/" + mid, {"content": "{bad"}, 400, 230001)
        self.fails("PATCH", "/open-apis/im/v1/messages/" + mid,
                   {"content": json.dumps({"elements": [{"tag": "markdown",
                                                         "content": "z" * 31000}]})},
                   400, 230025)
        self.assertEqual(self.ok("DELETE", "/open-apis/im/v1/messages/" + mid), {})
        self.assertTrue(self.fs.message(mid)["deleted"])
        self.fails("DELETE", "/open-apis/im/v1/messages/" + mid, None, 400, 230011)
        self.fails("DELETE", "/open-apis/im/v1/messages/om_nope", None, 400, 230001)
        self.assertEqual([m["message_id"] for m in self.fs.wait_messages("oc_g", 1, timeout=1)],
                         [text_mid])
        self.assertEqual(len(self.fs.messages("oc_g")), 2)
        with self.assertRaises(AssertionError) as cm:
            self.fs.wait_messages("oc_g", 2, timeout=0.1)
        self.assertIn("plain", str(cm.exception))

    # ---- images and resources ----
    def test_image_upload_and_resource_download(self):
        png = b"\x89PNG\r\n\x1a\nfake image bytes"
        body, ctype = multipart({"image_type": "message"}, {"image": ("a.png", "image/png", png)})
        d = self.ok("POST", "/open-apis/im/v1/images", body, ctype=ctype)
        key = d["image_key"]
        self.assertRegex(key, r"^img_v3_[0-9a-f]+$")
        self.assertEqual((self.fs.images[key], self.fs.uploads), (png, 1))
        c = self.fs.calls("/im/v1/images")[0]
        self.assertEqual(c["form"], {"image_type": "message", "image": png})
        self.assertIsNone(c["json"])
        st, data, hs = self.api("GET", "/open-apis/im/v1/images/" + key)
        self.assertEqual((st, data), (200, png))
        self.sent("oc_g", msg_type="image", content={"image_key": key})
        body, ctype = multipart({"image_type": "message"}, {"image": ("a.png", "image/png", b"")})
        out, _ = self.fails("POST", "/open-apis/im/v1/images", body, 400, 234010, ctype=ctype)
        self.assertEqual(out["msg"], "File's size can't be 0.")
        body, ctype = multipart({"image_type": "nope"}, {"image": ("a.png", "image/png", png)})
        self.fails("POST", "/open-apis/im/v1/images", body, 400, 234001, ctype=ctype)
        body, ctype = multipart({"image_type": "message"}, {})
        self.fails("POST", "/open-apis/im/v1/images", body, 400, 234001, ctype=ctype)
        self.assertEqual(self.fs.uploads, 1)
        # a user's file, served by the resources endpoint
        ev = self.fs.image_event(APP, "oc_g", "img_user_1", VTOKEN)
        mid = ev["event"]["message"]["message_id"]
        self.fs.resources[(mid, "img_user_1")] = b"\x00\x01user image"
        path = "/open-apis/im/v1/messages/%s/resources/img_user_1" % mid
        st, data, hs = self.api("GET", path, query={"type": "image"})
        self.assertEqual((st, data, hs["content-type"]),
                         (200, b"\x00\x01user image", "application/octet-stream"))
        out, _ = self.fails("GET", "/open-apis/im/v1/messages/%s/resources/other" % mid, None,
                            400, 234003, query={"type": "image"})
        self.assertEqual(out["msg"], "File not in msg.")
        self.fails("GET", path, None, 400, 234001)    # no type

    # ---- CardKit ----
    def card(self, streaming=True, eid="md_1", text="…", app_id=APP):
        cj = {"schema": "2.0", "config": {"streaming_mode": streaming, "update_multi": True},
              "body": {"elements": [{"tag": "markdown", "content": text, "element_id": eid},
                                    {"tag": "hr", "element_id": "hr_1"}]}}
        return self.ok("POST", "/open-apis/cardkit/v1/cards",
                       {"type": "card_json", "data": json.dumps(cj)}, app_id=app_id)["card_id"]

    def content(self, card_id, text, seq, eid="md_1", uuid_=None, app_id=APP):
        body = {"content": text, "sequence": seq}
        if uuid_:
            body["uuid"] = uuid_
        return self.api("PUT", "/open-apis/cardkit/v1/cards/%s/elements/%s/content"
                        % (card_id, eid), body, app_id=app_id)

    def test_cardkit_stream(self):
        cid = self.card()
        self.assertRegex(cid, r"^\d{19}$")
        rec = self.fs.cards[cid]
        self.assertEqual((rec["streaming_mode"], rec["elements"], rec["settings_calls"]),
                         (True, {"md_1": "…", "hr_1": ""}, 0))
        d = self.sent("oc_g", msg_type="interactive",
                      content={"type": "card", "data": {"card_id": cid}})
        m = self.fs.message(d["message_id"])
        self.assertEqual((m["card_id"], m["text"]), (cid, "…"))
        for seq, text in ((1, "Hel"), (2, "Hello"), (3, "Hello, wor")):
            st, out, _ = self.content(cid, text, seq, uuid_="%s-%d" % (cid, seq))
            self.assertEqual((st, out), (200, {"code": 0, "msg": "success", "data": {}}))
        self.assertEqual(self.fs.message(d["message_id"])["text"], "Hello, wor")   # read now
        # a uuid retry of the last op: success, no effect
        self.assertEqual(self.content(cid, "Hello, wor", 3, uuid_="%s-3" % cid)[0], 200)
        self.assertEqual(rec["replays"], 1)
        st, out, _ = self.content(cid, "other", 9, uuid_="%s-3" % cid)
        self.assertEqual((st, out["code"]), (400, 200770))
        # a sequence that does not grow: 300317 and a violation
        st, out, _ = self.content(cid, "Hello, world", 2)
        self.assertEqual((st, out["code"]), (400, 300317))
        self.assertIn("did not increment", out["msg"])
        self.assertEqual([(v["kind"], v["card_id"], v["sequence"], v["previous"])
                          for v in self.fs.violations], [("sequence", cid, 2, 3)])
        self.assertEqual(self.content(cid, "Hello, world", 4)[0], 200)
        st, out, _ = self.api("PATCH", "/open-apis/cardkit/v1/cards/%s/settings" % cid,
                              {"settings": json.dumps({"config": {"streaming_mode": False}}),
                               "sequence": 5, "uuid": cid + "-close"})
        self.assertEqual((st, out["code"]), (200, 0))
        self.assertEqual((rec["streaming_mode"], rec["settings_calls"]), (False, 1))
        self.assertEqual(rec["sequences"], [1, 2, 3, 9, 2, 4, 5])
        self.assertEqual([(k, s) for _, k, s in rec["ops"]],
                         [("content", 1), ("content", 2), ("content", 3), ("content", 4),
                          ("settings", 5)])
        self.assertEqual(rec["elements"]["md_1"], "Hello, world")
        # after streaming: a full update (allowed by default), strict mode refuses (300309)
        self.assertEqual(self.content(cid, "Hello, world!", 6)[0], 200)
        self.fs.strict_streaming = True
        st, out, _ = self.content(cid, "Hello, world!!", 7)
        self.assertEqual((st, out["code"], out["msg"]), (400, 300309, "Card streaming closed"))
        self.fs.strict_streaming = False
        # element and card errors
        self.assertEqual(self.content(cid, "x", 8, eid="nope")[1]["code"], 300313)
        self.assertEqual(self.content(cid, "x", 8, eid="hr_1")[1]["code"], 300310)
        self.assertEqual(self.content("7000000000000000000", "x", 8)[1]["code"], 200740)
        self.assertEqual(self.content(cid, "x", 8, app_id="cli_b")[1]["code"], 300311)
        self.assertEqual(self.content(cid, "", 8)[1]["code"], 10002)
        self.assertEqual(self.content(cid, "x", 0)[1]["code"], 10002)
        self.assertEqual(self.content(cid, "x", "8")[1]["code"], 10002)
        # a full card update
        cj = {"schema": "2.0", "config": {"streaming_mode": False},
              "body": {"elements": [{"tag": "markdown", "content": "final", "element_id": "md_1"}]}}
        st, out, _ = self.api("PUT", "/open-apis/cardkit/v1/cards/" + cid,
                              {"card": {"type": "card_json", "data": json.dumps(cj)},
                               "sequence": 8})
        self.assertEqual((st, out["code"]), (200, 0))
        self.assertEqual((rec["updates"], self.fs.message(d["message_id"])["text"]), (1, "final"))
        # creation errors; a card message with an unknown card
        for data, code in (("{bad", 200220), (json.dumps({"body": {"elements": [
                {"tag": "markdown", "content": "a", "element_id": "x"},
                {"tag": "markdown", "content": "b", "element_id": "x"}]}}), 300301),
                (json.dumps({"body": {"elements": [{"tag": "markdown",
                                                    "content": "z" * 31000}]}}), 200860)):
            st, out, _ = self.api("POST", "/open-apis/cardkit/v1/cards",
                                  {"type": "card_json", "data": data})
            self.assertEqual((st, out["code"]), (400, code))
        st, out, _ = self.send("oc_g", msg_type="interactive",
                               content={"type": "card", "data": {"card_id": "7000000000000000000"}})
        self.assertEqual((st, out["code"]), (400, 230099))
        self.assertEqual(len(self.fs.violations), 1)

    def test_cardkit_ten_ops_per_second(self):
        cid = self.card()
        t0 = time.monotonic()
        for seq in range(1, 11):
            self.assertEqual(self.content(cid, "x" * seq, seq)[0], 200)
        st, out, hs = self.content(cid, "x" * 11, 11)
        self.assertLess(time.monotonic() - t0, 1.0, "too slow to test the window")
        self.assertEqual((st, out["code"]), (429, 99991400))
        self.assertEqual(hs["x-ogw-ratelimit-reset"], "1")
        self.assertEqual([(v["kind"], v["card_id"], v["ops"]) for v in self.fs.violations],
                         [("card_rate", cid, 11)])
        self.fs.wait_for(lambda: time.monotonic() - t0 > 1.05, timeout=2)
        self.assertEqual(self.content(cid, "x" * 11, 11)[0], 200)
        self.assertEqual(len(self.fs.cards[cid]["ops"]), 11)

    def test_delayed_card_update(self):
        ev = self.fs.card_action_event(APP, VTOKEN, "om_1", "oc_g", {"data": "yes"})
        tok = ev["event"]["token"]
        self.assertRegex(tok, r"^c-")
        self.ok("POST", "/open-apis/interactive/v1/card/update",
                {"token": tok, "card": {"elements": [{"tag": "markdown", "content": "done"}]}})
        self.assertEqual([(u["app_id"], u["token"], u["card"]["elements"][0]["content"])
                          for u in self.fs.card_updates], [(APP, tok, "done")])
        self.fails("POST", "/open-apis/interactive/v1/card/update", {"card": {}}, 400, 10002)

    # ---- scripts, freezes, limits ----
    def test_script_429_freezes_the_app(self):
        self.fs.script("/im/v1/messages", reset=1)
        st, out, hs = self.send("oc_g")
        self.assertEqual((st, out["code"], out["msg"]),
                         (429, 99991400, "request trigger frequency limit"))
        self.assertEqual(hs["x-ogw-ratelimit-reset"], "1")
        self.assertIn("x-ogw-ratelimit-limit", hs)
        self.assertIn("log_id", out["error"])
        t0 = time.monotonic()
        st, out, hs = self.send("oc_other")          # the whole app is frozen
        self.assertEqual((st, out["code"]), (429, 99991400))
        body, ctype = multipart({"image_type": "message"}, {"image": ("a.png", "image/png", b"x")})
        self.assertEqual(self.api("POST", "/open-apis/im/v1/images", body, ctype=ctype)[0], 429)
        self.assertEqual(self.api("GET", "/open-apis/bot/v3/info")[0], 200)   # not a send
        self.assertEqual([(v["kind"], v["scope"], v["path"]) for v in self.fs.violations],
                         [("frozen", "app", "/open-apis/im/v1/messages"),
                          ("frozen", "app", "/open-apis/im/v1/images")])
        self.assertGreater(self.fs.frozen(), 0.5)
        self.fs.wait_for(lambda: time.monotonic() - t0 > 1.05, timeout=2)
        self.assertEqual(self.send("oc_g")[0], 200)
        self.assertEqual(len(self.fs.violations), 2)
        self.assertEqual([m["chat_id"] for m in self.fs.messages()], ["oc_g"])

    def test_script_chat_scope_and_generic_errors(self):
        mid = self.sent("oc_g", "first")["message_id"]
        self.fs.script("/reply", reset=1, scope="chat", status=400, code=230020)
        st, out, hs = self.api("POST", "/open-apis/im/v1/messages/%s/reply" % mid,
                               {"msg_type": "text", "content": json.dumps({"text": "x"})})
        self.assertEqual((st, out["code"], out["msg"]),
                         (400, 230020, "This operation triggers the frequency limit."))
        self.assertEqual(hs["x-ogw-ratelimit-reset"], "1")
        self.assertEqual(self.send("oc_other")[0], 200)     # another chat is fine
        st, out, _ = self.api("PUT", "/open-apis/im/v1/messages/" + mid,
                              {"msg_type": "text", "content": json.dumps({"text": "e"})})
        self.assertEqual((st, out["code"]), (429, 99991400))   # an edit in the frozen chat
        self.assertEqual([(v["scope"], v["chat_id"], v["method"]) for v in self.fs.violations],
                         [("chat", "oc_g", "PUT")])
        self.assertGreater(self.fs.frozen("oc_g"), 0.3)
        self.assertEqual(self.fs.frozen("oc_other"), 0.0)
        # a generic error, `times` times, then normal again; no freeze
        self.fs.script("/cardkit/v1/cards", code=230099, status=400, msg="create card failed",
                       times=2, method="POST")
        for _ in range(2):
            st, out, _ = self.api("POST", "/open-apis/cardkit/v1/cards",
                                  {"type": "card_json", "data": json.dumps({"body": {}})})
            self.assertEqual((st, out["code"], out["msg"]), (400, 230099, "create card failed"))
        self.assertEqual(self.api("POST", "/open-apis/cardkit/v1/cards",
                                  {"type": "card_json", "data": json.dumps({"body": {}})})[0], 200)
        self.assertEqual(len(self.fs.violations), 1)
        # a hang: no answer at all
        self.fs.script("/bot/v3/info", hang=5)
        with self.assertRaises(OSError):
            self.api("GET", "/open-apis/bot/v3/info", timeout=0.3)

    def test_limits_chat_per_s(self):
        fs = self.make(limits={"chat_per_s": 5, "app_per_s": 8})
        t0 = time.monotonic()
        for i in range(5):
            self.assertEqual(self.send("oc_g", "m%d" % i, fs=fs)[0], 200)
        st, out, hs = self.send("oc_g", "m5", fs=fs)
        self.assertEqual((st, out["code"], hs["x-ogw-ratelimit-reset"]), (429, 99991400, "1"))
        self.assertEqual(fs.violations, [])               # hitting the limit is no violation
        for i in range(3):                                # other chats: the app's 8/s
            self.assertEqual(self.send("oc_h%d" % i, fs=fs)[0], 200)
        self.assertEqual(self.send("oc_h9", fs=fs)[0], 429)
        self.assertLess(time.monotonic() - t0, 1.0, "too slow to test the window")
        self.assertEqual(self.send("oc_g", "again", fs=fs)[0], 429)  # frozen: a violation
        self.assertEqual({v["scope"] for v in fs.violations}, {"app"})
        fs.wait_for(lambda: time.monotonic() - t0 > 1.1, timeout=2)
        self.assertEqual(self.send("oc_g", "later", fs=fs)[0], 200)
        self.assertEqual(len(fs.messages("oc_g")), 6)
        self.assertEqual(fs.errors, [])

    def test_delay(self):
        self.token()
        self.fs.delay = 0.3
        t0 = time.monotonic()
        self.assertEqual(self.api("GET", "/open-apis/bot/v3/info")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)
        self.fs.delay = 0.0

    def test_unknown_paths_are_errors(self):
        st, out, hs = self.api("GET", "/open-apis/im/v1/nope")
        self.assertEqual((st, out), (404, b"404 page not found"))
        self.assertTrue(hs["content-type"].startswith("text/plain"))
        st, _, _ = self.raw("GET", fake_feishu.TOKEN_PATH)          # wrong method
        self.assertEqual(st, 404)
        self.assertEqual(len(self.fs.errors), 2)
        self.assertIn("GET /open-apis/im/v1/nope", self.fs.errors[0])
        self.fs.errors.clear()

    # ---- events ----
    def test_aes_matches_fips197_and_openssl(self):
        key = bytes(range(32))
        pt = bytes.fromhex("00112233445566778899aabbccddeeff")
        ct = fake_feishu.aes256_cbc_encrypt(key, bytes(16), pt)
        self.assertEqual(ct[:16].hex(), "8ea2b7ca516745bfeafc49904b496089")
        self.assertEqual(len(ct), 32)   # PKCS#7: a whole padding block
        iv = bytes(range(16, 32))
        for data in (b"", b"a", b"x" * 15, b"y" * 16, "{\"中文\":1}".encode() * 7):
            mine = fake_feishu.aes256_cbc_encrypt(key, iv, data)
            theirs = openssl(["-aes-256-cbc", "-K", key.hex(), "-iv", iv.hex()], data)
            self.assertEqual(mine, theirs, data)

    def decrypting_gateway(self, status=200):
        """A stand-in for the gateway: decrypts with openssl, checks the signature itself."""
        seen = []

        def route(req):
            raw = req.body
            hs = req.headers
            out = {"signed": "x-lark-signature" in hs}
            if out["signed"]:
                want = hashlib.sha256((hs["x-lark-request-timestamp"]
                                       + hs["x-lark-request-nonce"] + EKEY).encode()
                                      + raw).hexdigest()
                out["sig_ok"] = want == hs["x-lark-signature"]
                out["timestamp"] = hs["x-lark-request-timestamp"]
            try:
                body = json.loads(raw)
            except ValueError:
                return req.reply(400, b"not json")
            if "encrypt" in body:
                data = base64.b64decode(body["encrypt"])
                key = hashlib.sha256(EKEY.encode()).hexdigest()
                try:
                    plain = openssl(["-d", "-aes-256-cbc", "-K", key, "-iv", data[:16].hex()],
                                    data[16:])
                except subprocess.CalledProcessError:
                    return req.reply(400, b"bad encrypt")
                body = json.loads(plain)
            out["event"] = body
            seen.append(out)
            req.reply_json(status, out)
        up = Upstream().route("POST /feishu/events", route).start()
        self.addCleanup(up.stop)
        return up.url("/feishu/events"), seen

    def test_event_encryption_and_signature(self):
        url, seen = self.decrypting_gateway()
        body = self.fs.message_event(APP, "oc_g", "@_user_1 hello 你好", VTOKEN,
                                     mentions=[self.fs.bot_mention(APP)])
        st, answer = self.fs.event(url, body, encrypt_key=EKEY)
        self.assertEqual(st, 200)
        self.assertEqual((answer["signed"], answer["sig_ok"]), (True, True))
        self.assertEqual(answer["event"], body)
        self.assertLess(abs(int(answer["timestamp"]) - time.time()), 5)
        enc = self.fs.encrypt(EKEY, b'{"a":1}', iv=bytes(16))
        self.assertEqual(base64.b64decode(enc)[:16], bytes(16))
        d = self.fs.deliveries[-1]
        self.assertEqual(set(json.loads(d["sent"])), {"encrypt"})
        self.assertEqual(d["headers"]["X-Lark-Signature"],
                         fake_feishu.signature(d["headers"]["X-Lark-Request-Timestamp"],
                                               d["headers"]["X-Lark-Request-Nonce"], EKEY,
                                               d["sent"]))
        # the url verification is encrypted but, like the platform's, not signed
        ch = self.fs.url_verification(VTOKEN, challenge="ch-1")
        self.assertEqual(ch, {"challenge": "ch-1", "token": VTOKEN, "type": "url_verification"})
        st, answer = self.fs.event(url, ch, encrypt_key=EKEY)
        self.assertEqual((st, answer["signed"], answer["event"]), (200, False, ch))
        st, answer = self.fs.event(url, ch, encrypt_key=EKEY, sign=True, timestamp=1700000000,
                                   nonce="n1")
        self.assertEqual((answer["signed"], answer["sig_ok"], answer["timestamp"]),
                         (True, True, "1700000000"))
        # verification_token is put into the body; no encrypt key: plain JSON, unsigned
        st, answer = self.fs.event(url, body, verification_token="other")
        self.assertEqual((answer["signed"], answer["event"]["header"]["token"]), (False, "other"))
        self.assertEqual(body["header"]["token"], VTOKEN)   # the caller's body is untouched
        # raw bytes, signed over exactly them
        st, answer = self.fs.event(url, None, encrypt_key=EKEY, raw=b'{"encrypt": "AAAA"}')
        self.assertEqual((st, answer), (400, "bad encrypt"))
        self.assertTrue(self.fs.deliveries[-1]["headers"]["X-Lark-Signature"])
        st, answer = self.fs.event(url, None, encrypt_key=EKEY, raw=b"{not json")
        self.assertEqual((st, answer), (400, "not json"))
        self.assertTrue(self.fs.deliveries[-1]["headers"]["X-Lark-Signature"])
        # an HTTP error is returned, as is a refused connection
        url2, _ = self.decrypting_gateway(status=401)
        self.assertEqual(self.fs.event(url2, body)[0], 401)
        st, _ = self.fs.event("http://127.0.0.1:%d/x" % self.closed_port(), body, timeout=2)
        self.assertEqual(st, 0)

    @staticmethod
    def closed_port():
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def test_event_bodies(self):
        b = self.fs.message_event(APP, "oc_g", "@_user_1 hi", VTOKEN,
                                  mentions=[self.fs.bot_mention(APP),
                                            {"open_id": "ou_ann", "name": "Ann"}])
        self.assertEqual(b["schema"], "2.0")
        h = b["header"]
        self.assertEqual((h["event_type"], h["token"], h["app_id"]),
                         ("im.message.receive_v1", VTOKEN, APP))
        self.assertRegex(h["event_id"], r"^[0-9a-f]{32}$")
        self.assertRegex(h["create_time"], r"^\d{13}$")
        self.assertEqual(h["tenant_key"], b["event"]["sender"]["tenant_key"])
        s = b["event"]["sender"]
        self.assertEqual((s["sender_id"]["open_id"], s["sender_type"]), ("ou_user1", "user"))
        self.assertEqual(set(s["sender_id"]), {"open_id", "union_id", "user_id"})
        m = b["event"]["message"]
        self.assertEqual((m["chat_id"], m["chat_type"], m["message_type"]),
                         ("oc_g", "group", "text"))
        self.assertEqual(json.loads(m["content"]), {"text": "@_user_1 hi"})
        self.assertEqual([(x["key"], x["id"]["open_id"], x["name"]) for x in m["mentions"]],
                         [("@_user_1", "ou_bot", "TestBot"), ("@_user_2", "ou_ann", "Ann")])
        self.assertEqual(m["mentions"][0]["mentioned_type"], "bot")
        self.assertNotIn("parent_id", m)
        self.assertEqual(self.fs.message(m["message_id"])["chat_id"], "oc_g")
        p2p = self.fs.message_event(APP, "oc_p2p_1", "hey", VTOKEN, parent_id="om_p",
                                    message_id="om_mine", event_id="ev1")
        pm = p2p["event"]["message"]
        self.assertEqual((pm["chat_type"], pm["parent_id"], pm["root_id"], pm["message_id"],
                          p2p["header"]["event_id"]), ("p2p", "om_p", "om_p", "om_mine", "ev1"))
        self.assertNotIn("mentions", pm)
        post = self.fs.post_event(APP, "oc_g", {"zh_cn": {"title": "T", "content": [
            [{"tag": "text", "text": "look "}, {"tag": "at", "user_id": "@_user_1",
                                                "user_name": "TestBot"}],
            [{"tag": "img", "image_key": "img_1"}]]}}, VTOKEN)
        pc = json.loads(post["event"]["message"]["content"])
        self.assertEqual(pc, {"title": "T", "content": [
            [{"tag": "text", "text": "look ", "style": []},
             {"tag": "at", "user_id": "@_user_1", "user_name": "TestBot", "style": []}],
            [{"tag": "img", "image_key": "img_1"}]]})
        self.assertEqual(post["event"]["message"]["message_type"], "post")
        img = self.fs.image_event(APP, "oc_g", "img_9", VTOKEN)
        self.assertEqual((img["event"]["message"]["message_type"],
                          json.loads(img["event"]["message"]["content"])),
                         ("image", {"image_key": "img_9"}))
        f = self.fs.file_event(APP, "oc_g", "file_1", VTOKEN, file_name="a.pdf")
        self.assertEqual(json.loads(f["event"]["message"]["content"]),
                         {"file_key": "file_1", "file_name": "a.pdf"})
        ca = self.fs.card_action_event(APP, VTOKEN, "om_card", "oc_g", {"data": "go"},
                                       event_id="ev2")
        self.assertEqual(ca["header"]["event_type"], "card.action.trigger")
        e = ca["event"]
        self.assertEqual((e["action"], e["host"], e["context"], e["operator"]["open_id"]),
                         ({"value": {"data": "go"}, "tag": "button"}, "im_message",
                          {"open_message_id": "om_card", "open_chat_id": "oc_g"}, "ou_user1"))
        self.assertEqual(set(e["operator"]), {"tenant_key", "user_id", "open_id", "union_id"})
        v1 = self.fs.v1_message_event(APP, "oc_g", "old", VTOKEN)
        self.assertEqual((v1["token"], v1["type"], v1["event"]["type"], v1["event"]["text"],
                          v1["event"]["open_chat_id"]),
                         (VTOKEN, "event_callback", "message", "old", "oc_g"))
        self.assertIsNotNone(self.fs.message(v1["event"]["open_message_id"]))

    def test_concurrent_sends(self):
        self.token()
        self.fs.delay = 0.2
        threads = [threading.Thread(target=self.send, args=("oc_g", "m%d" % i))
                   for i in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertEqual(len(self.fs.wait_messages("oc_g", 8, timeout=2)), 8)
        self.assertGreaterEqual(self.fs.max_inflight, 2)
        self.fs.delay = 0.0


if __name__ == "__main__":
    unittest.main()
