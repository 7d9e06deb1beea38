"""Headless Chromium for the browser tests (the webchat example, the admin page): Debian's
chromium driven by python3-selenium through chromium-driver. The driver's path is given, so
selenium-manager never runs and nothing is downloaded."""
import os
import shutil
import socket
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False


def browser_missing():
    """Why the browser tests cannot run, or None."""
    if not HAVE_SELENIUM:
        return "python3-selenium not installed (apt install python3-selenium)"
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return "%s not found (apt install %s)" % (path, pkg)
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class BrowserMixin:
    """start_browser() for a GatewayTest; the browser quits before the gateway stops (so its
    WebSocket close is answered), and also when a test fails before tearDown."""
    BROWSER_ARGS = ()

    def setUp(self):
        super().setUp()
        self.browser = None

    def tearDown(self):
        self.quit_browser()
        super().tearDown()

    def quit_browser(self):
        b, self.browser = self.browser, None
        if b is not None:
            b.quit()

    def start_browser(self, log_console=False):
        profile = tempfile.mkdtemp(prefix="chatgw-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                  "--user-data-dir=" + profile, "--no-proxy-server", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update") + tuple(self.BROWSER_ARGS):
            opts.add_argument(a)
        if log_console:
            opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.addCleanup(self.quit_browser)
        return self.browser
