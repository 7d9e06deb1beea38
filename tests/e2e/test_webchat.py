"""examples/webchat in a real browser: Debian's headless Chromium, driven by python3-selenium
through chromium-driver, opens the page the example serves, connects with the chat token, and
chats with the handlers over the ws chat channel. Nothing is downloaded: the driver's path is
given, so selenium-manager never runs. Traffic goes to 127.0.0.1 only."""
import unittest

from harness import GatewayTest, SLOW, TOKEN
from test_examples import example_gateway
from browser import BrowserMixin, browser_missing, free_port

CHAT_TOKEN = "webchat-chat-token-42"

MISSING = browser_missing()
if MISSING is None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait


@unittest.skipUnless(MISSING is None, MISSING or "")
class WebchatBrowserTest(BrowserMixin, GatewayTest):
    def start_example(self):
        # The example's origins list 127.0.0.1:8787; serve it on a free port and list that.
        port = free_port()
        g = example_gateway("webchat", env={"CHAT_TOKEN": CHAT_TOKEN,
                                            "CHAT_GATEWAY_PORT": str(port)})
        self._gws.append(g)
        with open(g.config_path) as f:
            cfg = f.read()
        self.assertIn(":8787", cfg)
        with open(g.config_path, "w") as f:
            f.write(cfg.replace(":8787", ":%d" % port))
        g.start()
        self.assertEqual(g.port(), port)
        return g

    # ---- page helpers ----
    def until(self, pred, what):
        try:
            return WebDriverWait(self.browser, 15 * SLOW, poll_frequency=0.05).until(
                lambda d: pred())
        except Exception:
            self.fail("timed out waiting for %s%s" % (what, self.wait_detail()))

    def wait_detail(self):
        if self.browser is None:
            return ""
        return "\nstatus: %r\nlog: %r" % (self.browser.find_element(By.ID, "status").text,
                                          self.texts("#log li"))

    def texts(self, css):
        return [e.text for e in self.browser.find_elements(By.CSS_SELECTOR, css)]

    def bot_says(self, text):
        """Waits for a bot message whose first line is text; returns its element."""
        def find():
            for e in self.browser.find_elements(By.CSS_SELECTOR, "#log li.bot"):
                if e.text.split("\n")[0] == text:
                    return e
            return None
        return self.until(find, "the bot's reply %r" % text)

    def send(self, text):
        box = self.browser.find_element(By.ID, "text")
        box.send_keys(text)
        self.browser.find_element(By.ID, "send").click()

    def connect(self, token):
        b = self.browser
        b.find_element(By.ID, "token").clear()
        b.find_element(By.ID, "token").send_keys(token)
        b.find_element(By.ID, "connect").click()

    def test_chat_in_the_browser(self):
        g = self.start_example()
        page = g.get("/", auth=False)
        self.assertEqual(page.status, 200, page)
        self.assertTrue(page.headers["content-type"].startswith("text/html"), page.headers)
        b = self.start_browser()
        b.get("http://127.0.0.1:%d/" % g.port())
        self.assertEqual(b.title, "chatgw webchat")
        for secret in (TOKEN, CHAT_TOKEN):  # the page holds no token; the user types one
            self.assertNotIn(secret, b.page_source)
            self.assertNotIn(secret, page.text)
        self.assertIn('"/ws"', page.text)  # the ws path was filled in from the config

        # a wrong token is refused by connect, and the composer stays disabled
        self.connect("not-the-token")
        self.until(lambda: "refused" in b.find_element(By.ID, "status").text, "the refusal")
        self.assertFalse(b.find_element(By.ID, "send").is_enabled())

        self.connect(CHAT_TOKEN)
        self.until(lambda: b.find_element(By.ID, "send").is_enabled(), "the connection")
        self.assertIn("connected to lobby", b.find_element(By.ID, "status").text)

        self.send("hello there")
        self.bot_says("You said: hello there")
        self.assertEqual(self.texts("#log li.me"), ["hello there"])

        # a command, with a button: pressing it goes back over chat.press
        self.send("/echo hi")
        reply = self.bot_says("hi")
        reply.find_element(By.TAG_NAME, "button").click()
        self.bot_says("again: hi")

        # a streamed reply: the ws channel delivers it once, finished
        self.send("/count 4")
        self.bot_says("1 2 3 4")
        partial = [t for t in self.texts("#log li.bot") if t != "1 2 3 4" and "1 2 3 4".startswith(t)]
        self.assertEqual(partial, [], "no partial text was shown")
        self.assertEqual(self.texts("#log li.error"), [])


if __name__ == "__main__":
    unittest.main()
