"""What the browser tests share: `streamlit run leaderboard/app.py` on localhost, a headless Chromium driven by
Selenium with Debian's chromium and chromium-driver (installed by .ci/run), screenshots in screenshots/
(git-ignored), and waiting for a page to paint."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = REPO / "screenshots"

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium "
           "chromium-driver; .ci/run installs them)")

# The board's grid: where it is, whether anything scrolls sideways, and the first row's rank, name and score.
GRID = """
const grid = document.querySelector('[data-testid="stDataFrame"]');
const r = grid.getBoundingClientRect();
const scroller = grid.querySelector('.dvn-scroller');
const cell = id => { const c = document.getElementById(id); return c ? c.textContent : null; };
return {left: r.left, top: r.top, right: r.right, width: window.innerWidth, height: window.innerHeight,
        page: document.documentElement.scrollWidth, overflow: scroller.scrollWidth - scroller.clientWidth,
        rank: cell('glide-cell-0-0'), name: cell('glide-cell-1-0'), score: cell('glide-cell-2-0')};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_env(**env_vars: str) -> dict[str, str]:
    """This process's environment with these variables, and no organiser password unless one is among them."""
    env = dict(os.environ, **env_vars)
    if "LEADERBOARD_ADMIN_PASSWORD" not in env_vars:
        env.pop("LEADERBOARD_ADMIN_PASSWORD", None)
    return env


@contextmanager
def dashboard(env: dict[str, str], log_dir: Path, options: tuple[str, ...] = ()) -> Iterator[str]:
    """``streamlit run leaderboard/app.py`` on a free port with the environment ``env`` (and Streamlit's command-line
    ``options``), logging to ``log_dir/streamlit.log``; yields its URL once it answers, and stops it afterwards."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "streamlit.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "leaderboard/app.py", "--server.headless",
                                 "true", "--server.address", "127.0.0.1", "--server.port", str(port),
                                 "--browser.gatherUsageStats", "false", *options], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.3)
            else:
                pytest.fail("streamlit did not start within 60 s: "
                            + (log_dir / "streamlit.log").read_text(errors="replace")[-2000:])
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def chromium(console: bool = False):
    """A headless Chromium at 1440×900 that keeps the page's console messages when ``console``; quit afterwards."""
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@contextmanager
def window(driver, width: int, height: int):
    """The window at ``width``×``height`` for a while, then back at 1440×900."""
    driver.set_window_size(width, height)
    try:
        yield driver
    finally:
        driver.set_window_size(1440, 900)


# How long a test waits for what it reads or clicks. Generous: on a busy CI machine (two cores, each kept busy by
# another process; `scripts/browser_under_load.py`) a rerun of a page can take tens of seconds; a wait that succeeds
# returns as soon as the element paints, so only a failing test pays the whole of it.
PATIENCE = 90.0


def wait_for_text(driver, text: str, timeout: float = PATIENCE) -> str:
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.execute_script("return document.body.innerText")
        if text in body and "Running..." not in body:
            return body
        time.sleep(0.25)
    raise AssertionError(f"{text!r} did not appear; the page shows: {body[-1500:]}")


def find(driver, css: str, timeout: float = PATIENCE, xpath: bool = False, hidden: bool = False):
    """The first displayed element matching ``css`` (an XPath when ``xpath``) once the page has painted it; with
    ``hidden``, one that need not be displayed (a file input under its button)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    by = "xpath" if xpath else "css selector"

    def shown(d):
        try:
            return next((e for e in d.find_elements(by, css) if hidden or e.is_displayed()), False)
        except StaleElementReferenceException:  # repainted between finding and asking: look again
            return False
    return WebDriverWait(driver, timeout).until(shown, f"nothing matching {css!r} painted within {timeout:g} s")


def button(driver, label: str, timeout: float = PATIENCE, enabled: bool = True):
    """The displayed button whose text is ``label`` once the page has painted it (and enabled it, when
    ``enabled``)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        try:
            return next((b for b in d.find_elements("tag name", "button")
                         if b.text.strip() == label and b.is_displayed() and (b.is_enabled() or not enabled)), False)
        except StaleElementReferenceException:
            return False
    return WebDriverWait(driver, timeout).until(ready, f"no {'enabled ' if enabled else ''}{label!r} button "
                                                       f"within {timeout:g} s")


def click(driver, label: str, timeout: float = PATIENCE) -> None:
    """Press the button whose text is ``label`` once it is painted and enabled (again if Streamlit repainted it
    between finding and pressing)."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    deadline = time.time() + timeout
    while True:
        target = button(driver, label, max(deadline - time.time(), 1))
        try:
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
            target.click()
            return
        except (StaleElementReferenceException, ElementClickInterceptedException):
            if time.time() > deadline:
                raise
            time.sleep(0.25)


def count_when_painted(driver, selector: str, at_least: int, timeout: float = PATIENCE) -> int:
    """How many elements match ``selector`` once at least ``at_least`` have painted (or the timeout passed)."""
    deadline, found = time.time() + timeout, 0
    while time.time() < deadline:
        found = driver.execute_script(f"return document.querySelectorAll({selector!r}).length")
        if found >= at_least:
            break
        time.sleep(0.3)
    return found


def settled(driver, script: str, done, *args, timeout: float = PATIENCE):
    """What ``script`` returns once ``done`` holds for it, or what it last returned when the timeout passed (for the
    caller's assert to show). A rerun's text can paint a moment before the widgets below it: read those through this,
    not once."""
    deadline = time.time() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if done(value) or time.time() > deadline:
            return value
        time.sleep(0.1)


def shot(driver, name: str, full: bool = True) -> Path:
    """A screenshot in screenshots/: the whole page at the window's width when ``full``, else the window."""
    SHOTS.mkdir(exist_ok=True)
    size = driver.get_window_size()
    width, height = size["width"], size["height"]
    if full:
        total = driver.execute_script(
            "const m = document.querySelector('[data-testid=\"stMain\"]') || document.body; return m.scrollHeight")
        driver.set_window_size(width, min(max(height, int(total) + 120), 5000))
        time.sleep(1.0)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if full:
        driver.set_window_size(width, height)
    return path
