"""E2E: `make install` into a DESTDIR with PREFIX=/usr, then the installed binary run from
there: `chatgw check` and a short `chatgw run` of the installed default handlers with the
installed config, GET /health, a stop by PID. The Lua dir is the installed one, found relative
to the binary (a marker written only into the installed lua/ is what loads, and the `ready`
line names it); CHATGW_LUA_DIR wins over it, and a binary with no share/ beside it falls back
to the source tree. A second install keeps a changed config file and puts the new one beside
it as .dist. Where systemd-analyze exists, the installed unit is verified (its ExecStart
pointed at the binary under DESTDIR). Nothing is written outside the test's temp dir, and
cmake is not run (`make -o build install BUILD=<the tested build dir>`)."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unittest

from harness import BIN, SLOW, TOKEN, Gateway, GatewayTest

SRC = os.path.abspath(os.environ.get("CHATGW_SRC") or
                      os.path.join(os.path.dirname(__file__), "..", ".."))
MARKER = '{"msg":"installed lua marker"}'


class InstalledGateway(Gateway):
    """A gateway started from the installed binary with the installed config."""

    def __init__(self, binary, handlers_dir, config_path, **kw):
        super().__init__(**kw)
        self.binary, self.handlers_dir, self.config_path = binary, handlers_dir, config_path
        for k in ("CHATGW_LUA_DIR", "CHATGW_TEST_CHANNEL", "TELEGRAM_BOT_TOKEN"):
            self.env.pop(k, None)

    def start(self, wait_ready=True, timeout=20):
        self.proc = subprocess.Popen([self.binary, "run", self.handlers_dir, "--config",
                                      self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env, cwd=self.dir)
        threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        if wait_ready:
            self.wait_log(lambda r: r.get("msg") == "ready", timeout)
        return self


@unittest.skipUnless(shutil.which("make") and shutil.which("install"), "make and install needed")
class InstallTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatgw-install-")
        cls.root = os.path.join(cls.tmp, "root")
        cls.src_handlers = os.listdir(os.path.join(SRC, "handlers"))
        cls.bin = os.path.join(cls.root, "usr", "bin", "chatgw")
        cls.lua = os.path.join(cls.root, "usr", "share", "chatgw", "lua")
        cls.install()
        cls.handlers = os.path.join(cls.root, "usr", "share", "chatgw", "handlers")
        cls.etc = os.path.join(cls.root, "etc", "chatgw")
        cls.unit = os.path.join(cls.root, "usr", "lib", "systemd", "system", "chatgw.service")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def install(cls):
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        p = subprocess.run(["make", "-s", "-C", SRC, "-o", "build", "install", "DESTDIR=" + cls.root,
                            "PREFIX=/usr", "BUILD=" + os.path.dirname(os.path.abspath(BIN))],
                           capture_output=True, text=True, env=env, timeout=60 * SLOW)
        if p.returncode != 0:
            raise AssertionError("make install failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
        # a marker only the installed Lua layer has: seen on stderr when that layer loads
        runtime = os.path.join(cls.lua, "chatgw", "runtime.lua")
        with open(runtime) as f:
            text = f.read()
        with open(runtime, "w") as f:
            f.write("io.stderr:write(%r .. '\\n')\n" % MARKER + text)
        return p.stdout

    def check(self, binary, env=None, handlers=None):
        """`chatgw check` of the installed handlers (or others) and config: (exit code, stderr)."""
        e = {k: v for k, v in os.environ.items() if k != "CHATGW_LUA_DIR"}
        e.update(env or {})
        p = subprocess.run([binary, "check", handlers or self.handlers, "--config",
                            os.path.join(self.etc, "chatgw.yml")],
                           capture_output=True, text=True, timeout=30 * SLOW, cwd=self.tmp, env=e,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr

    def test_the_layout(self):
        self.assertTrue(os.access(self.bin, os.X_OK))
        self.assertLessEqual(set(self.src_handlers), set(os.listdir(self.handlers)))
        for name in os.listdir(os.path.join(SRC, "config")):
            self.assertTrue(os.path.isfile(os.path.join(self.etc, name)), name)
        self.assertTrue(os.path.isfile(os.path.join(self.lua, "chatgw", "config.lua")))
        static = os.path.join("chatgw", "admin", "static")  # the admin page's files, beside its module
        self.assertEqual(sorted(os.listdir(os.path.join(self.lua, static))),
                         sorted(os.listdir(os.path.join(SRC, "lua", static))))
        self.assertTrue(os.path.isfile(os.path.join(self.root, "usr", "share", "chatgw", "env.example")))
        with open(self.unit) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/bin/chatgw run /usr/share/chatgw/handlers "
                      "--config /etc/chatgw/chatgw.yml\n", unit)
        self.assertNotIn("/usr/local/", unit)
        p = subprocess.run([self.bin, "version"], capture_output=True, text=True, timeout=30 * SLOW)
        self.assertRegex(p.stdout, r"^chatgw \d+\.\d+\.\d+")

    def test_a_second_install_keeps_a_changed_config(self):
        conf = os.path.join(self.etc, "chatgw.yml")
        with open(conf) as f:
            original = f.read()
        try:
            with open(conf, "a") as f:
                f.write("# changed here\n")
            out = self.install()
            self.assertIn("chatgw.yml.dist", out)
            with open(conf) as f:
                self.assertTrue(f.read().endswith("# changed here\n"), "the changed file is kept")
            with open(conf + ".dist") as f:
                self.assertEqual(f.read(), original)
        finally:
            with open(conf, "w") as f:
                f.write(original)
            if os.path.exists(conf + ".dist"):
                os.unlink(conf + ".dist")

    def test_check_and_run_from_the_install(self):
        code, err = self.check(self.bin)
        self.assertEqual(code, 0, err)
        self.assertIn(MARKER, err, "the installed Lua layer is what loads")
        g = InstalledGateway(self.bin, self.handlers, os.path.join(self.etc, "chatgw.yml"),
                             workdir=tempfile.mkdtemp(prefix="run-", dir=self.tmp))
        self._gws.append(g)
        g.start()
        ready = g.wait_log(lambda r: r.get("msg") == "ready")
        self.assertEqual(ready["lua_dir"], os.path.realpath(self.lua))
        self.assertIn(MARKER, g.stderr_text())
        for r in g.records():
            if r.get("msg") == "listening":
                g.ports[r["listener"]] = r["port"]
        h = g.get("/health")
        self.assertEqual(h.status, 200, h.text)
        self.assertTrue(h.json()["ok"])
        self.assertEqual(g.get("/health", auth=False).status, 401)
        # the admin page, from the installed files: the page and every asset it names
        page = g.get("/admin", auth=False)
        self.assertEqual(page.status, 200, page.text)
        assets = re.findall(r'(?:src|href)="(/admin/assets/[^"]+)"', page.text)
        self.assertGreater(len(assets), 5)
        for a in assets:
            self.assertEqual(g.get(a, auth=False).status, 200, a)
        self.assertEqual(g.token, TOKEN)
        self.assertEqual(g.stop(), 0, g.stderr_text()[-3000:])
        self.assertTrue(os.path.exists(os.path.join(g.dir, "data", "chatgw.db")))

    def test_the_lua_dir_order(self):
        handlers = os.path.join(self.tmp, "order-handlers")
        os.makedirs(handlers, exist_ok=True)
        with open(os.path.join(handlers, "ping.lua"), "w") as f:
            f.write('return { routes = { ["GET /ping"] = function() return { ok = true } end } }\n')
        # 2. the installed layer, beside the binary
        code, err = self.check(self.bin, handlers=handlers)
        self.assertEqual(code, 0, err)
        self.assertIn(MARKER, err)
        # 1. CHATGW_LUA_DIR wins over it
        other = os.path.join(self.tmp, "other-lua")
        shutil.copytree(os.path.join(SRC, "lua"), other, dirs_exist_ok=True)
        code, err = self.check(self.bin, {"CHATGW_LUA_DIR": other}, handlers=handlers)
        self.assertEqual(code, 0, err)
        self.assertNotIn(MARKER, err)
        # 3. a binary with no ../share/chatgw/lua beside it uses the source tree's
        alone = os.path.join(self.tmp, "alone", "bin")
        os.makedirs(alone, exist_ok=True)
        shutil.copy2(self.bin, alone)
        code, err = self.check(os.path.join(alone, "chatgw"), handlers=handlers)
        self.assertEqual(code, 0, err)
        self.assertNotIn(MARKER, err)

    def test_systemd_analyze_verifies_the_unit(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed")
        # ExecStart must name an executable: the one under DESTDIR
        d = os.path.join(self.tmp, "verify")
        os.makedirs(d, exist_ok=True)
        unit = os.path.join(d, "chatgw.service")
        with open(self.unit) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/bin/chatgw ", text)
        with open(unit, "w") as f:
            f.write(text.replace("ExecStart=/usr/bin/chatgw ", "ExecStart=%s " % self.bin))
        p = subprocess.run([analyze, "verify", "--man=no", unit], capture_output=True, text=True,
                           cwd=d, timeout=60 * SLOW)
        out = p.stdout + p.stderr
        problems = [l for l in out.splitlines() if "chatgw" in l]
        self.assertEqual(problems, [], out)
        if p.returncode != 0:
            self.skipTest("systemd-analyze verify cannot run here (%d): %s" % (p.returncode, out[-500:]))


if __name__ == "__main__":
    unittest.main()
