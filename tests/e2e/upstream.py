"""Fake upstream HTTP servers for end-to-end tests: a threaded HTTP/1.1 server on 127.0.0.1
(port 0) whose routes are Python functions, with helpers for the failures chatgw must handle:
slow answers, chunked and streamed bodies, gzip, resets mid-body, oversize bodies, 5xx.

    up = Upstream()
    up.route("GET /hello", lambda r: r.reply(200, b"hi"))
    up.start()                      # up.url("/hello") -> "http://127.0.0.1:PORT/hello"
    ...
    up.stop()

A route gets a Request (method, path, query, headers (lower-case), body, target) and answers
with one of its reply helpers. Everything the server saw is recorded: up.requests (Request
objects), up.connections (TCP connections accepted), up.max_inflight (most requests being
handled at once). All waits are bounded and stop() releases sleeping handlers at once.
"""
import email.parser
import email.policy
import gzip
import http.server
import json
import socket
import socketserver
import struct
import threading
import time
import urllib.parse


class Request:
    def __init__(self, handler, body):
        self.h = handler
        self.method = handler.command
        self.target = handler.path  # as sent: origin-form, or absolute-form through a proxy
        parsed = urllib.parse.urlsplit(handler.path)
        self.path = parsed.path
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        self.raw_query = parsed.query
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body
        self.upstream = handler.server.upstream

    def json(self):
        return json.loads(self.body)

    # ---- replies ----
    def _head(self, status, headers):
        h = self.h
        h.send_response_only(status)
        for k, v in headers.items():
            h.send_header(k, str(v))
        h.end_headers()

    def reply(self, status=200, body=b"", headers=None):
        if isinstance(body, str):
            body = body.encode()
        hs = {"Content-Type": "text/plain", "Content-Length": len(body)}
        hs.update(headers or {})
        self._head(status, hs)
        if self.method != "HEAD":
            self.h.wfile.write(body)
        self.h.wfile.flush()

    def reply_json(self, status, obj, headers=None):
        hs = {"Content-Type": "application/json"}
        hs.update(headers or {})
        self.reply(status, json.dumps(obj).encode(), hs)

    def reply_gzip(self, status, body, headers=None):
        if isinstance(body, str):
            body = body.encode()
        z = gzip.compress(body)
        hs = {"Content-Encoding": "gzip", "Content-Type": "text/plain", "Content-Length": len(z)}
        hs.update(headers or {})
        self._head(status, hs)
        self.h.wfile.write(z)
        self.h.wfile.flush()

    def reply_chunked(self, status, chunks, delay=0.0, headers=None):
        """Transfer-Encoding: chunked, one HTTP chunk per item, `delay` seconds apart."""
        hs = {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}
        hs.update(headers or {})
        self._head(status, hs)
        w = self.h.wfile
        for i, c in enumerate(chunks):
            if isinstance(c, str):
                c = c.encode()
            if i and delay:
                self.sleep(delay)
            w.write(b"%x\r\n%s\r\n" % (len(c), c))
            w.flush()
        w.write(b"0\r\n\r\n")
        w.flush()

    def reply_sse(self, events, delay=0.0):
        """text/event-stream: each event as one `data:` message, `delay` seconds apart."""
        self.reply_chunked(200, ["data: %s\n\n" % e for e in events], delay,
                           {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})

    def reset_mid_body(self, total, send):
        """Announces `total` bytes, sends `send` of them, then resets the connection (RST)."""
        self._head(200, {"Content-Type": "application/octet-stream", "Content-Length": total})
        self.h.wfile.write(b"x" * send)
        self.h.wfile.flush()
        time.sleep(0.05)
        self.abort()

    def abort(self):
        """Closes the connection with a TCP RST, without an answer."""
        sock = self.h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.h.close_connection = True
        try:
            sock.close()
        except OSError:
            pass

    def sleep(self, seconds):
        """Sleeps, but returns early when the server stops (keeps teardown quick)."""
        self.upstream._stopping.wait(seconds)

    def hang(self, seconds=30.0):
        """Never answers (until `seconds` pass or the server stops), then closes."""
        self.sleep(seconds)
        self.h.close_connection = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream"

    def setup(self):
        super().setup()
        with self.server.upstream._lock:
            self.server.upstream.connections += 1

    def log_message(self, *args):  # quiet
        pass

    def _dispatch(self):
        up = self.server.upstream
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(n) if n else b""
        req = Request(self, body)
        with up._lock:
            up.requests.append(req)
            up.inflight += 1
            up.max_inflight = max(up.max_inflight, up.inflight)
        try:
            fn = up._find(req)
            if fn is None:
                req.reply(404, b"no route")
            else:
                fn(req)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with up._lock:
                up.inflight -= 1

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):  # resets and aborted clients: expected
        pass


class Upstream:
    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.requests = []
        self.connections = 0
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = None

    def route(self, key, fn):
        """key: "METHOD /path" or "/path" (any method)."""
        self.routes[key] = fn
        return self

    def _find(self, req):
        return self.routes.get("%s %s" % (req.method, req.path)) or self.routes.get(req.path)

    def start(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.upstream = self
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    @property
    def port(self):
        return self.server.server_address[1]

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self._stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def count(self, path):
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def reset_stats(self):
        with self._lock:
            self.requests = []
            self.connections = 0
            self.max_inflight = 0


def refused_port():
    """A 127.0.0.1 port with nothing listening (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_multipart(headers, body):
    """{name: {"filename", "content_type", "data"}} of a multipart/form-data body."""
    raw = b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = {
            "filename": part.get_filename(),
            "content_type": part.get("Content-Type"),
            "data": part.get_payload(decode=True),
        }
    return out


class OneHandler(Upstream):
    """An Upstream whose every request goes to one handler (a fake platform's dispatcher)."""

    def __init__(self, handler):
        super().__init__()
        self._handler = handler

    def _find(self, req):
        return self._handler


class FakeServer:
    """The lifecycle of a fake platform served by one OneHandler in self._up: start() -> self,
    stop(), a context manager, and its url, port and max_inflight."""

    def start(self):
        self._up.start()
        return self

    def stop(self):
        self._up.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self._up.port

    @property
    def port(self):
        return self._up.port

    @property
    def max_inflight(self):
        return self._up.max_inflight
