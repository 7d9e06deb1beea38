"""Self-test of fake_telegram.FakeTelegram, spoken to with plain urllib (no chatgw): the fake
must answer like the Bot API, or the Telegram adapter's tests prove nothing."""
import json
import struct
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

from fake_telegram import (E_BLOCKED, E_BUTTON_DATA, E_DRAFT_PEER, E_EMPTY, E_MIGRATED,
                           E_NOT_MODIFIED, E_POLL_CONFLICT, E_POLL_WEBHOOK, E_QUERY_ID,
                           E_TOO_LONG, FakeTelegram)
from upstream import Upstream

TOKEN = "123:ABC"


def png(width, height):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


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


class FakeTelegramTest(unittest.TestCase):
    def setUp(self):
        self.tg = FakeTelegram(tokens={TOKEN: {"id": 123, "username": "test_bot",
                                               "first_name": "Test"}}).start()
        self.addCleanup(self.tg.stop)

    # ---- client ----
    def api(self, method, params=None, token=TOKEN, transport="json", files=None, timeout=10):
        """(HTTP status, decoded body, headers) of one call."""
        params = dict(params or {})
        url = "%s/bot%s/%s" % (self.tg.url, token, method)
        enc = {k: (json.dumps(v) if isinstance(v, (dict, list)) else
                   ("true" if v is True else "false" if v is False else str(v)))
               for k, v in params.items()}
        if transport == "query":
            req = urllib.request.Request(url + "?" + urllib.parse.urlencode(enc))
        elif transport == "form":
            req = urllib.request.Request(url, data=urllib.parse.urlencode(enc).encode(),
                                         headers={"Content-Type":
                                                  "application/x-www-form-urlencoded"})
        elif transport == "multipart":
            body, ctype = multipart(enc, files or {})
            req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
        else:
            req = urllib.request.Request(url, data=json.dumps(params).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), dict(e.headers)

    def ok(self, method, params=None, **kw):
        status, body, _ = self.api(method, params, **kw)
        self.assertEqual((status, body.get("ok")), (200, True), body)
        return body["result"]

    def fails(self, method, params, status, description, **kw):
        got, body, _ = self.api(method, params, **kw)
        self.assertEqual(got, status, body)
        self.assertEqual(body, dict({"ok": False, "error_code": status,
                                     "description": description},
                                    **({"parameters": body["parameters"]}
                                       if "parameters" in body else {})))
        return body

    # ---- getMe, tokens, methods ----
    def test_get_me_and_tokens(self):
        me = self.ok("getMe", transport="query")
        self.assertEqual((me["id"], me["is_bot"], me["username"], me["first_name"]),
                         (123, True, "test_bot", "Test"))
        self.assertIn("can_join_groups", me)
        self.assertEqual(self.ok("getme")["id"], 123)    # method names are case-insensitive
        self.fails("getMe", {}, 401, "Unauthorized", token="123:WRONG")
        self.fails("getMe", {}, 401, "Unauthorized: invalid token specified", token="nocolon")
        self.fails("noSuchMethod", {}, 404, "Not Found: method not found")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(self.tg.url + "/elsewhere", timeout=5)
        self.assertEqual(cm.exception.code, 404)
        self.assertEqual([c["status"] for c in self.tg.calls("getMe")], [200, 200, 401, 401])
        self.assertEqual(self.tg.errors, [])

    # ---- getUpdates ----
    def test_offset_confirms_earlier_updates(self):
        ids = [self.tg.push_update(TOKEN, self.tg.text_update(42, "m%d" % i)) for i in range(3)]
        self.assertEqual(ids, [ids[0], ids[0] + 1, ids[0] + 2])
        got = self.ok("getUpdates", {"timeout": 0})
        self.assertEqual([u["update_id"] for u in got], ids)
        self.assertEqual(got[0]["message"]["text"], "m0")
        self.assertEqual(got[0]["message"]["chat"], {"id": 42, "first_name": "User42",
                                                     "username": "user42", "type": "private"})
        # an offset confirms (forgets) everything before it
        got = self.ok("getUpdates", {"offset": ids[1], "limit": 1})
        self.assertEqual([u["update_id"] for u in got], [ids[1]])
        self.assertEqual([u["update_id"] for u in self.tg.pending()], ids[1:])
        self.assertEqual(self.ok("getUpdates", {"offset": ids[2] + 1}), [])
        self.assertEqual(self.tg.pending(), [])
        self.assertEqual([p["offset"] for p in self.tg.polls], [None, ids[1], ids[2] + 1])
        self.assertEqual(self.tg.polls[1]["limit"], 1)

    def test_long_poll_wakes_on_push_and_times_out(self):
        t0 = time.monotonic()
        self.assertEqual(self.ok("getUpdates", {"timeout": 1}), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        threading.Timer(0.3, lambda: self.tg.push_update(
            TOKEN, self.tg.text_update(42, "/start"))).start()
        t0 = time.monotonic()
        got = self.ok("getUpdates", {"timeout": 10}, transport="form")
        took = time.monotonic() - t0
        self.assertLess(took, 2.0)
        self.assertGreaterEqual(took, 0.25)
        self.assertEqual(got[0]["message"]["entities"],
                         [{"type": "bot_command", "offset": 0, "length": 6}])
        self.assertEqual(self.tg.polls[-1]["timeout"], 10)

    def test_second_poller_ends_the_first_with_409(self):
        first = {}

        def poll():
            first["answer"] = self.api("getUpdates", {"timeout": 8})

        th = threading.Thread(target=poll)
        th.start()
        deadline = time.monotonic() + 3
        while len(self.tg.polls) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        t0 = time.monotonic()
        self.assertEqual(self.ok("getUpdates", {"timeout": 1}), [])
        th.join(5)
        status, body, _ = first["answer"]
        self.assertEqual((status, body), (409, {"ok": False, "error_code": 409,
                                                "description": E_POLL_CONFLICT}))
        self.assertLess(time.monotonic() - t0, 3)

    def test_allowed_updates_filter(self):
        self.ok("getUpdates", {"allowed_updates": ["callback_query"]})
        self.assertIsNone(self.tg.push_update(TOKEN, self.tg.text_update(42, "hi")))
        m = self.ok("sendMessage", {"chat_id": 42, "text": "pick", "reply_markup": {
            "inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}})
        uid = self.tg.push_update(TOKEN, self.tg.callback_update(42, m["message_id"], "a"))
        got = self.ok("getUpdates", {"allowed_updates": json.dumps(["callback_query"])},
                      transport="query")
        self.assertEqual([u["update_id"] for u in got], [uid])
        self.assertEqual(got[0]["callback_query"]["message"]["reply_markup"],
                         {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]})

    # ---- webhook ----
    def test_webhook(self):
        seen = []
        hook = Upstream()
        hook.route("POST /hook", lambda r: (seen.append(r), r.reply(200, b"")))
        hook.start()
        self.addCleanup(hook.stop)
        self.assertEqual(self.api("setWebhook", {"url": hook.url("/hook"),
                                                 "secret_token": "s3cret_-X",
                                                 "allowed_updates": ["message"]})[1],
                         {"ok": True, "result": True, "description": "Webhook was set"})
        self.fails("setWebhook", {"url": hook.url("/hook"), "secret_token": "bad secret!"}, 400,
                   "Bad Request: secret token contains unallowed characters")
        self.fails("getUpdates", {}, 409, E_POLL_WEBHOOK)
        self.tg.push_update(TOKEN, self.tg.text_update(42, "queued"))
        info = self.ok("getWebhookInfo")
        self.assertEqual((info["url"], info["has_custom_certificate"],
                          info["pending_update_count"], info["allowed_updates"]),
                         (hook.url("/hook"), False, 1, ["message"]))
        status, _ = self.tg.deliver_webhook(TOKEN)   # the queued one
        self.assertEqual(status, 200)
        self.assertEqual(self.ok("getWebhookInfo")["pending_update_count"], 0)
        self.tg.deliver_webhook(TOKEN, self.tg.text_update(42, "x"), secret="other")
        self.tg.deliver_webhook(TOKEN, self.tg.text_update(42, "y"), secret=False)
        self.assertEqual([r.headers.get("x-telegram-bot-api-secret-token") for r in seen],
                         ["s3cret_-X", "other", None])
        self.assertEqual(seen[0].json()["message"]["text"], "queued")
        self.assertEqual(self.api("deleteWebhook", {})[1]["description"], "Webhook was deleted")
        self.assertEqual(self.ok("getWebhookInfo")["url"], "")
        self.assertEqual(self.ok("getUpdates"), [])

    # ---- sendMessage ----
    def test_send_message_all_transports(self):
        for i, tr in enumerate(("query", "form", "json", "multipart")):
            m = self.ok("sendMessage", {"chat_id": 42, "text": "t%d" % i}, transport=tr)
            self.assertEqual((m["message_id"], m["text"], m["chat"]["id"], m["from"]["id"]),
                             (i + 1, "t%d" % i, 42, 123))
            self.assertEqual(self.tg.calls("sendMessage")[-1]["params"]["chat_id"], 42)
        self.assertEqual([m["text"] for m in self.tg.sent(42)], ["t0", "t1", "t2", "t3"])

    def test_send_message_lengths_in_utf16(self):
        self.fails("sendMessage", {"chat_id": 42, "text": ""}, 400, E_EMPTY)
        self.ok("sendMessage", {"chat_id": 42, "text": "a" * 4096})
        self.fails("sendMessage", {"chat_id": 42, "text": "a" * 4097}, 400, E_TOO_LONG)
        self.ok("sendMessage", {"chat_id": 42, "text": "😀" * 2048}, transport="form")
        self.fails("sendMessage", {"chat_id": 42, "text": "😀" * 2049}, 400, E_TOO_LONG)
        # the limit applies after entity parsing: markup does not count
        self.ok("sendMessage", {"chat_id": 42, "text": "*" + "a" * 4096 + "*",
                                "parse_mode": "MarkdownV2"})
        self.ok("sendMessage", {"chat_id": 42, "text": "<b>" + "a" * 4096 + "</b>",
                                "parse_mode": "HTML"})

    def test_send_message_markup_errors(self):
        self.fails("sendMessage", {"chat_id": 42, "text": "1-2", "parse_mode": "MarkdownV2"}, 400,
                   "Bad Request: can't parse entities: Character '-' is reserved and must be "
                   "escaped with the preceding '\\'")
        self.fails("sendMessage", {"chat_id": 42, "text": "v1.0", "parse_mode": "MarkdownV2"},
                   400, "Bad Request: can't parse entities: Character '.' is reserved and must "
                   "be escaped with the preceding '\\'")
        self.fails("sendMessage", {"chat_id": 42, "text": "😀 *open", "parse_mode": "MarkdownV2"},
                   400, "Bad Request: can't parse entities: Can't find end of Bold entity at "
                   "byte offset 5")
        m = self.ok("sendMessage", {"chat_id": 42, "text": "😀 *b* 1\\-2",
                                    "parse_mode": "MarkdownV2"})
        self.assertEqual((m["text"], m["entities"]),
                         ("😀 b 1-2", [{"type": "bold", "offset": 3, "length": 1}]))
        self.fails("sendMessage", {"chat_id": 42, "text": "<p>x</p>", "parse_mode": "HTML"}, 400,
                   'Bad Request: can\'t parse entities: Unsupported start tag "p" at byte '
                   'offset 0')
        self.fails("sendMessage", {"chat_id": 42, "text": "<b>x", "parse_mode": "HTML"}, 400,
                   "Bad Request: can't parse entities: Can't find end tag corresponding to "
                   'start tag "b"')
        # entities: offsets and lengths in UTF-16 code units ("😀" is 2)
        m = self.ok("sendMessage", {"chat_id": 42, "text": "😀 bold",
                                    "entities": [{"type": "bold", "offset": 3, "length": 4}]})
        self.assertEqual(m["entities"], [{"type": "bold", "offset": 3, "length": 4}])
        self.fails("sendMessage", {"chat_id": 42, "text": "😀 bold",
                                   "entities": [{"type": "bold", "offset": 3, "length": 5}]},
                   400, "Bad Request: entity beginning at UTF-16 offset 3 ends after the end of "
                   "the text at UTF-16 offset 8")
        self.fails("sendMessage", {"chat_id": 42, "text": "x", "reply_markup": {
            "inline_keyboard": [[{"text": "b", "callback_data": "d" * 65}]]}}, 400, E_BUTTON_DATA)
        self.ok("sendMessage", {"chat_id": 42, "text": "x", "reply_markup": {
            "inline_keyboard": [[{"text": "b", "callback_data": "d" * 64}]]}})

    def test_send_message_chat_states_and_replies(self):
        self.tg.chat(7, missing=True)
        self.tg.chat(8, blocked=True)
        self.tg.chat(-5, kicked=True)
        self.tg.chat(-6, migrate_to=-1001234567890)
        self.fails("sendMessage", {"chat_id": 7, "text": "x"}, 400, "Bad Request: chat not found")
        self.fails("sendMessage", {"chat_id": 8, "text": "x"}, 403, E_BLOCKED)
        self.fails("sendMessage", {"chat_id": -5, "text": "x"}, 403,
                   "Forbidden: bot was kicked from the group chat")
        body = self.fails("sendMessage", {"chat_id": -6, "text": "x"}, 400, E_MIGRATED)
        self.assertEqual(body["parameters"], {"migrate_to_chat_id": -1001234567890})
        m = self.ok("sendMessage", {"chat_id": -1001234567890, "text": "x"})
        self.assertEqual(m["chat"]["type"], "supergroup")
        # replies: to a known message (new and old form), unknown ones fail
        self.tg.push_update(TOKEN, self.tg.text_update(42, "question", message_id=50))
        a = self.ok("sendMessage", {"chat_id": 42, "text": "a",
                                    "reply_parameters": {"message_id": 50},
                                    "link_preview_options": {"is_disabled": True}})
        self.assertEqual(a["reply_to_message"]["text"], "question")
        self.ok("sendMessage", {"chat_id": 42, "text": "b", "reply_to_message_id": 50},
                transport="form")
        self.fails("sendMessage", {"chat_id": 42, "text": "c", "reply_parameters":
                                   {"message_id": 999}}, 400,
                   "Bad Request: message to be replied not found")
        s = self.tg.sent(42)
        self.assertEqual([(m["reply_to"], m["link_preview_disabled"]) for m in s],
                         [(50, True), (50, False)])
        self.assertEqual(a["message_id"], 51)   # ids go on from the user's message

    # ---- editMessageText, deleteMessage ----
    def test_edit_and_delete(self):
        kb = {"inline_keyboard": [[{"text": "Go", "url": "https://example.com"}]]}
        m = self.ok("sendMessage", {"chat_id": 42, "text": "draft", "reply_markup": kb})
        mid = m["message_id"]
        self.fails("editMessageText", {"chat_id": 42, "message_id": mid, "text": "draft",
                                       "reply_markup": kb}, 400, E_NOT_MODIFIED)
        e = self.ok("editMessageText", {"chat_id": 42, "message_id": mid, "text": "draft 2",
                                        "reply_markup": kb})
        self.assertEqual((e["text"], e["reply_markup"]), ("draft 2", kb))
        self.assertIn("edit_date", e)
        # the same text without reply_markup removes the keyboard: a change
        e = self.ok("editMessageText", {"chat_id": 42, "message_id": mid, "text": "draft 2"})
        self.assertNotIn("reply_markup", e)
        self.fails("editMessageText", {"chat_id": 42, "message_id": 99, "text": "x"}, 400,
                   "Bad Request: message to edit not found")
        rec = self.tg.sent(42)[0]
        self.assertEqual((rec["edits"], rec["history"]), (["draft 2", "draft 2"],
                                                          ["draft", "draft 2", "draft 2"]))
        self.assertIs(self.ok("deleteMessage", {"chat_id": 42, "message_id": mid}), True)
        self.fails("deleteMessage", {"chat_id": 42, "message_id": mid}, 400,
                   "Bad Request: message to delete not found")
        self.assertTrue(self.tg.sent(42)[0]["deleted"])

    # ---- callbacks, actions, drafts, commands ----
    def test_answer_callback_query(self):
        m = self.ok("sendMessage", {"chat_id": 42, "text": "?", "reply_markup": {
            "inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}})
        self.tg.push_update(TOKEN, self.tg.callback_update(42, m["message_id"], "yes"))
        q = self.ok("getUpdates")[0]["callback_query"]
        self.assertEqual((q["data"], q["message"]["message_id"]), ("yes", m["message_id"]))
        self.assertIsInstance(q["id"], str)
        self.assertIs(self.ok("answerCallbackQuery", {"callback_query_id": q["id"],
                                                      "text": "done"}), True)
        self.fails("answerCallbackQuery", {"callback_query_id": q["id"]}, 400, E_QUERY_ID)
        self.fails("answerCallbackQuery", {"callback_query_id": "123"}, 400, E_QUERY_ID)
        (a,) = self.tg.answers
        self.assertEqual((a["callback_query_id"], a["text"], a["data"]), (q["id"], "done", "yes"))
        self.assertLess(a["latency"], 5)

    def test_actions_drafts_commands(self):
        self.assertIs(self.ok("sendChatAction", {"chat_id": 42, "action": "typing"}), True)
        self.fails("sendChatAction", {"chat_id": 42, "action": "dancing"}, 400,
                   "Bad Request: wrong parameter action in request")
        self.assertEqual([a["action"] for a in self.tg.actions(42)], ["typing"])
        self.assertIs(self.ok("sendMessageDraft", {"chat_id": 42, "draft_id": 7,
                                                   "text": "Hel"}), True)
        self.ok("sendMessageDraft", {"chat_id": 42, "draft_id": 7, "text": "Hello"})
        self.fails("sendMessageDraft", {"chat_id": -5, "draft_id": 7, "text": "x"}, 400,
                   E_DRAFT_PEER)
        self.assertEqual(self.api("sendMessageDraft", {"chat_id": 42, "draft_id": 0,
                                                       "text": "x"})[0], 400)
        self.assertEqual([d["text"] for d in self.tg.drafts(42, 7)], ["Hel", "Hello"])
        cmds = [{"command": "start", "description": "Start"}]
        self.ok("setMyCommands", {"commands": cmds}, transport="form")
        self.assertEqual(self.ok("getMyCommands"), cmds)
        self.assertEqual(self.tg.commands(TOKEN), cmds)
        self.fails("setMyCommands", {"commands": [{"command": "Bad-Cmd", "description": "x"}]},
                   400, "Bad Request: BOT_COMMAND_INVALID")

    # ---- files ----
    def test_send_photo_multipart_and_files(self):
        data = png(3, 2)
        m = self.ok("sendPhoto", {"chat_id": 42, "caption": "*pic*", "parse_mode": "MarkdownV2"},
                    transport="multipart", files={"photo": ("p.png", "image/png", data)})
        big = m["photo"][-1]
        self.assertEqual((big["width"], big["height"], big["file_size"]), (3, 2, len(data)))
        self.assertEqual((m["caption"], m["caption_entities"]),
                         ("pic", [{"type": "bold", "offset": 0, "length": 3}]))
        rec = self.tg.sent(42)[0]
        self.assertEqual((rec["kind"], rec["photo"]["bytes"]), ("photo", data))
        f = self.ok("getFile", {"file_id": big["file_id"]})
        with urllib.request.urlopen("%s/file/bot%s/%s" % (self.tg.url, TOKEN, f["file_path"]),
                                    timeout=5) as r:
            self.assertEqual(r.read(), data)
        again = self.ok("sendPhoto", {"chat_id": 42, "photo": big["file_id"]})   # by file_id
        self.assertEqual(again["photo"][-1]["file_id"], big["file_id"])
        self.fails("sendPhoto", {"chat_id": 42, "photo": "nonsense"}, 400,
                   "Bad Request: wrong file identifier/HTTP URL specified")
        self.fails("sendPhoto", {"chat_id": 42, "caption": "c" * 1025}, 400,
                   "Bad Request: message caption is too long", transport="multipart",
                   files={"photo": ("p.png", "image/png", data)})
        self.tg.photo_error = "Bad Request: PHOTO_INVALID_DIMENSIONS"
        self.fails("sendPhoto", {"chat_id": 42}, 400, "Bad Request: PHOTO_INVALID_DIMENSIONS",
                   transport="multipart", files={"photo": ("p.png", "image/png", data)})
        d = self.ok("sendDocument", {"chat_id": 42}, transport="multipart",
                    files={"document": ("r.txt", "text/plain", b"report")})
        self.assertEqual((d["document"]["file_name"], d["document"]["mime_type"],
                          d["document"]["file_size"]), ("r.txt", "text/plain", 6))
        self.tg.add_file("F1", b"hello", file_path="documents/a.txt")
        self.assertEqual(self.ok("getFile", {"file_id": "F1"})["file_path"], "documents/a.txt")

    # ---- limits ----
    def test_burst_over_chat_limit_gets_429_and_freezes(self):
        self.tg.limits = {"chat_per_s": 1, "chat_burst": 3, "group_per_min": 20, "bot_per_s": 30}
        for i in range(3):
            self.ok("sendMessage", {"chat_id": 42, "text": "m%d" % i})
        status, body, headers = self.api("sendMessage", {"chat_id": 42, "text": "m3"})
        self.assertEqual((status, body), (429, {
            "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}}))
        self.assertEqual(headers.get("Retry-After"), "1")
        self.assertEqual(self.tg.violations, [])
        self.ok("sendMessage", {"chat_id": 43, "text": "other chat"})   # only 42 is frozen
        self.assertEqual(self.api("sendChatAction", {"chat_id": 42, "action": "typing"})[0], 429)
        (v,) = self.tg.violations
        self.assertEqual((v["chat_id"], v["method"], v["scope"]), (42, "sendChatAction", "chat"))
        self.assertGreater(v["frozen_until"], v["t"])
        time.sleep(self.tg.frozen(42) + 0.05)
        self.ok("sendMessage", {"chat_id": 42, "text": "after the wait"})
        self.assertEqual(len(self.tg.violations), 1)

    def test_scripted_answers(self):
        self.tg.script("sendMessage", chat_id=42, retry_after=2, scope="bot")
        status, body, _ = self.api("sendMessage", {"chat_id": 42, "text": "x"})
        self.assertEqual((status, body["parameters"]), (429, {"retry_after": 2}))
        self.assertEqual(self.api("sendMessage", {"chat_id": 1, "text": "x"})[0], 429)
        self.assertEqual(self.tg.violations[0]["scope"], "bot")
        self.tg.script("getMe", {"status": 500, "description": "Internal Server Error"})
        self.fails("getMe", {}, 500, "Internal Server Error")
        self.tg.script("getMe", {"reset": True})
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.api("getMe")
        self.tg.script("getMe", {"hang": 5})
        with self.assertRaises((TimeoutError, urllib.error.URLError, OSError)):
            self.api("getMe", timeout=0.5)
        self.assertEqual(self.ok("getMe")["id"], 123)


if __name__ == "__main__":
    unittest.main()
