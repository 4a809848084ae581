"""A member's path end to end, with no command but the dashboard's: the training kit writes an entry folder
(``python -m harness.train``), ``streamlit run leaderboard/app.py`` is the only process started, a member with a code
(issued through the store API, as the Organiser page does) uploads the whole folder on the Submit page, sees it
pending on the board (queued behind an entry being scored), then ranked once the dashboard's own watcher has scored
it; the board follows the queue by itself, at 390×844 and 1440×900. A second member's upload is then timed from
pressing Submit to seeing it ranked (printed, never asserted: run with ``-s`` to read it). Screenshots go to
screenshots/ (git-ignored)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.store import members
from harness.store.engine import make_engine
from harness.store.schema import Run
from tests.browser import (  # noqa: F401 - fixture
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
from tests.entries import TEMPLATE_CODE, template_weights, write_entry

pytestmark = [pytest.mark.browser, needs_chromium]

# The board's first rows as the grid's cells: rank, name, score, status (the cells painted in view).
ROWS = """
const out = [];
for (let r = 0; r < 20; r++) {
  const row = [0, 1, 2, 3].map(c => { const e = document.getElementById(`glide-cell-${c}-${r}`);
                                      return e ? e.textContent : null; });
  if (row.every(x => x === null)) break;
  out.push(row);
}
return out;
"""
# Scored first, and slowly (it takes 75 s to load, in each of its two processes: the speed that could stop it early is
# timed from the images on), so that the upload queues behind it.
SLOW_START = TEMPLATE_CODE.replace("        super().__init__()\n",
                                   "        super().__init__()\n        import time\n        time.sleep(75)\n")
SCORING = 600  # seconds allowed for the dashboard's watcher to score (a busy machine)


def train(out: Path, mnist_dir: Path, author: str, seed: int) -> Path:
    """The kit's smallest useful run: logistic regression, one epoch on 2,000 images."""
    subprocess.run([sys.executable, "-m", "harness.train", "--arch", "logreg", "--epochs", "1", "--limit", "2000",
                    "--seed", str(seed), "--author", author, "--mnist-dir", str(mnist_dir), "--no-download",
                    "--quiet", "--out", str(out)], cwd=REPO, check=True, timeout=600,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert {"model.py", "weights.pt", "entry.toml", "curve.csv"} <= {p.name for p in out.iterdir()}
    return out


def rows(driver, at_least: int = 1, timeout: float = 60) -> list[list[str | None]]:
    find(driver, '[data-testid="stDataFrame"] canvas', timeout=timeout)
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = driver.execute_script(ROWS)
        if len(got) >= at_least and all(r[0] is not None for r in got):
            return got
        time.sleep(0.3)
    raise AssertionError(f"fewer than {at_least} rows painted: {driver.execute_script(ROWS)}")


def wait_for_row(driver, name: str, test, timeout: float) -> list[str | None]:
    """The row named ``name`` once ``test(row)`` holds; the page is never reloaded (the board follows the queue)."""
    deadline, seen = time.time() + timeout, []
    while time.time() < deadline:
        try:
            seen = driver.execute_script(ROWS)
        except Exception:  # noqa: BLE001 - the page is being drawn again
            seen = []
        row = next((r for r in seen if r[1] == name), None)
        if row is not None and test(row):
            return row
        time.sleep(0.5)
    raise AssertionError(f"{name}'s row never passed; the board shows {seen}")


def upload(driver, url: str, code: str, name: str, folder: Path) -> float:
    """Fill in the Submit page with the whole folder; the moment Submit is pressed."""
    driver.get(f"{url}/submit")
    wait_for_text(driver, "The organiser gives you your personal code", timeout=120)
    find(driver, 'input[aria-label="Your personal code"]').send_keys(code)
    find(driver, 'input[aria-label="Entry name"]').send_keys(name)
    files = sorted(folder.iterdir())
    find(driver, '[data-testid="stFileUploader"] input[type="file"]', hidden=True).send_keys(
        "\n".join(str(p) for p in files))
    deadline = time.time() + 60  # every file appears in the uploader once sent
    while time.time() < deadline and "curve.png" not in driver.execute_script("return document.body.innerText"):
        time.sleep(0.3)
    pressed = time.time()
    click(driver, "Check and submit")
    return pressed


def test_an_upload_is_pending_then_ranked_with_only_the_dashboard_running(tmp_path, browser, mnist_dir, means):  # noqa: F811
    kit = tmp_path / "kit"
    kit.mkdir()
    ada_folder = train(kit / "ada-logreg", mnist_dir, "Ada", 0)
    bob_folder = train(kit / "bob-logreg", mnist_dir, "Bob", 1)
    subs, mystery = tmp_path / "submissions", tmp_path / "mystery"
    mystery.mkdir()
    write_entry(subs, "slow-means", code=SLOW_START, weights=template_weights(means))
    db = tmp_path / "lb.db"
    engine = make_engine(str(db))
    ada, bob = members.issue_code(engine, "Ada"), members.issue_code(engine, "Bob")
    env = dashboard_env(LEADERBOARD_DB=str(db), LEADERBOARD_SUBMISSIONS=str(subs), LEADERBOARD_MYSTERY=str(mystery),
                        LEADERBOARD_JOBS=str(tmp_path / "jobs"), MNIST_DIR=str(mnist_dir), LEADERBOARD_EVALUATE="on",
                        LEADERBOARD_EVALUATE_ARGS="--interval 2 --device cpu")
    browser.set_window_size(1440, 900)
    with dashboard(env, tmp_path) as url:
        upload(browser, url, ada, "ada-logreg", ada_folder)
        body = wait_for_text(browser, "Accepted: ada-logreg version 1 is stored and will be scored in a few minutes",
                             timeout=180)
        body = wait_for_text(browser, "Left out, as not part of an entry (not stored): curve.csv, curve.png")
        assert "watcher" not in body  # the member reads what will happen, not how

        browser.get(f"{url}/")
        wait_for_text(browser, "Pending: an upload waiting to be scored", timeout=120)
        SHOTS.mkdir(exist_ok=True)
        for width, height in ((390, 844), (1440, 900)):
            browser.set_window_size(width, height)
            time.sleep(1.0)
            shown = rows(browser, 1)
            ada_row = next(r for r in shown if r[1] == "ada-logreg")  # never ranked, no score: where it is
            assert ada_row[0] == "⏳" and (ada_row[2] == "queued, 1st in line" or ada_row[2].startswith("scoring ")), \
                shown
            if shown[0][:2] == ["⏳", "slow-means"]:  # still being scored: the upload waits behind it, in order
                assert shown[0][2].startswith("scoring ")
                assert shown[1][:3] == ["⏳", "ada-logreg", "queued, 1st in line"]
            browser.save_screenshot(str(SHOTS / f"upload_pending_{width}x{height}.png"))

        ranked = wait_for_row(browser, "ada-logreg", lambda r: r[0] not in ("⏳", None) and "%" in (r[2] or ""),
                              SCORING)
        assert ranked[0] in ("🥇 1", "🥈 2") and ranked[2].count("%") == 1, ranked  # a rank and a score, no reload
        for width, height in ((1440, 900), (390, 844)):
            browser.set_window_size(width, height)
            time.sleep(1.0)
            shown = rows(browser, 2)
            assert {r[1] for r in shown} == {"ada-logreg", "slow-means"} and "⏳" not in {r[0] for r in shown}
            browser.save_screenshot(str(SHOTS / f"upload_ranked_{width}x{height}.png"))
        browser.set_window_size(1440, 900)

        # A new member's whole path, timed: Submit pressed, the verdict, then the board until the entry is ranked.
        pressed = upload(browser, url, bob, "bob-logreg", bob_folder)
        wait_for_text(browser, "Accepted: bob-logreg version 1", timeout=180)
        find(browser, "//*[@data-testid='stSidebarNav']//a[contains(., 'Leaderboard')]", xpath=True).click()
        wait_for_row(browser, "bob-logreg", lambda r: r[0] not in ("⏳", None), SCORING)
        print(f"\nfrom pressing Submit to seeing the entry ranked: {time.time() - pressed:.0f} s "
              f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")

        with engine.connect() as connection:  # the dashboard's watcher did it: the runs are its child's
            pids = {pid for (pid,) in connection.execute(Run.__table__.select().with_only_columns(Run.pid))}
        servers = {psutil.Process(pid).ppid() for pid in pids}
        assert len(servers) == 1, pids
        server = " ".join(psutil.Process(servers.pop()).cmdline())
        assert "leaderboard/app.py" in server and f"--server.port {url.rsplit(':', 1)[1]}" in server, server
    deadline = time.time() + 60  # the server stopped: so did its watcher
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.3)
    assert not any(_alive(pid) for pid in pids)
    engine.dispose()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
