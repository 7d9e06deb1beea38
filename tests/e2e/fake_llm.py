"""A fake AI-provider server for end-to-end tests: one threaded HTTP/1.1 server on 127.0.0.1
(port 0, built on upstream.Upstream; bounded waits, stop() frees sleepers) that speaks four real
wire formats at once, routed by path: OpenAI-compatible chat completions (OpenAI, DeepSeek,
Groq, Mistral, xAI), Anthropic Messages, Google Gemini generateContent and Ollama /api/chat.
Point a chatgw provider's base URL at llm.url.

    llm = FakeLLM(keys={"openai": "sk-test", "anthropic": "ak-test", "gemini": "gk-test"})
    llm.start()                           # llm.url -> "http://127.0.0.1:PORT"
    llm.reply("hello there", kind="openai")         # the next OpenAI answer's text
    llm.error(429, kind="anthropic", retry_after=2) # the next Anthropic request: 429
    llm.chunking(size=7, delay=0.01)      # streamed bodies in 7-byte HTTP chunks
    ...                                   # chatgw calls it
    llm.calls("openai")                   # [{kind, method, path, json, stream, model, ...}]
    llm.stop()                            # or: with FakeLLM(...) as llm: ...

Routes (anything else: 404 in the format the path suggests, recorded in .errors):
    POST /v1/chat/completions, POST /chat/completions          OpenAI-compatible ("openai")
    GET  /v1/models, /models, /v1/models/{id}, /models/{id}    OpenAI listing
    POST /v1/messages                                           Anthropic ("anthropic")
    GET  /v1/models, /v1/models/{id} WITH an x-api-key or anthropic-version header: Anthropic
    POST /v1beta/models/{model}:generateContent                 Gemini ("gemini")
    POST /v1beta/models/{model}:streamGenerateContent?alt=sse   Gemini SSE stream (without
         alt=sse: a streamed JSON array, as the real API does - framing details unverified)
    GET  /v1beta/models, /v1beta/models/{model}                 Gemini listing
    POST /api/chat, GET /api/tags, GET /api/version             Ollama ("ollama"; no auth)

Auth (keys: {kind: key or collection of keys}; a kind absent from keys accepts anything):
    openai     Authorization: Bearer <key>. Missing -> 401 "You didn't provide an API key. ..."
               (type invalid_request_error, code null); wrong -> 401 "Incorrect API key
               provided: <first 8 chars>***<last 4>. You can find your API key at https://
               platform.openai.com/account/api-keys." (type invalid_request_error, code
               "invalid_api_key"; one * per hidden char; keys of <= 12 chars shown whole).
    anthropic  anthropic-version missing -> 400 invalid_request_error "anthropic-version: header
               is required" (checked before the key - order unverified); x-api-key missing ->
               401 authentication_error "x-api-key header is required" (text unverified);
               wrong -> 401 authentication_error "invalid x-api-key".
    gemini     x-goog-api-key header or ?key=. Missing -> 403 PERMISSION_DENIED "Method doesn't
               allow unregistered callers (callers without established identity). Please use
               API Key or other form of API consumer identity to call this API."; wrong -> 400
               INVALID_ARGUMENT "API key not valid. Please pass a valid API key." with details
               [ErrorInfo reason API_KEY_INVALID, LocalizedMessage].
Request checks (a failure answers 400 in the format and is recorded in .errors, since a
well-behaved gateway never sends it): a JSON object body; openai: model, messages; anthropic:
model, max_tokens, messages ("max_tokens: Field required"); gemini: contents; ollama: model
({"error":"model is required"}). Ollama answers 404 {"error":"model \"x\" not found, try
pulling it first"} for a model not in llm.models["ollama"] ("x" and "x:latest" are the same
model); so does any kind listed in llm.strict_models (default {"ollama"}; gemini: 404
NOT_FOUND "models/x is not found for API version v1beta, ...", openai: 404 model_not_found,
anthropic: 404 not_found_error "model: x"). An Ollama request with no messages answers
done_reason "load" with empty content, as Ollama does.

Test API (every "time" is time.monotonic(); all waits are bounded):
    FakeLLM(keys=None, models=None)     models: {kind: [ids]} overriding DEFAULT_MODELS per kind
    .start() -> self, .stop(), .url, .port, .max_inflight (most requests handled at once);
        a context manager too.  FakeLLM.refused_url() -> "http://127.0.0.1:P" where nothing
        listens (connections are refused).
    .models          {kind: [model ids]} served by the listing endpoints (mutable)
    .delta_chars     characters per streamed text delta (default 3; code points, so a delta
                     never splits a character - the byte chunking does that)
    .deterministic   False; True: ids come from a hash of (kind, request body) and every
                     timestamp is 2025-01-01T00:00:00Z, so equal requests get byte-identical
                     answers (for comparing bodies across requests)
    .strict_models   kinds that answer 404 for a model not in .models (default {"ollama"})
    .default_usage   (input_tokens, output_tokens) of unscripted answers, default (10, 5)
    .requests        every request: {kind ("openai"|"anthropic"|"gemini"|"ollama"|None for an
                     unknown path), method, path, query (first values), headers (lower-case),
                     json (decoded body or None), stream (bool: the request asked to stream;
                     Ollama's default is true), model, time, prompt (text of the last user
                     message), status (HTTP status answered; "down", "hang", "dropped" or
                     "stopped" when no complete answer was given), answer (text answered),
                     response (the whole response body as bytes, before chunking - for streams
                     too: compare it with what the client received)}
    .calls(kind=None) -> the records of that kind;  .last(kind=None) -> the newest or None
    .wait_for(predicate, timeout=10) -> bool (polls every 20 ms)
    .wait_calls(n, kind=None, timeout=10) -> the records once there are >= n, else
        AssertionError saying what there is
    .errors          bugs of the fake (tracebacks; the request got a 500) and requests a
                     well-behaved client never makes (unknown paths, malformed bodies)
    Behaviour scripts: each applies to the next matching request(s), first queued first;
    kind=None matches any kind; times=None: every matching request until clear().
    .reply(text, kind=None, times=1, finish="stop", usage=(10, 5))
        the text of the next answer(s) (streamed or not; only requests answered 200 use one
        up). Unscripted: "echo: " + the last user message's text. finish: "stop" | "length" |
        a native value; mapped per format: OpenAI finish_reason stop/length, Anthropic
        stop_reason end_turn/max_tokens, Gemini finishReason STOP/MAX_TOKENS, Ollama
        done_reason stop/length. usage: (input tokens, output tokens).
    .error(status, kind=None, times=1, retry_after=None, message=None, what="chat")
        answer HTTP `status` with that format's real error body (below), plus header
        "retry-after: <retry_after>" when given. what: "chat" (generation requests), "models"
        (listing requests) or "any". Checked after auth and the request checks.
    .mid_stream_error(after_deltas=2, kind=None, times=1, message=None)
        a streamed answer sends its head and `after_deltas` text deltas, then the format's
        in-stream error, then ends the body properly and closes the connection. Non-streamed
        requests skip it (it stays queued).
    .drop_after(after_deltas=2, kind=None, times=1)
        a streamed answer sends its head and `after_deltas` deltas, then the connection is
        closed (FIN) with no terminating chunk. Non-streamed requests skip it.
    .answer_delay = 0.0   seconds every chat answer waits before it is sent (a slow model)
    .hang(seconds, kind=None, times=1, what="chat")
        no answer for `seconds` (stop() ends it at once), then the connection is closed.
    .down() / .up()  while down every request's connection is closed at once, without a
        response (the TCP connect itself succeeds; for a refused connect use refused_url()).
    .chunking(size=None, delay=0.0)  (persistent) streamed answers use chunked transfer
        encoding; size=None: one HTTP chunk per event/line; size=N: the body is cut every N
        BYTES regardless of event, line or UTF-8 character boundaries. `delay` seconds
        between writes. Non-streamed answers are one write with Content-Length.
    .clear(records=False)  drops every queued script (and, with records=True, .requests and
        .errors).

Error bodies (llm.error; `message` replaces the default text):
    openai     {"error":{"message","type","param":null,"code"}}: 400 invalid_request_error;
               401 invalid_request_error/invalid_api_key; 403 invalid_request_error/
               unsupported_country_region_territory; 404 invalid_request_error/
               model_not_found; 429 type "requests", code rate_limit_exceeded ("Rate limit
               reached for <model> in organization org-fake on requests per min (RPM): ...");
               500 server_error "The server had an error while processing your request. Sorry
               about that!"; 503 server_error "That model is currently overloaded with other
               requests. ..."; other 4xx invalid_request_error, other 5xx server_error.
               Pretty-printed (indent 2), header x-request-id.
    anthropic  {"type":"error","error":{"type","message"},"request_id":"req_..."} + header
               request-id: 400 invalid_request_error, 401 authentication_error, 403
               permission_error, 404 not_found_error, 413 request_too_large, 429
               rate_limit_error, 500 api_error, 529 overloaded_error "Overloaded"; other 4xx
               invalid_request_error, other 5xx (503 too) api_error (unverified). 429 and 5xx
               also carry x-should-retry: true (seen on a real 529; others unverified).
    gemini     {"error":{"code","message","status"}} pretty-printed: 400 INVALID_ARGUMENT,
               401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 429
               RESOURCE_EXHAUSTED "Resource has been exhausted (e.g. check quota).", 500
               INTERNAL, 503 UNAVAILABLE "The model is overloaded. Please try again later.",
               504 DEADLINE_EXCEEDED; other 4xx INVALID_ARGUMENT, other 5xx (529 too)
               UNAVAILABLE (unverified). Content-Type application/json; charset=UTF-8.
    ollama     {"error":"..."} (Content-Type application/json; charset=utf-8): 404 'model "x"
               not found, try pulling it first', 503 "server busy, please try again.  maximum
               pending requests exceeded", others a plain message (texts unverified).

Answers:
    openai     {"id":"chatcmpl-...","object":"chat.completion","created","model","choices":
               [{"index":0,"message":{"role":"assistant","content","refusal":null,
               "annotations":[]},"logprobs":null,"finish_reason"}],"usage":{"prompt_tokens",
               "completion_tokens","total_tokens",...details},"service_tier","system_fingerprint"}
               Stream (text/event-stream; charset=utf-8): "data: <chunk>\\n\\n" events of
               object "chat.completion.chunk" (same id/created/model): first delta
               {"role":"assistant","content":"","refusal":null}, then {"content":piece}
               deltas, then delta {} with finish_reason; with stream_options.include_usage
               every chunk has "usage":null and one more chunk {"choices":[],"usage":{...}}
               follows; last "data: [DONE]\\n\\n". In-stream error: data: {"error":{"message",
               "type":"server_error","param":null,"code":null}} (shape unverified; the
               openai SDKs raise on a data object with "error"), no [DONE].
    anthropic  {"id":"msg_...","type":"message","role":"assistant","model","content":[{"type":
               "text","text"}],"stop_reason","stop_sequence":null,"usage":{"input_tokens",
               "cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens"}}.
               Stream: "event: <type>\\ndata: <json>\\n\\n" for message_start (usage
               input_tokens, output_tokens 1), content_block_start (index 0, text ""), ping,
               content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":
               "text_delta","text"}} per piece, content_block_stop, message_delta {"delta":
               {"stop_reason","stop_sequence":null},"usage":{"output_tokens"}}, message_stop.
               In-stream error: event: error / data: {"type":"error","error":{"type":
               "overloaded_error","message":"Overloaded"}}.
    gemini     {"candidates":[{"content":{"parts":[{"text"}],"role":"model"},"finishReason":
               "STOP","index":0}],"usageMetadata":{"promptTokenCount","candidatesTokenCount",
               "totalTokenCount","promptTokensDetails"},"modelVersion","responseId"} (indent 2).
               Stream (alt=sse, text/event-stream): "data: <json>\\r\\n\\r\\n" events of the same
               shape, one piece each; the last carries finishReason and the full usageMetadata,
               earlier ones {"promptTokenCount","totalTokenCount"} (unverified detail), no end
               marker. In-stream error: data: {"error":{"code":503,"message","status":
               "UNAVAILABLE"}} (unverified).
    ollama     {"model","created_at","message":{"role":"assistant","content"},"done_reason",
               "done":true,"total_duration","load_duration","prompt_eval_count",
               "prompt_eval_duration","eval_count","eval_duration"}; stream (the default;
               application/x-ndjson): one line per piece {"model","created_at","message":
               {"role":"assistant","content"},"done":false}, then a done line with content ""
               and the counts. In-stream error: a line {"error":"..."}. JSON as Go writes it
               (<, >, & as \\u003c, \\u003e, \\u0026).
    Listings: openai {"object":"list","data":[{"id","object":"model","created","owned_by"}]};
    anthropic {"data":[{"type":"model","id","display_name","created_at"}],"has_more":false,
    "first_id","last_id"}; gemini {"models":[{"name":"models/<id>","version","displayName",
    "description","inputTokenLimit","outputTokenLimit","supportedGenerationMethods",...}]};
    ollama {"models":[{"name","model","modified_at","size","digest","details":{...}}]}
    (names get ":latest" when they have no tag).

Facts and where they come from (looked up 2026; docs corpus = docs.claude.com / platform.
claude.com errors page, docs.ollama.com, OpenAI API reference as mirrored in SDK docs;
issues/code = public GitHub threads and source quoting live answers):
  - OpenAI stream_options.include_usage: one extra chunk before [DONE] whose choices is an
    empty array, every other chunk "usage": null (OpenAI openapi spec text in SDK docs).
  - OpenAI 401 body with "Incorrect API key provided: ..." / invalid_request_error /
    invalid_api_key / param null (issue logs); 503 "That model is currently overloaded ..."
    server_error code null (issue logs); 429 "Rate limit reached for ..." type "requests"
    code rate_limit_exceeded (issue logs); the openai SDKs raise on a streamed data object
    with an "error" key, and stop at data: [DONE] (SDK source).
  - Anthropic error types per status, the request_id field and request-id header (errors
    doc); "invalid x-api-key", "anthropic-version: header is required" and 529
    {"type":"overloaded_error","message":"Overloaded"} with x-should-retry: true (issue
    logs); the stream event sequence and shapes (SDK docs, docs mirrored by proxies).
  - Gemini SSE events end in "\\r\\n\\r\\n": Google's JS SDK parses /^data: (.*)(?:\\n\\n|\\r\\r|
    \\r\\n\\r\\n)/, other clients split on "\\r\\n", and a mock project fixed its Gemini SSE to
    end events with \\r\\n (code + PR). No [DONE]; the last frame carries usageMetadata.
    Bad key: 400 INVALID_ARGUMENT "API key not valid. Please pass a valid API key." with
    ErrorInfo API_KEY_INVALID (issue logs); no key: 403 PERMISSION_DENIED "Method doesn't
    allow unregistered callers ..." (issue logs); 503 UNAVAILABLE "The model is overloaded.
    Please try again later." (issue logs); answer fields incl. responseId (provider docs).
  - Ollama: stream lines application/x-ndjson, an error after output as an {"error"} line,
    before output as a JSON answer with its status; 404 fmt "model %q not found, try pulling
    it first" (ollama server source); final chunk fields and RFC 3339 created_at (docs, logs).
  Unverified (guesses): the "x-api-key header is required" text and the order of Anthropic's
  checks; OpenAI's missing-key code (null here) and key masking; Gemini's intermediate
  usageMetadata, separators (", " after ":" inside SSE events) and JSON-array framing; the
  in-stream error shapes of OpenAI and Gemini; Anthropic/Gemini bodies for statuses their docs
  do not list (503 api_error, 529 UNAVAILABLE); Ollama's 429/500 texts; fixed Ollama durations;
  model metadata in listings (dates, sizes, token limits).
"""
import hashlib
import json
import re
import threading
import time
import traceback
import uuid

from upstream import FakeServer, OneHandler, refused_port

KINDS = ("openai", "anthropic", "gemini", "ollama")
DEFAULT_MODELS = {
    "openai": ["gpt-4o-mini", "deepseek-chat"],
    "anthropic": ["claude-3-5-haiku-latest"],
    "gemini": ["gemini-2.0-flash"],
    "ollama": ["llama3.2"],
}
FIXED_EPOCH = 1735689600          # 2025-01-01T00:00:00Z (deterministic mode)
FINGERPRINT = "fp_fake0llm1"

_GEMINI_CHAT = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")
_GEMINI_MODEL = re.compile(r"^/v1beta/models/([^/:]+)$")
_V1_MODEL = re.compile(r"^(?:/v1)?/models/([^/]+)$")

FINISH = {
    "anthropic": {"stop": "end_turn", "length": "max_tokens"},
    "gemini": {"stop": "STOP", "length": "MAX_TOKENS"},
}

OPENAI_ERRORS = {   # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request (fake LLM)."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided: %(key)s. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `%(model)s` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for %(model)s in organization org-fake on requests per min "
          "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
          "https://platform.openai.com/account/rate-limits to learn more."),
    500: ("server_error", None,
          "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None,
          "That model is currently overloaded with other requests. You can retry your "
          "request, or contact us through our help center at help.openai.com if the error "
          "persists."),
}
OPENAI_NO_KEY = ("You didn't provide an API key. You need to provide your API key in an "
                 "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                 "or as the password field (with blank username) if you're accessing the API "
                 "from your browser and are prompted for a username. You can obtain an API key "
                 "from https://platform.openai.com/account/api-keys.")
OPENAI_BAD_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means "
                   "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                   "payload, but what was sent was not valid JSON. If you have trouble figuring "
                   "out how to fix this, please contact us through our help center at "
                   "help.openai.com.)")
OPENAI_STREAM_ERROR = OPENAI_ERRORS[500][2]

ANTHROPIC_ERRORS = {   # status -> (type, message)
    400: ("invalid_request_error", "Invalid request (fake LLM)."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate "
                              "limit (https://docs.anthropic.com/en/api/rate-limits); see the "
                              "response headers for current usage. Please reduce the prompt "
                              "length or the maximum tokens requested, or try again later."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
ANTHROPIC_NO_VERSION = "anthropic-version: header is required"
ANTHROPIC_NO_KEY = "x-api-key header is required"

GEMINI_ERRORS = {   # status -> (status name, message)
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                             "access token, login cookie or other valid authentication "
                             "credential."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
GEMINI_BAD_KEY = "API key not valid. Please pass a valid API key."
GEMINI_NO_KEY = ("Method doesn't allow unregistered callers (callers without established "
                 "identity). Please use API Key or other form of API consumer identity to call "
                 "this API.")

OLLAMA_ERRORS = {
    400: "invalid request",
    404: "model %(model_q)s not found, try pulling it first",
    429: "too many requests",
    500: "an error was encountered while running the model: unexpected EOF",
    503: "server busy, please try again.  maximum pending requests exceeded",
}

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _dumps(obj, style="compact"):
    if style == "pretty":
        s = json.dumps(obj, ensure_ascii=False, indent=2)
    elif style == "gemini":
        s = json.dumps(obj, ensure_ascii=False, separators=(",", ": "))
    else:
        s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        if style == "go":
            for a, b in _GO_ESCAPES:
                s = s.replace(a, b)
    return s.encode("utf-8")


def _mask_key(key):
    return key[:8] + "*" * (len(key) - 12) + key[-4:] if len(key) > 12 else key


def _text_of(content):
    """Text of an OpenAI/Anthropic/Ollama message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _ollama_name(name):
    return name if ":" in name else name + ":latest"


class _Closed(Exception):
    """The answer ended without a (complete) response; the connection is closed."""


class _Ctx:
    def __init__(self, llm, req, rec, kind, endpoint, arg):
        self.llm, self.req, self.rec = llm, req, rec
        self.kind, self.endpoint, self.arg = kind, endpoint, arg
        self.body = rec["json"]
        self.model = None
        seed = hashlib.sha1(kind.encode() + b"\0" + req.path.encode() + b"\0" + req.body)
        self.hex = seed.hexdigest() if llm.deterministic else uuid.uuid4().hex + uuid.uuid4().hex
        self.created = FIXED_EPOCH if llm.deterministic else int(time.time())

    def created_at(self):
        """RFC 3339 with nanoseconds, trailing zeros trimmed, as Go writes time.Time."""
        if self.llm.deterministic:
            return "2025-01-01T00:00:00Z"
        ns = time.time_ns()
        frac = ("%09d" % (ns % 1000000000)).rstrip("0")
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1000000000)) + \
            ("." + frac if frac else "") + "Z"


class FakeLLM(FakeServer):
    def __init__(self, keys=None, models=None):
        self.keys = dict(keys or {})
        self.models = {k: list(v) for k, v in DEFAULT_MODELS.items()}
        for k, v in (models or {}).items():
            self.models[k] = list(v)
        self.delta_chars = 3
        self.deterministic = False
        self.strict_models = {"ollama"}
        self.default_usage = (10, 5)
        self.requests = []
        self.errors = []
        self._replies = []
        self._faults = []
        self._chunk = (None, 0.0)
        self._down = False
        self._lock = threading.RLock()
        self._up = OneHandler(self._handle)

    @staticmethod
    def refused_url():
        return "http://127.0.0.1:%d" % refused_port()

    # ---- scripts ----
    def reply(self, text, kind=None, times=1, finish="stop", usage=(10, 5)):
        self._check_kind(kind, times)
        with self._lock:
            self._replies.append({"kind": kind, "left": times, "text": text,
                                  "finish": finish, "usage": tuple(usage)})
        return self

    def error(self, status, kind=None, times=1, retry_after=None, message=None, what="chat"):
        return self._fault("error", kind, times, what=what, status=int(status),
                           retry_after=retry_after, message=message)

    def mid_stream_error(self, after_deltas=2, kind=None, times=1, message=None):
        return self._fault("mid", kind, times, after=int(after_deltas), message=message)

    def drop_after(self, after_deltas=2, kind=None, times=1):
        return self._fault("drop", kind, times, after=int(after_deltas))

    answer_delay = 0.0  # seconds every chat answer waits before it is sent (a slow model)

    def hang(self, seconds, kind=None, times=1, what="chat"):
        return self._fault("hang", kind, times, what=what, seconds=float(seconds))

    def down(self):
        self._down = True
        return self

    def up(self):
        self._down = False
        return self

    def chunking(self, size=None, delay=0.0):
        if size is not None and int(size) < 1:
            raise ValueError("chunk size must be >= 1 or None")
        self._chunk = (None if size is None else int(size), float(delay))
        return self

    def clear(self, records=False):
        with self._lock:
            self._replies = []
            self._faults = []
            if records:
                self.requests = []
                self.errors = []
        return self

    def _check_kind(self, kind, times=1):
        if kind is not None and kind not in KINDS:
            raise ValueError("kind must be one of %s or None" % (KINDS,))
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")

    def _fault(self, ftype, kind, times, what="chat", **kw):
        self._check_kind(kind, times)
        if what not in ("chat", "models", "any"):
            raise ValueError('what must be "chat", "models" or "any"')
        f = {"type": ftype, "kind": kind, "left": times, "what": what}
        f.update(kw)
        with self._lock:
            self._faults.append(f)
        return self

    # ---- records ----
    def calls(self, kind=None):
        with self._lock:
            return [r for r in self.requests if kind is None or r["kind"] == kind]

    def last(self, kind=None):
        c = self.calls(kind)
        return c[-1] if c else None

    def wait_for(self, predicate, timeout=10):
        end = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)

    def wait_calls(self, n, kind=None, timeout=10):
        if not self.wait_for(lambda: len(self.calls(kind)) >= n, timeout):
            raise AssertionError("expected >= %d %s calls within %ss, have: %r" % (
                n, kind or "", timeout,
                [(r["kind"], r["method"], r["path"], r["status"]) for r in self.calls()]))
        return self.calls(kind)

    # ---- taking scripts ----
    def _take(self, queue, pred):
        with self._lock:
            for i, item in enumerate(queue):
                if pred(item):
                    if item["left"] is not None:
                        item["left"] -= 1
                        if item["left"] <= 0:
                            del queue[i]
                    return dict(item)
        return None

    def _take_fault(self, c):
        listing = c.endpoint in ("models", "model")

        def match(f):
            if f["kind"] not in (None, c.kind):
                return False
            if f["type"] in ("mid", "drop"):
                return not listing and c.rec["stream"]
            return f["what"] == "any" or (f["what"] == "models") == listing
        return self._take(self._faults, match)

    def _take_reply(self, kind):
        return self._take(self._replies, lambda r: r["kind"] in (None, kind))

    # ---- routing ----
    def _route(self, req):
        p, m, h = req.path, req.method, req.headers
        anth = "x-api-key" in h or "anthropic-version" in h
        if p in ("/v1/chat/completions", "/chat/completions"):
            return ("openai", "chat", None) if m == "POST" else None
        if p == "/v1/messages":
            return ("anthropic", "chat", None) if m == "POST" else None
        if p in ("/v1/models", "/models") and m == "GET":
            return ("anthropic" if anth and p == "/v1/models" else "openai", "models", None)
        mm = _V1_MODEL.match(p)
        if mm and m == "GET":
            return ("anthropic" if anth and p.startswith("/v1/") else "openai", "model",
                    mm.group(1))
        mm = _GEMINI_CHAT.match(p)
        if mm:
            return ("gemini", "chat", mm.groups()) if m == "POST" else None
        if p == "/v1beta/models" and m == "GET":
            return ("gemini", "models", None)
        mm = _GEMINI_MODEL.match(p)
        if mm and m == "GET":
            return ("gemini", "model", mm.group(1))
        if p == "/api/chat" and m == "POST":
            return ("ollama", "chat", None)
        if p == "/api/tags" and m == "GET":
            return ("ollama", "models", None)
        if p == "/api/version" and m == "GET":
            return ("ollama", "version", None)
        return None

    def _guess_kind(self, req):
        if req.path.startswith("/v1beta"):
            return "gemini"
        if req.path.startswith("/api/"):
            return "ollama"
        if "x-api-key" in req.headers or "anthropic-version" in req.headers:
            return "anthropic"
        return "openai"

    # ---- the handler ----
    def _handle(self, req):
        rec = {"kind": None, "method": req.method, "path": req.path,
               "query": {k: v[0] for k, v in req.query.items()}, "headers": dict(req.headers),
               "json": None, "stream": False, "model": None, "time": time.monotonic(),
               "prompt": None, "status": None, "answer": None, "response": None}
        bad_json = False
        if req.body:
            try:
                rec["json"] = json.loads(req.body)
            except ValueError:
                bad_json = True
        route = self._route(req)
        if route:
            rec["kind"] = route[0]
        with self._lock:
            self.requests.append(rec)
        if self._down:
            rec["status"] = "down"
            req.h.close_connection = True
            return
        if route is None:
            with self._lock:
                self.errors.append("unexpected request: %s %s" % (req.method, req.target))
            c = _Ctx(self, req, rec, self._guess_kind(req), "unknown", None)
            if c.kind == "ollama":
                rec["status"] = 404
                req.reply(404, b"404 page not found", {"Content-Type": "text/plain"})
            elif c.kind == "openai":
                self._send_error(c, 404, "Invalid URL (%s %s)" % (req.method, req.path),
                                 code=None)
            else:
                self._send_error(c, 404, "Not Found" if c.kind == "anthropic" else
                                 "The requested URL %s was not found on this server."
                                 % req.path)
            return
        c = _Ctx(self, req, rec, *route)
        try:
            self._serve(c, bad_json)
        except _Closed:
            req.h.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:  # a bug of the fake: say so instead of closing the connection
            with self._lock:
                self.errors.append("%r\n%s" % (e, traceback.format_exc()))
            if rec["status"] is None:
                rec["status"] = 500
                req.reply(500, ("fake LLM bug: %r" % e).encode(), {"Content-Type": "text/plain"})
            else:
                req.h.close_connection = True

    def _serve(self, c, bad_json):
        rec, body = c.rec, c.body
        if c.endpoint == "chat":
            if c.kind == "gemini":
                c.model = c.arg[0]
                rec["stream"] = c.arg[1] == "streamGenerateContent"
            elif isinstance(body, dict):
                c.model = body.get("model") if isinstance(body.get("model"), str) else None
                if c.kind == "ollama":
                    rec["stream"] = body.get("stream") is not False
                else:
                    rec["stream"] = body.get("stream") is True
            rec["model"] = c.model
            rec["prompt"] = self._prompt(c) if isinstance(body, dict) else None
        elif c.endpoint == "model":
            rec["model"] = c.arg
        if self._auth(c):
            return
        if c.endpoint == "chat" and self._invalid(c, bad_json):
            return
        fault = self._take_fault(c)
        if fault and fault["type"] == "error":
            self._send_error(c, fault["status"], fault["message"],
                             retry_after=fault["retry_after"])
            return
        if fault and fault["type"] == "hang":
            rec["status"] = "hang"
            c.req.sleep(fault["seconds"])
            raise _Closed()
        if c.endpoint in ("models", "model", "version"):
            self._listing(c)
            return
        if self.answer_delay:  # a slow model: the answer comes, late
            c.req.sleep(self.answer_delay)
        if self._unknown_model(c):
            return
        if c.kind == "ollama" and not body.get("messages"):
            # Ollama loads the model and answers at once when there is nothing to say
            rec["answer"] = ""
            self._send_json(c, 200, {"model": c.model, "created_at": c.created_at(),
                                     "message": {"role": "assistant", "content": ""},
                                     "done_reason": "load", "done": True})
            return
        r = self._take_reply(c.kind)
        if r is None:
            text, finish, usage = "echo: " + (rec["prompt"] or ""), "stop", self.default_usage
        else:
            text, finish, usage = r["text"], r["finish"], r["usage"]
        rec["answer"] = text
        if rec["stream"]:
            self._stream(c, text, finish, usage, fault)
        else:
            self._send_json(c, 200, self._answer(c, text, finish, usage))

    # ---- auth and checks ----
    def _key_ok(self, kind, given):
        want = self.keys.get(kind)
        if want is None:
            return True
        if isinstance(want, str):
            return given == want
        return given in want

    def _auth(self, c):
        """Answers an auth failure and returns True, or returns False."""
        h = c.req.headers
        if c.kind == "openai":
            if self.keys.get("openai") is None:
                return False
            a = h.get("authorization", "")
            key = a[7:].strip() if a[:7].lower() == "bearer " else ""
            if not key:
                self._send_error(c, 401, OPENAI_NO_KEY, code=None)
                return True
            if not self._key_ok("openai", key):
                self._send_error(c, 401, key=key)
                return True
        elif c.kind == "anthropic":
            if not h.get("anthropic-version"):
                self._send_error(c, 400, ANTHROPIC_NO_VERSION)
                return True
            if self.keys.get("anthropic") is None:
                return False
            key = h.get("x-api-key")
            if not key:
                self._send_error(c, 401, ANTHROPIC_NO_KEY)
                return True
            if not self._key_ok("anthropic", key):
                self._send_error(c, 401)
                return True
        elif c.kind == "gemini":
            if self.keys.get("gemini") is None:
                return False
            key = h.get("x-goog-api-key") or c.rec["query"].get("key")
            if not key:
                self._send_error(c, 403, GEMINI_NO_KEY)
                return True
            if not self._key_ok("gemini", key):
                self._send_error(c, 400, GEMINI_BAD_KEY, details=[
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                     "locale": "en-US", "message": GEMINI_BAD_KEY}])
                return True
        return False

    def _invalid(self, c, bad_json):
        """Answers a malformed generation request (and records it) or returns False."""
        b = c.body
        problem = None
        kw = {}
        if not isinstance(b, dict):
            problem = {"openai": OPENAI_BAD_JSON,
                       "anthropic": "There was an issue with the format or content of your "
                                    "request: the body is not a JSON object.",
                       "gemini": "Invalid JSON payload received. The body is not a JSON "
                                 "object.",
                       "ollama": "invalid request body"}[c.kind]
        elif c.kind == "openai":
            if not c.model:
                problem = "you must provide a model parameter"
            elif not isinstance(b.get("messages"), list) or not b["messages"]:
                problem = "Missing required parameter: 'messages'."
                kw = {"param": "messages", "code": "missing_required_parameter"}
        elif c.kind == "anthropic":
            for field in ("model", "max_tokens", "messages"):
                if field not in b:
                    problem = "%s: Field required" % field
                    break
            else:
                if not isinstance(b["max_tokens"], int) or isinstance(b["max_tokens"], bool):
                    problem = "max_tokens: Input should be a valid integer"
                elif not isinstance(b["messages"], list):
                    problem = "messages: Input should be a valid list"
        elif c.kind == "gemini":
            if not isinstance(b.get("contents"), list) or not b["contents"]:
                problem = "* GenerateContentRequest.contents: contents is not specified\n"
        elif c.kind == "ollama":
            if not c.model:
                problem = "model is required"
        if problem is None:
            return False
        with self._lock:
            self.errors.append("malformed %s request %s %s: %s (body %r)" % (
                c.kind, c.req.method, c.req.path, problem.strip(), c.req.body[:200]))
        self._send_error(c, 400, problem, **kw)
        return True

    def _unknown_model(self, c):
        if c.kind not in self.strict_models or self._has_model(c.kind, c.model):
            return False
        if c.kind == "gemini":
            self._send_error(c, 404, "models/%s is not found for API version v1beta, or is not "
                             "supported for %s. Call ListModels to see the list of available "
                             "models and their supported methods." % (c.model, c.arg[1]))
        elif c.kind == "anthropic":
            self._send_error(c, 404, "model: %s" % c.model)
        else:
            self._send_error(c, 404)
        return True

    def _has_model(self, kind, model):
        ids = self.models.get(kind, [])
        if kind == "ollama":
            return _ollama_name(model or "") in {_ollama_name(i) for i in ids}
        return model in ids

    def _prompt(self, c):
        b = c.body
        if c.kind == "gemini":
            for item in reversed(b.get("contents") or []):
                if isinstance(item, dict) and item.get("role", "user") == "user":
                    return "".join(p.get("text") or "" for p in item.get("parts") or []
                                   if isinstance(p, dict) and isinstance(p.get("text"), str))
            return ""
        for m in reversed(b.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                return _text_of(m.get("content"))
        return ""

    # ---- sending ----
    def _headers(self, c, ctype):
        hs = {"Content-Type": ctype}
        if c.kind == "openai":
            hs["x-request-id"] = "req_" + c.hex[:32]
        elif c.kind == "anthropic":
            hs["request-id"] = "req_011" + c.hex[:21]
        return hs

    def _ctype(self, c):
        return {"gemini": "application/json; charset=UTF-8",
                "ollama": "application/json; charset=utf-8"}.get(c.kind, "application/json")

    def _style(self, c):
        return {"openai": "pretty", "gemini": "pretty", "ollama": "go"}.get(c.kind, "compact")

    def _send_json(self, c, status, obj, extra=None):
        data = _dumps(obj, self._style(c))
        c.rec["status"] = status
        c.rec["response"] = data
        hs = self._headers(c, self._ctype(c))
        hs.update(extra or {})
        c.req.reply(status, data, hs)

    def _error_obj(self, c, status, message=None, key="", code="<default>", param=None,
                   details=None):
        fill = {"model": c.model or "gpt-4o-mini", "key": _mask_key(key),
                "model_q": json.dumps(c.model or "")}
        if c.kind == "openai":
            etype, ecode, emsg = OPENAI_ERRORS.get(status) or (
                ("server_error", None, "The server had an error processing your request.")
                if status >= 500 else ("invalid_request_error", None, "Invalid request."))
            return {"error": {"message": message if message is not None else emsg % fill,
                              "type": etype, "param": param,
                              "code": ecode if code == "<default>" else code}}
        if c.kind == "anthropic":
            etype, emsg = ANTHROPIC_ERRORS.get(status) or (
                ("api_error", "Internal server error") if status >= 500
                else ("invalid_request_error", "Invalid request."))
            return {"type": "error", "error": {"type": etype, "message":
                                               message if message is not None else emsg},
                    "request_id": "req_011" + c.hex[:21]}
        if c.kind == "gemini":
            sname, emsg = GEMINI_ERRORS.get(status) or (
                ("UNAVAILABLE", "The service is currently unavailable.") if status >= 500
                else ("INVALID_ARGUMENT", "Request contains an invalid argument."))
            err = {"code": status, "message": message if message is not None else emsg,
                   "status": sname}
            if details:
                err["details"] = details
            return {"error": err}
        emsg = OLLAMA_ERRORS.get(status) or ("internal error" if status >= 500
                                             else "bad request")
        return {"error": message if message is not None else emsg % fill}

    def _send_error(self, c, status, message=None, retry_after=None, **kw):
        extra = {}
        if retry_after is not None:
            extra["retry-after"] = str(retry_after)
        if c.kind == "anthropic" and (status == 429 or status >= 500):
            extra["x-should-retry"] = "true"
        self._send_json(c, status, self._error_obj(c, status, message, **kw), extra)

    # ---- answers ----
    def _answer(self, c, text, finish, usage):
        pin, pout = usage
        if c.kind == "openai":
            return {"id": "chatcmpl-" + c.hex[:29], "object": "chat.completion",
                    "created": c.created, "model": c.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                         "refusal": None, "annotations": []},
                                 "logprobs": None, "finish_reason": finish}],
                    "usage": self._openai_usage(usage),
                    "service_tier": "default", "system_fingerprint": FINGERPRINT}
        if c.kind == "anthropic":
            return {"id": "msg_01" + c.hex[:22], "type": "message", "role": "assistant",
                    "model": c.model, "content": [{"type": "text", "text": text}],
                    "stop_reason": FINISH["anthropic"].get(finish, finish),
                    "stop_sequence": None, "usage": self._anthropic_usage(pin, pout)}
        if c.kind == "gemini":
            return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                                    "finishReason": FINISH["gemini"].get(finish, finish),
                                    "index": 0}],
                    "usageMetadata": self._gemini_usage(pin, pout),
                    "modelVersion": c.model, "responseId": c.hex[:22]}
        return dict(self._ollama_head(c, text), **self._ollama_done(finish, usage))

    @staticmethod
    def _openai_usage(usage):
        pin, pout = usage
        return {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    @staticmethod
    def _anthropic_usage(pin, pout):
        return {"input_tokens": pin, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": pout}

    @staticmethod
    def _gemini_usage(pin, pout):
        return {"promptTokenCount": pin, "candidatesTokenCount": pout,
                "totalTokenCount": pin + pout,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": pin}]}

    def _ollama_head(self, c, content):
        return {"model": c.model, "created_at": c.created_at(),
                "message": {"role": "assistant", "content": content}}

    @staticmethod
    def _ollama_done(finish, usage):
        pin, pout = usage
        return {"done_reason": finish, "done": True, "total_duration": 2345678901,
                "load_duration": 12345678, "prompt_eval_count": pin,
                "prompt_eval_duration": 23456789, "eval_count": pout,
                "eval_duration": 2300000000}

    # ---- streams ----
    def _stream(self, c, text, finish, usage, fault):
        n = max(1, int(self.delta_chars))
        pieces = [text[i:i + n] for i in range(0, len(text), n)]
        cut = fault["after"] if fault else None
        err = None
        if fault and fault["type"] == "mid":
            err = fault["message"] if fault["message"] is not None else {
                "openai": OPENAI_STREAM_ERROR, "anthropic": "Overloaded",
                "gemini": GEMINI_ERRORS[503][1], "ollama": OLLAMA_ERRORS[500]}[c.kind]
        ctype, events = getattr(self, "_events_" + c.kind)(c, pieces, finish, usage, cut, err)
        body = b"".join(events)
        c.rec["response"] = body
        c.rec["status"] = 200
        hs = self._headers(c, ctype)
        hs["Transfer-Encoding"] = "chunked"
        if ctype.startswith("text/event-stream"):
            hs["Cache-Control"] = "no-cache"
        c.req._head(200, hs)
        size, delay = self._chunk
        writes = [body[i:i + size] for i in range(0, len(body), size)] if size else \
            [e for e in events if e]
        w = c.req.h.wfile
        stopping = self._up._stopping
        for i, part in enumerate(writes):
            if i and delay:
                c.req.sleep(delay)
            if stopping.is_set():
                c.rec["status"] = "stopped"
                raise _Closed()
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            w.flush()
        if fault and fault["type"] == "drop":
            c.rec["status"] = "dropped"
            raise _Closed()
        w.write(b"0\r\n\r\n")
        w.flush()
        if err is not None:
            raise _Closed()

    def _events_openai(self, c, pieces, finish, usage, cut, err):
        b = c.body
        opts = b.get("stream_options")
        inc = isinstance(opts, dict) and bool(opts.get("include_usage"))
        base = {"id": "chatcmpl-" + c.hex[:29], "object": "chat.completion.chunk",
                "created": c.created, "model": c.model, "service_tier": "default",
                "system_fingerprint": FINGERPRINT}

        def chunk(choices, u=None):
            d = dict(base, choices=choices)
            if inc:
                d["usage"] = u
            return b"data: " + _dumps(d) + b"\n\n"

        def choice(delta, fin=None):
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fin}]

        ev = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
        ev += [chunk(choice({"content": p})) for p in (pieces if cut is None else pieces[:cut])]
        if cut is not None:
            if err is not None:
                ev.append(b"data: " + _dumps({"error": {"message": err, "type": "server_error",
                                                        "param": None, "code": None}}) + b"\n\n")
            return "text/event-stream; charset=utf-8", ev
        ev.append(chunk(choice({}, finish)))
        if inc:
            ev.append(chunk([], self._openai_usage(usage)))
        ev.append(b"data: [DONE]\n\n")
        return "text/event-stream; charset=utf-8", ev

    def _events_anthropic(self, c, pieces, finish, usage, cut, err):
        pin, pout = usage

        def event(obj):
            return b"event: " + obj["type"].encode() + b"\ndata: " + _dumps(obj) + b"\n\n"

        ev = [event({"type": "message_start", "message": {
                  "id": "msg_01" + c.hex[:22], "type": "message", "role": "assistant",
                  "model": c.model, "content": [], "stop_reason": None, "stop_sequence": None,
                  "usage": self._anthropic_usage(pin, 1)}}),
              event({"type": "content_block_start", "index": 0,
                     "content_block": {"type": "text", "text": ""}}),
              event({"type": "ping"})]
        ev += [event({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": p}})
               for p in (pieces if cut is None else pieces[:cut])]
        if cut is not None:
            if err is not None:
                ev.append(event({"type": "error",
                                 "error": {"type": "overloaded_error", "message": err}}))
            return "text/event-stream; charset=utf-8", ev
        ev += [event({"type": "content_block_stop", "index": 0}),
               event({"type": "message_delta",
                      "delta": {"stop_reason": FINISH["anthropic"].get(finish, finish),
                                "stop_sequence": None},
                      "usage": {"output_tokens": pout}}),
               event({"type": "message_stop"})]
        return "text/event-stream; charset=utf-8", ev

    def _events_gemini(self, c, pieces, finish, usage, cut, err):
        pin, pout = usage
        sse = c.rec["query"].get("alt") == "sse"

        def item(text, last):
            cand = {"content": {"parts": [{"text": text}], "role": "model"}}
            if last:
                cand["finishReason"] = FINISH["gemini"].get(finish, finish)
            cand["index"] = 0
            return {"candidates": [cand],
                    "usageMetadata": self._gemini_usage(pin, pout) if last else
                    {"promptTokenCount": pin, "totalTokenCount": pin},
                    "modelVersion": c.model, "responseId": c.hex[:22]}

        if cut is None:
            items = [item(p, i == len(pieces) - 1) for i, p in enumerate(pieces)] or \
                [item("", True)]
        else:
            items = [item(p, False) for p in pieces[:cut]]
            if err is not None:
                items.append({"error": {"code": 503, "message": err, "status": "UNAVAILABLE"}})
        if sse:
            return "text/event-stream", [b"data: " + _dumps(o, "gemini") + b"\r\n\r\n"
                                         for o in items]
        ev = [(b"[" if i == 0 else b",\r\n") + _dumps(o, "pretty") for i, o in enumerate(items)]
        if cut is None or err is not None:
            ev.append(b"]" if ev else b"[]")
        return "application/json; charset=UTF-8", ev

    def _events_ollama(self, c, pieces, finish, usage, cut, err):
        ev = [_dumps(dict(self._ollama_head(c, p), done=False), "go") + b"\n"
              for p in (pieces if cut is None else pieces[:cut])]
        if cut is not None:
            if err is not None:
                ev.append(_dumps({"error": err}, "go") + b"\n")
            return "application/x-ndjson", ev
        ev.append(_dumps(dict(self._ollama_head(c, ""), **self._ollama_done(finish, usage)),
                         "go") + b"\n")
        return "application/x-ndjson", ev

    # ---- listings ----
    def _listing(self, c):
        ids = list(self.models.get(c.kind, []))
        if c.endpoint == "version":
            self._send_json(c, 200, {"version": "0.6.5"})
            return
        if c.endpoint == "model":
            want = c.arg
            found = [i for i in ids if i == want]
            if not found:
                c.model = want
                if c.kind == "gemini":
                    self._send_error(c, 404, "models/%s is not found for API version v1beta, "
                                     "or is not supported for getModel." % want)
                elif c.kind == "anthropic":
                    self._send_error(c, 404, "model: %s" % want)
                else:
                    self._send_error(c, 404)
                return
            obj = getattr(self, "_model_" + c.kind)(found[0])
            self._send_json(c, 200, obj)
            return
        objs = [getattr(self, "_model_" + c.kind)(i) for i in ids]
        if c.kind == "openai":
            obj = {"object": "list", "data": objs}
        elif c.kind == "anthropic":
            obj = {"data": objs, "has_more": False, "first_id": ids[0] if ids else None,
                   "last_id": ids[-1] if ids else None}
        else:
            obj = {"models": objs}
        self._send_json(c, 200, obj)

    @staticmethod
    def _model_openai(i):
        return {"id": i, "object": "model", "created": 1721172741,
                "owned_by": "deepseek" if i.startswith("deepseek") else "system"}

    @staticmethod
    def _model_anthropic(i):
        name = " ".join(w.capitalize() for w in i.split("-") if w != "latest")
        return {"type": "model", "id": i, "display_name": name,
                "created_at": "2024-10-22T00:00:00Z"}

    @staticmethod
    def _model_gemini(i):
        return {"name": "models/" + i, "version": "001",
                "displayName": " ".join(w.capitalize() for w in i.split("-")),
                "description": "Fake model " + i, "inputTokenLimit": 1048576,
                "outputTokenLimit": 8192,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
                "temperature": 1, "topP": 0.95, "topK": 40, "maxTemperature": 2}

    @staticmethod
    def _model_ollama(i):
        name = _ollama_name(i)
        return {"name": name, "model": name, "modified_at": "2025-01-01T00:00:00.000000000Z",
                "size": 2019393189, "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": {"parent_model": "", "format": "gguf", "family": "llama",
                            "families": ["llama"], "parameter_size": "3.2B",
                            "quantization_level": "Q4_K_M"}}
