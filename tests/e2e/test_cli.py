"""End-to-end tests of the command line: version, help, usage errors, `check` and failing `run`."""
import os
import re
import shutil
import tempfile
import textwrap
import time
import unittest

from harness import BIN, SLOW, run_cli  # noqa: F401  (BIN documents which binary runs)

GOOD = """\
return {
  name = "good",
  routes = {
    ["GET /good"] = function(req) return { ok = true } end,
  },
}
"""

# A syntax error on line 4.
BROKEN = """\
return {
  routes = {
    ["GET /bad"] = function(req)
      return { ok = = true }
    end,
  },
}
"""

USAGE_RE = re.compile(r"^usage: chatgw ", re.M)


def clean_env(**extra):
    """Environment for run_cli: every CHAT_GATEWAY_*/FEISHU_*/INTEGRATIONS_* variable of the
    test runner blanked (an empty variable is ignored by chatgw), then extra applied."""
    env = {k: "" for k in os.environ
           if k.startswith(("CHAT_GATEWAY_", "FEISHU_", "INTEGRATIONS_"))}
    env.update(extra)
    return env


class CliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatgw-cli-")
        self.hdir = os.path.join(self.dir, "handlers")
        os.makedirs(self.hdir)
        self.data = os.path.join(self.dir, "data")
        self.config = self.write("chatgw.yml", "")
        self.env = clean_env(CHAT_GATEWAY_PORT="0", CHAT_GATEWAY_DATA_DIR=self.data,
                             CHAT_GATEWAY_TOKEN="cli-test-token")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def handler(self, name, text):
        path = os.path.join(self.hdir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def cli(self, *args, timeout=15):
        return run_cli(list(args), env=self.env, cwd=self.dir, timeout=timeout)

    def assertNoSanitizer(self, err):
        for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            self.assertNotIn(m, err)

    # ---- version / help / usage ----

    def test_version(self):
        code, out, err = self.cli("version")
        self.assertEqual(code, 0, err)
        self.assertRegex(out.strip(), r"^chatgw \d+\.\d+\.\d+")

    def test_version_flag(self):
        code, out, err = self.cli("--version")
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith("chatgw "), out)

    def test_help(self):
        code, out, err = self.cli("--help")
        self.assertEqual(code, 0, err)
        self.assertIn("run", out)
        self.assertIn("check", out)
        self.assertIn("version", out)

    def test_no_command_is_usage_error(self):
        code, out, err = self.cli()
        self.assertEqual(code, 2)
        self.assertRegex(err, USAGE_RE)

    def test_unknown_command(self):
        code, out, err = self.cli("frobnicate")
        self.assertEqual(code, 2)
        self.assertIn("frobnicate", err)
        self.assertRegex(err, USAGE_RE)
        self.assertEqual(out, "")

    def test_unknown_flag(self):
        self.handler("good.lua", GOOD)
        code, out, err = self.cli("run", self.hdir, "--bogus")
        self.assertEqual(code, 2)
        self.assertIn("--bogus", err)
        self.assertRegex(err, USAGE_RE)
        self.assertNotIn('"listening"', err)

    def test_missing_dir(self):
        for cmd in ("run", "check"):
            code, out, err = self.cli(cmd)
            self.assertEqual(code, 2, cmd)
            self.assertRegex(err, USAGE_RE)

    def test_config_flag_without_file(self):
        code, out, err = self.cli("check", self.hdir, "--config")
        self.assertEqual(code, 2)
        self.assertRegex(err, USAGE_RE)

    def test_two_dirs(self):
        code, out, err = self.cli("check", self.hdir, self.dir)
        self.assertEqual(code, 2)
        self.assertRegex(err, USAGE_RE)

    # ---- check ----

    def test_check_good_handlers(self):
        self.handler("good.lua", GOOD)
        t0 = time.time()
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        elapsed = time.time() - t0
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "chatgw check: OK\n", "the verdict is on stdout")
        self.assertNotIn("check: OK", err)
        self.assertLess(elapsed, 5 * SLOW, "check must return promptly")
        self.assertNotIn("listening", err)
        self.assertNotIn('"ready"', err)
        self.assertNoSanitizer(err)
        # nothing started: no data directory, no token file
        self.assertFalse(os.path.exists(self.data), "check must not create the data dir")

    def test_check_config_equals_form(self):
        self.handler("good.lua", GOOD)
        code, out, err = self.cli("check", self.hdir, "--config=" + self.config)
        self.assertEqual(code, 0, err)

    def test_check_without_config_uses_defaults(self):
        # no --config and no ./config/chatgw.yml in the working directory: built-in defaults
        self.handler("good.lua", GOOD)
        code, out, err = self.cli("check", self.hdir)
        self.assertEqual(code, 0, err)

    def test_check_empty_dir(self):
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 0, err)

    def test_check_missing_dir(self):
        missing = os.path.join(self.dir, "nope")
        code, out, err = self.cli("check", missing, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertIn("nope", err)

    def test_check_syntax_error(self):
        self.handler("good.lua", GOOD)
        path = self.handler("bad.lua", BROKEN)
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(path) + r":4: \S")
        self.assertNoSanitizer(err)

    def test_check_runtime_error_in_module(self):
        path = self.handler("boom.lua", """\
            local x = nil
            local y = x.field
            return {}
            """)
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertIn(path + ":2:", err)
        self.assertNotIn("stack traceback", err)

    def test_check_unknown_handler_key(self):
        path = self.handler("typo.lua", """\
            return {
              name = "typo",
              rotues = {
                ["GET /x"] = function() return {} end,
              },
            }
            """)
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(path) + r":3: .*rotues")
        self.assertNoSanitizer(err)

    def test_check_handler_not_a_table(self):
        path = self.handler("num.lua", "return 42\n")
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertIn(path + ":1:", err)

    def test_check_bad_route_key(self):
        path = self.handler("route.lua", """\
            return {
              routes = {
                ["FETCH /x"] = function() return {} end,
              },
            }
            """)
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(path) + r":3: .*FETCH")

    def test_check_reports_all_problems(self):
        a = self.handler("a.lua", "return { nmae = 'a' }\n")
        b = self.handler("b.lua", "return { routes = 5 }\n")
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertIn(a + ":1:", err)
        self.assertIn(b + ":1:", err)

    def test_check_bad_config(self):
        self.handler("good.lua", GOOD)
        cfg = self.write("bad.yml", """\
            log:
              level: info
            http:
              max_body_bytes: abc
            """)
        code, out, err = self.cli("check", self.hdir, "--config", cfg)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(cfg) + r":4: .*max_body_bytes")
        self.assertNoSanitizer(err)

    def test_check_bad_config_out_of_range(self):
        cfg = self.write("range.yml", """\
            listeners:
              main:
                port: 70000
            """)
        code, out, err = self.cli("check", self.hdir, "--config", cfg)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(cfg) + r":3: .*70000")

    def test_check_bad_yaml(self):
        cfg = self.write("broken.yml", "http:\n  max_body_bytes: [1, 2\n")
        code, out, err = self.cli("check", self.hdir, "--config", cfg)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(cfg) + r":\d+: ")

    def test_check_missing_config(self):
        self.handler("good.lua", GOOD)
        missing = os.path.join(self.dir, "missing.yml")
        code, out, err = self.cli("check", self.hdir, "--config", missing)
        self.assertEqual(code, 1, err)
        self.assertIn("missing.yml", err)
        self.assertNoSanitizer(err)

    def test_check_bad_env(self):
        self.env["CHAT_GATEWAY_PORT"] = "http"
        code, out, err = self.cli("check", self.hdir, "--config", self.config)
        self.assertEqual(code, 1, err)
        self.assertIn("env CHAT_GATEWAY_PORT", err)

    # ---- run failing at load ----

    def test_run_broken_script(self):
        self.handler("good.lua", GOOD)
        path = self.handler("bad.lua", BROKEN)
        _, _, check_err = self.cli("check", self.hdir, "--config", self.config)
        code, out, err = self.cli("run", self.hdir, "--config", self.config, timeout=10)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, re.escape(path) + r":4: \S")
        self.assertNotIn("listening", err)
        self.assertNotIn('"ready"', err)
        self.assertNoSanitizer(err)
        # run prints the same problem line as check does
        problem = [l for l in err.splitlines() if l.startswith(path + ":")]
        self.assertTrue(problem, err)
        self.assertIn(problem[0], check_err)

    def test_run_bad_config(self):
        self.handler("good.lua", GOOD)
        cfg = self.write("bad.yml", "http:\n  idle_timeout_ms: soon\n")
        code, out, err = self.cli("run", self.hdir, "--config", cfg, timeout=10)
        self.assertEqual(code, 1, err)
        self.assertIn(cfg + ":2:", err)
        self.assertNotIn("listening", err)

    def test_run_missing_config(self):
        self.handler("good.lua", GOOD)
        code, out, err = self.cli("run", self.hdir, "--config",
                                  os.path.join(self.dir, "missing.yml"), timeout=10)
        self.assertEqual(code, 1, err)
        self.assertIn("missing.yml", err)
        self.assertNotIn("listening", err)

    def test_run_duplicate_route(self):
        a = self.handler("a.lua", """\
            return {
              routes = {
                ["GET /same"] = function() return { who = "a" } end,
              },
            }
            """)
        b = self.handler("b.lua", """\
            return {
              routes = {
                ["POST /other"] = function() return {} end,
                ["GET /same"] = function() return { who = "b" } end,
              },
            }
            """)
        code, out, err = self.cli("run", self.hdir, "--config", self.config, timeout=10)
        self.assertEqual(code, 1, err)
        self.assertIn(a, err)
        self.assertIn(b, err)
        self.assertIn("GET /same", err)
        self.assertNotIn("listening", err)
        self.assertNoSanitizer(err)

    def test_run_route_shadowing_builtin(self):
        path = self.handler("h.lua", """\
            return {
              routes = {
                ["GET /health"] = function() return {} end,
              },
            }
            """)
        code, out, err = self.cli("run", self.hdir, "--config", self.config, timeout=10)
        self.assertEqual(code, 1, err)
        self.assertIn(path + ":3:", err)
        self.assertNotIn("listening", err)


if __name__ == "__main__":
    unittest.main()
