"""A fake Telegram Bot API server for end-to-end tests: the real wire format on 127.0.0.1,
built on upstream.Upstream (threaded HTTP/1.1, port 0, bounded waits, stop() frees sleepers).
Point chatgw at it with TELEGRAM_API_BASE=fake.url.

    tg = FakeTelegram(tokens={"123:ABC": {"id": 123, "username": "test_bot", "first_name": "Test"}})
    tg.start()
    tg.push_update("123:ABC", tg.text_update(42, "/start"))   # what the user says
    ...                                                        # chatgw polls, answers
    tg.sent(42)         # [{message_id, text, plain, entities, parse_mode, reply_to, buttons, ...}]
    tg.calls("sendMessage")                                    # every call, decoded
    tg.stop()

Requests: GET or POST /bot<token>/<method> (method names are case-insensitive, as in the Bot
API server), parameters in the query string, urlencoded, JSON or multipart bodies (the query
string and the body are merged). Answers are {"ok":true,"result":...} or
{"ok":false,"error_code":N,"description":"...","parameters":{...}}, Content-Type
application/json; a 429 also carries the Retry-After header. Files: GET
/file/bot<token>/<file_path>.

Wire details follow the Bot API server's source (tdlib/telegram-bot-api, Client.cpp) and
tdlib's entity parsers where they are known; see the constants below. Where Telegram's answer
is not documented the choice is marked "unverified".

Rate limits (off by default): limits={"chat_per_s": 1, "chat_burst": 3, "group_per_min": 20,
"bot_per_s": 30}. Every method in `limited_methods` (default LIMITED_METHODS: sendMessage,
sendPhoto, sendDocument, editMessageText, deleteMessage, sendChatAction, sendMessageDraft)
takes one token from the chat's bucket (chat_burst deep, refilled at chat_per_s), one slot of
the group's 60 s window (chats with negative ids) and one slot of the bot's 1 s window. Over a
limit: 429 "Too Many Requests: retry after N" and the chat (or, for bot_per_s, the whole bot)
is frozen N seconds; every request of a limited method that reaches a frozen chat/bot is
answered 429 again and recorded in `violations` (a well-behaved client makes none). A scripted
429 (script()) freezes the same way, whether limits are on or not.

Test API (all waits bounded; chat ids are ints; `token=None` means the first bot):
    FakeTelegram(tokens=None, limits=None, limited_methods=None, strict_replies=True,
                 require_https=False, max_poll_wait=50, first_update_id=100001,
                 callback_timeout=None)
    .start() -> self, .stop(), .url, .port, .token; attributes .limits, .limited_methods,
        .photo_error, .delay, .strict_replies
    .chat(chat_id, type=, blocked=, kicked=, migrate_to=, missing=, title=, username=,
          first_name=) -> state
    .push_update(token, update) -> update_id | None;  .pending(token=None) -> [updates]
    .text_update(chat_id, text, user_id=, chat_type=, username=, first_name=, entities=None,
                 reply_to_message=None, message_id=None, message_thread_id=None) -> update
    .edited_update(chat_id, message_id, text, ...) / .callback_update(chat_id, message_id, data,
        user_id=, query_id=) / .my_chat_member_update(chat_id, new_status="kicked", apply=True)
        / .migrate_update(old_chat_id, new_chat_id, apply=True) -> update (not queued)
    .deliver_webhook(token, update=None, secret=None, timeout=10) -> (status, body)
    .webhook(token=None) -> settings | None
    .add_file(file_id, data, file_path=None) -> record
    .script(method, answer=None, chat_id=None, status=429, retry_after=3, scope="chat",
            description=None, parameters=None, times=1)
    .calls(method=None, token=None), .sent(chat_id, include_deleted=True), .texts(chat_id),
    .message(chat_id, message_id), .drafts(chat_id, draft_id=None), .actions(chat_id),
    .commands(token=None, scope=None, language_code=""), .frozen(chat_id=None, token=None)
    lists: .polls, .answers, .violations, .webhook_deliveries, .errors (bugs of the fake)
"""
import base64
import collections
import copy
import hashlib
import itertools
import json
import math
import mimetypes
import re
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from upstream import FakeServer, OneHandler, parse_multipart

# ---- limits of the Bot API (https://core.telegram.org/bots/api) ----
MAX_TEXT = 4096            # sendMessage/editMessageText/sendMessageDraft: UTF-16 units, parsed
MAX_CAPTION = 1024
MAX_RAW_TEXT_BYTES = 1 << 15   # Client.cpp get_formatted_text: "Text is too long"
MAX_CALLBACK_DATA = 64     # bytes
MAX_PHOTO_BYTES = 10 << 20   # multipart photo
MAX_UPLOAD_BYTES = 50 << 20  # any multipart upload
MAX_DOWNLOAD_BYTES = 20 << 20  # getFile
LONG_POLL_MAX_TIMEOUT = 50   # Client.h

LIMITED_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "editMessageText",
                             "deleteMessage", "sendChatAction", "sendMessageDraft"})

# Update types (Client.cpp get_update_type_name); by default chat_member, message_reaction and
# message_reaction_count are not delivered.
UPDATE_TYPES = ("message", "edited_message", "channel_post", "edited_channel_post", "inline_query",
                "chosen_inline_result", "callback_query", "custom_event", "custom_query",
                "shipping_query", "pre_checkout_query", "poll", "poll_answer", "my_chat_member",
                "chat_member", "chat_join_request", "chat_boost", "removed_chat_boost",
                "message_reaction", "message_reaction_count", "business_connection",
                "business_message", "edited_business_message", "deleted_business_messages",
                "purchased_paid_media", "managed_bot", "guest_message")
DEFAULT_ALLOWED = frozenset(UPDATE_TYPES) - {"chat_member", "message_reaction",
                                             "message_reaction_count"}

CHAT_ACTIONS = frozenset({"typing", "upload_photo", "record_video", "upload_video", "record_voice",
                          "upload_voice", "upload_document", "choose_sticker", "find_location",
                          "record_video_note", "upload_video_note"})

# ---- descriptions ----
E_UNAUTHORIZED = "Unauthorized"
E_BAD_TOKEN = "Unauthorized: invalid token specified"
E_NO_METHOD = "Not Found: method not found"   # Client.cpp; a path not under /bot: "Not Found"
E_TOO_LARGE = "Request Entity Too Large"      # 413 for an upload over 50 MB
E_POLL_CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
                   "instance is running")
E_POLL_WEBHOOK = ("Conflict: can't use getUpdates method while webhook is active; use "
                  "deleteWebhook to delete the webhook first")
E_POLL_SETWEBHOOK = "Conflict: terminated by setWebhook request"
E_EMPTY = "Bad Request: message text is empty"
E_TOO_LONG = "Bad Request: message is too long"
E_RAW_TOO_LONG = "Bad Request: text is too long"
E_CAPTION_TOO_LONG = "Bad Request: message caption is too long"
E_PARSE = "Bad Request: can't parse entities: "
E_PARSE_MODE = "Bad Request: unsupported parse_mode"
E_BUTTON_DATA = "Bad Request: BUTTON_DATA_INVALID"
E_CHAT_EMPTY = "Bad Request: chat_id is empty"
E_CHAT_NOT_FOUND = "Bad Request: chat not found"
E_BLOCKED = "Forbidden: bot was blocked by the user"
E_KICKED = "Forbidden: bot was kicked from the %s chat"   # group | supergroup | channel
E_MIGRATED = "Bad Request: group chat was upgraded to a supergroup chat"
E_NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                  "markup are exactly the same as a current content and reply markup of the "
                  "message")
E_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
E_CANT_EDIT = "Bad Request: message can't be edited"
E_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
E_REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
E_NO_MESSAGE_ID = "Bad Request: message identifier is not specified"
E_ACTION = "Bad Request: wrong parameter action in request"
E_DRAFT_PEER = "Bad Request: TEXTDRAFT_PEER_INVALID"      # drafts outside private chats
E_DRAFT_ID = "Bad Request: invalid draft identifier specified"   # draft_id 0: unverified wording
E_QUERY_ID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
E_NO_PHOTO = "Bad Request: there is no photo in the request"
E_NO_DOCUMENT = "Bad Request: there is no document in the request"
E_FILE_ID = "Bad Request: wrong file identifier/HTTP URL specified"
E_GETFILE_ID = "Bad Request: wrong file_id or the file is temporarily unavailable"
E_FILE_TOO_BIG = "Bad Request: file is too big"   # getFile over 20 MB (Client.cpp)
# A multipart photo over 10 MB: the MTProto error PHOTO_SAVE_FILE_INVALID ("exceeds 10 MB"),
# passed through by the Bot API; not documented for the Bot API (unverified).
E_PHOTO_TOO_BIG = "Bad Request: PHOTO_SAVE_FILE_INVALID"
E_PHOTO_DIMENSIONS = "Bad Request: PHOTO_INVALID_DIMENSIONS"
E_SECRET_LONG = "Bad Request: secret token is too long"
E_SECRET_CHARS = "Bad Request: secret token contains unallowed characters"
E_WEBHOOK_URL = "Bad Request: invalid webhook URL specified"
E_COMMAND = "Bad Request: BOT_COMMAND_INVALID"
E_COMMAND_DESCRIPTION = "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"

MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"


class TgError(Exception):
    def __init__(self, status, description, parameters=None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class _Hang(Exception):
    def __init__(self, seconds):
        super().__init__(seconds)
        self.seconds = seconds


class _Reset(Exception):
    pass


def dumps(obj):
    """JSON as the Bot API writes it: compact, UTF-8 (not \\u escapes)."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate: escape it
        return json.dumps(obj, separators=(",", ":")).encode()


def _reply_json(req, status, obj, headers=None):
    hs = {"Content-Type": "application/json"}
    hs.update(headers or {})
    req.reply(status, dumps(obj), hs)


def utf16_len(s):
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _u16(ch):
    return 2 if ord(ch) > 0xFFFF else 1


def _byte_offset(text, i):
    return len(text[:i].encode("utf-8", "surrogatepass"))


def _looks_like_url(url):
    if not url or any(c.isspace() for c in url):
        return False
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url)) or "." in url


def _url_entity(offset, length, url):
    m = re.match(r"^tg://user\?id=(\d+)$", url)
    if m:
        return {"type": "text_mention", "offset": offset, "length": length,
                "user": {"id": int(m.group(1)), "is_bot": False, "first_name": ""}}
    if not _looks_like_url(url):
        return None
    return {"type": "text_link", "offset": offset, "length": length, "url": url}


def _sort_entities(entities):
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


# ---------------------------------------------------------------------------------------------
# Entity parsing, after tdlib (td/telegram/MessageEntity.cpp: do_parse_markdown_v2, do_parse_html,
# parse_markdown). Errors are tdlib's texts; the Bot API prefixes "Bad Request: can't parse
# entities: ". Offsets and lengths of entities are UTF-16 code units; error offsets are bytes.
# ---------------------------------------------------------------------------------------------

_MDV2_NAMES = {"bold": "Bold", "italic": "Italic", "underline": "Underline",
               "strikethrough": "Strikethrough", "spoiler": "Spoiler", "code": "Code",
               "pre": "Pre", "text_link": "TextUrl", "custom_emoji": "CustomEmoji"}


def parse_markdown_v2(text):
    """(plain text, entities) of a MarkdownV2 text; raises TgError like Telegram."""
    n = len(text)

    def at(k):
        return text[k] if k < n else "\0"

    def fail(msg):
        raise TgError(400, E_PARSE + msg)

    out = []
    u16 = 0
    entities = []
    stack = []   # {"type", "off", "byte", "begin", "arg"}
    quote = None  # {"off", "expandable"}
    line_start = True
    i = 0
    while i < n:
        c = text[i]
        in_code = bool(stack) and stack[-1]["type"] in ("code", "pre")
        if line_start and in_code:
            line_start = False
        elif line_start:
            line_start = False
            if c == ">" or text.startswith("**>", i):
                expandable = c == "*"
                if quote is None:
                    quote = {"off": u16, "expandable": expandable}
                elif expandable:
                    quote["expandable"] = True
                i += 3 if expandable else 1
                continue
            if quote is not None:
                end = u16 - 1 if out and out[-1] == "\n" else u16
                if end > quote["off"]:
                    entities.append({"type": "expandable_blockquote" if quote["expandable"]
                                     else "blockquote", "offset": quote["off"],
                                     "length": end - quote["off"]})
                quote = None
        if c == "\\" and 0 < ord(at(i + 1)) <= 126:
            out.append(text[i + 1])
            u16 += 1
            if text[i + 1] == "\n":
                line_start = True
            i += 2
            continue
        reserved = "`" if in_code else MDV2_RESERVED
        if c not in reserved:
            out.append(c)
            u16 += _u16(c)
            if c == "\n":
                line_start = True
            i += 1
            continue
        # "||" at the end of a quoted line closes an expandable block quotation
        if (quote is not None and c == "|" and at(i + 1) == "|" and at(i + 2) in ("\n", "\0")
                and not (stack and stack[-1]["type"] == "spoiler")):
            quote["expandable"] = True
            i += 2
            continue
        top = stack[-1]["type"] if stack else None
        is_end = {
            "bold": c == "*",
            "italic": c == "_" and at(i + 1) != "_",
            "code": c == "`",
            "pre": c == "`" and at(i + 1) == "`" and at(i + 2) == "`",
            "text_link": c == "]",
            "underline": c == "_" and at(i + 1) == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and at(i + 1) == "|",
            "custom_emoji": c == "]",
        }.get(top, False)
        if not is_end:
            byte = _byte_offset(text, i)
            arg = None
            if c == "_":
                if at(i + 1) == "_":
                    kind = "underline"
                    i += 1
                else:
                    kind = "italic"
            elif c == "*":
                kind = "bold"
            elif c == "~":
                kind = "strikethrough"
            elif c == "|":
                if at(i + 1) != "|":
                    fail("Character '|' is reserved and must be escaped with the preceding '\\'")
                kind = "spoiler"
                i += 1
            elif c == "[":
                kind = "text_link"
            elif c == "`":
                if at(i + 1) == "`" and at(i + 2) == "`":
                    kind = "pre"
                    i += 3
                    le = i
                    while le < n and not text[le].isspace() and text[le] != "`":
                        le += 1
                    if i != le and le < n and text[le] != "`":
                        arg = text[i:le]
                        i = le
                    if at(i) in "\r\n" and i < n:
                        if at(i + 1) in "\r\n" and i + 1 < n and at(i) != at(i + 1):
                            i += 2
                        else:
                            i += 1
                    stack.append({"type": kind, "off": u16, "byte": byte, "begin": len(out),
                                  "arg": arg})
                    continue
                kind = "code"
            elif c == "!" and at(i + 1) == "[":
                kind = "custom_emoji"
                i += 1
            else:
                fail("Character '%s' is reserved and must be escaped with the preceding '\\'" % c)
            stack.append({"type": kind, "off": u16, "byte": byte, "begin": len(out), "arg": arg})
            i += 1
            continue
        # end of an entity
        ent = stack.pop()
        kind = ent["type"]
        skip = u16 == ent["off"]
        extra = None
        if kind in ("underline", "spoiler"):
            i += 1
        elif kind == "pre":
            i += 2
        elif kind in ("text_link", "custom_emoji"):
            if at(i + 1) != "(":
                if kind == "custom_emoji":
                    fail("Custom emoji entity must contain a tg://emoji URL")
                url = "".join(out[ent["begin"]:])
            else:
                i += 2
                url_begin = i
                url = []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and 0 < ord(at(i + 1)) <= 126:
                        url.append(text[i + 1])
                        i += 2
                        continue
                    url.append(text[i])
                    i += 1
                if at(i) != ")":
                    fail("Can't find end of a URL at byte offset %d"
                         % _byte_offset(text, url_begin))
                url = "".join(url)
            if kind == "custom_emoji":
                m = re.match(r"^tg://emoji\?id=(\d+)$", url)
                if not m:
                    fail("Invalid custom emoji URL specified")
                extra = {"custom_emoji_id": m.group(1)}
            else:
                extra = _url_entity(ent["off"], u16 - ent["off"], url)
                if extra is None:
                    skip = True
        i += 1
        if skip:
            continue
        if kind == "text_link":
            entities.append(extra)
            continue
        e = {"type": kind, "offset": ent["off"], "length": u16 - ent["off"]}
        if kind == "pre" and ent["arg"]:
            e["language"] = ent["arg"]
        if extra:
            e.update(extra)
        entities.append(e)
    if stack:
        ent = stack[-1]
        name = _MDV2_NAMES[ent["type"]]
        if ent["type"] == "pre" and ent["arg"]:
            name = "PreCode"
        fail("Can't find end of %s entity at byte offset %d" % (name, ent["byte"]))
    if quote is not None and u16 > quote["off"]:
        entities.append({"type": "expandable_blockquote" if quote["expandable"] else "blockquote",
                         "offset": quote["off"], "length": u16 - quote["off"]})
    return "".join(out), _sort_entities(entities)


def parse_markdown(text):
    """Legacy Markdown (parse_mode "Markdown")."""
    n = len(text)
    out = []
    u16 = 0
    entities = []
    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            u16 += 1
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        i += 1
        is_pre = False
        lang = None
        if c == "`" and text.startswith("``", i):
            i += 2
            is_pre = True
            le = i
            while le < n and not text[le].isspace() and text[le] != "`":
                le += 1
            if i != le and le < n and text[le] != "`":
                lang = text[i:le]
                i = le
            if i < n and text[i] in "\r\n":
                if i + 1 < n and text[i + 1] in "\r\n" and text[i] != text[i + 1]:
                    i += 2
                else:
                    i += 1
        off = u16
        start_out = len(out)
        while i < n and (text[i] != end_char or (is_pre and not text.startswith("``", i + 1))):
            out.append(text[i])
            u16 += _u16(text[i])
            i += 1
        if i >= n:
            raise TgError(400, E_PARSE + "Can't find end of the entity starting at byte offset %d"
                          % _byte_offset(text, begin))
        if off != u16:
            length = u16 - off
            if c == "_":
                entities.append({"type": "italic", "offset": off, "length": length})
            elif c == "*":
                entities.append({"type": "bold", "offset": off, "length": length})
            elif c == "[":
                if i + 1 < n and text[i + 1] == "(":
                    i += 2
                    url = []
                    while i < n and text[i] != ")":
                        url.append(text[i])
                        i += 1
                    url = "".join(url)
                else:
                    url = "".join(out[start_out:])
                e = _url_entity(off, length, url)
                if e:
                    entities.append(e)
            elif is_pre:
                e = {"type": "pre", "offset": off, "length": length}
                if lang:
                    e["language"] = lang
                entities.append(e)
            else:
                entities.append({"type": "code", "offset": off, "length": length})
        if is_pre:
            i += 2
        i += 1
    return "".join(out), _sort_entities(entities)


_HTML_TAGS = {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "span",
              "tg-emoji", "pre", "code", "blockquote"}
_HTML_TYPES = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "s": "strikethrough",
               "strike": "strikethrough", "del": "strikethrough", "u": "underline",
               "ins": "underline", "tg-spoiler": "spoiler", "span": "spoiler"}


def _decode_html_entity(text, pos):
    """(character, new position) of an HTML entity at pos, or (None, pos)."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        res = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                res = res * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and text[end].isdigit():
                res = res * 10 + int(text[end])
                end += 1
        if res == 0 or res >= 0x10FFFF or end - pos >= 10 or 0xD800 <= res <= 0xDFFF:
            return None, pos
        ch = chr(res)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        ch = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(text[pos + 1:end])
        if ch is None:
            return None, pos
    if end < n and text[end] == ";":
        end += 1
    return ch, end


def parse_html(text):
    """(plain text, entities) of an HTML text; raises TgError like Telegram."""
    n = len(text)

    def at(k):
        return text[k] if k < n else "\0"

    def space(k):
        return at(k) in " \t\r\n\0\f\v"

    def fail(msg):
        raise TgError(400, E_PARSE + msg)

    out = []
    u16 = 0
    entities = []
    stack = []  # {"tag", "arg", "off", "begin"}
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            ch, j = _decode_html_entity(text, i)
            if ch is not None:
                out.append(ch)
                u16 += _u16(ch)
                i = j
                continue
        if c != "<":
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue
        begin = i
        bbegin = _byte_offset(text, begin)
        i += 1
        if at(i) != "/":
            while not space(i) and at(i) != ">":
                i += 1
            if i >= n:
                fail("Unclosed start tag at byte offset %d" % bbegin)
            tag = text[begin + 1:i].lower()
            if tag not in _HTML_TAGS:
                fail('Unsupported start tag "%s" at byte offset %d' % (tag, bbegin))
            attrs = {}
            while at(i) != ">":
                while i < n and space(i):
                    i += 1
                if at(i) == ">":
                    break
                if i >= n:
                    fail('Unclosed start tag "%s" at byte offset %d' % (tag, bbegin))
                abegin = i
                while not space(i) and at(i) not in "=>":
                    i += 1
                name = text[abegin:i].lower()
                if not name:
                    fail('Empty attribute name in the tag "%s" at byte offset %d' % (tag, bbegin))
                while i < n and space(i):
                    i += 1
                if i >= n:
                    fail('Unclosed start tag "%s" at byte offset %d' % (tag, bbegin))
                if at(i) != "=":
                    if tag == "blockquote" and name == "expandable":
                        attrs[name] = ""
                        continue
                    fail('Expected equal sign in declaration of an attribute of the tag "%s" at '
                         'byte offset %d' % (tag, bbegin))
                i += 1
                while i < n and space(i):
                    i += 1
                if i >= n:
                    fail('Unclosed start tag "%s" at byte offset %d' % (tag, bbegin))
                if at(i) not in "'\"":
                    tbegin = i
                    while at(i).isalnum() or at(i) in ".-":
                        i += 1
                    value = text[tbegin:i].lower()
                    if not space(i) and at(i) != ">":
                        fail("Unexpected end of name token at byte offset %d"
                             % _byte_offset(text, tbegin))
                else:
                    quote_ch = text[i]
                    i += 1
                    value = []
                    while i < n and text[i] != quote_ch:
                        if text[i] == "&":
                            ch, j = _decode_html_entity(text, i)
                            if ch is not None:
                                value.append(ch)
                                i = j
                                continue
                        value.append(text[i])
                        i += 1
                    value = "".join(value)
                    if at(i) == quote_ch:
                        i += 1
                if i >= n:
                    fail("Unclosed start tag at byte offset %d" % bbegin)
                attrs[name] = value
            if tag == "span" and attrs.get("class") != "tg-spoiler":
                fail('Tag "span" must have class "tg-spoiler" at byte offset %d' % bbegin)
            if tag == "tg-emoji" and not re.match(r"^\d+$", attrs.get("emoji-id", "")):
                fail('Tag "tg-emoji" must have attribute "emoji-id" with a valid identifier at '
                     'byte offset %d' % bbegin)
            arg = None
            if tag == "a":
                arg = attrs.get("href", "")
            elif tag == "code":
                cls = attrs.get("class", "")
                arg = cls[9:] if cls.startswith("language-") else ""
            elif tag == "tg-emoji":
                arg = attrs["emoji-id"]
            elif tag == "blockquote":
                arg = "expandable" in attrs
            stack.append({"tag": tag, "arg": arg, "off": u16, "begin": len(out)})
            i += 1
            continue
        # end tag
        if not stack:
            fail("Unexpected end tag at byte offset %d" % bbegin)
        while not space(i) and at(i) != ">":
            i += 1
        end_tag = text[begin + 2:i].lower()
        while i < n and space(i):
            i += 1
        if at(i) != ">":
            fail("Unclosed end tag at byte offset %d" % bbegin)
        top = stack[-1]
        if end_tag and end_tag != top["tag"]:
            fail('Unmatched end tag at byte offset %d, expected "</%s>", found "</%s>"'
                 % (bbegin, top["tag"], end_tag))
        stack.pop()
        i += 1
        if u16 <= top["off"]:
            continue
        off, length, tag = top["off"], u16 - top["off"], top["tag"]
        if tag in _HTML_TYPES:
            entities.append({"type": _HTML_TYPES[tag], "offset": off, "length": length})
        elif tag == "a":
            e = _url_entity(off, length, top["arg"] or "".join(out[top["begin"]:]))
            if e:
                entities.append(e)
        elif tag == "tg-emoji":
            entities.append({"type": "custom_emoji", "offset": off, "length": length,
                             "custom_emoji_id": top["arg"]})
        elif tag == "blockquote":
            entities.append({"type": "expandable_blockquote" if top["arg"] else "blockquote",
                             "offset": off, "length": length})
        elif tag == "pre":
            last = entities[-1] if entities else None
            if (last and last["type"] == "code" and last["offset"] == off
                    and last["length"] == length):
                last["type"] = "pre"           # <pre><code class="language-x">: a PreCode
                lang = last.pop("_l", "")
                if lang:
                    last["language"] = lang
            else:
                entities.append({"type": "pre", "offset": off, "length": length})
        elif tag == "code":
            e = {"type": "code", "offset": off, "length": length}
            if top["arg"]:
                e["_l"] = top["arg"]
            entities.append(e)
    if stack:
        fail('Can\'t find end tag corresponding to start tag "%s"' % stack[-1]["tag"])
    for e in entities:
        e.pop("_l", None)
    return "".join(out), _sort_entities(entities)


_ENTITY_TYPES = {"bold", "italic", "underline", "strikethrough", "spoiler", "code", "pre",
                 "text_link", "text_mention", "custom_emoji", "blockquote", "expandable_blockquote",
                 "date_time"}
_AUTO_TYPES = {"mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number",
               "bank_card_number"}   # accepted and dropped: Telegram finds those itself


def check_entities(plain, entities):
    """Validates entities given as a JSON list (no parse_mode), like the Bot API + tdlib."""
    if entities is None:
        return []
    if not isinstance(entities, list):
        return []
    out = []
    total = utf16_len(plain)
    for e in entities:
        if not isinstance(e, dict):
            raise TgError(400, "Bad Request: can't parse MessageEntity: expected an Object")
        t = e.get("type")
        if not isinstance(t, str) or not t:
            raise TgError(400, "Bad Request: can't parse MessageEntity: Type is not specified")
        for f in ("offset", "length"):
            if f not in e:
                raise TgError(400, 'Bad Request: can\'t parse MessageEntity: Field "%s" must be '
                              'of type Number' % f)
            if not isinstance(e[f], int) or isinstance(e[f], bool):
                try:
                    e = dict(e, **{f: int(e[f])})
                except (TypeError, ValueError):
                    raise TgError(400, 'Bad Request: can\'t parse MessageEntity: Field "%s" must '
                                  'be of type Number' % f)
        if t in _AUTO_TYPES:
            continue
        if t not in _ENTITY_TYPES:
            raise TgError(400, "Bad Request: can't parse MessageEntity: Unsupported type specified")
        if t == "text_link" and not e.get("url"):
            raise TgError(400, 'Bad Request: can\'t parse MessageEntity: Field "url" must be of '
                          'type String')
        if e["length"] <= 0 or e["offset"] < 0:
            continue
        out.append(dict(e))
    for e in _sort_entities(out):
        if e["offset"] >= total:
            raise TgError(400, "Bad Request: entity begins after the end of the text at UTF-16 "
                          "offset %d" % e["offset"])
        if e["offset"] + e["length"] > total:
            raise TgError(400, "Bad Request: entity beginning at UTF-16 offset %d ends after the "
                          "end of the text at UTF-16 offset %d" % (e["offset"],
                                                                   e["offset"] + e["length"]))
    return _sort_entities(out)


def format_text(text, parse_mode=None, entities=None):
    """(plain, entities) of a text as Telegram shows it; raises TgError on bad markup."""
    mode = (parse_mode or "").lower()
    if text and mode and mode != "none":
        if mode == "markdownv2":
            return parse_markdown_v2(text)
        if mode == "markdown":
            return parse_markdown(text)
        if mode == "html":
            return parse_html(text)
        raise TgError(400, E_PARSE_MODE)
    return text, check_entities(text, entities)


def auto_entities(text):
    """bot_command and mention entities Telegram finds in a user's text (UTF-16 offsets)."""
    out = []
    for m in re.finditer(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])", text):
        out.append({"type": "bot_command", "offset": utf16_len(text[:m.start()]),
                    "length": utf16_len(m.group(0))})
    for m in re.finditer(r"(?<![\w/@])@[A-Za-z0-9_]{5,32}(?!\w)", text):
        out.append({"type": "mention", "offset": utf16_len(text[:m.start()]),
                    "length": utf16_len(m.group(0))})
    return _sort_entities(out)


def image_size(data):
    """(width, height) of PNG, GIF or JPEG bytes, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            seg = struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + seg
    return None


# ---------------------------------------------------------------------------------------------


class _Bot:
    def __init__(self, token, info):
        self.token = token
        self.user = {"id": int(info.get("id", token.split(":")[0])), "is_bot": True,
                     "first_name": info.get("first_name", "Bot"),
                     "username": info.get("username", "test_bot"),
                     "can_join_groups": info.get("can_join_groups", True),
                     "can_read_all_group_messages": info.get("can_read_all_group_messages", False),
                     "supports_inline_queries": info.get("supports_inline_queries", False),
                     "can_connect_to_business": False, "has_main_web_app": False,
                     "has_topics_enabled": False}
        self.queue = []            # pending updates, ascending update_id
        self.next_update_id = None
        self.allowed = set(DEFAULT_ALLOWED)
        self.poller = None         # the getUpdates waiting now: {"abort": None|description}
        self.webhook = None        # {"url", "secret_token", "max_connections", ...}
        self.webhook_error = None  # (unix date, message)
        self.commands = {}         # (scope json, language_code) -> [commands]


class FakeTelegram(FakeServer):
    METHODS = ("getMe", "getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo",
               "sendMessage", "editMessageText", "deleteMessage", "sendChatAction",
               "sendMessageDraft", "sendPhoto", "sendDocument", "answerCallbackQuery",
               "setMyCommands", "getMyCommands", "deleteMyCommands", "getFile", "getChat",
               "logOut", "close")
    # Fields decoded from JSON in recorded params, and typed fields.
    JSON_FIELDS = ("reply_markup", "reply_parameters", "entities", "caption_entities",
                   "link_preview_options", "allowed_updates", "commands", "scope")
    INT_FIELDS = ("chat_id", "message_id", "offset", "limit", "timeout", "draft_id",
                  "message_thread_id", "reply_to_message_id", "max_connections", "cache_time")
    BOOL_FIELDS = ("show_alert", "drop_pending_updates", "disable_web_page_preview",
                   "disable_notification", "protect_content", "allow_sending_without_reply",
                   "has_spoiler", "show_caption_above_media", "disable_content_type_detection")

    def __init__(self, tokens=None, limits=None, limited_methods=None, strict_replies=True,
                 require_https=False, max_poll_wait=LONG_POLL_MAX_TIMEOUT, first_update_id=100001,
                 callback_timeout=None):
        tokens = tokens or {"123:ABC": {"id": 123, "username": "test_bot", "first_name": "Test"}}
        self._bots = {t: _Bot(t, info or {}) for t, info in tokens.items()}
        for b in self._bots.values():
            b.next_update_id = first_update_id
        self.limits = limits
        self.limited_methods = set(LIMITED_METHODS if limited_methods is None else limited_methods)
        self.strict_replies = strict_replies   # replies to unknown messages fail, as on Telegram
        self.require_https = require_https     # webhooks: https and ports 443/80/88/8443 only
        self.max_poll_wait = max_poll_wait     # bound on any long poll, seconds
        self.callback_timeout = callback_timeout  # seconds after which a query can't be answered
        self.photo_error = None    # a description: the next sendPhoto fails with it
        self.delay = 0.0           # every answer waits this long first (released by stop())
        self._methods = {m.lower(): m for m in self.METHODS}
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._up = OneHandler(self._handle)
        self._calls = []
        # every getUpdates: {token, offset, limit, timeout, allowed_updates, t, status, returned}
        self.polls = []
        # requests to a frozen chat/bot: {chat_id, method, t, frozen_until, scope, token}
        self.violations = []
        # answerCallbackQuery: {callback_query_id, text, show_alert, url, cache_time, t, latency,
        # chat_id, message_id, data}
        self.answers = []
        self.webhook_deliveries = []
        self.errors = []           # exceptions inside the fake (should stay empty)
        self._chats = {}           # chat_id -> state dict
        self._messages = {}        # (chat_id, message_id) -> record (bot's and users')
        self._sent_order = []      # records of the bot's messages, in send order
        self._next_mid = {}
        self._drafts = {}          # chat_id -> {draft_id: [{text, plain, entities, t}]}
        self._actions = {}         # chat_id -> [{action, t}]
        self._queries = {}         # callback_query_id -> {t, chat_id, data, answered}
        self._files = {}           # file_id -> {file_id, file_unique_id, data, file_path, ...}
        self._file_paths = {}
        self._file_seq = itertools.count(1)
        self._query_seq = itertools.count(4382917300001)
        self._scripts = []
        self._buckets = {}
        self._group_windows = collections.defaultdict(collections.deque)
        self._bot_windows = collections.defaultdict(collections.deque)
        self._frozen_chat = {}
        self._frozen_bot = {}

    # ---- lifecycle ----
    def stop(self):
        self._up._stopping.set()   # long polls and hangs end at once
        with self._cv:
            self._cv.notify_all()
        self._up.stop()

    @property
    def token(self):
        """The first bot's token."""
        return next(iter(self._bots))

    def _bot(self, token):
        return self._bots[token if token is not None else self.token]

    # ---- chats ----
    @staticmethod
    def chat_type_of(chat_id):
        if isinstance(chat_id, int):
            if chat_id > 0:
                return "private"
            return "supergroup" if str(chat_id).startswith("-100") else "group"
        return "channel"

    def chat(self, chat_id, type=None, blocked=None, kicked=None, migrate_to=None, missing=None,
             title=None, username=None, first_name=None):
        """Declares or changes a chat (any chat id exists unless marked); returns its state."""
        with self._lock:
            st = self._chat_state(chat_id)
            for k, v in (("type", type), ("blocked", blocked), ("kicked", kicked),
                         ("migrate_to", migrate_to), ("missing", missing), ("title", title),
                         ("username", username), ("first_name", first_name)):
                if v is not None:
                    st[k] = v
            return dict(st)

    def _chat_state(self, chat_id):
        st = self._chats.get(chat_id)
        if st is None:
            t = self.chat_type_of(chat_id)
            group = t != "private"
            st = {"id": chat_id, "type": t, "blocked": False, "kicked": False, "migrate_to": None,
                  "missing": False, "title": "Test %s %s" % (t, chat_id) if group else None,
                  "username": "user%s" % chat_id if t == "private" else None,
                  "first_name": "User%s" % chat_id if t == "private" else None}
            self._chats[chat_id] = st
        return st

    def _chat_json(self, chat_id):
        st = self._chat_state(chat_id)
        out = {"id": chat_id}
        if st["type"] == "private":
            out["first_name"] = st["first_name"] or ""
            if st["username"]:
                out["username"] = st["username"]
        else:
            out["title"] = st["title"] or ""
            if st["username"]:
                out["username"] = st["username"]
        out["type"] = st["type"]
        return out

    def _resolve_chat(self, raw, need_write=True):
        """The chat id of a chat_id parameter, or TgError as Telegram answers."""
        if raw is None or raw == "":
            raise TgError(400, E_CHAT_EMPTY)
        chat_id = self._parse_chat_id(raw)
        if chat_id is None:
            raise TgError(400, E_CHAT_NOT_FOUND)
        st = self._chat_state(chat_id)
        if st["missing"]:
            raise TgError(400, E_CHAT_NOT_FOUND)
        if need_write:
            if st["migrate_to"] is not None:
                raise TgError(400, E_MIGRATED, {"migrate_to_chat_id": st["migrate_to"]})
            if st["type"] == "private" and (st["blocked"] or st["kicked"]):
                raise TgError(403, E_BLOCKED)
            if st["kicked"]:
                raise TgError(403, E_KICKED % st["type"])
        return chat_id

    def _parse_chat_id(self, raw):
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int):
            return raw
        s = str(raw).strip()
        if re.match(r"^-?\d+$", s):
            return int(s)
        if s.startswith("@"):
            for cid, st in self._chats.items():
                if st.get("username") and "@" + st["username"] == s:
                    return cid
        return None

    def _next_message_id(self, chat_id):
        mid = self._next_mid.get(chat_id, 1)
        self._next_mid[chat_id] = mid + 1
        return mid

    def _note_message_id(self, chat_id, mid):
        if isinstance(mid, int) and mid >= self._next_mid.get(chat_id, 1):
            self._next_mid[chat_id] = mid + 1

    # ---- test helpers: updates ----
    def push_update(self, token, update):
        """Queues an update for getUpdates (update_id assigned if absent); wakes a waiting
        poller. Returns the update_id, or None when the bot's allowed_updates drop it (Telegram
        never queues those)."""
        update = copy.deepcopy(update)
        with self._cv:
            bot = self._bot(token)
            kind = next((k for k in update if k != "update_id"), None)
            if kind not in bot.allowed:
                return None
            self._assign_update_id(bot, update)
            self._register_update(update)
            bot.queue.append(update)
            bot.queue.sort(key=lambda u: u["update_id"])
            self._cv.notify_all()
            return update["update_id"]

    def pending(self, token=None):
        with self._lock:
            return copy.deepcopy(self._bot(token).queue)

    def _assign_update_id(self, bot, update):
        """Gives the update an id (if it has none), update_id first as Telegram writes it."""
        uid = update.pop("update_id", None)
        if uid is None:
            uid = bot.next_update_id
        rest = dict(update)
        update.clear()
        update["update_id"] = uid
        update.update(rest)
        bot.next_update_id = max(bot.next_update_id, uid + 1)

    def _register_update(self, update):
        """Remembers the messages and callback queries an update carries."""
        now = time.monotonic()
        for k in ("message", "edited_message", "channel_post", "edited_channel_post"):
            m = update.get(k)
            if isinstance(m, dict) and "chat" in m and "message_id" in m:
                cid = m["chat"]["id"]
                self._note_message_id(cid, m["message_id"])
                key = (cid, m["message_id"])
                if key not in self._messages:
                    self._messages[key] = {"message_id": m["message_id"], "chat_id": cid,
                                           "from_user": True, "json": copy.deepcopy(m),
                                           "deleted": False}
        cq = update.get("callback_query")
        if isinstance(cq, dict) and "id" in cq:
            msg = cq.get("message") or {}
            self._queries[str(cq["id"])] = {"t": now, "chat_id": (msg.get("chat") or {}).get("id"),
                                            "message_id": msg.get("message_id"),
                                            "data": cq.get("data"), "answered": False}

    def _user(self, user_id, username=None, first_name=None, last_name=None, language_code="en"):
        u = {"id": user_id, "is_bot": False, "first_name": first_name or "User%s" % user_id}
        if last_name:
            u["last_name"] = last_name
        if username is not False:
            u["username"] = username or "user%s" % user_id
        if language_code:
            u["language_code"] = language_code
        return u

    def _default_user_id(self, chat_id):
        return chat_id if isinstance(chat_id, int) and chat_id > 0 else 1000001

    def text_update(self, chat_id, text, user_id=None, chat_type=None, username=None,
                    first_name=None, entities=None, reply_to_message=None, message_id=None,
                    message_thread_id=None, date=None, last_name=None, language_code="en"):
        """A realistic incoming text message (not queued: pass it to push_update or
        deliver_webhook). entities=None finds bot_command and mention entities as Telegram
        does (UTF-16 offsets); a list is used as is."""
        with self._lock:
            if chat_type is not None:
                self._chat_state(chat_id)["type"] = chat_type
            if user_id is None:
                user_id = self._default_user_id(chat_id)
            if message_id is None:
                message_id = self._next_message_id(chat_id)
            else:
                self._note_message_id(chat_id, message_id)
            msg = {"message_id": message_id,
                   "from": self._user(user_id, username, first_name, last_name, language_code),
                   "chat": self._chat_json(chat_id), "date": int(date or time.time())}
            if message_thread_id is not None:
                msg["message_thread_id"] = message_thread_id
                msg["is_topic_message"] = True
            if reply_to_message is not None:
                msg["reply_to_message"] = (copy.deepcopy(reply_to_message)
                                           if isinstance(reply_to_message, dict)
                                           else self._message_json_by_id(chat_id, reply_to_message))
            msg["text"] = text
            ents = auto_entities(text) if entities is None else entities
            if ents:
                msg["entities"] = ents
            return {"message": msg}

    def edited_update(self, chat_id, message_id, text, user_id=None, username=None,
                      first_name=None, entities=None, date=None):
        """An edited_message update: the user changed message_id to text."""
        u = self.text_update(chat_id, text, user_id=user_id, username=username,
                             first_name=first_name, entities=entities, message_id=message_id)
        m = u["message"]
        m["date"] = int(date or time.time()) - 60
        m["edit_date"] = int(time.time())
        return {"edited_message": m}

    def callback_update(self, chat_id, message_id, data, user_id=None, username=None,
                        first_name=None, query_id=None):
        """A press of an inline button with callback_data `data` under message_id."""
        with self._lock:
            if user_id is None:
                user_id = self._default_user_id(chat_id)
            qid = str(query_id if query_id is not None else next(self._query_seq))
            cq = {"id": qid, "from": self._user(user_id, username, first_name),
                  "message": self._message_json_by_id(chat_id, message_id),
                  "chat_instance": str(-abs(hash((chat_id, "instance"))) % 10 ** 18),
                  "data": data}
            return {"callback_query": cq}

    def my_chat_member_update(self, chat_id, new_status="kicked", old_status=None, user_id=None,
                              apply=True, token=None):
        """The bot's membership changed (a private chat's "kicked" = the user blocked the bot).
        With apply=True the fake's chat state follows (sends then fail as on Telegram)."""
        with self._lock:
            st = self._chat_state(chat_id)
            if old_status is None:
                old_status = "member" if new_status in ("kicked", "left") else "left"
            if user_id is None:
                user_id = self._default_user_id(chat_id)
            bot = self._bot(token).user
            member = {"user": {k: bot[k] for k in ("id", "is_bot", "first_name", "username")},
                      "status": new_status}
            if new_status == "kicked":
                member["until_date"] = 0
            old = {"user": member["user"], "status": old_status}
            upd = {"my_chat_member": {"chat": self._chat_json(chat_id),
                                      "from": self._user(user_id), "date": int(time.time()),
                                      "old_chat_member": old, "new_chat_member": member}}
            if apply:
                gone = new_status in ("kicked", "left")
                if st["type"] == "private":
                    st["blocked"] = gone
                else:
                    st["kicked"] = gone
            return upd

    def migrate_update(self, old_chat_id, new_chat_id, user_id=None, apply=True):
        """The service message of a group that became a supergroup (migrate_to_chat_id). With
        apply=True sends to the old id fail with migrate_to_chat_id, as on Telegram."""
        with self._lock:
            if user_id is None:
                user_id = 1000001
            msg = {"message_id": self._next_message_id(old_chat_id), "from": self._user(user_id),
                   "chat": self._chat_json(old_chat_id), "date": int(time.time()),
                   "migrate_to_chat_id": new_chat_id}
            if apply:
                self._chat_state(old_chat_id)["migrate_to"] = new_chat_id
                self._chat_state(new_chat_id)["type"] = "supergroup"
            return {"message": msg}

    # ---- test helpers: webhook ----
    def webhook(self, token=None):
        with self._lock:
            w = self._bot(token).webhook
            return dict(w) if w else None

    def deliver_webhook(self, token, update=None, secret=None, timeout=10.0):
        """POSTs an update to the bot's webhook with X-Telegram-Bot-Api-Secret-Token (the stored
        secret, or `secret`, or no header when secret=False) and returns (status, body bytes).
        update=None delivers the oldest pending update (removed from the queue on a 2xx)."""
        with self._lock:
            bot = self._bot(token)
            if not bot.webhook:
                raise RuntimeError("no webhook is set")
            from_queue = update is None
            if from_queue:
                if not bot.queue:
                    raise RuntimeError("no pending update")
                update = copy.deepcopy(bot.queue[0])
            else:
                update = copy.deepcopy(update)
                self._assign_update_id(bot, update)
                self._register_update(update)
            url = bot.webhook["url"]
            if secret is None:
                secret = bot.webhook.get("secret_token") or False
        headers = {"Content-Type": "application/json"}
        if secret is not False:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        body = dumps(update)
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, data, reason = r.status, r.read(), r.reason
        except urllib.error.HTTPError as e:
            status, data, reason = e.code, e.read(), e.reason
        except (urllib.error.URLError, OSError) as e:
            status, data, reason = 0, b"", str(getattr(e, "reason", e))
        with self._lock:
            self.webhook_deliveries.append({"token": token, "update": update, "status": status,
                                            "t": t0, "seconds": time.monotonic() - t0,
                                            "secret": secret})
            if 200 <= status < 300:
                if from_queue and bot.queue and bot.queue[0]["update_id"] == update["update_id"]:
                    bot.queue.pop(0)
            else:
                msg = ("Wrong response from the webhook: %d %s" % (status, reason) if status
                       else "Connection refused")
                bot.webhook_error = (int(time.time()), msg)
        return status, data

    # ---- test helpers: files, scripts ----
    def add_file(self, file_id, data, file_path=None, file_unique_id=None):
        """Registers a file for getFile and /file/bot<token>/<file_path>; returns its record."""
        with self._lock:
            return self._store_file(data, "documents", file_id=file_id, file_path=file_path,
                                    file_unique_id=file_unique_id)

    def _store_file(self, data, folder, file_id=None, file_path=None, file_unique_id=None,
                    ext="", **extra):
        n = next(self._file_seq)
        if file_id is None:
            digest = hashlib.sha256(data + str(n).encode()).digest()
            file_id = ("AgACAgIAAxkBAA" if folder == "photos" else "BQACAgIAAxkBAA") + \
                base64.urlsafe_b64encode(digest).decode().rstrip("=")[:40]
        if file_unique_id is None:
            file_unique_id = "AQAD" + base64.urlsafe_b64encode(
                hashlib.sha1(file_id.encode()).digest()).decode().rstrip("=")[:12]
        if file_path is None:
            file_path = "%s/file_%d%s" % (folder, n, ext)
        rec = {"file_id": file_id, "file_unique_id": file_unique_id, "data": data,
               "file_path": file_path, "file_size": len(data)}
        rec.update(extra)
        self._files[file_id] = rec
        self._file_paths[file_path] = rec
        return rec

    def script(self, method, answer=None, chat_id=None, status=429, retry_after=3, scope="chat",
               description=None, parameters=None, times=1):
        """Forces the next answer(s) of `method` (for chat_id, or any chat): by default a 429
        with retry_after (scope "chat" or "bot": the chat or the whole bot is then frozen), or
        `answer`: {"status", "description", "parameters"}, {"result": ...}, {"hang": seconds}
        or {"reset": True} (a TCP reset)."""
        if answer is None:
            if status == 429:
                answer = {"status": 429, "retry_after": retry_after, "scope": scope}
            else:
                answer = {"status": status, "description": description or "Bad Request",
                          "parameters": parameters}
        with self._lock:
            self._scripts.append({"method": method, "chat_id": chat_id, "answer": answer,
                                  "times": times})

    def _take_script(self, method, chat_id):
        for s in self._scripts:
            if s["method"] == method and (s["chat_id"] is None or s["chat_id"] == chat_id):
                s["times"] -= 1
                if s["times"] <= 0:
                    self._scripts.remove(s)
                return s["answer"]
        return None

    # ---- test helpers: what happened ----
    def calls(self, method=None, token=None):
        """Every API call in arrival order: {method, token, params, t, status, http_method}."""
        with self._lock:
            return [dict(c) for c in self._calls
                    if (method is None or c["method"] == method)
                    and (token is None or c["token"] == token)]

    def sent(self, chat_id, include_deleted=True):
        """The bot's messages in the chat, in send order."""
        with self._lock:
            return [self._public(m) for m in self._sent_order
                    if m["chat_id"] == chat_id and (include_deleted or not m["deleted"])]

    def texts(self, chat_id):
        """The visible texts (or captions) of the chat's messages not deleted."""
        return [m["plain"] if m["kind"] == "text" else m["caption_plain"]
                for m in self.sent(chat_id, include_deleted=False)]

    def message(self, chat_id, message_id):
        with self._lock:
            m = self._messages.get((chat_id, message_id))
            return self._public(m) if m and not m.get("from_user") else None

    def drafts(self, chat_id, draft_id=None):
        """{draft_id: [{text, plain, entities, t}]} of the chat (or that draft's list)."""
        with self._lock:
            d = copy.deepcopy(self._drafts.get(chat_id, {}))
            return d.get(draft_id, []) if draft_id is not None else d

    def actions(self, chat_id):
        """[{action, t}] of sendChatAction calls for the chat (len() counts them)."""
        with self._lock:
            return [dict(a) for a in self._actions.get(chat_id, [])]

    def commands(self, token=None, scope=None, language_code=""):
        with self._lock:
            key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code or "")
            return copy.deepcopy(self._bot(token).commands.get(key, []))

    def frozen(self, chat_id=None, token=None):
        """Seconds the chat (or with chat_id=None the bot) stays frozen."""
        now = time.monotonic()
        with self._lock:
            token = token if token is not None else self.token
            until = (self._frozen_bot.get(token) if chat_id is None
                     else self._frozen_chat.get((token, chat_id)))
            return max(0.0, until - now) if until else 0.0

    def _public(self, m):
        out = {k: copy.deepcopy(v) for k, v in m.items() if k not in ("params",)}
        for k in ("photo", "document"):
            if out.get(k):
                out[k]["bytes"] = m[k]["bytes"]
        return out

    # ---- HTTP ----
    def _handle(self, req):
        path = req.path
        if path.startswith("/file/bot"):
            return self._serve_file(req)
        m = re.match(r"^/bot([^/]*)/(?:test/)?([^/]*)$", path)
        if not m:
            return _reply_json(req, 404, {"ok": False, "error_code": 404,
                                          "description": "Not Found"})
        token, raw_method = urllib.parse.unquote(m.group(1)), m.group(2)
        method = self._methods.get(raw_method.lower(), raw_method)
        call = {"method": method, "token": token, "params": {}, "t": time.monotonic(),
                "status": None, "http_method": req.method}
        with self._lock:
            self._calls.append(call)
        if self.delay:
            req.sleep(self.delay)
        try:
            if token not in self._bots:
                well_formed = re.match(r"^[1-9]\d{0,15}:[^/]+$", token) and len(token) <= 80
                raise TgError(401, E_UNAUTHORIZED if well_formed else E_BAD_TOKEN)
            if raw_method.lower() not in self._methods:
                raise TgError(404, E_NO_METHOD)
            if len(req.body) > MAX_UPLOAD_BYTES:
                raise TgError(413, E_TOO_LARGE)
            params, files = self._decode(req)
            call["params"] = params
            ctx = _Ctx(self, req, call, token, method, params, files)
            chat_id = self._peek_chat_id(params)
            with self._lock:
                self._check_frozen(token, chat_id, method, call)
                answer = self._take_script(method, chat_id)
            if answer is not None:
                self._scripted(ctx, answer, chat_id)
            handler = getattr(self, "_m_" + method)
            result = handler(ctx)
            description = None
            if isinstance(result, tuple):
                result, description = result
            body = {"ok": True, "result": result}
            if description:
                body["description"] = description
            call["status"] = 200
            _reply_json(req, 200, body)
        except _Result as r:
            call["status"] = 200
            _reply_json(req, 200, {"ok": True, "result": r.result})
        except TgError as e:
            call["status"] = e.status
            body = {"ok": False, "error_code": e.status, "description": e.description}
            if e.parameters:
                body["parameters"] = e.parameters
            headers = {}
            if e.status == 429 and e.parameters and "retry_after" in e.parameters:
                headers["Retry-After"] = e.parameters["retry_after"]
            _reply_json(req, e.status, body, headers)
        except _Hang as h:
            call["status"] = "hang"
            req.hang(h.seconds)
        except _Reset:
            call["status"] = "reset"
            req.abort()
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:  # a bug of the fake: say so instead of closing the connection
            call["status"] = 500
            self.errors.append(repr(e))
            _reply_json(req, 500, {"ok": False, "error_code": 500,
                                 "description": "Internal Server Error: fake: %r" % e})

    def _scripted(self, ctx, answer, chat_id):
        if answer.get("reset"):
            raise _Reset()
        if "hang" in answer:
            raise _Hang(answer["hang"])
        if "result" in answer:
            raise _Result(answer["result"])
        status = answer.get("status", 429)
        params = dict(answer.get("parameters") or {})
        if status == 429:
            ra = int(answer.get("retry_after", params.get("retry_after", 3)))
            params["retry_after"] = ra
            self._freeze(ctx.token, chat_id, answer.get("scope", "chat"), ra)
            raise TgError(429, answer.get("description")
                          or "Too Many Requests: retry after %d" % ra, params)
        raise TgError(status, answer.get("description") or "Bad Request", params or None)

    def _decode(self, req):
        """Merged parameters of the query string and the body, typed: JSON-valued fields
        decoded, ids ints, flags bools; multipart files as {filename, content_type, size}."""
        raw = {k: v[-1] for k, v in req.query.items()}
        files = {}
        ctype = req.headers.get("content-type", "").lower()
        if req.body:
            if ctype.startswith("application/json"):
                try:
                    j = json.loads(req.body)
                except ValueError:
                    raise TgError(400, "Bad Request: can't parse JSON object")
                if isinstance(j, dict):
                    raw.update(j)
            elif ctype.startswith("multipart/form-data"):
                for name, part in parse_multipart(req.headers, req.body).items():
                    if part["filename"] is not None:
                        files[name] = part
                        raw[name] = {"filename": part["filename"],
                                     "content_type": part["content_type"],
                                     "size": len(part["data"] or b"")}
                    else:
                        raw[name] = (part["data"] or b"").decode("utf-8", "replace")
            else:
                for k, v in urllib.parse.parse_qs(req.body.decode("utf-8", "replace"),
                                                  keep_blank_values=True).items():
                    raw[k] = v[-1]
        params = {}
        for k, v in raw.items():
            if k in self.JSON_FIELDS and isinstance(v, str):
                try:
                    v = json.loads(v) if v != "" else v
                except ValueError:
                    pass
            elif k in self.INT_FIELDS and isinstance(v, str) and re.match(r"^\s*-?\d+\s*$", v):
                v = int(v)
            elif k in self.BOOL_FIELDS and isinstance(v, str):
                v = v.strip().lower() in ("true", "1")
            params[k] = v
        return params, files

    def _peek_chat_id(self, params):
        v = params.get("chat_id")
        if v is None:
            return None
        with self._lock:
            return self._parse_chat_id(v)

    # ---- rate limits ----
    def _freeze(self, token, chat_id, scope, seconds):
        until = time.monotonic() + seconds
        with self._lock:
            if scope == "bot" or chat_id is None:
                self._frozen_bot[token] = max(self._frozen_bot.get(token, 0), until)
            else:
                key = (token, chat_id)
                self._frozen_chat[key] = max(self._frozen_chat.get(key, 0), until)

    def _check_frozen(self, token, chat_id, method, call):
        if method not in self.limited_methods:
            return
        now = call["t"]
        for scope, until in (("bot", self._frozen_bot.get(token)),
                             ("chat", self._frozen_chat.get((token, chat_id)))):
            if until and now < until:
                self.violations.append({"chat_id": chat_id, "method": method, "t": now,
                                        "frozen_until": until, "scope": scope, "token": token})
                ra = max(1, math.ceil(until - now))
                raise TgError(429, "Too Many Requests: retry after %d" % ra, {"retry_after": ra})

    def _consume(self, token, chat_id, method):
        """Takes the request's share of the limits, or raises 429 and freezes."""
        lim = self.limits
        if not lim or method not in self.limited_methods:
            return
        now = time.monotonic()
        with self._lock:
            bw = self._bot_windows[token]
            while bw and bw[0] <= now - 1.0:
                bw.popleft()
            if "bot_per_s" in lim and len(bw) >= lim["bot_per_s"]:
                self._over(token, chat_id, "bot", bw[0] + 1.0 - now)
            bucket = gw = None
            if chat_id is not None:
                if "chat_per_s" in lim:
                    rate = float(lim["chat_per_s"])
                    cap = float(lim.get("chat_burst", max(1.0, rate)))
                    bucket = self._buckets.setdefault((token, chat_id), {"tokens": cap, "t": now})
                    bucket["tokens"] = min(cap, bucket["tokens"] + (now - bucket["t"]) * rate)
                    bucket["t"] = now
                    if bucket["tokens"] < 1.0:
                        self._over(token, chat_id, "chat", (1.0 - bucket["tokens"]) / rate)
                if "group_per_min" in lim and chat_id < 0:
                    gw = self._group_windows[(token, chat_id)]
                    while gw and gw[0] <= now - 60.0:
                        gw.popleft()
                    if len(gw) >= lim["group_per_min"]:
                        self._over(token, chat_id, "chat", gw[0] + 60.0 - now)
            bw.append(now)
            if bucket is not None:
                bucket["tokens"] -= 1.0
            if gw is not None:
                gw.append(now)

    def _over(self, token, chat_id, scope, wait):
        ra = max(1, math.ceil(wait - 1e-9))
        self._freeze(token, chat_id, scope, ra)
        raise TgError(429, "Too Many Requests: retry after %d" % ra, {"retry_after": ra})

    # ---- parameters ----
    @staticmethod
    def _s(p, k, default=""):
        v = p.get(k)
        if v is None:
            return default
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        return str(v)

    @staticmethod
    def _i(p, k, default=0):
        v = p.get(k)
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        try:
            return int(str(v).strip())
        except (TypeError, ValueError):
            return default

    @staticmethod
    def _b(p, k):
        v = p.get(k)
        if isinstance(v, bool):
            return v
        return str(v).strip().lower() in ("true", "1") if v is not None else False

    @staticmethod
    def _j(p, k, what):
        v = p.get(k)
        if isinstance(v, str):
            if v == "":
                return None
            try:
                return json.loads(v)
            except ValueError:
                raise TgError(400, "Bad Request: can't parse %s JSON object" % what)
        return v

    def _reply_markup(self, p):
        rm = self._j(p, "reply_markup", "reply markup")
        if rm is None:
            return None
        if not isinstance(rm, dict):
            raise TgError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in rm:
            return rm    # reply keyboards etc.: accepted, not shown in the message
        rows = rm["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise TgError(400, 'Bad Request: Field "inline_keyboard" of the InlineKeyboardMarkup '
                          'must be an Array of Arrays')
        for row in rows:
            for b in row:
                if not isinstance(b, dict):
                    raise TgError(400, "Bad Request: can't parse inline keyboard button: "
                                  "InlineKeyboardButton must be an Object")
                if not isinstance(b.get("text"), str):
                    raise TgError(400, 'Bad Request: can\'t parse inline keyboard button: Field '
                                  '"text" must be of type String')
                kinds = [k for k in ("url", "callback_data", "web_app", "login_url",
                                     "switch_inline_query", "switch_inline_query_current_chat",
                                     "switch_inline_query_chosen_chat", "copy_text",
                                     "callback_game", "pay") if b.get(k) not in (None, "")]
                if not kinds:
                    raise TgError(400, "Bad Request: can't parse inline keyboard button: Text "
                                  "buttons are unallowed in the inline keyboard")
                if "callback_data" in kinds and "url" not in kinds:
                    if len(str(b["callback_data"]).encode()) > MAX_CALLBACK_DATA:
                        raise TgError(400, E_BUTTON_DATA)
        return rm

    def _reply_to(self, p):
        """(message_id or None, allow_sending_without_reply) of reply_parameters or the old
        reply_to_message_id."""
        if "reply_parameters" not in p:
            mid = self._i(p, "reply_to_message_id", 0)
            return (mid if mid > 0 else None), self._b(p, "allow_sending_without_reply")
        rp = self._j(p, "reply_parameters", "reply parameters")
        if not rp:
            return None, False
        if not isinstance(rp, dict):
            raise TgError(400, "Bad Request: object expected as reply parameters")
        if "message_id" not in rp:
            raise TgError(400, 'Bad Request: can\'t parse reply parameters: Field "message_id" '
                          'must be of type Number')
        return int(rp["message_id"]), bool(rp.get("allow_sending_without_reply"))

    def _link_preview_disabled(self, p):
        if "link_preview_options" in p and p["link_preview_options"] not in (None, ""):
            lpo = self._j(p, "link_preview_options", "link preview options")
            if not isinstance(lpo, dict):
                raise TgError(400, "Bad Request: object expected as link preview options")
            return bool(lpo.get("is_disabled"))
        return self._b(p, "disable_web_page_preview")

    def _text(self, p, field="text", entities_field="entities", limit=MAX_TEXT,
              too_long=E_TOO_LONG, allow_empty=False):
        raw = self._s(p, field)
        if not raw and not allow_empty:
            raise TgError(400, E_EMPTY)
        if len(raw.encode("utf-8", "surrogatepass")) > MAX_RAW_TEXT_BYTES:
            raise TgError(400, E_RAW_TOO_LONG)
        ents = self._j(p, entities_field, "entities") if entities_field in p else None
        plain, entities = format_text(raw, self._s(p, "parse_mode") or None, ents)
        if not allow_empty and not plain.strip():
            raise TgError(400, E_EMPTY)
        if utf16_len(plain) > limit:
            raise TgError(400, too_long)
        return raw, plain, entities

    def _check_reply(self, chat_id, reply_to, allow_without):
        if reply_to is None:
            return None
        m = self._messages.get((chat_id, reply_to))
        if m is None or m["deleted"]:
            if allow_without:
                return None          # sent, but not as a reply
            if not self.strict_replies:
                return reply_to
            raise TgError(400, E_REPLY_NOT_FOUND)
        return reply_to

    # ---- message records ----
    def _record(self, token, chat_id, kind, p, **fields):
        mid = self._next_message_id(chat_id)
        rm = fields.pop("reply_markup", None)
        buttons = rm.get("inline_keyboard") if isinstance(rm, dict) else None
        rec = {"message_id": mid, "chat_id": chat_id, "token": token, "kind": kind,
               "text": None, "plain": None, "entities": [], "parse_mode": p.get("parse_mode"),
               "reply_to": None, "buttons": buttons, "reply_markup": rm, "photo": None,
               "document": None, "caption": None, "caption_plain": None, "caption_entities": [],
               "edits": [], "history": [], "deleted": False, "link_preview_disabled": False,
               "message_thread_id": p.get("message_thread_id"), "date": int(time.time()),
               "edit_date": None, "t": time.monotonic(), "params": copy.deepcopy(p)}
        rec.update(fields)
        if kind == "text":
            rec["history"] = [rec["plain"]]
        self._messages[(chat_id, mid)] = rec
        self._sent_order.append(rec)
        return rec

    def _message_json_by_id(self, chat_id, message_id):
        m = self._messages.get((chat_id, message_id))
        if m is None:
            return {"message_id": message_id, "from": dict(self._bot(None).user),
                    "chat": self._chat_json(chat_id), "date": int(time.time()), "text": ""}
        if m.get("from_user"):
            return copy.deepcopy(m["json"])
        return self._message_json(m, nested=True)

    def _message_json(self, m, nested=False):
        bot = self._bots[m["token"]].user
        out = {"message_id": m["message_id"],
               "from": {k: bot[k] for k in ("id", "is_bot", "first_name", "username")},
               "chat": self._chat_json(m["chat_id"]), "date": m["date"]}
        if m["message_thread_id"]:
            out["message_thread_id"] = m["message_thread_id"]
        if m["reply_to"] is not None and not nested:
            out["reply_to_message"] = self._message_json_by_id(m["chat_id"], m["reply_to"])
        if m["edit_date"]:
            out["edit_date"] = m["edit_date"]
        if m["kind"] == "text":
            out["text"] = m["plain"]
            if m["entities"]:
                out["entities"] = copy.deepcopy(m["entities"])
            if m["link_preview_disabled"]:
                out["link_preview_options"] = {"is_disabled": True}
        if m["photo"]:
            out["photo"] = copy.deepcopy(m["photo"]["sizes"])
        if m["document"]:
            d = m["document"]
            out["document"] = {k: d[k] for k in ("file_id", "file_unique_id", "file_name",
                                                 "mime_type", "file_size") if d.get(k) is not None}
        if m["caption_plain"]:
            out["caption"] = m["caption_plain"]
            if m["caption_entities"]:
                out["caption_entities"] = copy.deepcopy(m["caption_entities"])
        if m["buttons"]:
            out["reply_markup"] = {"inline_keyboard": copy.deepcopy(m["buttons"])}
        return out

    # ---- methods ----
    def _m_getMe(self, ctx):
        return dict(self._bots[ctx.token].user)

    def _m_logOut(self, ctx):
        return True

    _m_close = _m_logOut

    def _m_getChat(self, ctx):
        with self._lock:
            cid = self._resolve_chat(ctx.params.get("chat_id"), need_write=False)
            out = self._chat_json(cid)
            out["accent_color_id"] = 0
            out["max_reaction_count"] = 11
            return out

    def _m_getUpdates(self, ctx):
        p = ctx.params
        bot = self._bots[ctx.token]
        offset = self._i(p, "offset", 0)
        limit = min(100, max(1, self._i(p, "limit", 100)))
        timeout = min(LONG_POLL_MAX_TIMEOUT, max(0, self._i(p, "timeout", 0)))
        allowed_raw = self._allowed(p)
        entry = {"token": ctx.token, "offset": p.get("offset"), "limit": p.get("limit"),
                 "timeout": p.get("timeout"), "allowed_updates": allowed_raw, "t": ctx.t,
                 "status": None, "returned": []}
        with self._cv:
            self.polls.append(entry)
            if bot.webhook:
                entry["status"] = 409
                raise TgError(409, E_POLL_WEBHOOK)
            self._set_allowed(bot, allowed_raw)
            if offset < 0:
                bot.queue = bot.queue[offset:]
            elif offset > 0:
                bot.queue = [u for u in bot.queue if u["update_id"] >= offset]
            ups = [u for u in bot.queue if offset <= 0 or u["update_id"] >= offset][:limit]
            if ups or timeout == 0:
                entry["status"] = 200
                entry["returned"] = [u["update_id"] for u in ups]
                return copy.deepcopy(ups)
            # a long poll: it ends the one in flight (Client.cpp do_get_updates/abort_long_poll)
            if bot.poller is not None:
                bot.poller["abort"] = E_POLL_CONFLICT
                self._cv.notify_all()
            me = {"abort": None}
            bot.poller = me
            deadline = time.monotonic() + min(timeout, self.max_poll_wait)
            try:
                while True:
                    if me["abort"]:
                        entry["status"] = 409
                        raise TgError(409, me["abort"])
                    ups = [u for u in bot.queue if offset <= 0 or u["update_id"] >= offset][:limit]
                    left = deadline - time.monotonic()
                    if ups or left <= 0 or self._up._stopping.is_set():
                        break
                    self._cv.wait(min(left, 0.5))
            finally:
                if bot.poller is me:
                    bot.poller = None
            entry["status"] = 200
            entry["returned"] = [u["update_id"] for u in ups]
            return copy.deepcopy(ups)

    @staticmethod
    def _allowed(p):
        """allowed_updates as sent (decoded), or None when absent or not JSON."""
        v = p.get("allowed_updates")
        if isinstance(v, str):
            try:
                return json.loads(v) if v else None
            except ValueError:
                return None
        return v

    @staticmethod
    def _set_allowed(bot, allowed):
        """Like Client.cpp update_allowed_update_types: a list of names replaces the setting
        (unknown names ignored; none known = the default); anything else keeps it."""
        if isinstance(allowed, list) and all(isinstance(x, str) for x in allowed):
            chosen = {x.lower() for x in allowed} & set(UPDATE_TYPES)
            bot.allowed = chosen or set(DEFAULT_ALLOWED)

    def _m_setWebhook(self, ctx):
        p = ctx.params
        bot = self._bots[ctx.token]
        url = self._s(p, "url")
        with self._cv:
            if not url:
                return self._delete_webhook(bot, p)
            parsed = urllib.parse.urlsplit(url if "://" in url else "https://" + url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise TgError(400, E_WEBHOOK_URL)
            if self.require_https:
                if parsed.scheme != "https":
                    raise TgError(400, "Bad Request: bad webhook: HTTPS url must be provided "
                                  "for webhook")
                if (parsed.port or 443) not in (443, 80, 88, 8443):
                    raise TgError(400, "Bad Request: bad webhook: Webhook can be set up only on "
                                  "ports 80, 88, 443 or 8443")
            secret = self._s(p, "secret_token")
            if len(secret) > 256:
                raise TgError(400, E_SECRET_LONG)
            if not re.match(r"^[A-Za-z0-9_-]*$", secret):
                raise TgError(400, E_SECRET_CHARS)
            mc = min(100, max(1, self._i(p, "max_connections", 40) or 40))
            allowed_raw = self._allowed(p)
            self._set_allowed(bot, allowed_raw)
            drop = self._b(p, "drop_pending_updates")
            new = {"url": url, "secret_token": secret, "max_connections": mc,
                   "allowed_updates": allowed_raw, "drop_pending_updates": drop,
                   "ip_address": self._s(p, "ip_address") or None, "t": time.monotonic()}
            old = bot.webhook
            if drop:
                bot.queue = []
            if old and all(old[k] == new[k] for k in ("url", "secret_token", "max_connections")) \
                    and not drop:
                bot.webhook["allowed_updates"] = allowed_raw
                return True, "Webhook is already set"
            if bot.poller is not None:
                bot.poller["abort"] = E_POLL_SETWEBHOOK
                self._cv.notify_all()
            bot.webhook = new
            bot.webhook_error = None
            return True, "Webhook was set"

    def _delete_webhook(self, bot, p):
        if self._b(p, "drop_pending_updates"):
            bot.queue = []
        was = bot.webhook is not None
        bot.webhook = None
        bot.webhook_error = None
        return True, "Webhook was deleted" if was else "Webhook is already deleted"

    def _m_deleteWebhook(self, ctx):
        with self._cv:
            return self._delete_webhook(self._bots[ctx.token], ctx.params)

    def _m_getWebhookInfo(self, ctx):
        with self._lock:
            bot = self._bots[ctx.token]
            w = bot.webhook
            out = {"url": w["url"] if w else "", "has_custom_certificate": False,
                   "pending_update_count": len(bot.queue)}
            if bot.webhook_error:
                out["last_error_date"], out["last_error_message"] = bot.webhook_error
            if w:
                out["max_connections"] = w["max_connections"]
                out["ip_address"] = w["ip_address"] or "127.0.0.1"
            if bot.allowed != DEFAULT_ALLOWED:
                out["allowed_updates"] = [t for t in UPDATE_TYPES if t in bot.allowed]
            return out

    def _m_sendMessage(self, ctx):
        p = ctx.params
        raw, plain, entities = self._text(p)
        rm = self._reply_markup(p)
        reply_to, allow_without = self._reply_to(p)
        lp = self._link_preview_disabled(p)
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            reply_to = self._check_reply(chat_id, reply_to, allow_without)
            rec = self._record(ctx.token, chat_id, "text", p, text=raw, plain=plain,
                               entities=entities, reply_to=reply_to, reply_markup=rm,
                               link_preview_disabled=lp)
            return self._message_json(rec)

    def _m_editMessageText(self, ctx):
        p = ctx.params
        raw, plain, entities = self._text(p)
        rm = self._reply_markup(p)
        lp = self._link_preview_disabled(p)
        if not p.get("chat_id") and not self._i(p, "message_id", 0):
            if not p.get("inline_message_id"):
                raise TgError(400, E_NO_MESSAGE_ID)
            raise TgError(400, E_EDIT_NOT_FOUND)
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
        mid = self._i(p, "message_id", 0)
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            m = self._messages.get((chat_id, mid))
            if m is None or m["deleted"]:
                raise TgError(400, E_EDIT_NOT_FOUND)
            if m.get("from_user") or m["kind"] != "text" or m["token"] != ctx.token:
                raise TgError(400, E_CANT_EDIT)
            new_buttons = rm.get("inline_keyboard") if isinstance(rm, dict) else None
            if plain == m["plain"] and entities == m["entities"] and new_buttons == m["buttons"]:
                raise TgError(400, E_NOT_MODIFIED)
            m.update(text=raw, plain=plain, entities=entities, buttons=new_buttons,
                     reply_markup=rm, parse_mode=p.get("parse_mode"), link_preview_disabled=lp,
                     edit_date=int(time.time()))
            m["edits"].append(raw)
            m["history"].append(plain)
            return self._message_json(m)

    def _m_deleteMessage(self, ctx):
        p = ctx.params
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
        mid = self._i(p, "message_id", 0)
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            m = self._messages.get((chat_id, mid))
            if m is None or m["deleted"]:
                raise TgError(400, E_DELETE_NOT_FOUND)
            m["deleted"] = True
            return True

    def _m_sendChatAction(self, ctx):
        p = ctx.params
        action = self._s(p, "action")
        if action not in CHAT_ACTIONS:
            raise TgError(400, E_ACTION)
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            self._actions.setdefault(chat_id, []).append({"action": action, "t": ctx.t})
            return True

    def _m_sendMessageDraft(self, ctx):
        p = ctx.params
        draft_id = self._i(p, "draft_id", 0)
        raw, plain, entities = self._text(p, allow_empty=True)
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
            if self._chat_state(chat_id)["type"] != "private":
                raise TgError(400, E_DRAFT_PEER)
        if draft_id == 0:
            raise TgError(400, E_DRAFT_ID)
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            self._drafts.setdefault(chat_id, {}).setdefault(draft_id, []).append(
                {"text": raw, "plain": plain, "entities": entities, "t": ctx.t,
                 "message_thread_id": p.get("message_thread_id")})
            return True

    def _input_file(self, ctx, field, what_missing):
        """(bytes or None, filename, content_type, existing file record or None)."""
        v = ctx.params.get(field)
        name = field
        if isinstance(v, str) and v.startswith("attach://"):
            name = v[len("attach://"):]
        elif isinstance(v, str) and v:
            with self._lock:
                rec = self._files.get(v)
            if rec is not None:
                return None, None, None, rec
            if re.match(r"^https?://", v):
                return None, v.rsplit("/", 1)[-1] or None, None, {"url": v}
            raise TgError(400, E_FILE_ID)
        part = ctx.files.get(name)
        if part is None:
            raise TgError(400, what_missing)
        return part["data"] or b"", part["filename"], part["content_type"], None

    def _caption(self, p):
        if not self._s(p, "caption"):
            return None, None, []
        return self._text(p, "caption", "caption_entities", MAX_CAPTION, E_CAPTION_TOO_LONG,
                          allow_empty=True)

    def _m_sendPhoto(self, ctx):
        p = ctx.params
        data, filename, ctype, existing = self._input_file(ctx, "photo", E_NO_PHOTO)
        caption, caption_plain, caption_entities = self._caption(p)
        rm = self._reply_markup(p)
        reply_to, allow_without = self._reply_to(p)
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
        if data is not None and len(data) > MAX_PHOTO_BYTES:
            raise TgError(400, E_PHOTO_TOO_BIG)
        with self._lock:
            err, self.photo_error = self.photo_error, None
        if err:
            raise TgError(400, err)
        if existing is not None and "sizes" not in existing and "data" in existing:
            data, existing = existing["data"], None    # a registered file sent as a photo
        if existing is not None and "sizes" in existing:
            w, h = existing["width"], existing["height"]
        else:
            dims = image_size(data) if data else None
            w, h = dims or (800, 600)
            if dims and (w + h > 10000 or max(w, h) > 20 * max(1, min(w, h)) or min(w, h) == 0):
                raise TgError(400, E_PHOTO_DIMENSIONS)
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            reply_to = self._check_reply(chat_id, reply_to, allow_without)
            if existing is not None and "sizes" in existing:
                sizes = copy.deepcopy(existing["sizes"])
                blob = existing["data"]
            else:
                blob = data if data is not None else b""
                sizes = []
                scale = min(1.0, 90.0 / max(w, h))
                if scale < 1.0:
                    small = self._store_file(b"", "photos", ext=".jpg")
                    sizes.append({"file_id": small["file_id"],
                                  "file_unique_id": small["file_unique_id"],
                                  "file_size": max(1, len(blob) // 40),
                                  "width": max(1, round(w * scale)),
                                  "height": max(1, round(h * scale))})
                big = self._store_file(blob, "photos", ext=".jpg", width=w, height=h)
                sizes.append({"file_id": big["file_id"], "file_unique_id": big["file_unique_id"],
                              "file_size": len(blob), "width": w, "height": h})
                big["sizes"] = copy.deepcopy(sizes)
            photo = {"sizes": sizes, "file_id": sizes[-1]["file_id"], "bytes": blob,
                     "filename": filename, "content_type": ctype, "width": sizes[-1]["width"],
                     "height": sizes[-1]["height"], "file_size": len(blob),
                     "url": (existing or {}).get("url")}
            rec = self._record(ctx.token, chat_id, "photo", p, photo=photo, caption=caption,
                               caption_plain=caption_plain, caption_entities=caption_entities,
                               reply_to=reply_to, reply_markup=rm)
            return self._message_json(rec)

    def _m_sendDocument(self, ctx):
        p = ctx.params
        data, filename, ctype, existing = self._input_file(ctx, "document", E_NO_DOCUMENT)
        caption, caption_plain, caption_entities = self._caption(p)
        rm = self._reply_markup(p)
        reply_to, allow_without = self._reply_to(p)
        with self._lock:
            chat_id = self._resolve_chat(p.get("chat_id"))
        self._consume(ctx.token, chat_id, ctx.method)
        with self._lock:
            reply_to = self._check_reply(chat_id, reply_to, allow_without)
            if existing is not None and "file_id" in existing:
                d = {k: existing.get(k) for k in ("file_id", "file_unique_id", "file_name",
                                                  "mime_type", "file_size")}
                blob = existing["data"]
            else:
                blob = data if data is not None else b""
                if filename and ctype in (None, "", "application/octet-stream"):
                    ctype = mimetypes.guess_type(filename)[0] or ctype or \
                        "application/octet-stream"
                ext = "." + filename.rsplit(".", 1)[-1] if filename and "." in filename else ""
                f = self._store_file(blob, "documents", ext=ext, file_name=filename,
                                     mime_type=ctype or "application/octet-stream")
                d = {"file_id": f["file_id"], "file_unique_id": f["file_unique_id"],
                     "file_name": filename, "mime_type": f["mime_type"], "file_size": len(blob)}
            d["bytes"] = blob
            d["url"] = (existing or {}).get("url")
            rec = self._record(ctx.token, chat_id, "document", p, document=d, caption=caption,
                               caption_plain=caption_plain, caption_entities=caption_entities,
                               reply_to=reply_to, reply_markup=rm)
            return self._message_json(rec)

    def _m_answerCallbackQuery(self, ctx):
        p = ctx.params
        qid = self._s(p, "callback_query_id")
        now = ctx.t
        with self._lock:
            q = self._queries.get(qid)
            if q is None or q["answered"] or (self.callback_timeout is not None
                                              and now - q["t"] > self.callback_timeout):
                raise TgError(400, E_QUERY_ID)
            q["answered"] = True
            self.answers.append({"callback_query_id": qid, "text": p.get("text"),
                                 "show_alert": self._b(p, "show_alert"), "url": p.get("url"),
                                 "cache_time": p.get("cache_time"), "t": now,
                                 "latency": now - q["t"], "chat_id": q["chat_id"],
                                 "message_id": q["message_id"], "data": q["data"]})
            return True

    def _commands_key(self, p):
        scope = self._j(p, "scope", "bot command scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise TgError(400, "Bad Request: BotCommandScope must be an Object")
        return json.dumps(scope, sort_keys=True), self._s(p, "language_code")

    def _m_setMyCommands(self, ctx):
        p = ctx.params
        cmds = self._j(p, "commands", "bot commands") or []
        if not isinstance(cmds, list):
            raise TgError(400, "Bad Request: expected an Array of BotCommand")
        out = []
        for c in cmds:
            if not isinstance(c, dict) or not isinstance(c.get("command"), str) \
                    or not isinstance(c.get("description"), str):
                raise TgError(400, "Bad Request: can't parse BotCommand: expected an Object")
            name = c["command"]
            if not re.match(r"^/?[a-z0-9_]{1,32}$", name):
                raise TgError(400, E_COMMAND)
            if not 1 <= len(c["description"]) <= 256:
                raise TgError(400, E_COMMAND_DESCRIPTION)
            out.append({"command": name.lstrip("/"), "description": c["description"]})
        key = self._commands_key(p)
        with self._lock:
            self._bots[ctx.token].commands[key] = out
            return True

    def _m_getMyCommands(self, ctx):
        key = self._commands_key(ctx.params)
        with self._lock:
            return copy.deepcopy(self._bots[ctx.token].commands.get(key, []))

    def _m_deleteMyCommands(self, ctx):
        key = self._commands_key(ctx.params)
        with self._lock:
            self._bots[ctx.token].commands.pop(key, None)
            return True

    def _m_getFile(self, ctx):
        fid = self._s(ctx.params, "file_id")
        with self._lock:
            f = self._files.get(fid)
            if f is None:
                raise TgError(400, E_GETFILE_ID)
            if f["file_size"] > MAX_DOWNLOAD_BYTES:
                raise TgError(400, E_FILE_TOO_BIG)
            return {k: f[k] for k in ("file_id", "file_unique_id", "file_size", "file_path")}

    def _serve_file(self, req):
        m = re.match(r"^/file/bot([^/]+)/(.+)$", req.path)
        with self._lock:
            self._calls.append({"method": "file", "token": m.group(1) if m else None,
                                "params": {"file_path": m.group(2) if m else None},
                                "t": time.monotonic(), "status": None,
                                "http_method": req.method})
            call = self._calls[-1]
            f = self._file_paths.get(urllib.parse.unquote(m.group(2))) if m else None
            ok = m and m.group(1) in self._bots and f is not None
        if not ok:
            call["status"] = 404
            return _reply_json(req, 404, {"ok": False, "error_code": 404,
                                          "description": "Not Found"})
        call["status"] = 200
        req.reply(200, f["data"], {"Content-Type": "application/octet-stream"})


class _Result(TgError):
    """A scripted success answer."""

    def __init__(self, result):
        super().__init__(200, "")
        self.result = result


class _Ctx:
    def __init__(self, fake, req, call, token, method, params, files):
        self.fake = fake
        self.req = req
        self.call = call
        self.token = token
        self.method = method
        self.params = params
        self.files = files
        self.t = call["t"]
