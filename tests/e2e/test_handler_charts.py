"""E2E: the default charts handler (handlers/charts.lua) with the real gnuplot, against the fake
Telegram Bot API (tests/e2e/fake_telegram.py), which keeps the bytes of every photo: numbers in
the message and a configured source (argv, its stdout CSV) arrive as real PNGs that this test
decodes (signature, chunk CRCs, IHDR 800x480, IDAT inflated and unfiltered, more than a couple
of colours); hostile titles and sources never reach gnuplot and no file named by the attack
appears; a source that fails or times out, and a gnuplot that fails or hangs, get a clear
reply; after every case the temporary directory under data_dir is empty. Only
handlers/charts.lua is copied into the gateway, so other handlers do not interfere."""
import os
import re
import shutil
import struct
import unittest
import zlib

from harness import Gateway, GatewayTest
from fake_telegram import FakeTelegram

ROOT = os.environ.get("CHATGW_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
TOKEN = "123456:CHARTS-token_SECRET-abcdefghijklmn"

POLICY = """\
rules:
  - name: charts
    match: { capability: charts.render }
    allow: [charts.render]
"""

CONFIG = r"""
channels:
  telegram:
    poll_timeout_s: 1
app:
  charts:
    sources:
      cpu:
        argv: ["/bin/sh", "-c", "printf 'time,cpu\\n1,2\\n2,5\\n3,4\\n'"]
        title: "CPU (%)"
      direct:
        argv: ["/usr/bin/printf", "1,10\\n2,20\\n3,15\\n4,30\\n"]
      failing:
        argv: ["/bin/sh", "-c", "echo no such metric >&2; exit 3"]
      slow:
        argv: ["/bin/sleep", "30"]
        timeout_ms: 700
      hostile:
        argv: ["/usr/bin/printf", "1,2\\n2,`touch PWNED_SOURCE`\\n3,$(touch PWNED_SOURCE2)\\n"]
"""

ATTACK_FILES = ("PWNED_TITLE", "PWNED_SUBST", "PWNED_SYSTEM", "PWNED_SOURCE", "PWNED_SOURCE2",
                "PWNED_NAME")

PNG_SIG = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}   # colour type -> samples per pixel


def decode_png(data):
    """Decodes a non-interlaced PNG fully; returns (width, height, rows of pixel tuples).
    Raises AssertionError on anything malformed."""
    assert data[:8] == PNG_SIG, "PNG signature: %r" % data[:8]
    pos, chunks = 8, []
    while pos < len(data):
        assert pos + 12 <= len(data), "truncated chunk at %d" % pos
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        assert pos + 12 + n <= len(data), "truncated %r chunk" % kind
        body = data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xffffffff == crc, "CRC of the %r chunk" % kind
        chunks.append((kind, body))
        pos += 12 + n
        if kind == b"IEND":
            break
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", [k for k, _ in chunks]
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (comp, filt, interlace) == (0, 0, 0), "compression, filter, interlace"
    assert ctype in CHANNELS and depth in (8, 16) or depth in (1, 2, 4, 8) and ctype in (0, 3)
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    bpp = max(1, CHANNELS[ctype] * depth // 8)
    stride = (w * CHANNELS[ctype] * depth + 7) // 8
    assert len(raw) == h * (stride + 1), "inflated IDAT: %d bytes for %dx%d" % (len(raw), w, h)
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        assert f <= 4, "filter type %d in row %d" % (f, y)
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xff
            elif f == 2:
                line[i] = (line[i] + b) & 0xff
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xff
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
        rows.append([bytes(line[i:i + bpp]) for i in range(0, stride - bpp + 1, bpp)] if depth >= 8
                    else [bytes(line)])
        prev = line
    return w, h, rows


class ChartsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.tg = FakeTelegram(tokens={TOKEN: {"id": 123456, "username": "charts_bot",
                                               "first_name": "Charts"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.chat_seq = 7000

    def start(self, config=CONFIG, env=None):
        e = {"TELEGRAM_API_BASE": self.tg.url, "TELEGRAM_BOT_TOKEN": TOKEN}
        e.update(env or {})
        g = Gateway(config=config, env=e)
        self._gws.append(g)
        shutil.copy(os.path.join(ROOT, "handlers", "charts.lua"), g.handlers_dir)
        with open(os.path.join(g.dir, "policy.yml"), "w") as f:
            f.write(POLICY)
        g.start()
        self.g = g
        return g

    # ---- helpers ----
    def new_chat(self):
        self.chat_seq += 1
        return self.chat_seq

    def say(self, chat_id, text):
        self.tg.push_update(TOKEN, self.tg.text_update(chat_id, text))

    def reply(self, chat_id, text):
        """Sends text; returns the bot's one answer (a message record of the fake)."""
        self.say(chat_id, text)
        m = self.wait(lambda: self.tg.sent(chat_id), 20, "an answer to %r" % text)
        self.assertEqual(len(m), 1, m)
        return m[0]

    def text_reply(self, chat_id, text):
        m = self.reply(chat_id, text)
        self.assertIsNone(m["photo"], "no photo for %r" % text)
        return m["plain"]

    def assert_png_chart(self, m, caption):
        self.assertTrue(m["photo"], m)
        self.assertEqual(m["caption"], caption)
        data = m["photo"]["bytes"]
        w, h, rows = decode_png(data)
        self.assertEqual((w, h), (800, 480))
        colours = set(px for row in rows for px in row)
        self.assertGreater(len(colours), 3, "a chart, not a blank image")
        # the plotted line is drawn in a colour that is not grey (background, grid, text)
        self.assertTrue(any(len(set(px[:3])) > 1 for px in colours), "a coloured line")

    def tmp_dir(self):
        return os.path.join(self.g.dir, "data", "charts-tmp")

    def assert_no_temp_files(self):
        d = self.tmp_dir()
        if os.path.exists(d):
            self.assertEqual(os.listdir(d), [], "the temporary directory under data_dir is empty")

    def assert_no_attack_files(self):
        """No file named by an attack under the gateway's directory (its cwd, data_dir, the
        temporary directories gnuplot ran in), in the test's cwd, or in /tmp."""
        found = [os.path.join(d, f) for d, _, files in os.walk(self.g.dir) for f in files
                 if f in ATTACK_FILES]
        found += [f for f in os.listdir(os.getcwd()) + os.listdir("/tmp") if f in ATTACK_FILES]
        self.assertEqual(found, [], "files the attacks would have made")

    def charts_execs(self):
        text = self.g.get("/metrics").text
        n = 0
        for line in text.splitlines():
            if line.startswith("chatgw_exec_total") and 'module="charts"' in line:
                n += float(line.rsplit(" ", 1)[1])
        return n

    def wait_detail(self):
        g = getattr(self, "g", None)
        return ("\n" + g.stderr_text()[-3000:]) if g else ""

    # ---- cases ----
    def test_numbers_and_a_configured_source_arrive_as_real_pngs(self):
        self.start()
        c = self.new_chat()
        self.assert_png_chart(self.reply(c, "/chart 3 5 2 8"), "4 points, min 2, max 8, last 8")
        self.assert_no_temp_files()
        self.assertTrue(os.path.isdir(self.tmp_dir()), "rendered under <data_dir>/charts-tmp")

        c = self.new_chat()
        self.assert_png_chart(self.reply(c, "/chart Latency (ms) 12 15.5 11,9"),
                              "Latency (ms): 4 points, min 9, max 15.5, last 9")
        self.assert_no_temp_files()

        c = self.new_chat()
        self.assert_png_chart(self.reply(c, "/chart cpu"), "CPU (%): 3 points, min 2, max 5, last 4")
        self.assert_no_temp_files()
        c = self.new_chat()
        self.assert_png_chart(self.reply(c, "/chart direct load 10:00/x_y-z."),
                              "load 10:00/x_y-z.: 4 points, min 10, max 30, last 30")
        self.assert_no_temp_files()

        # several at once: the charts module runs one child at a time, the others wait
        chats = [self.new_chat() for _ in range(4)]
        for i, c in enumerate(chats):
            self.say(c, "/chart %s" % " ".join(str((i * 7 + k * 3) % 11) for k in range(50)))
        for c in chats:
            m = self.wait(lambda: self.tg.sent(c), 30, "a chart in %d" % c)
            self.assertEqual(len(m), 1, m)
            self.assert_png_chart(m[0], m[0]["caption"])
            self.assertTrue(m[0]["caption"].startswith("50 points, "), m[0]["caption"])
        self.assert_no_temp_files()
        rendered = [r for r in self.g.records() if r.get("msg") == "charts: rendered"]
        self.assertEqual(len(rendered), 8, rendered)

    def test_hostile_titles_and_sources_never_reach_gnuplot(self):
        self.start()
        before = self.charts_execs()
        title = "A chart title may use only letters, digits, spaces"
        for text, why in (("/chart `touch PWNED_TITLE` 1 2 3", title),
                          ("/chart $(touch PWNED_SUBST) 4 5", title),
                          ("/chart \"; system('touch PWNED_SYSTEM') 6 7", title),
                          ("/chart '; system(\"touch PWNED_SYSTEM\"); ' 1", title),
                          ("/chart cpu `touch PWNED_TITLE`", title),
                          ("/chart $(touch${IFS}PWNED_NAME)", "No numbers to chart.\nUsage: /chart")):
            t = self.text_reply(self.new_chat(), text)
            self.assertIn(why, t, text)
        self.assertEqual(self.charts_execs(), before, "nothing ran under the charts module")
        # a source whose output carries the attack: the bad line is refused, gnuplot never runs
        self.assertEqual(self.text_reply(self.new_chat(), "/chart hostile"),
                         "The source 'hostile' gave a bad line 2 (expected x,y numbers).")
        self.assertEqual(self.charts_execs(), before + 1, "only the source ran")
        # the allowed punctuation still renders
        self.assert_png_chart(self.reply(self.new_chat(), "/chart CPU (%) 10:00/x_y-z. 1 -2 3e2"),
                              "CPU (%) 10:00/x_y-z.: 3 points, min -2, max 300, last 300")
        self.assert_no_attack_files()
        self.assert_no_temp_files()
        # bad numbers get the usage
        for text, why in (("/chart 1 nan 3", "Not a finite decimal number: nan"),
                          ("/chart inf", "Not a finite decimal number: inf"),
                          ("/chart nope", "Unknown source 'nope'."),
                          ("/chart", "Usage: /chart <source> [title], or /chart [title] <numbers>")):
            t = self.text_reply(self.new_chat(), text)
            self.assertIn(why, t)
            self.assertIn("Usage: /chart", t)
        self.assertIn("Sources: cpu, direct, failing, hostile, slow", self.text_reply(self.new_chat(), "/chart"))

    def test_a_source_that_fails_or_times_out_gets_a_clear_reply(self):
        self.start()
        self.assertEqual(self.text_reply(self.new_chat(), "/chart failing"),
                         "The source 'failing' failed (exit status 3).")
        self.assert_no_temp_files()
        self.assertEqual(self.text_reply(self.new_chat(), "/chart slow"), "The source 'slow' timed out.")
        self.assert_no_temp_files()
        self.assertTrue(any(r.get("msg") == "charts: source failed" and r.get("source") == "failing"
                            and "no such metric" in r.get("stderr", "") for r in self.g.records()))
        # the charts slot is free again
        self.assert_png_chart(self.reply(self.new_chat(), "/chart 1 2"), "2 points, min 1, max 2, last 2")
        self.assert_no_temp_files()

    def test_gnuplot_failing_or_hanging_gets_a_clear_reply_and_leaves_no_temp_file(self):
        bindir = os.path.join(self.tg_tmp(), "bin")
        os.makedirs(bindir)
        for name, body in (("gnuplot-fails", "cat >/dev/null; echo 'line 0: bad' >&2; exit 1"),
                           ("gnuplot-hangs", "cat >/dev/null; exec sleep 30"),
                           ("gnuplot-noimage", "cat >/dev/null; exit 0")):
            p = os.path.join(bindir, name)
            with open(p, "w") as f:
                f.write("#!/bin/sh\n" + body + "\n")
            os.chmod(p, 0o755)
        for prog, timeout, want in (("gnuplot-fails", 30000, "Rendering the chart failed (gnuplot exit status 1)."),
                                    ("gnuplot-hangs", 700, "Rendering the chart timed out."),
                                    ("gnuplot-noimage", 30000, "Rendering the chart failed (gnuplot made no image)."),
                                    ("/nonexistent/gnuplot", 30000,
                                     "Charts are not available: gnuplot could not be started.")):
            cfg = CONFIG + "    gnuplot: %s\n    timeout_ms: %d\n" % (
                os.path.join(bindir, prog) if not prog.startswith("/") else prog, timeout)
            self.start(config=cfg)
            self.assertEqual(self.text_reply(self.new_chat(), "/chart 1 2 3"), want, prog)
            self.assert_no_temp_files()
            self.assertEqual(self.g.stop(), 0)

    def tg_tmp(self):
        d = __import__("tempfile").mkdtemp(prefix="chatgw-charts-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


if __name__ == "__main__":
    unittest.main()
