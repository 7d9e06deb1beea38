"""End-to-end tests of TLS listeners (docs/operations.md, "TLS"): certificates made at test time
with the openssl CLI, clients are curl, Python's ssl module and node's ws (wss). Traffic only to
127.0.0.1."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import unittest
import warnings

from harness import SLOW, TOKEN, Gateway, GatewayTest, Response, run_cli
from test_ws import HAVE_NODE_WS, NODE_PATH, WsDriver

HANDLERS = {"hello.lua": """\
    return {
      routes = {
        ["GET /hello"] = { function(req) return { ok = true, hello = req.query.name or "tls" } end,
                           public = true },
        ["POST /echo"] = { function(req)
          return 200, req.body, { ["Content-Type"] = "application/octet-stream" }
        end, public = true },
      },
      methods = {
        ["echo"] = function(conn, params) return { params = params, role = conn.role } end,
      },
    }
"""}


def make_cert(path_cert, path_key, cn="127.0.0.1"):
    """A self-signed certificate for 127.0.0.1 (2 days); returns its serial as upper-case hex."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + cn, "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", path_key, "-out", path_cert],
                   check=True, capture_output=True, timeout=60)
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", path_cert], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].upper()


def client_ctx(*cafiles):
    ctx = ssl.create_default_context()
    for f in cafiles:
        ctx.load_verify_locations(cafile=f)
    return ctx


def serial_of(sock):
    """The serial of the certificate the server presented (hex, upper case)."""
    return sock.getpeercert()["serialNumber"].upper()


def read_response(f):
    """One HTTP/1.1 response from a file object: (status, headers, body)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline().rstrip(b"\r\n")
        if not h:
            break
        k, v = h.split(b":", 1)
        headers[k.strip().lower().decode()] = v.strip().decode()
    body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


class TlsGateway(Gateway):
    """A gateway whose TLS listeners the harness's helpers (health, reload) reach over HTTPS."""

    def __init__(self, *a, tls_listeners=("main",), cafiles=(), **kw):
        super().__init__(*a, **kw)
        self.tls_listeners = set(tls_listeners)
        self.cafiles = list(cafiles)

    def ctx(self):
        return client_ctx(*self.cafiles)

    def request(self, method, path, body=None, headers=None, auth=True, listener="main",
                timeout=10, json_body=None):
        if listener not in self.tls_listeners:
            return super().request(method, path, body, headers, auth, listener, timeout, json_body)
        h = dict(headers or {})
        if auth and self.token:
            h.setdefault("Authorization", "Bearer " + self.token)
        if json_body is not None:
            body = json.dumps(json_body)
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPSConnection("127.0.0.1", self.port(listener), timeout=timeout * SLOW,
                                           context=self.ctx())
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def tls_socket(self, listener="main", ctx=None, timeout=10):
        raw = socket.create_connection(("127.0.0.1", self.port(listener)), timeout=timeout * SLOW)
        return (ctx or self.ctx()).wrap_socket(raw, server_hostname="127.0.0.1")


def tls_config(extra="", cert="tls/cert.pem", key="tls/key.pem"):
    return ("listeners:\n  main:\n    port: 0\n    tls:\n      cert: %s\n      key: %s\n%s"
            % (cert, key, extra))


class TlsTestBase(GatewayTest):
    def tgw(self, config=None, start=True, handlers=None, make=True, **kw):
        """A gateway with tls/cert.pem and tls/key.pem (relative to chatgw.yml) made first."""
        g = TlsGateway(handlers or HANDLERS, config if config is not None else tls_config(), **kw)
        self._gws.append(g)
        os.makedirs(os.path.join(g.dir, "tls"), exist_ok=True)
        g.cert = os.path.join(g.dir, "tls", "cert.pem")
        g.key = os.path.join(g.dir, "tls", "key.pem")
        if make:
            g.serial = make_cert(g.cert, g.key)
            keep = os.path.join(g.dir, "ca1.pem")  # the first cert, for clients after a rotation
            shutil.copy(g.cert, keep)
            g.cafiles.append(keep)
        if start:
            g.start()
        return g


class TestTlsBasics(TlsTestBase):
    def test_curl_health_and_a_handler_route(self):
        g = self.tgw()
        url = "https://127.0.0.1:%d" % g.port()
        r = subprocess.run(["curl", "-sS", "--cacert", g.cert, "-H", "Authorization: Bearer " + TOKEN,
                            url + "/health"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"ok": True})
        r = subprocess.run(["curl", "-sS", "--cacert", g.cert, url + "/hello?name=curl"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"ok": True, "hello": "curl"})
        # the listening line says so, and plain HTTP on the TLS port is not answered in clear
        rec = [r for r in g.records() if r.get("msg") == "listening" and r["listener"] == "main"]
        self.assertIs(rec[0]["tls"], True)
        self.assertNotIn(b"HTTP/1.1", g.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=3))

    def test_python_client_alpn_version_and_health_fields(self):
        g = self.tgw()
        ctx = g.ctx()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with g.tls_socket(ctx=ctx) as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
            self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(serial_of(s), g.serial)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, body = read_response(s.makefile("rb"))
            self.assertEqual((st, json.loads(body)), (200, {"ok": True, "hello": "tls"}))
        # h2 only: no ALPN is chosen (no error), and HTTP/1.1 is spoken
        ctx = g.ctx()
        ctx.set_alpn_protocols(["h2"])
        with g.tls_socket(ctx=ctx) as s:
            self.assertIsNone(s.selected_alpn_protocol())
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s.makefile("rb"))[0], 200)
        # TLS 1.2 exactly works too
        ctx = g.ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with g.tls_socket(ctx=ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")
        h = g.health()
        t = h["tls"]["main"]
        self.assertEqual(t["serial"], g.serial)
        self.assertEqual(t["subject"], "/CN=127.0.0.1")
        self.assertEqual(t["cert"], os.path.join(g.dir, "tls", "cert.pem"))
        self.assertGreater(t["not_after"], time.time() + 86400)
        self.assertNotIn("last_error", t)
        self.assertEqual(h["checks"]["tls"]["status"], "ok")

    def test_tls_1_1_is_refused(self):
        g = self.tgw()
        ctx = g.ctx()
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so the client itself would allow TLS 1.1
        with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated names: that's the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises(ssl.SSLError) as cm:
            g.tls_socket(ctx=ctx).close()
        # the server's protocol_version alert (or no shared version), not a client-side refusal
        self.assertRegex(str(cm.exception), r"(?i)protocol.version|unsupported.protocol")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # same client, TLS 1.2 allowed: works
        with g.tls_socket(ctx=ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")
        # curl agrees
        r = subprocess.run(["curl", "-sS", "--cacert", g.cert, "--tls-max", "1.1",
                            "https://127.0.0.1:%d/hello" % g.port()], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)

    def test_keep_alive_and_pipelining(self):
        g = self.tgw()
        with g.tls_socket() as s:
            f = s.makefile("rb")
            s.sendall(b"".join(b"GET /hello?name=p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                               for i in range(5)))
            for i in range(5):
                st, h, body = read_response(f)
                self.assertEqual((st, json.loads(body)["hello"]), (200, "p%d" % i))
                self.assertNotEqual(h.get("connection"), "close")
            time.sleep(0.2)
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            self.assertEqual(read_response(f)[2], b"hello")

    def test_large_body(self):
        g = self.tgw()
        body = os.urandom(1024 * 1024)
        r = g.request("POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), len(body))
        self.assertTrue(r.body == body)
        r = g.request("POST", "/echo", body=body + b"x")  # one byte over max_body_bytes: 413
        self.assertEqual(r.status, 413)

    def test_handshake_timeout_and_max_connections(self):
        g = self.tgw(tls_config("http:\n  header_timeout_ms: 500\n  max_connections: 2\n"))
        s = socket.create_connection(("127.0.0.1", g.port()))
        s.settimeout(10 * SLOW)
        t0 = time.time()
        self.assertEqual(s.recv(100), b"")  # no ClientHello: closed by the header timeout
        took = time.time() - t0
        self.assertGreater(took, 0.4)
        self.assertLess(took, 5 * SLOW)
        s.close()
        # a handshake begun and never finished is closed the same way
        s = socket.create_connection(("127.0.0.1", g.port()))
        s.settimeout(10 * SLOW)
        s.sendall(b"\x16\x03\x01\x00\x50")  # a ClientHello record header, then nothing
        self.assertEqual(s.recv(100), b"")
        s.close()
        # max_connections counts TLS connections: the third gets its 503 over TLS
        a, b = g.tls_socket(), g.tls_socket()
        try:
            with g.tls_socket() as c:
                st, h, body = read_response(c.makefile("rb"))
                self.assertEqual(st, 503)
            a.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(a.makefile("rb"))[0], 200)
        finally:
            a.close()
            b.close()


class TestTlsConfig(TlsTestBase):
    def boot_fails(self, g, *needles):
        g.start(wait_ready=False)
        code = g.proc.wait(30 * SLOW)
        time.sleep(0.1)
        text = g.stderr_text()
        self.assertEqual(code, 1, text[-2000:])
        for n in needles:
            self.assertIn(n, text)
        return text

    def test_bad_certificate_at_boot_exits_1_naming_the_file(self):
        g = self.tgw(start=False, make=False)  # no files at all
        self.boot_fails(g, "chatgw: listener main: tls: certificate " + g.cert, "cannot open")
        with open(g.cert, "w") as f:
            f.write("not a certificate\n")
        with open(g.key, "w") as f:
            f.write("not a key\n")
        g.lines = []
        self.boot_fails(g, "certificate " + g.cert + ":")
        make_cert(g.cert, os.path.join(g.dir, "unused-key.pem"))
        make_cert(os.path.join(g.dir, "unused-cert.pem"), g.key)  # a key of another cert
        g.lines = []
        text = self.boot_fails(g, "key " + g.key + " does not match certificate " + g.cert)
        self.assertNotIn("PRIVATE KEY", text)

    def test_chatgw_check_loads_the_files(self):
        g = self.tgw(start=False)
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path])
        self.assertEqual((code, out.strip()), (0, "chatgw check: OK"), err)
        with open(g.cert, "w") as f:
            f.write("garbage\n")
        code, out, err = run_cli(["check", g.handlers_dir, "--config", g.config_path])
        self.assertEqual(code, 1)
        self.assertIn("chatgw.yml: listeners.main.tls: certificate " + g.cert + ": no start line", err)

    def test_tls_needs_both_files(self):
        g = self.tgw(tls_config().replace("      key: tls/key.pem\n", ""), start=False)
        self.boot_fails(g, "listeners.main.tls.key: required")


class TestTlsReload(TlsTestBase):
    def replace(self, g, cert, key):
        """Atomic replacement of the files the listener reads."""
        shutil.copy(cert, g.cert + ".new")
        shutil.copy(key, g.key + ".new")
        os.rename(g.key + ".new", g.key)
        os.rename(g.cert + ".new", g.cert)

    def test_reload_under_load(self):
        g = self.tgw()
        new_cert, new_key = os.path.join(g.dir, "c2.pem"), os.path.join(g.dir, "k2.pem")
        new_serial = make_cert(new_cert, new_key)
        self.assertNotEqual(new_serial, g.serial)
        g.cafiles.append(new_cert)
        ctx = g.ctx()  # trusts both
        old = g.tls_socket(ctx=ctx)  # a keep-alive connection from before the reload
        self.assertEqual(serial_of(old), g.serial)
        old_f = old.makefile("rb")
        stop = threading.Event()
        results = {"ok": 0, "errors": [], "serials": []}

        def load():
            deadline = time.time() + 60 * SLOW
            n = 0
            while not stop.is_set() and n < 3000 and time.time() < deadline:
                n += 1
                try:
                    with g.tls_socket(ctx=ctx) as s:
                        ser = serial_of(s)
                        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        st, _, _ = read_response(s.makefile("rb"))
                        if st != 200:
                            raise AssertionError("status %d" % st)
                        results["ok"] += 1
                        results["serials"].append(ser)
                except Exception as e:  # noqa: BLE001 - every failure counts
                    results["errors"].append(repr(e))
        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            self.wait(lambda: results["ok"] >= 20, what="requests before the reload")
            self.replace(g, new_cert, new_key)
            g.reload()
            seen = results["ok"]
            self.wait(lambda: results["ok"] >= seen + 20, what="requests after the reload")
            # the old connection still works, on its old session
            old.sendall(b"GET /hello?name=old HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, body = read_response(old_f)
            self.assertEqual((st, json.loads(body)["hello"]), (200, "old"))
        finally:
            stop.set()
            t.join(30 * SLOW)
            old.close()
        self.assertEqual(results["errors"], [])
        self.assertEqual(results["serials"][0], g.serial)
        self.assertEqual(results["serials"][-1], new_serial)
        # once switched, never back: new connections all see the new certificate
        first_new = results["serials"].index(new_serial)
        self.assertEqual(set(results["serials"][first_new:]), {new_serial})
        with g.tls_socket(ctx=client_ctx(new_cert)) as s:
            self.assertEqual(serial_of(s), new_serial)
        t = g.health()["tls"]["main"]
        self.assertEqual((t["serial"], t["loads"]), (new_serial, 2))
        self.assertTrue(any(r.get("msg") == "tls: certificate reloaded" and
                            r.get("serial") == new_serial for r in g.records()))

    def test_bad_certificate_at_reload_keeps_the_old_one(self):
        g = self.tgw()
        with open(g.key) as f:
            key_text = f.read()
        key_body = key_text.splitlines()[1]  # a line of the key's base64
        # garbage certificate
        with open(g.cert, "w") as f:
            f.write("garbage\n")
        g.reload()
        rec = g.wait_log(lambda r: r.get("msg") == "tls: reload failed, keeping the running certificate")
        self.assertEqual(rec["level"], "error")
        self.assertIn("certificate " + g.cert, rec["error"])
        with g.tls_socket() as s:  # still the old one
            self.assertEqual(serial_of(s), g.serial)
        h = g.health()
        self.assertIn(g.cert, h["tls"]["main"]["last_error"])
        self.assertEqual(h["checks"]["tls"]["status"], "degraded")
        self.assertEqual(h["status"], "degraded")
        self.assertEqual(h["reloads"]["last_result"], "ok")  # the handlers reloaded fine
        # a key that does not match
        other_cert, other_key = os.path.join(g.dir, "c2.pem"), os.path.join(g.dir, "k2.pem")
        new_serial = make_cert(other_cert, other_key)
        g.cafiles.append(other_cert)
        shutil.copy(other_cert, g.cert)  # the new certificate, the old key
        g.reload()
        self.wait(lambda: "does not match" in (g.health()["tls"]["main"].get("last_error") or ""),
                  what="the mismatch in health")
        with g.tls_socket() as s:
            self.assertEqual(serial_of(s), g.serial)
        # an unreadable key
        os.chmod(g.key, 0)
        if os.access(g.key, os.R_OK):  # root reads anything: use a missing file instead
            os.rename(g.key, g.key + ".gone")
        g.reload()
        self.wait(lambda: "key " + g.key + ": cannot open" in
                  (g.health()["tls"]["main"].get("last_error") or ""), what="unreadable key")
        if os.path.exists(g.key + ".gone"):
            os.rename(g.key + ".gone", g.key)
        os.chmod(g.key, 0o600)
        # fixed: the new pair loads, the error is cleared
        shutil.copy(other_key, g.key)
        g.reload()
        self.wait(lambda: g.health()["tls"]["main"]["serial"] == new_serial, what="the fixed pair")
        h = g.health()
        self.assertNotIn("last_error", h["tls"]["main"])
        self.assertEqual(h["checks"]["tls"]["status"], "ok")
        self.assertEqual(h["tls"]["main"]["failures"], 3)
        self.assertNotIn(key_body, g.stderr_text())  # never key material in the log


@unittest.skipUnless(HAVE_NODE_WS, "node and node-ws are not installed")
class TestWss(TlsTestBase):
    def test_websocket_over_tls(self):
        g = self.tgw()
        d = WsDriver.__new__(WsDriver)
        env = dict(os.environ, NODE_PATH=NODE_PATH, NODE_EXTRA_CA_CERTS=g.cert)
        # WsDriver with the test's CA trusted and wss:// URLs
        d.gw = g
        d.p = subprocess.Popen(["node", os.path.join(os.path.dirname(__file__), "ws_client.js")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
        d.pending, d.cv, d.next_id = [], threading.Condition(), 0
        threading.Thread(target=d._pump, daemon=True).start()
        threading.Thread(target=d._drain_err, daemon=True).start()
        d.url = lambda path="/ws": "wss://127.0.0.1:%d%s" % (g.port(), path)
        try:
            hello = d.connect("a", role="operator", scopes=["operator.read", "operator.write"])
            self.assertTrue(hello["ok"], hello)
            r = d.req("a", "echo", {"x": 1, "big": "y" * 100000})
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["payload"]["params"]["big"], "y" * 100000)
            d.cmd(op="close", name="a", code=1000, reason="bye")
            self.assertEqual(d.closed("a")["code"], 1000)
        finally:
            d.stop()
            for f in (d.p.stdin, d.p.stdout, d.p.stderr):
                f.close()
        self.assertTrue(any(r.get("msg") == "ws closed" for r in g.records()))


if __name__ == "__main__":
    unittest.main()
