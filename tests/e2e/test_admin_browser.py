"""The admin page (/admin, issue 16) in a real browser: Debian's headless Chromium driven by
python3-selenium through chromium-driver (nothing downloaded; traffic to 127.0.0.1 only).
Sign in with the gateway token; a validation message from the API beside its field; a
telegram_bot gateway created through the page's form against the fake Bot API, green once it
polls; an AI gateway against the fake LLM, tested, with its latency; the "upstream" breaker of a
handler opened by calls to a dead port, seen open in the breakers view through the admin.state
push; a chat message in the console answered by a handler; a gateway deleted after its
confirmation. The page has no CSP violation in the browser's log, no inline script and no token
in its source. Screenshots go to $CHATGW_ARTIFACTS, else <build dir>/test-artifacts/admin/."""
import os
import re
import unittest

from harness import BIN, GatewayTest, SLOW, TOKEN
from browser import BrowserMixin, browser_missing, free_port
from fake_telegram import FakeTelegram
from fake_llm import FakeLLM

MISSING = browser_missing()
if MISSING is None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

KEY = "cd" * 32
TG_TOKEN = "424242:" + "C" * 35
AI_KEY = "sk-admin-page-0123456789"
ARTIFACTS = os.environ.get("CHATGW_ARTIFACTS") or os.path.join(
    os.path.dirname(os.path.abspath(BIN)), "test-artifacts", "admin")

HANDLERS = {
    # a route of the operator's own, through a breaker, to an upstream that is down
    "upstream.lua": """\
        local dead = os.getenv("DEAD_URL")
        return {
          routes = {
            ["POST /v1/upstream"] = function()
              local br = chatgw.breaker{ name = "upstream", failures = 3, open_ms = 60000 }
              local res, err = br:call(chatgw.http.request, { url = dead, timeout_ms = 1000 })
              return { state = br:state(), error = err }
            end,
          },
        }
        """,
    "echo.lua": """\
        return { on_message = function(msg) msg:reply("You said: " .. msg.text) end }
        """,
}


@unittest.skipUnless(MISSING is None, MISSING or "")
class AdminBrowserTest(BrowserMixin, GatewayTest):
    BROWSER_ARGS = ("--window-size=1400,1000",)

    def setUp(self):
        super().setUp()
        self.shot = 0
        self.tg = FakeTelegram(tokens={TG_TOKEN: {"id": 424242, "username": "admin_page_bot"}})
        self.tg.start()
        self.addCleanup(self.tg.stop)
        self.llm = FakeLLM(keys={"openai": AI_KEY})
        self.llm.start()
        self.addCleanup(self.llm.stop)
        os.makedirs(ARTIFACTS, exist_ok=True)

    def start_browser(self):
        return BrowserMixin.start_browser(self, log_console=True)

    def start_gateway(self):
        port = free_port()
        dead = free_port()  # nothing listens there
        return self.gw(HANDLERS, """\
            ws:
              origins: ["http://127.0.0.1:%d"]
            channels:
              telegram:
                poll_timeout_s: 1
            """ % port, env={"CHAT_GATEWAY_PORT": str(port), "TELEGRAM_API_BASE": self.tg.url,
                             "CHAT_GATEWAY_ENCRYPTION_KEY": KEY, "DEAD_URL": "http://127.0.0.1:%d/" % dead})

    # ---- page helpers ----
    def until(self, pred, what):
        try:
            # the live view re-renders its tables: an element read as it is replaced is read again
            return WebDriverWait(self.browser, 15 * SLOW, poll_frequency=0.1, ignored_exceptions=(
                NoSuchElementException, StaleElementReferenceException)).until(lambda d: pred())
        except Exception:
            self.screenshot("timeout")
            self.fail("timed out waiting for %s\nlive: %s\nvisible: %s" % (
                what, self.text_of("#live"), self.browser.find_element(By.TAG_NAME, "body").text[-3000:]))

    def css(self, sel):
        return self.browser.find_elements(By.CSS_SELECTOR, sel)

    def read(self, fn):
        """fn() again when the element it read was replaced meanwhile (the live view re-renders)."""
        for _ in range(20):
            try:
                return fn()
            except StaleElementReferenceException:
                continue
        return fn()

    def text_of(self, sel):
        return self.read(lambda: (lambda e: e[0].text if e else None)(self.css(sel)))

    def class_of(self, sel):
        return self.read(lambda: self.css(sel)[0].get_attribute("class"))

    def click(self, sel):
        """Clicks sel once it is shown (found again if the live view replaced it meanwhile)."""
        def go():
            e = self.css(sel)
            if not e or not e[0].is_displayed():
                return False
            e[0].click()
            return True
        self.until(go, sel)

    def type(self, sel, text):
        e = self.until(lambda: self.css(sel) and self.css(sel)[0], sel)
        e.clear()
        e.send_keys(text)

    def badge(self, row_sel):
        """The status badge of a table row, when it is shown."""
        return self.read(lambda: (lambda e: e[0].get_attribute("data-status") if e else None)(
            self.css(row_sel + " .badge")))

    def screenshot(self, name):
        self.shot += 1
        if self.browser is not None:
            self.browser.save_screenshot(os.path.join(ARTIFACTS, "%02d-%s.png" % (self.shot, name)))

    def test_the_admin_page(self):
        g = self.start_gateway()
        r = g.get("/admin", auth=False)
        self.assertEqual(r.status, 200)
        self.assertIn("script-src 'self'", r.headers["content-security-policy"])
        self.assertIn("frame-ancestors 'none'", r.headers["content-security-policy"])
        self.assertEqual(re.findall(r"<script[^>]*>([^<]+)</script>", r.text), [])
        b = self.start_browser()
        b.get("http://127.0.0.1:%d/admin" % g.port())
        self.assertEqual(b.title, "chatgw admin")
        self.screenshot("login")

        # sign in: a wrong token is refused, the right one opens every view and the live view
        self.type("#token", "not-the-token")
        self.click("#login-button")
        self.until(lambda: self.css("#login-error")[0].is_displayed(), "the refusal")
        self.assertIn("not valid", self.text_of("#login-error"))
        self.type("#token", TOKEN)
        self.click("#login-button")
        self.until(lambda: "gateway" in (self.text_of("#who") or ""), "the signed-in name")
        self.until(lambda: self.css("#live")[0].get_attribute("data-status") == "live", "the live badge")
        navs = [e.get_attribute("data-view") for e in self.css("#nav button")]
        self.assertEqual(navs, ["overview", "gateways", "breakers", "limiters", "outbox", "exec", "tasks", "audit", "chat"])
        self.assertEqual(b.execute_script("return sessionStorage.getItem('chatgw.admin.token')"), TOKEN)
        self.until(lambda: self.badge('tr[data-channel="ws:default"]') == "connected", "the ws channel connected")
        self.screenshot("overview")

        # a telegram bot through the form: first a validation message from the API
        self.click("#nav-gateways")
        self.click("#gw-add")
        self.type("#gw-id", "alerts")
        self.type("#gw-name", "Alerts bot")
        self.type("#gw-credentials-botToken", "123:short")
        self.click("#gw-create")
        err = '#gateway-form .field-error[data-field="credentials.botToken"]'
        self.until(lambda: self.css(err)[0].is_displayed(), "the field's validation message")
        self.assertIn("invalid_field", self.text_of(err))
        self.screenshot("validation")
        self.type("#gw-credentials-botToken", TG_TOKEN)
        self.click("#gw-create")
        self.until(lambda: self.badge('tr[data-id="alerts"]') == "connected", "the bot's green badge")
        self.assertIn("green", self.class_of('tr[data-id="alerts"] .badge'))
        self.click("#nav-overview")
        self.until(lambda: self.badge('tr[data-channel="telegram:alerts"]') == "connected", "telegram:alerts connected")
        self.assertIn("green", self.class_of('tr[data-channel="telegram:alerts"] .badge'))
        self.screenshot("telegram-connected")

        # an AI gateway, tested from the page
        self.click("#nav-gateways")
        self.click("#gw-add")
        Select(self.css("#gw-type")[0]).select_by_value("ai")
        self.type("#gw-id", "brain")
        self.type("#gw-name", "Brain")
        Select(self.css("#gw-credentials-provider")[0]).select_by_value("openai")
        self.type("#gw-credentials-apiKey", AI_KEY)
        self.type("#gw-credentials-baseUrl", self.llm.url)
        self.type("#gw-credentials-model", "gpt-test")
        self.click("#gw-create")
        self.until(lambda: self.css('#gw-detail[data-id="brain"]'), "the new gateway's detail")
        self.click("#gw-test")
        self.until(lambda: (self.text_of("#gw-test-result") or "").startswith("ok in"), "the test's success")
        self.assertRegex(self.text_of("#gw-test-result"), r"^ok in \d+(\.\d+)? ms$")
        self.screenshot("ai-tested")

        # the breakers view, live: the handler's breaker opens while the page watches
        self.click("#nav-breakers")
        self.until(lambda: self.css('tr[data-name="chatgw.outbox.ws.default"]'), "the breakers list")
        self.assertEqual(self.css('tr[data-name="upstream"]'), [])
        for _ in range(4):
            self.assertEqual(g.request("POST", "/v1/upstream", json_body={}).status, 200)
        self.until(lambda: self.css('tr[data-name="upstream"][data-state="open"]'), "the upstream breaker open")
        self.assertIn("red", self.class_of('tr[data-name="upstream"] .badge'))
        self.assertIn("in ", self.text_of('tr[data-name="upstream"]'))  # the next half-open
        self.screenshot("breaker-open")

        # the chat console: a handler answers
        self.click("#nav-chat")
        self.type("#chat-text", "hello admin")
        self.click("#chat-send")
        self.until(lambda: "You said: hello admin" in [e.text for e in self.css("#chat-log li.bot")], "the reply")
        self.assertEqual(self.read(lambda: [e.text for e in self.css("#chat-log li.me")]), ["hello admin"])
        self.screenshot("chat")

        # audit: rendered when the endpoint answers, else said so
        self.click("#nav-audit")
        self.until(lambda: self.css("#audit-missing") or self.css("#view-audit table"), "the audit view")
        if g.get("/v1/audit").status == 404:
            self.assertEqual(self.text_of("#audit-missing"), "audit not available")
        self.screenshot("audit")

        # delete, after the confirmation
        self.click("#nav-gateways")
        self.click('tr[data-id="alerts"]')
        self.click("#gw-delete")
        self.click("#gw-delete-confirm")
        self.until(lambda: not self.css('tr[data-id="alerts"]'), "the deleted gateway gone")
        self.assertEqual(g.get("/v1/gateways/alerts").status, 404)
        self.screenshot("deleted")

        source = b.page_source
        for secret in (TOKEN, TG_TOKEN, AI_KEY):
            self.assertNotIn(secret, source)
        logs = b.get_log("browser")
        csp = [e["message"] for e in logs if "Content Security Policy" in e["message"]]
        self.assertEqual(csp, [], "no CSP violation")
        # errors other than the answers asked for (400: the validation; 401: the wrong token; 404: no
        # audit ledger)
        severe = [e["message"] for e in logs if e["level"] == "SEVERE"
                  and not re.search(r"status of 40[014]", e["message"])]
        self.assertEqual(severe, [])


if __name__ == "__main__":
    unittest.main()
