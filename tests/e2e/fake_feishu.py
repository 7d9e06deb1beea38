"""A fake Feishu / Lark open platform for end-to-end tests: the real wire format on 127.0.0.1,
built on upstream.Upstream (threaded HTTP/1.1, port 0, bounded waits, stop() frees sleepers).
Point chatgw at it with FEISHU_API_BASE=fs.url. It also plays Feishu pushing events to the
gateway's callback (event(), with the real encryption and signature).

    fs = FakeFeishu(apps={"cli_a": {"secret": "sec_a",
                                    "bot": {"open_id": "ou_bot", "app_name": "TestBot"}}})
    fs.start()                                   # fs.url -> "http://127.0.0.1:PORT"
    body = fs.message_event("cli_a", "oc_group1", "@_user_1 hi", "vtok",
                            mentions=[fs.bot_mention("cli_a")])
    fs.event(gateway_url, body, encrypt_key="ekey")    # -> (status, answer)
    fs.wait_messages("oc_group1", 1)             # [{message_id, chat_id, text, reply_to, ...}]
    fs.calls("/im/v1/messages", method="POST")   # every API call, decoded
    fs.stop()                                    # or: with FakeFeishu(...) as fs: ...

Answers: {"code":0,"msg":"success","data":{...}}, Content-Type application/json; charset=utf-8,
header X-Tt-Logid. Errors {"code":N,"msg":"...","error":{"log_id","troubleshooter"}} (HTTP 400
unless said otherwise; 429 for frequency limits, with x-ogw-ratelimit-limit and
x-ogw-ratelimit-reset). The token endpoint and bot/v3/info answer top-level fields, as the
real ones do. A path the fake does not serve (or a wrong method) answers HTTP 404 text/plain
"404 page not found", as the real gateway does, and is recorded in .errors.

Endpoints (all but the first need "Authorization: Bearer <tenant token>"; none -> 99991661, an
unknown, expired or expire_tokens()'d one -> 99991663):
    POST   /open-apis/auth/v3/tenant_access_token/internal   {app_id, app_secret}
    GET    /open-apis/bot/v3/info
    POST   /open-apis/im/v1/messages?receive_id_type=chat_id|open_id|union_id|email|user_id
    GET    /open-apis/im/v1/messages/{message_id}
    POST   /open-apis/im/v1/messages/{message_id}/reply
    PUT    /open-apis/im/v1/messages/{message_id}           (edit text/post, 20 times at most)
    PATCH  /open-apis/im/v1/messages/{message_id}           (update an interactive card)
    DELETE /open-apis/im/v1/messages/{message_id}
    POST   /open-apis/im/v1/images                          (multipart image_type, image)
    GET    /open-apis/im/v1/images/{image_key}
    GET    /open-apis/im/v1/messages/{message_id}/resources/{file_key}?type=image|file
    POST   /open-apis/cardkit/v1/cards                      {type:"card_json", data}
    PUT    /open-apis/cardkit/v1/cards/{card_id}            {card:{type,data}, sequence, uuid}
    PATCH  /open-apis/cardkit/v1/cards/{card_id}/settings   {settings, sequence, uuid}
    PUT    /open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content
                                                            {content, sequence, uuid}
    POST   /open-apis/interactive/v1/card/update            {token, card}

Test API (all waits bounded; every "time" is time.monotonic()):
    FakeFeishu(apps=None, token_ttl=7200, limits=None)
        apps: {app_id: {"secret", "bot": {"open_id", "app_name"}, "tenant_key"?}}
        limits: {"chat_per_s": 5, "app_per_s": 50} - sliding 1 s windows over send and reply
    .start() -> self, .stop(), .url, .port, .max_inflight; a context manager too
    attributes: .delay (seconds added to every answer), .token_ttl, .limits,
        .token_error_status (HTTP status of a refused token request, default 200 - see below),
        .reuse_tokens (False: a new token per request; True: the platform's rule, the same
        token while >= 30 min of it remain), .strict_streaming (False; True: an element update
        of a card whose streaming_mode is off answers 300309, as the platform does)
    .token_requests       [{app_id, time, status, code, token (the one answered, or None)}]
        every token request
    .expire_tokens(app_id=None)   every token issued so far (for that app) becomes invalid
    .calls(path_contains=None, method=None) -> [{method, path, query (first values), headers
        (lower-case), json (decoded body or None), form (multipart name -> bytes for files,
        str for fields, or None), token, app_id, time, status, code}] (not the token endpoint)
    .messages(chat_id=None) -> the bot's messages in send order: {message_id, chat_id,
        receive_id, receive_id_type, msg_type, content (decoded JSON), text, uuid, reply_to,
        root_id, thread, edits, deleted, card_id, app_id, time, versions (every content)}.
        text: text.text; post: title and paragraphs joined ("@name" for at); interactive: the
        card's markdown / plain_text / div texts joined by newlines, read now (a CardKit card
        by card_id shows its current element texts). A send by open_id/union_id/email/user_id
        goes to chat "oc_dm_<receive_id>".
    .message(message_id) -> one record (bot's or users') or None
    .wait_for(predicate, timeout=10) -> bool (polls every 20 ms)
    .wait_messages(chat_id, n, timeout=10) -> the non-deleted messages once there are >= n,
        else AssertionError saying what there is
    .gone(chat_id, gone=True)  sends, replies and edits there answer 230002
    .user_message(chat_id, message_id=None, app_id=None, text="", msg_type="text") -> id
        (a user's message, so that a reply to it works; the event helpers call it)
    .cards      {card_id: {card_id, json, elements {element_id: text}, sequences (the
                 sequence of every op that got past the parameter checks, rejected ones too,
                 uuid replays not), ops [(time, kind, sequence)]
                 (accepted ops; kind "content" | "settings" | "card"), streaming_mode,
                 settings_calls, updates, replays (uuid retries answered without effect),
                 app_id, time}}
    .images {image_key: bytes}, .uploads (count), .resources {(message_id, file_key): bytes}
        (the test puts files there for the download endpoint), .card_updates [{app_id, token,
        card, time}] (delayed card updates)
    .violations  requests a well-behaved client never makes: {"kind": "frozen", scope,
        app_id, chat_id, method, path, time, frozen_until} (a send/reply/edit/patch/image
        upload to an app or chat frozen by a 429, arriving over IN_FLIGHT_S = 0.25 s after that
        429: one arriving sooner may have been in flight), {"kind": "sequence", card_id, sequence,
        previous, op, time} (a CardKit op whose sequence is not above the card's last one),
        {"kind": "card_rate", card_id, ops, op, time} (an 11th CardKit op on a card within 1 s)
    .errors      bugs of the fake and unexpected requests (unknown paths)
    .frozen(chat_id=None, app_id=None) -> seconds the chat (or the app) stays frozen
    .script(path_contains, code=99991400, status=429, reset=2, msg=None, times=1,
            method=None, scope="app", hang=None, after=False)
        the next `times` API calls whose path contains path_contains (and of `method`) answer
        that error. For 99991400 and 230020 the answer has the ratelimit headers and the app
        (scope "app") or the chat (scope "chat": the send's receive_id chat, or the chat of
        the replied/edited message) is frozen `reset` seconds: every message-sending request
        (send, reply, PUT/PATCH message, image upload) reaching it meanwhile is answered 429
        again and recorded in .violations. hang=seconds: no answer (the connection closes).
        after=True: the request takes effect first, then the scripted answer replaces the
        real one (an unknown outcome, for uuid-retry tests).
    Events the fake pushes (v2 bodies, schema "2.0", header {event_id, event_type,
    create_time, token, app_id, tenant_key}):
    .event(url, body, encrypt_key=None, verification_token=None, sign=None, timestamp=None,
           nonce=None, raw=None, timeout=10) -> (status, decoded JSON or text); HTTP errors are
        returned, not raised; status 0 when nothing answered. verification_token, when given,
        is put into the body's token (header.token, or token). With encrypt_key the body is
        {"encrypt": base64(IV + AES-256-CBC-PKCS7(json, key=SHA-256(encrypt_key)))} and
        (sign=None: unless it is a url_verification, which the platform does not sign;
        sign=True/False forces it) X-Lark-Request-Timestamp, X-Lark-Request-Nonce and
        X-Lark-Signature = hex SHA-256(timestamp + nonce + encrypt_key + raw body). raw: those
        bytes exactly (signed too). Recorded in .deliveries [{url, body, sent, headers,
        status, answer, time, seconds}].
    .message_event(app_id, chat_id, text, verification_token, chat_type=None,
                   sender_open_id="ou_user1", sender_type="user", message_id=None,
                   mentions=None, parent_id=None, event_id=None, root_id=None,
                   message_type="text", content=None, thread_id=None)
        im.message.receive_v1; chat_type None: "p2p" for "oc_p2p..."/"oc_dm_..." chats, else
        "group". mentions: [{key?, id: {open_id, union_id, user_id} | open_id=..., name,
        mentioned_type?}] (key defaults to "@_user_<n>"). Records the message (user_message).
    .post_event(app_id, chat_id, post, verification_token, **same) - post as sent
        ({"zh_cn": {"title", "content"}}) or as received ({"title", "content"}); the event
        carries it as the platform does: no locale wrapper, "style": [] on text/at/a runs.
    .image_event(app_id, chat_id, image_key, verification_token, **same)
    .file_event(app_id, chat_id, file_key, verification_token, file_name="file.bin", **same)
    .card_action_event(app_id, verification_token, open_message_id, open_chat_id, value,
                       operator_open_id="ou_user1", token=None, event_id=None, tag="button")
    .url_verification(verification_token, challenge=None) -> {challenge, token, type}
    .v1_message_event(app_id, chat_id, text, verification_token, chat_type=None,
                      sender_open_id="ou_user1", message_id=None, is_mention=False,
                      parent_id=None) - the old schema 1.0 body (top-level token, event)
    .bot_mention(app_id, n=1) -> a mention of the app's bot for `mentions`
    .encrypt(encrypt_key, plaintext, iv=None) -> the "encrypt" value (= encrypt_event)
    .received_post(post) -> a post as the platform delivers it (what post_event carries)
    module helpers: encrypt_event(encrypt_key, plaintext, iv=None) -> base64 str,
        signature(timestamp, nonce, encrypt_key, body) -> hex, aes256_cbc_encrypt(key, iv, data)

Facts and where they come from (open.feishu.cn / open.larkoffice.com / open.larksuite.com
server docs, read as mirrored markdown; /work/shared/PROTOCOLS.md; a public no-credential probe
log of the live platform, 2026-09-11; captured live events quoted in public client code):
  - token: {"code":0,"msg":"ok","tenant_access_token":"t-...","expire":7200}, top level (doc).
    The platform returns the same token while >= 30 min remain and a new one after, both
    valid (doc); this fake issues a new one per request unless .reuse_tokens. A refused
    request answers HTTP 200 (probe: {"code":10003,"data":{},"msg":"invalid param"} for an
    unknown app_id); 10014 "app secret invalid" for a wrong secret is seen in client code
    and logs, its HTTP status is unverified (200 here like 10003; set token_error_status).
  - 99991661 "Missing access token for authorization. Please make a request with token
    attached." (also for a header without "Bearer "), 99991663 "Invalid access token for
    authorization. ...", HTTP 400 with error.log_id and error.troubleshooter (probe).
  - unknown path or wrong method: HTTP 404 text/plain "404 page not found" (probe).
  - send/reply/edit codes and texts (message create/reply/update docs): 230001 "Your request
    contains an invalid request parameter." with ", ext=invalid receive_id." / ", ext=invalid
    message_id." (230001 troubleshooting doc; an unknown message id is 230001, a deleted one
    230011 "The message is recalled."); 230002 (the doc says "The bot can not be outside the
    group."; the live API says "Bot/User can NOT be out of the chat.", used here); 230020
    "This operation triggers the frequency limit."; 230025 "The length of the message
    content reaches its limit." (text 150 KB, post and cards 30 KB of request body); 230071
    "The operator is not the sender of the message."; 230072 "The message has reached the
    number of times it can be edited." (20 edits); uuid dedupes a send for an hour
    (PROTOCOLS.md; "the same message back" is unverified).
  - images (image create doc): 234001 "Invalid request param.", 234006 "The file size exceed
    the max value." (10 MB), 234010 "File's size can't be 0."; resources: 234003 "File not
    in msg." (seen in client code and issues, not in a doc read here).
  - 99991400 "request trigger frequency limit", HTTP 429 (400 on older APIs), headers
    x-ogw-ratelimit-limit / x-ogw-ratelimit-reset (PROTOCOLS.md, client code).
  - CardKit (element content, settings, card create docs): sequence a positive int32,
    strictly above the card's previous op (300317 "The sequence number for operating on the
    card did not increment consecutively"); content 1..100000 chars; uuid 1..64 chars
    (200770 "UUID conflict"); 200740 "The card entity does not exist"; 200860 "Card content
    exceeds limit." (30 KB); 200220 "Failed to generate card content"; 300301 "Duplicate
    element_id in card component."; 300305 over 200 elements; 300309 "Card streaming
    closed" (an element update while streaming_mode is off - see .strict_streaming);
    300310 "Only update text"; 300311 another app's card; 300313 "Failed to update element
    properties" (for an unknown element_id, as seen in an issue log); 10 ops per second
    per card (streaming overview doc).
  - events: the schema 2.0 im.message.receive_v1 shape, mentions {key, id {open_id,
    union_id, user_id}, name, tenant_key, mentioned_type}, the received post content
    {"title","content":[[{"tag":"at","user_id":"@_user_1","user_name",...,"style":[]}],
    [{"tag":"img","image_key",...}]]} without locale wrapper (captured live events);
    encryption and signature (PROTOCOLS.md).
  Unverified (guesses): the answer to an 11th CardKit op within 1 s (429 99991400 here);
  uuid replay semantics of CardKit ops (same uuid and sequence: success, no effect; else
  200770); 99992402 "field validation failed" for a missing/unknown receive_id_type;
  230054 for editing a message of another type; 230099 for a card message whose card_id
  does not exist; the delayed card update's answer; "mentions", "root_id" and "parent_id"
  are left out of an event's message when there are none; the v1 body's details; the bot
  info fields besides open_id and app_name; ids' shapes (om_<32 hex>, 19-digit card ids,
  img_v3_<hex>).
"""
import base64
import collections
import copy
import hashlib
import itertools
import json
import math
import os
import re
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid as _uuid

from upstream import FakeServer, OneHandler, parse_multipart

# ---- limits ----
MAX_TEXT_BODY = 150 * 1024       # bytes of the request body of a text message
MAX_RICH_BODY = 30 * 1024        # post / interactive / card PATCH
MAX_EDITS = 20
MAX_IMAGE_BYTES = 10 << 20
MAX_UUID = 50                    # im/v1/messages uuid
MAX_CARD_BYTES = 30 * 1024
MAX_CARD_ELEMENTS = 200
MAX_ELEMENT_CONTENT = 100000
CARD_OPS_PER_S = 10
UUID_TTL = 3600.0
INT32_MAX = 2147483647

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
RECEIVE_ID_TYPES = ("chat_id", "open_id", "union_id", "email", "user_id")
MSG_TYPES = frozenset({"text", "post", "image", "interactive", "file", "audio", "media",
                       "share_chat", "share_user", "sticker"})
SENDING = frozenset({"send", "reply", "edit", "patch", "image"})   # frozen by a 429

# ---- codes and messages ----
C_TOKEN_PARAM = 10003
C_SECRET = 10014
C_MISSING_TOKEN = 99991661
C_INVALID_TOKEN = 99991663
C_RATE = 99991400
C_FIELD = 99992402
C_PARAM = 230001
C_GONE = 230002
C_RECALLED = 230011
C_IM_RATE = 230020
C_TOO_LONG = 230025
C_TYPE = 230054
C_NOT_SENDER = 230071
C_EDIT_LIMIT = 230072
C_CARD_CONTENT = 230099
C_IMG_PARAM = 234001
C_FILE_NOT_IN_MSG = 234003
C_IMG_TOO_BIG = 234006
C_IMG_EMPTY = 234010
C_CK_PARAM = 10002
C_CK_GENERATE = 200220
C_CK_NO_CARD = 200740
C_CK_UUID = 200770
C_CK_TOO_BIG = 200860
C_CK_DUP_ID = 300301
C_CK_ELEMENTS = 300305
C_CK_STREAMING_CLOSED = 300309
C_CK_ONLY_TEXT = 300310
C_CK_NOT_OWNER = 300311
C_CK_ELEMENT = 300313
C_CK_SEQUENCE = 300317

M_TOKEN_PARAM = "invalid param"
M_SECRET = "app secret invalid"
M_MISSING_TOKEN = ("Missing access token for authorization. Please make a request with token "
                   "attached.")
M_INVALID_TOKEN = ("Invalid access token for authorization. Please make a request with token "
                   "attached.")
M_RATE = "request trigger frequency limit"
M_FIELD = "field validation failed"
M_PARAM = "Your request contains an invalid request parameter."
M_GONE = "Bot/User can NOT be out of the chat."
M_RECALLED = "The message is recalled."
M_IM_RATE = "This operation triggers the frequency limit."
M_TOO_LONG = "The length of the message content reaches its limit."
M_TYPE = "This operation is not supported for this message type."
M_NOT_SENDER = "The operator is not the sender of the message."
M_EDIT_LIMIT = "The message has reached the number of times it can be edited."
M_CARD_CONTENT = "Failed to create card content"
M_IMG_PARAM = "Invalid request param."
M_FILE_NOT_IN_MSG = "File not in msg."
M_IMG_TOO_BIG = "The file size exceed the max value."
M_IMG_EMPTY = "File's size can't be 0."
M_CK_PARAM = "Your request contains an invalid request parameter."
M_CK_GENERATE = "Failed to generate card content"
M_CK_NO_CARD = "The card entity does not exist"
M_CK_UUID = "UUID conflict"
M_CK_TOO_BIG = "Card content exceeds limit."
M_CK_DUP_ID = "Duplicate element_id in card component."
M_CK_ELEMENTS = "The number of card components exceeds 200"
M_CK_STREAMING_CLOSED = "Card streaming closed"
M_CK_ONLY_TEXT = "Only update text"
M_CK_NOT_OWNER = "The current application does not have permission to update/use this card"
M_CK_ELEMENT = "Failed to update element properties"
M_CK_SEQUENCE = ("The sequence number for operating on the card did not increment "
                 "consecutively")


def param_msg(ext):
    """230001's message with its ext, as the platform writes it."""
    return "Your request contains an invalid request parameter, ext=%s." % ext


# ---------------------------------------------------------------------------------------------
# AES-256-CBC (encrypt only), for the event encryption; pure Python, checked against FIPS-197
# and openssl by the self-test.

def _xtime(a):
    a <<= 1
    return (a ^ 0x11B) if a & 0x100 else a


def _make_sbox():
    sbox = [0] * 256
    p = q = 1
    while True:
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)   # p * 3
        q ^= q << 1                                              # q / 3
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        rot = lambda x, s: ((x << s) | (x >> (8 - s))) & 0xFF   # noqa: E731
        sbox[p] = q ^ rot(q, 1) ^ rot(q, 2) ^ rot(q, 3) ^ rot(q, 4) ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    return sbox


_SBOX = _make_sbox()
_SHIFT = [(i + 4 * (i % 4)) % 16 for i in range(16)]


def _round_keys(key):
    if len(key) != 32:
        raise ValueError("AES-256 needs a 32-byte key")
    w = [list(key[4 * i:4 * i + 4]) for i in range(8)]
    rcon = 1
    for i in range(8, 60):
        t = list(w[i - 1])
        if i % 8 == 0:
            t = [_SBOX[b] for b in t[1:] + t[:1]]
            t[0] ^= rcon
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            t = [_SBOX[b] for b in t]
        w.append([a ^ b for a, b in zip(w[i - 8], t)])
    return [sum(w[4 * r:4 * r + 4], []) for r in range(15)]


def _encrypt_block(rks, block):
    s = [b ^ k for b, k in zip(block, rks[0])]
    for r in range(1, 15):
        s = [_SBOX[b] for b in s]
        s = [s[j] for j in _SHIFT]
        if r != 14:
            t = []
            for c in range(0, 16, 4):
                a = s[c:c + 4]
                x = a[0] ^ a[1] ^ a[2] ^ a[3]
                t += [a[j] ^ x ^ _xtime(a[j] ^ a[(j + 1) % 4]) for j in range(4)]
            s = t
        s = [b ^ k for b, k in zip(s, rks[r])]
    return s


def aes256_cbc_encrypt(key, iv, data):
    """AES-256-CBC with PKCS#7 padding (as `openssl enc -aes-256-cbc` does)."""
    if len(iv) != 16:
        raise ValueError("the IV must be 16 bytes")
    pad = 16 - len(data) % 16
    data = bytes(data) + bytes([pad]) * pad
    rks = _round_keys(key)
    prev = list(iv)
    out = bytearray()
    for i in range(0, len(data), 16):
        prev = _encrypt_block(rks, [a ^ b for a, b in zip(data[i:i + 16], prev)])
        out += bytes(prev)
    return bytes(out)


def encrypt_event(encrypt_key, plaintext, iv=None):
    """The "encrypt" value of an event: base64(IV + AES-256-CBC(plaintext, SHA-256(key)))."""
    if isinstance(plaintext, str):
        plaintext = plaintext.encode()
    iv = os.urandom(16) if iv is None else iv
    key = hashlib.sha256(encrypt_key.encode()).digest()
    return base64.b64encode(iv + aes256_cbc_encrypt(key, iv, plaintext)).decode()


def signature(timestamp, nonce, encrypt_key, body):
    """X-Lark-Signature: hex SHA-256(timestamp + nonce + encrypt_key + raw body)."""
    if isinstance(body, str):
        body = body.encode()
    return hashlib.sha256((str(timestamp) + str(nonce) + encrypt_key).encode() + body).hexdigest()


# ---------------------------------------------------------------------------------------------
# message texts

def post_text(content):
    """A post's plain text: title, then a line per paragraph (text/a/md runs, "@name")."""
    c = content
    if isinstance(c, dict) and not isinstance(c.get("content"), list):
        for v in c.values():   # the locale wrapper of a sent post: {"zh_cn": {...}}
            if isinstance(v, dict) and isinstance(v.get("content"), list):
                c = v
                break
    if not isinstance(c, dict):
        return ""
    lines = []
    if isinstance(c.get("title"), str) and c["title"]:
        lines.append(c["title"])
    for para in c.get("content") or []:
        parts = []
        for el in para if isinstance(para, list) else []:
            if not isinstance(el, dict):
                continue
            tag = el.get("tag")
            if tag in ("text", "a", "md", "code_block"):
                parts.append(str(el.get("text", "")))
            elif tag == "at":
                parts.append("@" + str(el.get("user_name") or el.get("user_id") or ""))
            elif tag == "emotion":
                parts.append(":%s:" % el.get("emoji_type", ""))
        lines.append("".join(parts))
    return "\n".join(lines)


def _card_roots(card):
    if not isinstance(card, dict):
        return []
    body = card.get("body")
    if isinstance(body, dict) and isinstance(body.get("elements"), list):
        return body["elements"]
    return card.get("elements") if isinstance(card.get("elements"), list) else []


def _walk(elements, fn):
    for el in elements or []:
        if not isinstance(el, dict):
            continue
        fn(el)
        if el.get("tag") in ("action", "button"):
            continue
        if isinstance(el.get("elements"), list):
            _walk(el["elements"], fn)
        if isinstance(el.get("columns"), list):
            _walk(el["columns"], fn)


def _element_text(el):
    tag = el.get("tag")
    if tag in ("markdown", "md", "plain_text", "lark_md") and isinstance(el.get("content"), str):
        return el["content"]
    if tag == "div":
        t = el.get("text")
        parts = [t["content"]] if isinstance(t, dict) and isinstance(t.get("content"), str) else []
        for f in el.get("fields") or []:
            ft = f.get("text") if isinstance(f, dict) else None
            if isinstance(ft, dict) and isinstance(ft.get("content"), str):
                parts.append(ft["content"])
        return "\n".join(parts) if parts else None
    return None


def card_text(card):
    """The texts of a card (JSON 1.0 or 2.0): markdown, plain_text and div elements, joined."""
    out = []

    def take(el):
        t = _element_text(el)
        if t is not None:
            out.append(t)
    _walk(_card_roots(card), take)
    return "\n".join(out)


def _card_index(card):
    """({element_id: element}, duplicate element_id or None, number of elements)."""
    index, dup, count = {}, [], [0]

    def take(el):
        count[0] += 1
        eid = el.get("element_id")
        if isinstance(eid, str) and eid:
            if eid in index:
                dup.append(eid)
            index[eid] = el
    _walk(_card_roots(card), take)
    return index, (dup[0] if dup else None), count[0]


# ---------------------------------------------------------------------------------------------

def _dumps(obj):
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate: escape it
        return json.dumps(obj, separators=(",", ":")).encode()


def _log_id():
    return time.strftime("%Y%m%d%H%M%S") + _uuid.uuid4().hex[:20].upper()


def _hex(n=32):
    return (_uuid.uuid4().hex + _uuid.uuid4().hex)[:n]


class FsError(Exception):
    def __init__(self, status, code, msg, headers=None):
        super().__init__("%d %s" % (code, msg))
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


class _Hang(Exception):
    def __init__(self, seconds):
        super().__init__(seconds)
        self.seconds = seconds


class _Body:
    """A handler's answer that is a whole body (not {"code":0,"msg":..,"data":..})."""
    def __init__(self, obj):
        self.obj = obj


class _Raw:
    def __init__(self, data, ctype="application/octet-stream", headers=None):
        self.data = data
        self.ctype = ctype
        self.headers = headers or {}


class _Ctx:
    def __init__(self, req, call, app_id):
        self.req = req
        self.call = call
        self.app_id = app_id
        self.query = call["query"]

    def body(self, code=C_PARAM, msg=M_PARAM):
        j = self.call["json"]
        if not isinstance(j, dict):
            raise FsError(400, code, msg)
        return j


class FakeFeishu(FakeServer):
    ROUTES = (
        ("GET", r"/open-apis/bot/v3/info/?", "bot_info"),
        ("POST", r"/open-apis/im/v1/messages", "send"),
        ("GET", r"/open-apis/im/v1/messages/([^/]+)", "get_message"),
        ("POST", r"/open-apis/im/v1/messages/([^/]+)/reply", "reply"),
        ("PUT", r"/open-apis/im/v1/messages/([^/]+)", "edit"),
        ("PATCH", r"/open-apis/im/v1/messages/([^/]+)", "patch"),
        ("DELETE", r"/open-apis/im/v1/messages/([^/]+)", "delete"),
        ("POST", r"/open-apis/im/v1/images", "image"),
        ("GET", r"/open-apis/im/v1/images/([^/]+)", "get_image"),
        ("GET", r"/open-apis/im/v1/messages/([^/]+)/resources/([^/]+)", "resource"),
        ("POST", r"/open-apis/cardkit/v1/cards", "card_create"),
        ("PUT", r"/open-apis/cardkit/v1/cards/([^/]+)", "card_update"),
        ("PATCH", r"/open-apis/cardkit/v1/cards/([^/]+)/settings", "card_settings"),
        ("PUT", r"/open-apis/cardkit/v1/cards/([^/]+)/elements/([^/]+)/content", "card_content"),
        ("POST", r"/open-apis/interactive/v1/card/update", "card_delayed_update"),
    )

    def __init__(self, apps=None, token_ttl=7200, limits=None):
        apps = apps or {"cli_test": {"secret": "secret_test",
                                     "bot": {"open_id": "ou_bot", "app_name": "TestBot"}}}
        self.apps = {}
        for app_id, info in apps.items():
            info = dict(info or {})
            bot = dict(info.get("bot") or {})
            bot.setdefault("open_id", "ou_bot_" + hashlib.sha1(app_id.encode()).hexdigest()[:12])
            bot.setdefault("app_name", "Bot")
            self.apps[app_id] = {"secret": info.get("secret", ""), "bot": bot,
                                 "tenant_key": info.get("tenant_key") or self._tenant(app_id)}
        self.token_ttl = token_ttl
        self.limits = limits
        self.delay = 0.0
        self.token_error_status = 200
        self.reuse_tokens = False
        self.strict_streaming = False
        self._routes = [(m, re.compile("^" + p + "$"), n) for m, p, n in self.ROUTES]
        self._lock = threading.RLock()
        self._up = OneHandler(self._handle)
        self._tokens = {}          # token -> {app_id, issued, expires, revoked}
        self._calls = []
        self._messages = {}        # message_id -> record (the bot's and users')
        self._sent = []            # the bot's records, in send order
        self._uuids = {}           # (app_id, uuid) -> (message_id, time)
        self._gone = set()
        self._scripts = []
        self._frozen = {}          # ("app", app_id) | ("chat", app_id, chat_id) -> until
        self._freeze_started = {}  # the same keys -> when the freeze began (IN_FLIGHT_S)
        self._app_windows = collections.defaultdict(collections.deque)
        self._chat_windows = collections.defaultdict(collections.deque)
        self._card_state = {}      # card_id -> {last_seq, window, uuids}
        self._card_ids = itertools.count(7355439197428236291 + int.from_bytes(os.urandom(3), "big"))
        self.token_requests = []
        self.cards = {}
        self.images = {}
        self.uploads = 0
        self.resources = {}
        self.card_updates = []
        self.violations = []
        self.errors = []
        self.deliveries = []

    @staticmethod
    def _tenant(app_id):
        return hashlib.sha1(("tenant:" + app_id).encode()).hexdigest()[:16]

    def _tenant_of(self, app_id):
        a = self.apps.get(app_id)
        return a["tenant_key"] if a else self._tenant(app_id or "")

    # ---- test helpers: state ----
    def expire_tokens(self, app_id=None):
        with self._lock:
            for t in self._tokens.values():
                if app_id is None or t["app_id"] == app_id:
                    t["revoked"] = True

    def gone(self, chat_id, gone=True):
        with self._lock:
            (self._gone.add if gone else self._gone.discard)(chat_id)

    def user_message(self, chat_id, message_id=None, app_id=None, text="", msg_type="text",
                     content=None, sender_open_id="ou_user1", parent_id=None, root_id=None):
        mid = message_id or self._new_message_id()
        if content is None:
            content = {"text": text} if msg_type == "text" else {}
        with self._lock:
            self._messages[mid] = {
                "message_id": mid, "chat_id": chat_id, "app_id": app_id, "sender": "user",
                "sender_open_id": sender_open_id, "msg_type": msg_type, "content": content,
                "deleted": False, "edits": 0, "reply_to": parent_id,
                "root_id": root_id or parent_id, "time": time.monotonic(),
                "_create_ms": int(time.time() * 1000)}
        return mid

    def script(self, path_contains, code=C_RATE, status=429, reset=2, msg=None, times=1,
               method=None, scope="app", hang=None, after=False):
        with self._lock:
            self._scripts.append({"path": path_contains, "code": code, "status": status,
                                  "reset": reset, "msg": msg, "times": times, "method": method,
                                  "scope": scope, "hang": hang, "after": after})

    # ---- test helpers: what happened ----
    def calls(self, path_contains=None, method=None):
        with self._lock:
            return [dict(c) for c in self._calls
                    if (path_contains is None or path_contains in c["path"])
                    and (method is None or c["method"] == method)]

    def messages(self, chat_id=None):
        with self._lock:
            return [self._public(m) for m in self._sent
                    if chat_id is None or m["chat_id"] == chat_id]

    def message(self, message_id):
        with self._lock:
            m = self._messages.get(message_id)
            return self._public(m) if m else None

    def frozen(self, chat_id=None, app_id=None):
        with self._lock:
            app_id = app_id or next(iter(self.apps))
            key = ("app", app_id) if chat_id is None else ("chat", app_id, chat_id)
            until = self._frozen.get(key)
            return max(0.0, until - time.monotonic()) if until else 0.0

    def wait_for(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def wait_messages(self, chat_id, n, timeout=10):
        got = []

        def enough():
            got[:] = [m for m in self.messages(chat_id) if not m["deleted"]]
            return len(got) >= n
        if self.wait_for(enough, timeout):
            return list(got)
        raise AssertionError("chat %s: %d message(s) after %ss, wanted %d: %r"
                             % (chat_id, len(got), timeout, n,
                                [(m["message_id"], m["msg_type"], m["text"]) for m in got]))

    def _public(self, m):
        out = {k: copy.deepcopy(v) for k, v in m.items() if not k.startswith("_")}
        out["text"] = self._text_of(m)
        return out

    def _text_of(self, m):
        c = m.get("content")
        t = m.get("msg_type")
        if t == "text":
            return c.get("text", "") if isinstance(c, dict) else ""
        if t == "post":
            return post_text(c)
        if t == "interactive":
            card = self.cards.get(m.get("card_id")) if m.get("card_id") else None
            if card is not None:
                return card_text(card["json"])
            return card_text(c)
        return ""

    # ---- ids ----
    @staticmethod
    def _new_message_id():
        return "om_" + _hex(32)

    # ---- HTTP ----
    def _route(self, req):
        for method, rx, name in self._routes:
            m = rx.match(req.path)
            if m and method == req.method:
                return name, m.groups()
        return None, ()

    def _reply(self, req, status, obj, headers=None):
        hs = {"Content-Type": "application/json; charset=utf-8", "X-Tt-Logid": _log_id()}
        hs.update(headers or {})
        req.reply(status, _dumps(obj), hs)

    def _error_body(self, e):
        body = {"code": e.code, "msg": e.msg}
        if 400 <= e.status < 500:
            lid = _log_id()
            body["error"] = {"log_id": lid, "troubleshooter": (
                "排查建议查看(Troubleshooting suggestions): https://open.feishu.cn/search?"
                "from=openapi&log_id=%s&code=%d" % (lid, e.code))}
        return body

    def _handle(self, req):
        if self.delay:
            req.sleep(self.delay)
        if req.path.rstrip("/") == TOKEN_PATH and req.method == "POST":
            return self._token_endpoint(req)
        name, args = self._route(req)
        call = {"method": req.method, "path": req.path,
                "query": {k: v[0] for k, v in req.query.items()}, "headers": dict(req.headers),
                "json": None, "form": None, "token": None, "app_id": None,
                "time": time.monotonic(), "status": None, "code": None}
        ctype = req.headers.get("content-type", "").lower()
        parts = None
        if req.body:
            if ctype.startswith("multipart/form-data"):
                try:
                    parts = parse_multipart(req.headers, req.body)
                    call["form"] = {k: (p["data"] or b"") if p["filename"] is not None
                                    else (p["data"] or b"").decode("utf-8", "replace")
                                    for k, p in parts.items()}
                except Exception:   # a malformed body: the handler says so
                    parts = None
            else:
                try:
                    call["json"] = json.loads(req.body)
                except ValueError:
                    pass
        with self._lock:
            self._calls.append(call)
        if name is None:
            call["status"] = 404
            with self._lock:
                self.errors.append("unexpected request: %s %s" % (req.method, req.target))
            req.reply(404, b"404 page not found", {"Content-Type": "text/plain; charset=utf-8"})
            return
        try:
            ctx = _Ctx(req, call, self._auth(req, call))
            ctx.parts = parts
            chat = self._peek_chat(name, ctx, args)
            with self._lock:
                if name in SENDING:
                    self._check_frozen(ctx.app_id, chat, call)
                scripted = self._take_script(req)
            if scripted and not scripted["after"]:
                self._scripted(scripted, ctx.app_id, chat)
            if name in ("send", "reply"):
                self._consume(ctx.app_id, chat)
            result = getattr(self, "_h_" + name)(ctx, *args)
            if scripted:
                self._scripted(scripted, ctx.app_id, chat)
            call["status"], call["code"] = 200, 0
            if isinstance(result, _Raw):
                hs = {"Content-Type": result.ctype, "X-Tt-Logid": _log_id()}
                hs.update(result.headers)
                req.reply(200, result.data, hs)
            elif isinstance(result, _Body):
                self._reply(req, 200, result.obj)
            else:
                self._reply(req, 200, {"code": 0, "msg": "success",
                                       "data": {} if result is None else result})
        except FsError as e:
            call["status"], call["code"] = e.status, e.code
            self._reply(req, e.status, self._error_body(e), e.headers)
        except _Hang as h:
            call["status"] = "hang"
            req.hang(h.seconds)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:  # a bug of the fake: say so instead of closing the connection
            call["status"] = 500
            with self._lock:
                self.errors.append("%r\n%s" % (e, traceback.format_exc()))
            self._reply(req, 500, {"code": 500, "msg": "fake: %r" % e})

    # ---- token ----
    def _token_endpoint(self, req):
        now = time.monotonic()
        try:
            p = json.loads(req.body or b"null")
        except ValueError:
            p = None
        app_id = p.get("app_id") if isinstance(p, dict) else None
        rec = {"app_id": app_id, "time": now, "status": None, "code": None, "token": None}
        with self._lock:
            self.token_requests.append(rec)
            app = self.apps.get(app_id) if isinstance(app_id, str) else None
            secret = p.get("app_secret") if isinstance(p, dict) else None
            if app is None or not isinstance(secret, str) or not secret:
                body = {"code": C_TOKEN_PARAM, "data": {}, "msg": M_TOKEN_PARAM}
            elif secret != app["secret"]:
                body = {"code": C_SECRET, "msg": M_SECRET}
            else:
                body = None
                if self.reuse_tokens:
                    for tok, t in self._tokens.items():
                        if (t["app_id"] == app_id and not t["revoked"]
                                and t["expires"] - now >= 1800):
                            body = {"code": 0, "msg": "ok", "tenant_access_token": tok,
                                    "expire": int(t["expires"] - now)}
                if body is None:
                    tok = "t-" + _hex(40)
                    self._tokens[tok] = {"app_id": app_id, "issued": now,
                                         "expires": now + self.token_ttl, "revoked": False}
                    body = {"code": 0, "msg": "ok", "tenant_access_token": tok,
                            "expire": self.token_ttl}
        status = 200 if body["code"] == 0 else self.token_error_status
        rec["status"], rec["code"] = status, body["code"]
        rec["token"] = body.get("tenant_access_token")
        self._reply(req, status, body)

    def _auth(self, req, call):
        h = req.headers.get("authorization", "")
        if not h.startswith("Bearer ") or not h[7:].strip():
            raise FsError(400, C_MISSING_TOKEN, M_MISSING_TOKEN)
        tok = h[7:].strip()
        call["token"] = tok
        with self._lock:
            t = self._tokens.get(tok)
            if t is None or t["revoked"] or time.monotonic() >= t["expires"]:
                raise FsError(400, C_INVALID_TOKEN, M_INVALID_TOKEN)
            call["app_id"] = t["app_id"]
            return t["app_id"]

    # ---- scripts, freezes, limits ----
    def _take_script(self, req):
        for s in self._scripts:
            if s["path"] in req.path and (s["method"] is None or s["method"] == req.method):
                s["times"] -= 1
                if s["times"] <= 0:
                    self._scripts.remove(s)
                return s
        return None

    def _scripted(self, s, app_id, chat):
        if s["hang"] is not None:
            raise _Hang(s["hang"])
        headers = {}
        if s["code"] in (C_RATE, C_IM_RATE):
            reset = s["reset"]
            self._freeze(app_id, chat, s["scope"], reset)
            headers = self._rate_headers(s["scope"] if chat else "app", reset)
        msg = s["msg"] or {C_RATE: M_RATE, C_IM_RATE: M_IM_RATE}.get(s["code"], "scripted error")
        raise FsError(s["status"], s["code"], msg, headers)

    def _rate_headers(self, scope, reset):
        lim = self.limits or {}
        limit = lim.get("chat_per_s", 5) if scope == "chat" else lim.get("app_per_s", 50)
        r = reset if isinstance(reset, int) else max(1, int(math.ceil(reset)))
        return {"x-ogw-ratelimit-limit": str(limit), "x-ogw-ratelimit-reset": str(r)}

    # A request that reaches a frozen app or chat within this long of the 429 that froze it may
    # have been written before the client read that 429 (another chat's send in flight): it is
    # answered 429 too, but it is not a violation.
    IN_FLIGHT_S = 0.25

    def _freeze(self, app_id, chat, scope, seconds):
        key = ("chat", app_id, chat) if scope == "chat" and chat else ("app", app_id)
        with self._lock:
            now = time.monotonic()
            if self._frozen.get(key, 0) <= now:
                self._freeze_started[key] = now
            self._frozen[key] = max(self._frozen.get(key, 0), now + seconds)

    def _check_frozen(self, app_id, chat, call):
        now = call["time"]
        for scope, key in (("app", ("app", app_id)), ("chat", ("chat", app_id, chat))):
            until = self._frozen.get(key)
            if until and now < until and now < self._freeze_started.get(key, 0) + self.IN_FLIGHT_S:
                raise FsError(429, C_RATE, M_RATE,
                              self._rate_headers(scope, max(1, math.ceil(until - now))))
            if until and now < until:
                self.violations.append({"kind": "frozen", "scope": scope, "app_id": app_id,
                                        "chat_id": chat, "method": call["method"],
                                        "path": call["path"], "time": now,
                                        "frozen_until": until})
                raise FsError(429, C_RATE, M_RATE,
                              self._rate_headers(scope, max(1, math.ceil(until - now))))

    def _consume(self, app_id, chat):
        lim = self.limits
        if not lim:
            return
        now = time.monotonic()
        with self._lock:
            aw = self._app_windows[app_id]
            while aw and aw[0] <= now - 1.0:
                aw.popleft()
            if "app_per_s" in lim and len(aw) >= lim["app_per_s"]:
                self._freeze(app_id, None, "app", 1)
                raise FsError(429, C_RATE, M_RATE, self._rate_headers("app", 1))
            cw = None
            if chat is not None and "chat_per_s" in lim:
                cw = self._chat_windows[(app_id, chat)]
                while cw and cw[0] <= now - 1.0:
                    cw.popleft()
                if len(cw) >= lim["chat_per_s"]:
                    self._freeze(app_id, chat, "chat", 1)
                    raise FsError(429, C_RATE, M_RATE, self._rate_headers("chat", 1))
            aw.append(now)
            if cw is not None:
                cw.append(now)

    def _peek_chat(self, name, ctx, args):
        """The chat a request goes to (for freezes and limits), when it can be told."""
        if name == "send":
            p = ctx.call["json"]
            rtype = ctx.query.get("receive_id_type")
            rid = p.get("receive_id") if isinstance(p, dict) else None
            if isinstance(rid, str) and rid and rtype in RECEIVE_ID_TYPES:
                return self._chat_for(rtype, rid)
            return None
        if name in ("reply", "edit", "patch"):
            with self._lock:
                m = self._messages.get(args[0])
                return m["chat_id"] if m else None
        return None

    @staticmethod
    def _chat_for(rtype, rid):
        return rid if rtype == "chat_id" else "oc_dm_" + rid

    # ---- messages ----
    @staticmethod
    def _id_shape_ok(rtype, rid):
        if rtype == "chat_id":
            return rid.startswith("oc_")
        if rtype == "open_id":
            return rid.startswith("ou_")
        if rtype == "union_id":
            return rid.startswith("on_")
        if rtype == "email":
            return "@" in rid
        return not rid.startswith(("oc_", "ou_", "on_")) and "@" not in rid

    def _content(self, ctx, p, msg_type):
        raw = p.get("content")
        if not isinstance(raw, str):
            raise FsError(400, C_PARAM, param_msg("content must be a string"))
        try:
            c = json.loads(raw)
        except ValueError:
            raise FsError(400, C_PARAM, param_msg("invalid content, content is not a json"))
        if not isinstance(c, dict):
            raise FsError(400, C_PARAM, param_msg("invalid content"))
        if msg_type == "text" and not isinstance(c.get("text"), str):
            raise FsError(400, C_PARAM, param_msg("text is required in content"))
        if msg_type == "image" and not isinstance(c.get("image_key"), str):
            raise FsError(400, C_PARAM, param_msg("image_key is required in content"))
        if msg_type in ("file", "audio", "media") and not isinstance(c.get("file_key"), str):
            raise FsError(400, C_PARAM, param_msg("file_key is required in content"))
        card_id = None
        if msg_type == "interactive" and c.get("type") == "card":
            data = c.get("data") if isinstance(c.get("data"), dict) else {}
            card_id = data.get("card_id")
            with self._lock:
                card = self.cards.get(card_id) if isinstance(card_id, str) else None
                if card is None or card["app_id"] != ctx.app_id:
                    raise FsError(400, C_CARD_CONTENT, M_CARD_CONTENT + ", ext=ErrCode: 200740; "
                                  "ErrMsg: card entity not found; ErrorValue: %s" % card_id)
        size = len(ctx.req.body)
        if size > (MAX_TEXT_BODY if msg_type == "text" else MAX_RICH_BODY) and \
                msg_type in ("text", "post", "interactive"):
            raise FsError(400, C_TOO_LONG, M_TOO_LONG)
        return c, raw, card_id

    def _msg_type(self, p, allowed=MSG_TYPES):
        t = p.get("msg_type")
        if not isinstance(t, str) or t not in allowed:
            raise FsError(400, C_PARAM, param_msg("invalid msg_type"))
        return t

    def _uuid_of(self, p):
        u = p.get("uuid")
        if u is None or u == "":
            return None
        if not isinstance(u, str) or len(u) > MAX_UUID:
            raise FsError(400, C_PARAM, param_msg("uuid length exceeds limit"))
        return u

    def _dedupe(self, app_id, u):
        if u is None:
            return None
        hit = self._uuids.get((app_id, u))
        if hit and time.monotonic() - hit[1] < UUID_TTL:
            return self._messages.get(hit[0])
        return None

    def _check_gone(self, chat):
        if chat in self._gone:
            raise FsError(400, C_GONE, M_GONE)

    def _new_bot_message(self, ctx, chat, msg_type, content, raw, card_id, u, receive_id=None,
                         receive_id_type=None, parent=None, thread=False):
        now_ms = int(time.time() * 1000)
        mid = self._new_message_id()
        m = {"message_id": mid, "chat_id": chat, "receive_id": receive_id,
             "receive_id_type": receive_id_type, "msg_type": msg_type, "content": content,
             "uuid": u, "reply_to": parent["message_id"] if parent else None,
             "root_id": (parent.get("root_id") or parent["message_id"]) if parent else None,
             "thread": bool(thread), "edits": 0, "deleted": False, "card_id": card_id,
             "app_id": ctx.app_id, "sender": "bot", "time": time.monotonic(),
             "versions": [copy.deepcopy(content)], "_raw": raw, "_create_ms": now_ms,
             "_update_ms": now_ms}
        if thread:
            m["_thread_id"] = (parent.get("_thread_id") if parent else None) or "omt_" + _hex(12)
        self._messages[mid] = m
        self._sent.append(m)
        if u is not None:
            self._uuids[(ctx.app_id, u)] = (mid, time.monotonic())
        return m

    def _message_data(self, m, updated=None):
        app_id = m.get("app_id")
        d = {"message_id": m["message_id"], "msg_type": m["msg_type"],
             "create_time": str(m["_create_ms"]), "update_time": str(m.get("_update_ms",
                                                                       m["_create_ms"])),
             "deleted": m["deleted"], "updated": bool(m["edits"]) if updated is None else updated,
             "chat_id": m["chat_id"]}
        if m.get("root_id"):
            d["root_id"] = m["root_id"]
        if m.get("reply_to"):
            d["parent_id"] = m["reply_to"]
        if m.get("_thread_id"):
            d["thread_id"] = m["_thread_id"]
        if m.get("sender") == "bot":
            d["sender"] = {"id": app_id, "id_type": "app_id", "sender_type": "app",
                           "tenant_key": self._tenant_of(app_id)}
        else:
            d["sender"] = {"id": m.get("sender_open_id"), "id_type": "open_id",
                           "sender_type": "user", "tenant_key": self._tenant_of(app_id)}
        d["body"] = {"content": m.get("_raw") if m.get("_raw") is not None
                     else json.dumps(m.get("content"), ensure_ascii=False)}
        return d

    def _find_message(self, mid):
        m = self._messages.get(mid)
        if m is None:
            raise FsError(400, C_PARAM, param_msg("invalid message_id"))
        if m["deleted"]:
            raise FsError(400, C_RECALLED, M_RECALLED)
        return m

    def _own_message(self, ctx, mid):
        m = self._find_message(mid)
        if m.get("sender") != "bot" or m.get("app_id") != ctx.app_id:
            raise FsError(400, C_NOT_SENDER, M_NOT_SENDER)
        return m

    def _h_bot_info(self, ctx):
        bot = self.apps[ctx.app_id]["bot"]
        return _Body({"code": 0, "msg": "ok", "bot": {
            "activate_status": 2, "app_name": bot["app_name"],
            "avatar_url": bot.get("avatar_url", ""), "ip_white_list": [],
            "open_id": bot["open_id"]}})

    def _h_send(self, ctx):
        rtype = ctx.query.get("receive_id_type")
        if rtype not in RECEIVE_ID_TYPES:
            raise FsError(400, C_FIELD, M_FIELD)
        p = ctx.body()
        rid = p.get("receive_id")
        if not isinstance(rid, str) or not rid or not self._id_shape_ok(rtype, rid):
            raise FsError(400, C_PARAM, param_msg("invalid receive_id"))
        msg_type = self._msg_type(p)
        content, raw, card_id = self._content(ctx, p, msg_type)
        u = self._uuid_of(p)
        chat = self._chat_for(rtype, rid)
        with self._lock:
            hit = self._dedupe(ctx.app_id, u)
            if hit is not None:
                return self._message_data(hit)
            self._check_gone(chat)
            m = self._new_bot_message(ctx, chat, msg_type, content, raw, card_id, u,
                                      receive_id=rid, receive_id_type=rtype)
            return self._message_data(m)

    def _h_reply(self, ctx, mid):
        p = ctx.body()
        msg_type = self._msg_type(p)
        content, raw, card_id = self._content(ctx, p, msg_type)
        u = self._uuid_of(p)
        with self._lock:
            hit = self._dedupe(ctx.app_id, u)
            if hit is not None:
                return self._message_data(hit)
            parent = self._find_message(mid)
            self._check_gone(parent["chat_id"])
            m = self._new_bot_message(ctx, parent["chat_id"], msg_type, content, raw, card_id,
                                      u, parent=parent, thread=bool(p.get("reply_in_thread")))
            return self._message_data(m)

    def _h_get_message(self, ctx, mid):
        with self._lock:
            m = self._messages.get(mid)
            if m is None:
                raise FsError(400, C_PARAM, param_msg("invalid message_id"))
            return {"items": [self._message_data(m)]}

    def _h_edit(self, ctx, mid):
        p = ctx.body()
        msg_type = self._msg_type(p, ("text", "post"))
        with self._lock:
            m = self._own_message(ctx, mid)
        if m["msg_type"] not in ("text", "post"):
            raise FsError(400, C_TYPE, M_TYPE)
        content, raw, _ = self._content(ctx, p, msg_type)
        with self._lock:
            self._check_gone(m["chat_id"])
            if m["edits"] >= MAX_EDITS:
                raise FsError(400, C_EDIT_LIMIT, M_EDIT_LIMIT)
            m.update(msg_type=msg_type, content=content, _raw=raw, edits=m["edits"] + 1,
                     _update_ms=int(time.time() * 1000))
            m["versions"].append(copy.deepcopy(content))
            return self._message_data(m, updated=True)

    def _h_patch(self, ctx, mid):
        p = ctx.body()
        with self._lock:
            m = self._own_message(ctx, mid)
        if m["msg_type"] != "interactive":
            raise FsError(400, C_TYPE, M_TYPE)
        content, raw, card_id = self._content(ctx, p, "interactive")
        with self._lock:
            self._check_gone(m["chat_id"])
            m.update(content=content, _raw=raw, edits=m["edits"] + 1, card_id=card_id,
                     _update_ms=int(time.time() * 1000))
            m["versions"].append(copy.deepcopy(content))
        return {}

    def _h_delete(self, ctx, mid):
        with self._lock:
            m = self._own_message(ctx, mid)
            m["deleted"] = True
        return {}

    # ---- images and resources ----
    def _h_image(self, ctx):
        parts = ctx.parts
        if not parts or "image" not in parts:
            raise FsError(400, C_IMG_PARAM, M_IMG_PARAM)
        itype = (parts.get("image_type") or {}).get("data") or b""
        if itype.decode("utf-8", "replace") not in ("message", "avatar"):
            raise FsError(400, C_IMG_PARAM, M_IMG_PARAM)
        data = parts["image"]["data"] or b""
        if not data:
            raise FsError(400, C_IMG_EMPTY, M_IMG_EMPTY)
        if len(data) > MAX_IMAGE_BYTES:
            raise FsError(400, C_IMG_TOO_BIG, M_IMG_TOO_BIG)
        key = "img_v3_" + _hex(32)
        with self._lock:
            self.images[key] = data
            self.uploads += 1
        return {"image_key": key}

    def _h_get_image(self, ctx, key):
        with self._lock:
            data = self.images.get(key)
        if data is None:
            raise FsError(400, C_IMG_PARAM, M_IMG_PARAM)
        return _Raw(data)

    def _h_resource(self, ctx, mid, key):
        if ctx.query.get("type") not in ("image", "file"):
            raise FsError(400, C_IMG_PARAM, M_IMG_PARAM)
        with self._lock:
            data = self.resources.get((mid, key))
        if data is None:
            raise FsError(400, C_FILE_NOT_IN_MSG, M_FILE_NOT_IN_MSG)
        return _Raw(data, headers={"Content-Disposition": 'attachment; filename="%s"' % key})

    # ---- CardKit ----
    def _parse_card(self, card_type, data):
        if card_type != "card_json" or not isinstance(data, str) or not data:
            raise FsError(400, C_CK_PARAM, M_CK_PARAM)
        if len(data.encode("utf-8", "surrogatepass")) > MAX_CARD_BYTES:
            raise FsError(400, C_CK_TOO_BIG, M_CK_TOO_BIG)
        try:
            card = json.loads(data)
        except ValueError:
            card = None
        if not isinstance(card, dict):
            raise FsError(400, C_CK_GENERATE, M_CK_GENERATE)
        index, dup, count = _card_index(card)
        if dup:
            raise FsError(400, C_CK_DUP_ID, M_CK_DUP_ID)
        if count > MAX_CARD_ELEMENTS:
            raise FsError(400, C_CK_ELEMENTS, M_CK_ELEMENTS)
        return card, index

    @staticmethod
    def _streaming_of(card):
        cfg = card.get("config") if isinstance(card.get("config"), dict) else {}
        return bool(cfg.get("streaming_mode"))

    def _h_card_create(self, ctx):
        p = ctx.body(C_CK_PARAM, M_CK_PARAM)
        card, index = self._parse_card(p.get("type"), p.get("data"))
        with self._lock:
            card_id = str(next(self._card_ids))
            self.cards[card_id] = {
                "card_id": card_id, "json": card,
                "elements": {eid: _element_text(el) or "" for eid, el in index.items()},
                "sequences": [], "ops": [], "streaming_mode": self._streaming_of(card),
                "settings_calls": 0, "updates": 0, "replays": 0, "app_id": ctx.app_id,
                "time": time.monotonic()}
            self._card_state[card_id] = {"last_seq": 0, "window": collections.deque(),
                                         "uuids": {}}
        return {"card_id": card_id}

    def _card_op(self, ctx, card_id, kind, p, key, validate, apply):
        """One CardKit op: ownership, uuid replay, sequence, 10/s per card, then apply."""
        with self._lock:
            rec = self.cards.get(card_id)
            if rec is None:
                raise FsError(400, C_CK_NO_CARD, M_CK_NO_CARD)
            if rec["app_id"] != ctx.app_id:
                raise FsError(400, C_CK_NOT_OWNER, M_CK_NOT_OWNER)
            seq = p.get("sequence")
            if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= INT32_MAX:
                raise FsError(400, C_CK_PARAM, M_CK_PARAM)
            u = p.get("uuid")
            if u is not None and (not isinstance(u, str) or not 1 <= len(u) <= 64):
                raise FsError(400, C_CK_PARAM, M_CK_PARAM)
            prepared = validate(rec)
            st = self._card_state[card_id]
            if u is not None and st["uuids"].get(u) == (kind, seq, key):
                rec["replays"] += 1
                return {}
            now = time.monotonic()
            rec["sequences"].append(seq)
            if u is not None and u in st["uuids"]:
                raise FsError(400, C_CK_UUID, M_CK_UUID)
            if seq <= st["last_seq"]:
                self.violations.append({"kind": "sequence", "card_id": card_id, "sequence": seq,
                                        "previous": st["last_seq"], "op": kind, "time": now})
                raise FsError(400, C_CK_SEQUENCE, M_CK_SEQUENCE)
            win = st["window"]
            while win and win[0] <= now - 1.0:
                win.popleft()
            if len(win) >= CARD_OPS_PER_S:
                self.violations.append({"kind": "card_rate", "card_id": card_id,
                                        "ops": len(win) + 1, "op": kind, "time": now})
                raise FsError(429, C_RATE, M_RATE, {"x-ogw-ratelimit-limit": str(CARD_OPS_PER_S),
                                                    "x-ogw-ratelimit-reset": "1"})
            apply(rec, prepared)
            st["last_seq"] = seq
            win.append(now)
            rec["ops"].append((now, kind, seq))
            if u is not None:
                st["uuids"][u] = (kind, seq, key)
        return {}

    def _h_card_content(self, ctx, card_id, element_id):
        p = ctx.body(C_CK_PARAM, M_CK_PARAM)
        content = p.get("content")

        def validate(rec):
            if not isinstance(content, str) or not 1 <= len(content) <= MAX_ELEMENT_CONTENT:
                raise FsError(400, C_CK_PARAM, M_CK_PARAM)
            index, _, _ = _card_index(rec["json"])
            el = index.get(element_id)
            if el is None:
                raise FsError(400, C_CK_ELEMENT, M_CK_ELEMENT + ", ErrMsg: not find elementID: "
                              + element_id)
            if el.get("tag") not in ("markdown", "plain_text"):
                raise FsError(400, C_CK_ONLY_TEXT, M_CK_ONLY_TEXT)
            if self.strict_streaming and not rec["streaming_mode"]:
                raise FsError(400, C_CK_STREAMING_CLOSED, M_CK_STREAMING_CLOSED)
            return el

        def apply(rec, el):
            el["content"] = content
            rec["elements"][element_id] = content
        return self._card_op(ctx, card_id, "content", p, (element_id, content), validate, apply)

    def _h_card_settings(self, ctx, card_id):
        p = ctx.body(C_CK_PARAM, M_CK_PARAM)
        raw = p.get("settings")

        def validate(rec):
            try:
                s = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                s = None
            if not isinstance(s, dict):
                raise FsError(400, C_CK_PARAM, M_CK_PARAM)
            return s

        def apply(rec, s):
            cfg = s.get("config")
            if isinstance(cfg, dict):
                rec["json"].setdefault("config", {})
                if isinstance(rec["json"]["config"], dict):
                    rec["json"]["config"].update(cfg)
                if "streaming_mode" in cfg:
                    rec["streaming_mode"] = bool(cfg["streaming_mode"])
            if isinstance(s.get("card_link"), dict):
                rec["json"]["card_link"] = s["card_link"]
            rec["settings_calls"] += 1
        return self._card_op(ctx, card_id, "settings", p, raw, validate, apply)

    def _h_card_update(self, ctx, card_id):
        p = ctx.body(C_CK_PARAM, M_CK_PARAM)
        c = p.get("card") if isinstance(p.get("card"), dict) else {}

        def validate(rec):
            return self._parse_card(c.get("type"), c.get("data"))

        def apply(rec, parsed):
            card, index = parsed
            rec["json"] = card
            rec["elements"] = {eid: _element_text(el) or "" for eid, el in index.items()}
            rec["streaming_mode"] = self._streaming_of(card)
            rec["updates"] += 1
        return self._card_op(ctx, card_id, "card", p, c.get("data"), validate, apply)

    def _h_card_delayed_update(self, ctx):
        p = ctx.body(C_CK_PARAM, M_CK_PARAM)
        if not isinstance(p.get("token"), str) or not p["token"] or \
                not isinstance(p.get("card"), dict):
            raise FsError(400, C_CK_PARAM, M_CK_PARAM)
        with self._lock:
            self.card_updates.append({"app_id": ctx.app_id, "token": p["token"],
                                      "card": copy.deepcopy(p["card"]),
                                      "time": time.monotonic()})
        return {}

    # ---- events (the fake plays Feishu calling the gateway) ----
    def event(self, url, body, encrypt_key=None, verification_token=None, sign=None,
              timestamp=None, nonce=None, raw=None, timeout=10):
        if raw is None:
            body = copy.deepcopy(body)
            if verification_token is not None and isinstance(body, dict):
                if isinstance(body.get("header"), dict):
                    body["header"]["token"] = verification_token
                else:
                    body["token"] = verification_token
            plain = _dumps(body)
            sent = _dumps({"encrypt": encrypt_event(encrypt_key, plain)}) if encrypt_key \
                else plain
        else:
            sent = raw.encode() if isinstance(raw, str) else bytes(raw)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "fake-feishu-event"}
        if encrypt_key:
            if sign is None:
                sign = raw is not None or not (isinstance(body, dict)
                                               and body.get("type") == "url_verification")
            if sign:
                ts = str(int(time.time())) if timestamp is None else str(timestamp)
                nonce = _hex(16) if nonce is None else str(nonce)
                headers["X-Lark-Request-Timestamp"] = ts
                headers["X-Lark-Request-Nonce"] = nonce
                headers["X-Lark-Signature"] = signature(ts, nonce, encrypt_key, sent)
        req = urllib.request.Request(url, data=sent, headers=headers, method="POST")
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            status, data = 0, str(getattr(e, "reason", e)).encode()
        try:
            answer = json.loads(data)
        except ValueError:
            answer = data.decode("utf-8", "replace")
        with self._lock:
            self.deliveries.append({"url": url, "body": body if raw is None else None,
                                    "sent": sent, "headers": headers, "status": status,
                                    "answer": answer, "time": t0,
                                    "seconds": time.monotonic() - t0})
        return status, answer

    @staticmethod
    def encrypt(encrypt_key, plaintext, iv=None):
        """The "encrypt" value of an event body (base64 of IV + ciphertext)."""
        return encrypt_event(encrypt_key, plaintext, iv)

    def _header(self, app_id, event_type, verification_token, event_id=None):
        return {"event_id": event_id or _hex(32), "event_type": event_type,
                "create_time": str(int(time.time() * 1000)), "token": verification_token or "",
                "app_id": app_id, "tenant_key": self._tenant_of(app_id)}

    def _user_ids(self, open_id, user_id=None):
        h = hashlib.sha1(open_id.encode()).hexdigest()
        return {"open_id": open_id, "union_id": "on_" + h[:32], "user_id": user_id or h[:8]}

    def bot_mention(self, app_id, n=1):
        bot = self.apps[app_id]["bot"]
        return {"key": "@_user_%d" % n,
                "id": {"open_id": bot["open_id"],
                       "union_id": "on_" + hashlib.sha1(bot["open_id"].encode()).hexdigest()[:32],
                       "user_id": None},
                "mentioned_type": "bot", "name": bot["app_name"],
                "tenant_key": self._tenant_of(app_id)}

    def _mentions(self, mentions, app_id):
        out = []
        for i, m in enumerate(mentions or [], 1):
            m = dict(m)
            m.setdefault("key", "@_user_%d" % i)
            if not isinstance(m.get("id"), dict):
                oid = m.pop("open_id", None) or (m.get("id") if isinstance(m.get("id"), str)
                                                 else None) or "ou_user%d" % i
                ids = self._user_ids(oid)
                ids.update({k: m.pop(k) for k in ("union_id", "user_id") if k in m})
                m["id"] = ids
            m.setdefault("name", "")
            m.setdefault("tenant_key", self._tenant_of(app_id))
            out.append(m)
        return out

    @staticmethod
    def _chat_type(chat_id, chat_type):
        if chat_type:
            return chat_type
        return "p2p" if chat_id.startswith(("oc_p2p", "oc_dm_")) else "group"

    def message_event(self, app_id, chat_id, text, verification_token, chat_type=None,
                      sender_open_id="ou_user1", sender_type="user", message_id=None,
                      mentions=None, parent_id=None, event_id=None, root_id=None,
                      message_type="text", content=None, thread_id=None):
        if content is None:
            content = {"text": text}
        mid = message_id or self._new_message_id()
        ms = str(int(time.time() * 1000))
        msg = {"message_id": mid}
        if parent_id:
            msg["root_id"] = root_id or parent_id
            msg["parent_id"] = parent_id
        if thread_id:
            msg["thread_id"] = thread_id
        msg.update({"create_time": ms, "update_time": ms, "chat_id": chat_id,
                    "chat_type": self._chat_type(chat_id, chat_type),
                    "message_type": message_type,
                    "content": json.dumps(content, ensure_ascii=False)})
        if mentions:
            msg["mentions"] = self._mentions(mentions, app_id)
        self.user_message(chat_id, mid, app_id=app_id, text=text, msg_type=message_type,
                          content=content, sender_open_id=sender_open_id, parent_id=parent_id,
                          root_id=root_id)
        return {"schema": "2.0",
                "header": self._header(app_id, "im.message.receive_v1", verification_token,
                                       event_id),
                "event": {"sender": {"sender_id": self._user_ids(sender_open_id),
                                     "sender_type": sender_type,
                                     "tenant_key": self._tenant_of(app_id)},
                          "message": msg}}

    @staticmethod
    def received_post(post):
        """A post as the platform delivers it: no locale wrapper, "style": [] on runs."""
        p = post
        if isinstance(p, dict) and not isinstance(p.get("content"), list):
            for v in p.values():
                if isinstance(v, dict) and isinstance(v.get("content"), list):
                    p = v
                    break
        p = copy.deepcopy(p) if isinstance(p, dict) else {}
        out = {"title": p.get("title", ""), "content": []}
        for para in p.get("content") or []:
            row = []
            for el in para if isinstance(para, list) else []:
                if isinstance(el, dict):
                    el = dict(el)
                    if el.get("tag") in ("text", "at", "a"):
                        el.setdefault("style", [])
                    row.append(el)
            out["content"].append(row)
        return out

    def post_event(self, app_id, chat_id, post, verification_token, **kw):
        kw["message_type"] = "post"
        kw["content"] = self.received_post(post)
        return self.message_event(app_id, chat_id, post_text(kw["content"]), verification_token,
                                  **kw)

    def image_event(self, app_id, chat_id, image_key, verification_token, **kw):
        kw["message_type"] = "image"
        kw["content"] = {"image_key": image_key}
        return self.message_event(app_id, chat_id, "", verification_token, **kw)

    def file_event(self, app_id, chat_id, file_key, verification_token, file_name="file.bin",
                   **kw):
        kw["message_type"] = "file"
        kw["content"] = {"file_key": file_key, "file_name": file_name}
        return self.message_event(app_id, chat_id, "", verification_token, **kw)

    def card_action_event(self, app_id, verification_token, open_message_id, open_chat_id, value,
                          operator_open_id="ou_user1", token=None, event_id=None, tag="button"):
        op = self._user_ids(operator_open_id)
        op["tenant_key"] = self._tenant_of(app_id)
        return {"schema": "2.0",
                "header": self._header(app_id, "card.action.trigger", verification_token,
                                       event_id),
                "event": {"operator": {"tenant_key": op["tenant_key"], "user_id": op["user_id"],
                                       "open_id": op["open_id"], "union_id": op["union_id"]},
                          "token": token or "c-" + _hex(40),
                          "action": {"value": copy.deepcopy(value), "tag": tag},
                          "host": "im_message",
                          "context": {"open_message_id": open_message_id,
                                      "open_chat_id": open_chat_id}}}

    @staticmethod
    def url_verification(verification_token, challenge=None):
        return {"challenge": challenge or "ch-" + _hex(32), "token": verification_token,
                "type": "url_verification"}

    def v1_message_event(self, app_id, chat_id, text, verification_token, chat_type=None,
                         sender_open_id="ou_user1", message_id=None, is_mention=False,
                         parent_id=None):
        mid = message_id or self._new_message_id()
        ct = self._chat_type(chat_id, chat_type)
        self.user_message(chat_id, mid, app_id=app_id, text=text,
                          sender_open_id=sender_open_id, parent_id=parent_id)
        ids = self._user_ids(sender_open_id)
        return {"uuid": _hex(32), "token": verification_token, "ts": "%.6f" % time.time(),
                "type": "event_callback",
                "event": {"type": "message", "app_id": app_id,
                          "tenant_key": self._tenant_of(app_id),
                          "root_id": parent_id or "", "parent_id": parent_id or "",
                          "open_chat_id": chat_id,
                          "chat_type": "private" if ct == "p2p" else "group",
                          "msg_type": "text", "open_id": sender_open_id,
                          "union_id": ids["union_id"], "user_id": ids["user_id"],
                          "open_message_id": mid, "is_mention": bool(is_mention),
                          "text": text, "text_without_at_bot": text}}
