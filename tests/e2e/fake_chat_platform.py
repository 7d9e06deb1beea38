"""A fake chat platform for delivery tests: the HTTP sink of chatgw's test channel
(CHATGW_TEST_CHANNEL_SINK=<url>). chatgw POSTs every send, edit and deletion to /deliver as
JSON {account, op, chat_id, text, format, reply_to, message_id, uuid, attempt, part, parts,
outbox_id, instance}; the platform answers like a real one would:

    200 {"ok": true, "message_id": "m1"}       delivered
    429 {"ok": false, "retry_after": 2, "scope": "chat"|"bot", "error": "Too Many Requests"}
    400 {"ok": false, "error": "Bad Request: can't parse entities"}   (resent as plain text)
    403 {"ok": false, "error": "Forbidden: bot was blocked by the user"}  (the chat is gone)
    5xx, a hang past chatgw's timeout, a reset

    p = FakeChatPlatform().start()
    p.script("c1", {"status": 429, "json": {...}})   # the next request for chat c1 gets this
    p.script(None, {"hang": 5})                         # the next request for any chat hangs
    p.delay = 0.2                                       # every answer takes 0.2 s
    p.requests                                          # every request, with its arrival time
    p.delivered("c1")                                   # what chat c1 shows: [{id, text, ...}]

Messages a chat "shows" follow the ops: a send adds one, an edit changes its text, a delete
removes it; a send repeated with the same uuid (an idempotent platform) is not shown twice.
"""
import itertools
import threading
import time

from upstream import Upstream


class FakeChatPlatform:
    def __init__(self):
        self.up = Upstream()
        self.up.route("POST /deliver", self._deliver)
        self.lock = threading.Lock()
        self.requests = []   # {"t": monotonic seconds, "status": answered status, **request}
        self.scripts = []    # [(chat_id or None, answer)]
        self.delay = 0.0
        self.dedupe_uuid = False
        self.ids = itertools.count(1)
        self.chats = {}      # chat_id -> [message dicts] in send order
        self.by_uuid = {}

    def start(self):
        self.up.start()
        return self

    def stop(self):
        self.up.stop()

    @property
    def url(self):
        return self.up.url("").rstrip("/")

    def script(self, chat_id, *answers):
        with self.lock:
            for a in answers:
                self.scripts.append((None if chat_id is None else str(chat_id), a))

    def _next_answer(self, chat_id):
        with self.lock:
            for i, (c, a) in enumerate(self.scripts):
                if c is None or c == chat_id:
                    del self.scripts[i]
                    return a
        return None

    def _deliver(self, r):
        j = r.json()
        t = time.monotonic()
        answer = self._next_answer(str(j.get("chat_id")))
        if self.delay:
            r.sleep(self.delay)
        entry = dict(j)
        entry["t"] = t
        if answer and answer.get("hang"):
            entry["status"] = "hang"
            with self.lock:
                self.requests.append(entry)
            r.hang(answer["hang"])
            return
        if answer and answer.get("reset"):
            entry["status"] = "reset"
            with self.lock:
                self.requests.append(entry)
            r.abort()
            return
        if answer:
            entry["status"] = answer.get("status", 200)
            with self.lock:
                self.requests.append(entry)
            r.reply_json(entry["status"], answer.get("json", {"ok": False, "error": "scripted"}))
            return
        entry["status"] = 200
        with self.lock:
            self.requests.append(entry)
            mid = self._apply(j)
        r.reply_json(200, {"ok": True, "message_id": mid})

    def _apply(self, j):
        chat = self.chats.setdefault(str(j["chat_id"]), [])
        op = j["op"]
        if op == "send":
            if self.dedupe_uuid and j["uuid"] in self.by_uuid:
                return self.by_uuid[j["uuid"]]["id"]
            m = {"id": "m%d" % next(self.ids), "text": j.get("text"), "format": j.get("format"),
                 "uuid": j["uuid"], "outbox_id": j["outbox_id"], "edits": 0}
            chat.append(m)
            self.by_uuid[j["uuid"]] = m
            return m["id"]
        for m in chat:
            if m["id"] == j.get("message_id"):
                if op == "edit":
                    m["text"] = j.get("text")
                    m["edits"] += 1
                else:
                    chat.remove(m)
                return m["id"]
        return j.get("message_id")

    # ---- what the tests look at ----

    def delivered(self, chat_id):
        with self.lock:
            return [dict(m) for m in self.chats.get(str(chat_id), [])]

    def texts(self, chat_id):
        return [m["text"] for m in self.delivered(chat_id)]

    def requests_for(self, chat_id=None, op=None):
        with self.lock:
            return [dict(r) for r in self.requests
                    if (chat_id is None or str(r["chat_id"]) == str(chat_id)) and (op is None or r["op"] == op)]
