"""End-to-end test harness: starts the real chatgw binary on 127.0.0.1 (port 0) with a
temporary handlers directory and config, talks to it over real sockets, stops it by PID.

Environment (set by ctest): CHATGW_BIN (the binary), CHATGW_SANITIZE ("1"/"ON" in an
ASan+UBSan build: timeouts are stretched and stderr is checked for sanitizer reports).
"""
import http.client
import json
import os
import shutil
import signal
import signal as _signals
import socket
import subprocess
import tempfile
import textwrap
import threading
import sys
import time
import unittest

BIN = os.environ.get("CHATGW_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "chatgw")
SANITIZE = os.environ.get("CHATGW_SANITIZE", "").upper() in ("1", "ON", "TRUE", "YES")
SLOW = 3.0 if SANITIZE else 1.0  # sanitizer builds run slower: stretch waits, not asserts
TOKEN = "test-token-0123456789"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer")


def sanitizer_env():
    env = {}
    if SANITIZE:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=86"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rindex(")") + 2] != "Z"


def run_cli(args, env=None, cwd=None, timeout=30):
    """Runs chatgw with args to completion; returns (code, stdout, stderr)."""
    e = dict(os.environ)
    e.update(sanitizer_env())
    if env:
        e.update(env)
    p = subprocess.run([BIN] + list(args), capture_output=True, text=True, env=e, cwd=cwd,
                       timeout=timeout * SLOW, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:200])


class Gateway:
    """One chatgw process. handlers: {"name.lua": "source"}; config: YAML text or None."""

    def __init__(self, handlers=None, config=None, env=None, token=TOKEN, listeners=None,
                 workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="chatgw-e2e-")
        self.handlers_dir = os.path.join(self.dir, "handlers")
        os.makedirs(self.handlers_dir, exist_ok=True)
        for name, src in (handlers or {}).items():
            self.write_handler(name, src)
        self.config_path = os.path.join(self.dir, "chatgw.yml")
        with open(self.config_path, "w") as f:
            f.write(textwrap.dedent(config or ""))
        self.token = token
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith(("CHAT_GATEWAY_", "FEISHU_", "INTEGRATIONS_")):
                del self.env[k]
        self.env.update({"CHAT_GATEWAY_PORT": "0",
                         "CHAT_GATEWAY_DATA_DIR": os.path.join(self.dir, "data")})
        if token is not None:
            self.env["CHAT_GATEWAY_TOKEN"] = token
        self.env.update(sanitizer_env())
        if env:
            self.env.update(env)
        self.proc = None
        self.use_config = True
        self.lines = []  # stderr lines
        self.lock = threading.Lock()
        self.ports = {}

    # ---- files ----
    def write_handler(self, name, src):
        path = os.path.join(self.handlers_dir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(textwrap.dedent(src))
        os.rename(tmp, path)  # atomic: a reload never sees half a file

    def remove_handler(self, name):
        os.unlink(os.path.join(self.handlers_dir, name))

    # ---- process ----
    def start(self, wait_ready=True, timeout=20):
        args = [BIN, "run", self.handlers_dir]
        if self.use_config:  # False: started as seed 000's callers do, with no --config
            args += ["--config", self.config_path]
        self.proc = subprocess.Popen(args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env, cwd=self.dir)
        threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        if wait_ready:
            self.wait_log(lambda r: r.get("msg") == "ready", timeout)
            for r in self.records():
                if r.get("msg") == "listening":
                    self.ports[r["listener"]] = r["port"]
        return self

    def restart(self, wait_ready=True, timeout=20):
        """Starts the process again on the same directory (after stop() or a kill)."""
        if self.proc and self.proc.poll() is None:
            raise AssertionError("restart: chatgw is still running")
        with self.lock:
            self.lines = []
        self.ports = {}
        return self.start(wait_ready, timeout)

    def _pump(self, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
        stream.close()

    def records(self):
        """Parsed JSON log lines so far."""
        out = []
        with self.lock:
            lines = list(self.lines)
        for line in lines:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stderr_text(self):
        with self.lock:
            return "\n".join(self.lines)

    def wait_log(self, pred, timeout=10):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            for r in self.records():
                if pred(r):
                    return r
            if self.proc and self.proc.poll() is not None:
                time.sleep(0.2)
                for r in self.records():
                    if pred(r):
                        return r
                raise AssertionError("chatgw exited (%s) before the expected log line:\n%s"
                                     % (self.proc.returncode, self.stderr_text()[-4000:]))
            time.sleep(0.02)
        raise AssertionError("timed out waiting for a log line:\n" + self.stderr_text()[-4000:])

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, sig=_signals.SIGTERM, timeout=20):
        """Stops the process by PID; returns its exit code. Asserts no sanitizer report."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(sig)
        try:
            code = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("chatgw did not stop in time:\n" + self.stderr_text()[-4000:])
        time.sleep(0.05)
        self.check_sanitizers()
        return code

    def check_sanitizers(self):
        text = self.stderr_text()
        for m in SANITIZER_MARKERS:
            if m in text:
                raise AssertionError("sanitizer report in chatgw stderr:\n" + text[-8000:])

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- HTTP ----
    def port(self, listener="main"):
        return self.ports[listener]

    def request(self, method, path, body=None, headers=None, auth=True, listener="main",
                timeout=10, json_body=None):
        h = dict(headers or {})
        if auth and self.token:
            h.setdefault("Authorization", "Bearer " + self.token)
        if json_body is not None:
            body = json.dumps(json_body)
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port(listener), timeout=timeout * SLOW)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def health(self):
        return self.get("/health?verbose=1").json()

    def reload(self, timeout=15):
        """SIGHUP, then wait until the reload counter moves. Returns the reloads record."""
        before = self.health()["reloads"]["count"]
        self.signal(signal.SIGHUP)
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            r = self.health()["reloads"]
            if r["count"] > before:
                return r
            time.sleep(0.02)
        raise AssertionError("reload did not finish:\n" + self.stderr_text()[-4000:])

    def raw(self, data, read_timeout=5, listener="main", until_close=True):
        """Sends raw bytes on a fresh socket; returns everything read until close/timeout."""
        s = socket.create_connection(("127.0.0.1", self.port(listener)))
        s.settimeout(read_timeout * SLOW)
        try:
            if data:
                s.sendall(data)
            chunks = []
            while True:
                try:
                    c = s.recv(65536)
                except socket.timeout:
                    break
                if not c:
                    break
                chunks.append(c)
                if not until_close:
                    break
            return b"".join(chunks)
        finally:
            s.close()


class GatewayTest(unittest.TestCase):
    """Base class: self.gw(...) starts a gateway that is stopped and checked at teardown."""

    def setUp(self):
        self._gws = []

    def tearDown(self):
        # this case failed: its failure is in the result already (unittest adds it at once)
        result = getattr(getattr(self, "_outcome", None), "result", None)
        failed = any(t is self for t, _ in getattr(result, "errors", []) + getattr(result, "failures", []))
        for g in self._gws:
            if failed:  # what the gateway logged tells why (CI keeps nothing else)
                sys.stderr.write("\n---- chatgw log (last 60 lines) for %s ----\n%s\n"
                                 % (self.id(), "\n".join(g.stderr_text().splitlines()[-60:])))
            try:
                if g.proc and g.proc.poll() is None:
                    code = g.stop()
                    self.assertEqual(code, 0, "chatgw exit code\n" + g.stderr_text()[-3000:])
                else:
                    g.check_sanitizers()
            finally:
                g.cleanup()

    def gw(self, handlers=None, config=None, start=True, **kw):
        g = Gateway(handlers, config, **kw)
        self._gws.append(g)
        if start:
            g.start()
        return g

    def wait(self, pred, timeout=10.0, what="condition"):
        """Polls pred until it returns something true, and returns that; fails the test after
        timeout seconds (stretched by SLOW), naming what and adding self.wait_detail()."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.02)
        self.fail("timed out waiting for " + what + self.wait_detail())

    def wait_detail(self):
        """Appended to a wait failure: what a test case has seen so far (nothing here)."""
        return ""
