"""A headless Chromium and the app on a real port, for tests/test_explorer.py and scripts/screenshots.py.

The browser is Debian's `chromium`, driven through Debian's `chromedriver` (Selenium is given its path, so it
downloads nothing); the viewport is the 1280x800 the page is designed for. The app runs in a thread with its
own event loop, because the WebDriver calls block the caller's.
"""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HAS_CHROMIUM = CHROMIUM.is_file() and CHROMEDRIVER.is_file()
VIEWPORT = {"width": 1280, "height": 800}
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-dev-shm-usage",
    f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}",
    # no traffic but to the page's own server: no component updates, pings, translation or hints
    "--disable-component-update",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
)


@contextmanager
def chromium(downloads: Path | None = None) -> Iterator[webdriver.Chrome]:
    """A headless browser with a 1280x800 viewport; downloads go to `downloads` without asking."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ARGUMENTS:
        options.add_argument(argument)
    if downloads is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", VIEWPORT | {"deviceScaleFactor": 1, "mobile": False}
        )
        yield driver
    finally:
        driver.quit()


def settled(driver: webdriver.Chrome, seconds: float = 20) -> str:
    """Wait until the explorer page is done loading; its state: ready, nodata, forbidden or error."""
    script = "return document.getElementById('status')?.dataset.state"
    WebDriverWait(driver, seconds).until(lambda d: d.execute_script(script) not in (None, "loading"))
    return driver.execute_script(script)


@contextmanager
def served(app: web.Application) -> Iterator[str]:
    """The app listening on 127.0.0.1 (a free port) until the block ends; yields its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    thread = threading.Thread(target=loop.run_forever, name="explorer-server", daemon=True)
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        thread.start()
        yield f"http://{host}:{port}"
    finally:
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
        else:
            loop.run_until_complete(runner.cleanup())
        loop.close()
