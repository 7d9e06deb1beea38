"""Self-test of fake_llm.FakeLLM, spoken to with plain urllib and raw sockets (no chatgw): the
fake must answer like OpenAI, Anthropic, Gemini and Ollama do - framing included - or the
gateway's provider tests prove nothing. Streams are read off the socket and de-chunked here, so
the chunk sizes and the terminating chunk are checked too."""
import http.client
import json
import socket
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from fake_llm import FakeLLM

KEYS = {"openai": "sk-test", "anthropic": "ak-test", "gemini": "gk-test"}
OA = {"Authorization": "Bearer sk-test"}
AN = {"x-api-key": "ak-test", "anthropic-version": "2023-06-01"}
GE = {"x-goog-api-key": "gk-test"}
UTF = "héllo 世界 🙂"


def http_json(url, method="GET", body=None, headers=None, timeout=10):
    """-> (status, headers (lower-case), decoded JSON or text); HTTP errors are returned."""
    data = None if body is None else (body if isinstance(body, bytes) else
                                      json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hs, raw = e.code, e.headers, e.read()
    hs = {k.lower(): v for k, v in hs.items()}
    try:
        return status, hs, json.loads(raw)
    except ValueError:
        return status, hs, raw.decode("utf-8", "replace")


class Raw:
    """One request on a fresh socket (Connection: close), read to EOF and parsed by hand."""

    def __init__(self, base, method, path, body=None, headers=None, timeout=10):
        u = urllib.parse.urlsplit(base)
        data = b"" if body is None else (body if isinstance(body, bytes) else
                                         json.dumps(body).encode())
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (method, path, u.netloc)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        s = socket.create_connection((u.hostname, u.port), timeout=timeout)
        try:
            s.sendall(head.encode() + b"\r\n" + data)
            buf = b""
            while True:
                try:
                    got = s.recv(65536)
                except ConnectionResetError:
                    break
                if not got:
                    break
                buf += got
        finally:
            s.close()
        self.raw = buf
        self.status = None
        self.headers = {}
        self.body = b""
        self.chunks = []          # sizes of the HTTP chunks, terminating chunk excluded
        self.complete = False     # the body ended properly (terminating chunk / full length)
        if not buf:
            return
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip()
                        for k, v in (ln.split(":", 1) for ln in lines[1:])}
        if self.headers.get("transfer-encoding") == "chunked":
            while True:
                line, sep, after = rest.partition(b"\r\n")
                if not sep:
                    break
                size = int(line, 16)
                if size == 0:
                    self.complete = after == b"\r\n"
                    break
                if len(after) < size + 2:
                    self.body += after[:size]
                    break
                self.body += after[:size]
                self.chunks.append(size)
                rest = after[size + 2:]
        else:
            n = int(self.headers.get("content-length", "0"))
            self.body = rest[:n]
            self.complete = len(rest) >= n

    def json(self):
        return json.loads(self.body)


def sse_data_only(body, sep="\n\n"):
    """The data of each `data: ...` event; every event must be exactly one data line."""
    text = body.decode("utf-8")
    assert text.endswith(sep), repr(text[-40:])
    out = []
    for block in text[:-len(sep)].split(sep):
        assert block.startswith("data: "), repr(block)
        assert "\n" not in block and "\r" not in block, repr(block)
        out.append(block[len("data: "):])
    return out


def sse_named(body):
    """[(event, data JSON)] of an Anthropic stream: `event: X\\ndata: {...}\\n\\n` each."""
    text = body.decode("utf-8")
    assert text.endswith("\n\n"), repr(text[-40:])
    out = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, repr(block)
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), repr(block)
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name, (name, data)
        out.append((name, data))
    return out


def ndjson(body):
    text = body.decode("utf-8")
    assert text.endswith("\n"), repr(text[-40:])
    return [json.loads(ln) for ln in text[:-1].split("\n")]


def oa_body(text="hi", stream=False, **kw):
    b = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    b.update(kw)
    return b


def an_body(text="hi", stream=False):
    b = {"model": "claude-3-5-haiku-latest", "max_tokens": 256, "system": "be brief",
         "messages": [{"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    return b


def ge_body(text="hi"):
    return {"contents": [{"role": "user", "parts": [{"text": "earlier"}]},
                         {"role": "model", "parts": [{"text": "ok"}]},
                         {"role": "user", "parts": [{"text": text}]}],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 100}}


def ol_body(text="hi", stream=None, model="llama3.2"):
    b = {"model": model, "messages": [{"role": "user", "content": text}],
         "options": {"temperature": 0.2, "num_predict": 100}}
    if stream is not None:
        b["stream"] = stream
    return b


GE_PATH = "/v1beta/models/gemini-2.0-flash:"


def openai_text(body):
    data = sse_data_only(body)
    return "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                   for d in data if d != "[DONE]" and json.loads(d).get("choices")), data


def stream_request(kind, text="hi"):
    """(method, path, body, headers) of a streamed request of that kind."""
    return {"openai": ("POST", "/v1/chat/completions", oa_body(text, True), OA),
            "anthropic": ("POST", "/v1/messages", an_body(text, True), AN),
            "gemini": ("POST", GE_PATH + "streamGenerateContent?alt=sse", ge_body(text), GE),
            "ollama": ("POST", "/api/chat", ol_body(text), {})}[kind]


def stream_text(kind, body):
    if kind == "openai":
        return openai_text(body)[0]
    if kind == "anthropic":
        return "".join(d["delta"]["text"] for n, d in sse_named(body)
                       if n == "content_block_delta")
    if kind == "gemini":
        return "".join(json.loads(d)["candidates"][0]["content"]["parts"][0]["text"]
                       for d in sse_data_only(body, "\r\n\r\n"))
    return "".join(o["message"]["content"] for o in ndjson(body) if "message" in o)


class FakeLLMTest(unittest.TestCase):
    def setUp(self):
        self.llm = FakeLLM(keys=KEYS).start()
        self.addCleanup(self.llm.stop)

    def u(self, path):
        return self.llm.url + path

    def raw(self, method, path, body=None, headers=None):
        return Raw(self.llm.url, method, path, body, headers)

    def tearDown(self):
        self.assertEqual(self.llm.errors, getattr(self, "expected_errors", []))

    # ---- OpenAI ----
    def test_openai_plain(self):
        st, hs, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body("ping"), OA)
        self.assertEqual(st, 200)
        self.assertTrue(hs["content-type"].startswith("application/json"))
        self.assertEqual(j["object"], "chat.completion")
        self.assertTrue(j["id"].startswith("chatcmpl-"))
        self.assertEqual(j["model"], "gpt-4o-mini")
        ch = j["choices"][0]
        self.assertEqual(ch["message"], {"role": "assistant", "content": "echo: ping",
                                         "refusal": None, "annotations": []})
        self.assertEqual(ch["finish_reason"], "stop")
        self.assertEqual((j["usage"]["prompt_tokens"], j["usage"]["completion_tokens"],
                          j["usage"]["total_tokens"]), (10, 5, 15))
        rec = self.llm.last("openai")
        self.assertEqual((rec["method"], rec["path"], rec["stream"], rec["model"],
                          rec["prompt"], rec["status"]),
                         ("POST", "/v1/chat/completions", False, "gpt-4o-mini", "ping", 200))
        self.assertEqual(rec["headers"]["authorization"], "Bearer sk-test")
        self.assertEqual(rec["json"]["messages"][0]["role"], "system")

    def test_openai_stream_framing(self):
        self.llm.reply("Hello world", finish="length", usage=(7, 2))
        r = self.raw(*stream_request("openai"))
        self.assertEqual(r.status, 200)
        self.assertTrue(r.complete)
        self.assertEqual(r.headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(r.headers["transfer-encoding"], "chunked")
        text, data = openai_text(r.body)
        self.assertEqual(text, "Hello world")
        self.assertEqual(data[-1], "[DONE]")
        chunks = [json.loads(d) for d in data[:-1]]
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual(len({c["id"] for c in chunks}), 1)
        self.assertTrue(all(c["object"] == "chat.completion.chunk" for c in chunks))
        self.assertEqual([c["choices"][0]["delta"]["content"] for c in chunks[1:-1]],
                         ["Hel", "lo ", "wor", "ld"])   # delta_chars = 3
        self.assertEqual(chunks[-1]["choices"][0], {"index": 0, "delta": {}, "logprobs": None,
                                                    "finish_reason": "length"})
        self.assertTrue(all("usage" not in c for c in chunks))   # not asked for
        self.assertTrue(self.llm.last()["stream"])
        self.assertEqual(self.llm.last()["response"], r.body)
        self.assertEqual(len(r.chunks), len(data))          # one HTTP chunk per event

    def test_openai_stream_include_usage(self):
        body = oa_body("abc", True, stream_options={"include_usage": True})
        r = self.raw("POST", "/v1/chat/completions", body, OA)
        text, data = openai_text(r.body)
        self.assertEqual(text, "echo: abc")
        chunks = [json.loads(d) for d in data[:-1]]
        self.assertTrue(all(c["usage"] is None for c in chunks[:-1]))
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"]["total_tokens"], 15)
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "stop")

    def test_deepseek_paths_and_models(self):
        st, _, j = http_json(self.u("/chat/completions"), "POST",
                             oa_body("x", model="deepseek-chat"), OA)
        self.assertEqual((st, j["model"], j["choices"][0]["message"]["content"]),
                         (200, "deepseek-chat", "echo: x"))
        for path in ("/v1/models", "/models"):
            st, _, j = http_json(self.u(path), headers=OA)
            self.assertEqual(st, 200)
            self.assertEqual(j["object"], "list")
            self.assertEqual([m["id"] for m in j["data"]], ["gpt-4o-mini", "deepseek-chat"])
            self.assertEqual(set(j["data"][0]), {"id", "object", "created", "owned_by"})
            self.assertEqual(j["data"][0]["object"], "model")
        st, _, j = http_json(self.u("/v1/models/deepseek-chat"), headers=OA)
        self.assertEqual((st, j["id"]), (200, "deepseek-chat"))
        self.assertEqual(self.llm.last()["kind"], "openai")

    # ---- Anthropic ----
    def test_anthropic_plain(self):
        self.llm.reply("Bonjour", kind="anthropic", usage=(12, 3))
        st, hs, j = http_json(self.u("/v1/messages"), "POST", an_body(), AN)
        self.assertEqual(st, 200)
        self.assertTrue(hs["request-id"].startswith("req_"))
        self.assertEqual(j["type"], "message")
        self.assertEqual(j["role"], "assistant")
        self.assertTrue(j["id"].startswith("msg_"))
        self.assertEqual(j["content"], [{"type": "text", "text": "Bonjour"}])
        self.assertEqual((j["stop_reason"], j["stop_sequence"]), ("end_turn", None))
        self.assertEqual((j["usage"]["input_tokens"], j["usage"]["output_tokens"]), (12, 3))
        self.assertEqual(self.llm.last()["kind"], "anthropic")

    def test_anthropic_stream_framing(self):
        self.llm.reply("Hi there!", usage=(9, 4))
        r = self.raw(*stream_request("anthropic"))
        self.assertTrue(r.complete)
        self.assertEqual(r.headers["content-type"], "text/event-stream; charset=utf-8")
        ev = sse_named(r.body)
        self.assertEqual([n for n, _ in ev],
                         ["message_start", "content_block_start", "ping"] +
                         ["content_block_delta"] * 3 +
                         ["content_block_stop", "message_delta", "message_stop"])
        start = ev[0][1]["message"]
        self.assertEqual((start["role"], start["content"], start["stop_reason"],
                          start["usage"]["input_tokens"]), ("assistant", [], None, 9))
        self.assertEqual(ev[1][1], {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}})
        self.assertEqual(ev[3][1], {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": "Hi "}})
        self.assertEqual(stream_text("anthropic", r.body), "Hi there!")
        md = ev[-2][1]
        self.assertEqual(md["delta"], {"stop_reason": "end_turn", "stop_sequence": None})
        self.assertEqual(md["usage"], {"output_tokens": 4})

    def test_anthropic_models_routed_by_header(self):
        st, _, j = http_json(self.u("/v1/models"), headers=AN)
        self.assertEqual(st, 200)
        self.assertEqual(j["data"][0]["type"], "model")
        self.assertEqual(j["data"][0]["id"], "claude-3-5-haiku-latest")
        self.assertEqual(set(j["data"][0]), {"type", "id", "display_name", "created_at"})
        self.assertEqual((j["has_more"], j["first_id"], j["last_id"]),
                         (False, "claude-3-5-haiku-latest", "claude-3-5-haiku-latest"))
        self.assertEqual(self.llm.last()["kind"], "anthropic")

    # ---- Gemini ----
    def test_gemini_plain_header_and_query_key(self):
        st, hs, j = http_json(self.u(GE_PATH + "generateContent"), "POST", ge_body("q1"), GE)
        self.assertEqual(st, 200)
        self.assertEqual(hs["content-type"], "application/json; charset=UTF-8")
        cand = j["candidates"][0]
        self.assertEqual(cand["content"], {"parts": [{"text": "echo: q1"}], "role": "model"})
        self.assertEqual((cand["finishReason"], cand["index"]), ("STOP", 0))
        u = j["usageMetadata"]
        self.assertEqual((u["promptTokenCount"], u["candidatesTokenCount"],
                          u["totalTokenCount"]), (10, 5, 15))
        self.assertEqual(j["modelVersion"], "gemini-2.0-flash")
        st, _, j = http_json(self.u(GE_PATH + "generateContent?key=gk-test"), "POST",
                             ge_body("q2"))
        self.assertEqual(st, 200)
        rec = self.llm.last("gemini")
        self.assertEqual((rec["model"], rec["stream"], rec["prompt"], rec["query"]["key"]),
                         ("gemini-2.0-flash", False, "q2", "gk-test"))

    def test_gemini_sse_framing(self):
        self.llm.reply("abcdefg", usage=(4, 6))
        r = self.raw(*stream_request("gemini"))
        self.assertTrue(r.complete)
        self.assertEqual(r.headers["content-type"], "text/event-stream")
        self.assertNotIn(b"\n\n", r.body.replace(b"\r\n\r\n", b""))  # CRLF-separated events
        data = [json.loads(d) for d in sse_data_only(r.body, "\r\n\r\n")]
        self.assertEqual([d["candidates"][0]["content"]["parts"][0]["text"] for d in data],
                         ["abc", "def", "g"])
        self.assertTrue(all(d["candidates"][0]["content"]["role"] == "model" for d in data))
        self.assertTrue(all("finishReason" not in d["candidates"][0] for d in data[:-1]))
        self.assertEqual(data[-1]["candidates"][0]["finishReason"], "STOP")
        self.assertEqual(data[-1]["usageMetadata"]["candidatesTokenCount"], 6)
        self.assertEqual(data[-1]["usageMetadata"]["totalTokenCount"], 10)
        self.assertNotIn(b"[DONE]", r.body)
        self.assertTrue(self.llm.last()["stream"])

    def test_gemini_stream_without_sse_is_a_json_array(self):
        self.llm.reply("abcdef")
        r = self.raw("POST", GE_PATH + "streamGenerateContent", ge_body(), GE)
        self.assertTrue(r.complete)
        arr = r.json()
        self.assertEqual(["".join(p["text"] for p in a["candidates"][0]["content"]["parts"])
                          for a in arr], ["abc", "def"])

    def test_gemini_models(self):
        st, _, j = http_json(self.u("/v1beta/models"), headers=GE)
        self.assertEqual(st, 200)
        m = j["models"][0]
        self.assertEqual(m["name"], "models/gemini-2.0-flash")
        self.assertIn("generateContent", m["supportedGenerationMethods"])
        self.assertIn("displayName", m)
        st, _, j = http_json(self.u("/v1beta/models/gemini-2.0-flash?key=gk-test"))
        self.assertEqual((st, j["name"]), (200, "models/gemini-2.0-flash"))

    # ---- Ollama ----
    def test_ollama_plain(self):
        st, hs, j = http_json(self.u("/api/chat"), "POST", ol_body("yo", stream=False))
        self.assertEqual(st, 200)
        self.assertEqual(hs["content-type"], "application/json; charset=utf-8")
        self.assertEqual(j["message"], {"role": "assistant", "content": "echo: yo"})
        self.assertEqual((j["done"], j["done_reason"], j["model"]), (True, "stop", "llama3.2"))
        self.assertEqual((j["prompt_eval_count"], j["eval_count"]), (10, 5))
        for k in ("created_at", "total_duration", "load_duration", "prompt_eval_duration",
                  "eval_duration"):
            self.assertIn(k, j)
        self.assertFalse(self.llm.last()["stream"])

    def test_ollama_streams_by_default(self):
        self.llm.reply("a<b>&c", usage=(3, 2))
        r = self.raw("POST", "/api/chat", ol_body())    # no "stream": Ollama streams
        self.assertTrue(r.complete)
        self.assertEqual(r.headers["content-type"], "application/x-ndjson")
        self.assertIn(b"\\u003c", r.body)                # Go's JSON escaping
        lines = ndjson(r.body)
        self.assertEqual([ln["message"]["content"] for ln in lines[:-1]], ["a<b", ">&c"])
        self.assertTrue(all(ln["done"] is False and ln["message"]["role"] == "assistant"
                            for ln in lines[:-1]))
        last = lines[-1]
        self.assertEqual((last["done"], last["done_reason"], last["message"]["content"],
                          last["prompt_eval_count"], last["eval_count"]),
                         (True, "stop", "", 3, 2))
        self.assertTrue(self.llm.last()["stream"])

    def test_ollama_unknown_model_and_tags(self):
        st, _, j = http_json(self.u("/api/chat"), "POST", ol_body(model="mistral"))
        self.assertEqual((st, j), (404, {"error": 'model "mistral" not found, try pulling it '
                                                  'first'}))
        st, _, j = http_json(self.u("/api/chat"), "POST",
                             ol_body(model="llama3.2:latest", stream=False))
        self.assertEqual(st, 200)
        st, _, j = http_json(self.u("/api/tags"))
        self.assertEqual(st, 200)
        m = j["models"][0]
        self.assertEqual((m["name"], m["model"]), ("llama3.2:latest", "llama3.2:latest"))
        self.assertEqual(set(m), {"name", "model", "modified_at", "size", "digest", "details"})
        self.assertEqual(m["details"]["format"], "gguf")

    # ---- auth ----
    def test_openai_auth(self):
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body(),
                             {"Authorization": "Bearer sk-wrong-key-123456"})
        self.assertEqual(st, 401)
        self.assertEqual(set(j["error"]), {"message", "type", "param", "code"})
        self.assertEqual((j["error"]["type"], j["error"]["code"]),
                         ("invalid_request_error", "invalid_api_key"))
        self.assertIn("Incorrect API key provided: sk-wrong*******3456.", j["error"]["message"])
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body())
        self.assertEqual(st, 401)
        self.assertIn("You didn't provide an API key", j["error"]["message"])
        st, _, j = http_json(self.u("/v1/models"), headers={"Authorization": "Bearer nope"})
        self.assertEqual((st, j["error"]["code"]), (401, "invalid_api_key"))

    def test_anthropic_auth(self):
        st, _, j = http_json(self.u("/v1/messages"), "POST", an_body(), {"x-api-key": "ak-test"})
        self.assertEqual(st, 400)
        self.assertEqual(j["type"], "error")
        self.assertEqual(j["error"], {"type": "invalid_request_error",
                                      "message": "anthropic-version: header is required"})
        st, hs, j = http_json(self.u("/v1/messages"), "POST", an_body(),
                              {"x-api-key": "bad", "anthropic-version": "2023-06-01"})
        self.assertEqual(st, 401)
        self.assertEqual(j["error"], {"type": "authentication_error",
                                      "message": "invalid x-api-key"})
        self.assertTrue(j["request_id"].startswith("req_"))
        self.assertEqual(hs["request-id"], j["request_id"])
        st, _, j = http_json(self.u("/v1/messages"), "POST", an_body(),
                             {"anthropic-version": "2023-06-01"})
        self.assertEqual((st, j["error"]["type"]), (401, "authentication_error"))

    def test_gemini_auth(self):
        st, _, j = http_json(self.u(GE_PATH + "generateContent?key=bad"), "POST", ge_body())
        self.assertEqual(st, 400)
        e = j["error"]
        self.assertEqual((e["code"], e["status"], e["message"]),
                         (400, "INVALID_ARGUMENT",
                          "API key not valid. Please pass a valid API key."))
        self.assertEqual(e["details"][0]["reason"], "API_KEY_INVALID")
        st, _, j = http_json(self.u(GE_PATH + "generateContent"), "POST", ge_body())
        self.assertEqual((st, j["error"]["status"]), (403, "PERMISSION_DENIED"))

    def test_no_keys_configured_accepts_anything(self):
        llm = FakeLLM().start()
        self.addCleanup(llm.stop)
        st, _, _ = http_json(llm.url + "/v1/chat/completions", "POST", oa_body())
        self.assertEqual(st, 200)
        st, _, _ = http_json(llm.url + GE_PATH + "generateContent", "POST", ge_body())
        self.assertEqual(st, 200)

    # ---- scripted errors ----
    def test_429_with_retry_after_each_format(self):
        cases = {
            "openai": ("POST", "/v1/chat/completions", oa_body(), OA),
            "anthropic": ("POST", "/v1/messages", an_body(), AN),
            "gemini": ("POST", GE_PATH + "generateContent", ge_body(), GE),
            "ollama": ("POST", "/api/chat", ol_body(stream=False), {}),
        }
        for kind, (m, p, b, h) in cases.items():
            self.llm.error(429, kind=kind, retry_after=7)
        for kind, (m, p, b, h) in cases.items():
            st, hs, j = http_json(self.u(p), m, b, h)
            self.assertEqual((kind, st, hs.get("retry-after")), (kind, 429, "7"))
            if kind == "openai":
                self.assertEqual((j["error"]["type"], j["error"]["code"]),
                                 ("requests", "rate_limit_exceeded"))
                self.assertIn("Rate limit reached for gpt-4o-mini", j["error"]["message"])
            elif kind == "anthropic":
                self.assertEqual(j["type"], "error")
                self.assertEqual(j["error"]["type"], "rate_limit_error")
            elif kind == "gemini":
                self.assertEqual((j["error"]["code"], j["error"]["status"]),
                                 (429, "RESOURCE_EXHAUSTED"))
            else:
                self.assertEqual(set(j), {"error"})
                self.assertIsInstance(j["error"], str)
            st, hs, _ = http_json(self.u(p), m, b, h)       # used up: the next one answers
            self.assertEqual((kind, st, hs.get("retry-after")), (kind, 200, None))

    def test_529_503_400_bodies(self):
        self.llm.error(529, kind="anthropic")
        st, hs, j = http_json(self.u("/v1/messages"), "POST", an_body(), AN)
        self.assertEqual((st, j["error"]), (529, {"type": "overloaded_error",
                                                  "message": "Overloaded"}))
        self.assertEqual(hs["x-should-retry"], "true")
        self.llm.error(503, times=4)
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body(), OA)
        self.assertEqual((st, j["error"]["type"], j["error"]["code"]),
                         (503, "server_error", None))
        self.assertIn("overloaded", j["error"]["message"])
        st, _, j = http_json(self.u("/v1/messages"), "POST", an_body(), AN)
        self.assertEqual((st, j["error"]["type"]), (503, "api_error"))
        st, _, j = http_json(self.u(GE_PATH + "generateContent"), "POST", ge_body(), GE)
        self.assertEqual((st, j["error"]["code"], j["error"]["status"]),
                         (503, 503, "UNAVAILABLE"))
        st, _, j = http_json(self.u("/api/chat"), "POST", ol_body())
        self.assertEqual(st, 503)
        self.assertIn("server busy", j["error"])
        self.llm.error(400, kind="openai", message="bad thing")
        self.llm.error(400, kind="anthropic")
        self.llm.error(400, kind="gemini")
        self.llm.error(400, kind="ollama")
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body(), OA)
        self.assertEqual((st, j["error"]["type"], j["error"]["message"]),
                         (400, "invalid_request_error", "bad thing"))
        st, _, j = http_json(self.u("/v1/messages"), "POST", an_body(), AN)
        self.assertEqual((st, j["error"]["type"]), (400, "invalid_request_error"))
        st, _, j = http_json(self.u(GE_PATH + "generateContent"), "POST", ge_body(), GE)
        self.assertEqual((st, j["error"]["status"]), (400, "INVALID_ARGUMENT"))
        st, _, j = http_json(self.u("/api/chat"), "POST", ol_body())
        self.assertEqual(st, 400)
        self.assertIsInstance(j["error"], str)

    def test_errors_skip_listings_by_default_and_fifo_kind_matching(self):
        self.llm.error(500, kind="gemini")
        self.llm.error(500, kind="openai")
        st, _, _ = http_json(self.u("/v1/models"), headers=OA)     # listing: not consumed
        self.assertEqual(st, 200)
        st, _, _ = http_json(self.u("/v1/messages"), "POST", an_body(), AN)
        self.assertEqual(st, 200)                                   # no anthropic script
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body(), OA)
        self.assertEqual(st, 500)
        st, _, j = http_json(self.u(GE_PATH + "generateContent"), "POST", ge_body(), GE)
        self.assertEqual((st, j["error"]["status"]), (500, "INTERNAL"))
        self.llm.error(500, what="models")
        st, _, _ = http_json(self.u("/api/tags"))
        self.assertEqual(st, 500)

    def test_reply_queue(self):
        self.llm.reply("one", kind="openai", times=2)
        self.llm.reply("two")
        self.llm.error(500, kind="openai")      # an error does not use up a reply
        texts = []
        for _ in range(4):
            st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body("z"), OA)
            texts.append(j["choices"][0]["message"]["content"] if st == 200 else st)
        self.assertEqual(texts, [500, "one", "one", "two"])
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body("z"), OA)
        self.assertEqual(j["choices"][0]["message"]["content"], "echo: z")
        self.assertEqual(len(self.llm.calls("openai")), 5)
        self.assertEqual(self.llm.calls("anthropic"), [])

    # ---- mid-stream errors and drops ----
    def test_mid_stream_error_each_format(self):
        for kind in ("openai", "anthropic", "gemini", "ollama"):
            self.llm.reply("abcdefghijkl", kind=kind)
            self.llm.mid_stream_error(after_deltas=2, kind=kind)
            r = self.raw(*stream_request(kind))
            self.assertEqual((kind, r.status, r.complete), (kind, 200, True))
            if kind == "openai":
                data = sse_data_only(r.body)
                self.assertNotIn("[DONE]", data)
                err = json.loads(data[-1])
                self.assertEqual(err["error"]["type"], "server_error")
                self.assertEqual(openai_text(r.body)[0], "abcdef")
            elif kind == "anthropic":
                ev = sse_named(r.body)
                self.assertEqual(ev[-1], ("error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}}))
                self.assertNotIn("message_stop", [n for n, _ in ev])
                self.assertEqual("".join(d["delta"]["text"] for n, d in ev
                                         if n == "content_block_delta"), "abcdef")
            elif kind == "gemini":
                data = [json.loads(d) for d in sse_data_only(r.body, "\r\n\r\n")]
                self.assertEqual(data[-1]["error"]["status"], "UNAVAILABLE")
                self.assertEqual("".join(d["candidates"][0]["content"]["parts"][0]["text"]
                                         for d in data[:-1]), "abcdef")
                self.assertTrue(all("finishReason" not in d["candidates"][0]
                                    for d in data[:-1]))
            else:
                lines = ndjson(r.body)
                self.assertEqual(set(lines[-1]), {"error"})
                self.assertEqual("".join(ln["message"]["content"] for ln in lines[:-1]),
                                 "abcdef")
                self.assertFalse(any(ln.get("done") for ln in lines[:-1]))

    def test_mid_stream_error_skips_non_streamed_requests(self):
        self.llm.mid_stream_error(after_deltas=1)
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", oa_body("q"), OA)
        self.assertEqual((st, j["choices"][0]["message"]["content"]), (200, "echo: q"))
        r = self.raw(*stream_request("openai", "q"))
        self.assertEqual(openai_text(r.body)[0], "ech")
        self.assertNotIn("[DONE]", sse_data_only(r.body))

    def test_drop_after_each_format(self):
        for kind in ("openai", "anthropic", "gemini", "ollama"):
            self.llm.reply("abcdefghijkl", kind=kind)
            self.llm.drop_after(after_deltas=3, kind=kind)
            r = self.raw(*stream_request(kind))
            self.assertEqual((kind, r.status, r.complete), (kind, 200, False))
            self.assertEqual(stream_text(kind, r.body), "abcdefghi")
            self.assertEqual(self.llm.last(kind)["status"], "dropped")
        r = self.raw(*stream_request("openai"))        # used up
        self.assertTrue(r.complete)

    # ---- chunking ----
    def test_chunking_is_byte_identical(self):
        self.llm.deterministic = True
        for kind in ("openai", "anthropic", "gemini", "ollama"):
            self.llm.chunking(None)
            whole = self.raw(*stream_request(kind, UTF))
            self.assertTrue(whole.complete)
            for size in (1, 7):
                self.llm.chunking(size)
                r = self.raw(*stream_request(kind, UTF))
                self.assertTrue(r.complete)
                self.assertEqual((kind, size, r.body), (kind, size, whole.body))
                self.assertTrue(all(n == size for n in r.chunks[:-1]), r.chunks)
                self.assertLessEqual(r.chunks[-1], size)
                self.assertEqual(r.body, self.llm.last()["response"])
                self.assertEqual(stream_text(kind, r.body), "echo: " + UTF)

    def test_utf8_split_inside_characters_reassembles(self):
        self.llm.chunking(7)
        self.llm.delta_chars = 2
        for kind in ("openai", "anthropic", "gemini", "ollama"):
            self.llm.reply(UTF, kind=kind)
            r = self.raw(*stream_request(kind))
            cut_inside = False
            pos = 0
            for n in r.chunks:
                pos += n
                try:
                    r.body[:pos].decode("utf-8")
                except UnicodeDecodeError:
                    cut_inside = True
            self.assertTrue(cut_inside, kind)     # some chunk boundary falls inside a char
            self.assertEqual(stream_text(kind, r.body), UTF)

    def test_chunk_delay(self):
        self.llm.chunking(None, delay=0.05)
        self.llm.reply("abcdefghijkl")     # role + 4 deltas + finish + [DONE] = 7 events
        t0 = time.monotonic()
        r = self.raw(*stream_request("openai"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertEqual(len(r.chunks), 7)
        self.assertEqual(openai_text(r.body)[0], "abcdefghijkl")

    # ---- dead servers, hangs ----
    def test_down_and_refused_url(self):
        self.llm.down()
        r = self.raw("POST", "/v1/chat/completions", oa_body(), OA)
        self.assertEqual((r.raw, r.status), (b"", None))
        u = urllib.parse.urlsplit(self.llm.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        conn.request("GET", "/api/tags")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            conn.getresponse()
        conn.close()
        self.assertEqual([r["status"] for r in self.llm.calls()], ["down", "down"])
        self.llm.up()
        st, _, _ = http_json(self.u("/api/tags"))
        self.assertEqual(st, 200)
        dead = urllib.parse.urlsplit(FakeLLM.refused_url())
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((dead.hostname, dead.port), timeout=5).close()

    def test_hang_released_by_stop(self):
        llm = FakeLLM(keys=KEYS).start()
        self.addCleanup(llm.stop)
        llm.hang(30, kind="openai", times=2)
        out = []

        def call():
            t0 = time.monotonic()
            try:
                http_json(llm.url + "/v1/chat/completions", "POST", oa_body(), OA, timeout=20)
                out.append(("answered", time.monotonic() - t0))
            except Exception as e:
                out.append((type(e).__name__, time.monotonic() - t0))
        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        self.assertTrue(llm.wait_for(lambda: llm.max_inflight >= 2, timeout=5))
        time.sleep(0.2)
        self.assertEqual(out, [])                   # still hanging
        t0 = time.monotonic()
        llm.stop()
        for t in threads:
            t.join(5)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertEqual(len(out), 2)
        self.assertTrue(all(name != "answered" and took < 5 for name, took in out), out)
        self.assertEqual([r["status"] for r in llm.calls()], ["hang", "hang"])

    def test_hang_bounded(self):
        self.llm.hang(0.3, kind="ollama")
        t0 = time.monotonic()
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError,
                                urllib.error.URLError)):
            urllib.request.urlopen(urllib.request.Request(
                self.u("/api/chat"), json.dumps(ol_body()).encode(), method="POST"),
                timeout=10)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        st, _, _ = http_json(self.u("/api/chat"), "POST", ol_body(stream=False))
        self.assertEqual(st, 200)

    # ---- requests a gateway never sends ----
    def test_unknown_paths_and_bad_bodies_are_recorded(self):
        st, _, j = http_json(self.u("/v1/completions"), "POST", {"x": 1}, OA)
        self.assertEqual(st, 404)
        self.assertIn("Invalid URL", j["error"]["message"])
        st, _, body = http_json(self.u("/api/generate"), "POST", {"x": 1})
        self.assertEqual((st, body), (404, "404 page not found"))
        st, _, j = http_json(self.u("/v1/messages"), "POST",
                             {"model": "m", "messages": []}, AN)
        self.assertEqual((st, j["error"]["message"]), (400, "max_tokens: Field required"))
        st, _, j = http_json(self.u("/v1/chat/completions"), "POST", b"{nope", OA)
        self.assertEqual((st, j["error"]["type"]), (400, "invalid_request_error"))
        self.assertEqual(len(self.llm.errors), 4)
        self.assertIn("unexpected request: POST /v1/completions", self.llm.errors[0])
        self.expected_errors = self.llm.errors
        self.assertIsNone(self.llm.calls()[0]["kind"])

    def test_wait_calls(self):
        threading.Timer(0.1, lambda: http_json(self.u("/api/tags"))).start()
        calls = self.llm.wait_calls(1, kind="ollama", timeout=5)
        self.assertEqual(calls[0]["path"], "/api/tags")
        with self.assertRaises(AssertionError):
            self.llm.wait_calls(1, kind="gemini", timeout=0.1)


if __name__ == "__main__":
    unittest.main()
