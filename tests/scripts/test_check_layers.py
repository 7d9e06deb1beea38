"""scripts/check-layers.py: passes on the real build, and fails on an upward call and on a cycle
(object files compiled here from tiny C sources laid out like runtime/)."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

SRC = os.environ.get("CHATGW_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("CHATGW_BUILD_DIR", os.path.join(SRC, "build"))
SCRIPT = os.path.join(SRC, "scripts", "check-layers.py")


def run(build, src=None):
    cmd = [sys.executable, SCRIPT, build] + (["--src", src] if src else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


class FakeTree:
    """runtime/<layer>/*.c compiled and archived as libchatgw_<layer>.a, as CMake does."""

    def __init__(self, files):
        self.dir = tempfile.mkdtemp(prefix="layers.")
        self.src = os.path.join(self.dir, "runtime")
        self.build = os.path.join(self.dir, "build")
        os.makedirs(self.build)
        by_layer = {}
        for path, text in files.items():
            layer, name = path.split("/")
            folder = os.path.join(self.src, layer if layer != "app" else ".")
            os.makedirs(folder, exist_ok=True)
            full = os.path.join(folder, name)
            with open(full, "w") as f:
                f.write(textwrap.dedent(text))
            if name.endswith(".c"):
                obj = os.path.join(self.build, name + ".o")
                subprocess.run(["cc", "-c", "-I", folder, full, "-o", obj], check=True)
                by_layer.setdefault(layer, []).append(obj)
        for layer, objs in by_layer.items():
            subprocess.run(["ar", "rcs", os.path.join(self.build, "libchatgw_%s.a" % layer)] + objs,
                           check=True)


class CheckLayers(unittest.TestCase):
    def tree(self, files):
        t = FakeTree(files)
        self.addCleanup(shutil.rmtree, t.dir, True)
        return t

    def test_the_runtime_has_no_upward_call_and_no_cycle(self):
        rc, out = run(BUILD)
        self.assertEqual(rc, 0, out)
        self.assertIn("no upward call, no cycle", out)

    def test_a_clean_layering_passes(self):
        t = self.tree({
            "common/log.c": "void log_x(void) {}\n",
            "core/store.c": "void log_x(void);\nvoid store_x(void) { log_x(); }\n",
            "vm/lib_store.c": "void store_x(void);\nvoid lib_store_x(void) { store_x(); }\n",
        })
        rc, out = run(t.build, t.src)
        self.assertEqual(rc, 0, out)

    def test_an_upward_call_fails_and_names_the_symbol(self):
        # common/log.c declares a core function by hand: it compiles and links, the check fails.
        t = self.tree({
            "common/log.c": "void store_x(void);\nvoid log_x(void) { store_x(); }\n",
            "core/store.c": "void store_x(void) {}\n",
        })
        rc, out = run(t.build, t.src)
        self.assertEqual(rc, 1, out)
        self.assertIn("upward call: common/log uses store_x from core/store", out)

    def test_a_cycle_within_a_layer_fails(self):
        t = self.tree({
            "core/a.c": "void b_x(void);\nvoid a_x(void) { b_x(); }\n",
            "core/b.c": "void a_x(void);\nvoid b_x(void) { a_x(); }\n",
        })
        rc, out = run(t.build, t.src)
        self.assertEqual(rc, 1, out)
        self.assertIn("cycle: core/a -(b_x)-> core/b, core/b -(a_x)-> core/a", out)

    def test_files_sharing_an_internal_header_are_one_module(self):
        t = self.tree({
            "net/z_internal.h": "void z_one(void);\nvoid z_two(void);\n",
            "net/z_one.c": '#include "z_internal.h"\nvoid z_one(void) { z_two(); }\n',
            "net/z_two.c": '#include "z_internal.h"\nvoid z_two(void) {}\nvoid z_three(void) { z_one(); }\n',
        })
        rc, out = run(t.build, t.src)
        self.assertEqual(rc, 0, out)

    def test_no_build_is_a_usage_error(self):
        with tempfile.TemporaryDirectory() as d:
            rc, out = run(d)
        self.assertEqual(rc, 2, out)


if __name__ == "__main__":
    unittest.main()
