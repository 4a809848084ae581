"""Submit from the dashboard, end to end in a real headless Chromium: a member with a code (issued through the store
API, as the Organiser page does) opens Submit, types the code, uploads the committed, trained baseline-lenet5's
model.py, weights.pt and entry.toml under a new name and sees the check's verdict; a ``--watch`` process started
here evaluates it and the reloaded Leaderboard ranks it first, above the committed baseline-logreg. Screenshots at
1440×900 and 390×844 go to screenshots/ (git-ignored)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError

from harness.errors import HarnessError
from harness.store import members
from harness.store.engine import make_engine
from harness.store.versions import history
from tests.browser import (  # noqa: F401 - fixture
    GRID,
    PATIENCE,
    SHOTS,
    browser,
    click,
    dashboard,
    dashboard_env,
    find,
    needs_chromium,
    wait_for_text,
)
from tests.conftest import REPO

pytestmark = [pytest.mark.browser, needs_chromium]

BASELINE = REPO / "submissions" / "baseline-lenet5"
DISPLAY = "Ada's LeNet"
ORGANISER_PASSWORD = "club-secret"


@pytest.fixture()
def site(tmp_path, mnist_dir):
    """A submissions folder holding the committed baseline-logreg, an empty database with a code for Ada, and the
    dashboard serving both."""
    subs, mystery = tmp_path / "submissions", tmp_path / "mystery"
    mystery.mkdir()
    shutil.copytree(REPO / "submissions" / "baseline-logreg", subs / "baseline-logreg")
    db = tmp_path / "lb.db"
    engine = make_engine(str(db))
    code = members.issue_code(engine, "Ada")
    env = dashboard_env(LEADERBOARD_DB=str(db), LEADERBOARD_SUBMISSIONS=str(subs), LEADERBOARD_MYSTERY=str(mystery),
                        MNIST_DIR=str(mnist_dir), LEADERBOARD_ADMIN_PASSWORD=ORGANISER_PASSWORD)
    with dashboard(env, tmp_path) as url:
        site = type("Site", (), {})()
        site.url, site.code, site.subs, site.db, site.mystery, site.engine, site.env = \
            url, code, subs, db, mystery, engine, env
        yield site
    engine.dispose()


def shoot(driver, name: str, show: str | None = None) -> list[Path]:
    """The page at a desktop's 1440×900 and a phone's 390×844 (the window, as a visitor sees it), scrolled so that
    the element matching ``show`` is in view."""
    SHOTS.mkdir(exist_ok=True)
    paths = []
    for width, height in ((1440, 900), (390, 844)):
        driver.set_window_size(width, height)
        time.sleep(1.0)
        if show:
            driver.execute_script(f"document.querySelector({show!r}).scrollIntoView({{block: 'center'}})")
            time.sleep(0.5)
        path = SHOTS / f"{name}_{width}x{height}.png"
        driver.save_screenshot(str(path))
        paths.append(path)
    driver.set_window_size(1440, 900)
    return paths


def test_a_member_submits_in_the_browser_and_the_watcher_ranks_it(site, browser, tmp_path):  # noqa: F811 - fixture
    upload = tmp_path / "upload"
    upload.mkdir()
    for name in ("model.py", "weights.pt"):
        shutil.copy(BASELINE / name, upload / name)
    (upload / "entry.toml").write_bytes((BASELINE / "entry.toml").read_bytes()
                                        .replace(b'"Baseline: LeNet-5"', f'"{DISPLAY}"'.encode()))

    browser.set_window_size(1440, 900)
    browser.get(f"{site.url}/submit")
    wait_for_text(browser, "The organiser gives you your personal code")
    find(browser, 'input[aria-label="Your personal code"]').send_keys(site.code)
    find(browser, 'input[aria-label="Entry name"]').send_keys("ada-lenet")
    find(browser, '[data-testid="stFileUploader"] input[type="file"]', hidden=True).send_keys(
        "\n".join(str(upload / name) for name in ("model.py", "weights.pt", "entry.toml")))
    deadline = time.time() + PATIENCE  # the three files appear in the uploader once sent
    while time.time() < deadline and browser.execute_script("return document.body.innerText").count("weights.pt") < 1:
        time.sleep(0.3)
    shoot(browser, "submit_form")
    click(browser, "Check and submit")
    wait_for_text(browser, "Accepted: ada-lenet version 1 is stored and will be scored in a few minutes", timeout=120)
    body = wait_for_text(browser, "61,706")  # the metrics paint after the verdict
    assert "99.6%" in body and "61,706" in body  # the check's accuracy on 500 digits, LeNet-5's parameter count
    for path in shoot(browser, "submit_accepted", '[data-testid="stAlert"]'):
        assert path.stat().st_size > 20_000
    assert all((site.subs / "ada-lenet" / n).read_bytes() == (upload / n).read_bytes()
               for n in ("model.py", "weights.pt", "entry.toml"))
    assert len(history(site.engine, "ada-lenet")) == 1  # recorded at upload time: its time is the upload's

    watcher = subprocess.Popen([sys.executable, "-m", "harness.evaluate", "--watch", "--interval", "1",
                                "--submissions", str(site.subs), "--mystery", str(site.mystery), "--db", str(site.db),
                                "--device", "cpu"], cwd=REPO, env=dict(site.env, NO_COLOR="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not all(v.evaluations for name in ("ada-lenet", "baseline-logreg")
                                                  for v in _history(site.engine, name)):
            assert watcher.poll() is None, watcher.stdout.read()
            time.sleep(1)
        browser.get(f"{site.url}/")
        body = wait_for_text(browser, DISPLAY, timeout=PATIENCE)
        find(browser, '[data-testid="stDataFrame"] canvas')  # the grid paints after the text
        deadline = time.time() + PATIENCE
        while time.time() < deadline and (cells := browser.execute_script(GRID))["rank"] is None:
            time.sleep(0.3)
        assert cells["rank"] == "🥇 1" and cells["name"] == DISPLAY, cells
        time.sleep(1.5)  # the grid paints after the text
        for path in shoot(browser, "submit_ranked"):
            assert path.stat().st_size > 20_000
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0 and "stopped; 2 version(s) evaluated while watching." in out, out


def _history(engine, name):
    try:
        return history(engine, name)
    except (HarnessError, SQLAlchemyError):  # not seen yet, or no tables yet
        return [type("V", (), {"evaluations": 0})()]


def test_the_organiser_issues_a_code_in_the_browser_shown_once(site, browser):  # noqa: F811 - fixture
    from selenium.webdriver.common.by import By
    browser.set_window_size(1440, 900)
    browser.get(f"{site.url}/organiser")
    find(browser, 'input[aria-label="Organiser password"]').send_keys(ORGANISER_PASSWORD)
    click(browser, "Unlock")
    find(browser, 'input[aria-label="Member\'s name"]').send_keys("Cleo")
    click(browser, "Issue a code")
    wait_for_text(browser, "Code for Cleo (shown once; give it to them now):")
    code = find(browser, '[data-testid="stCode"] code').text.strip()
    assert members.verify_code(site.engine, code) == "Cleo"
    for path in shoot(browser, "organiser_codes", '[data-testid="stCode"]'):
        assert path.stat().st_size > 20_000
    click(browser, "Done: hide the code")
    deadline = time.time() + PATIENCE
    while time.time() < deadline and browser.find_elements(By.CSS_SELECTOR, '[data-testid="stCode"]'):
        time.sleep(0.3)
    assert code not in browser.execute_script("return document.body.innerText")  # shown once
