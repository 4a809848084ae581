"""End to end in a real headless Chromium: `streamlit run leaderboard/app.py` on localhost, driven by Selenium
with Debian's chromium and chromium-driver (installed by .ci/run; the machinery is in tests/browser.py).
Screenshots go to screenshots/ (git-ignored)."""

from __future__ import annotations

import time

import pytest

from harness.store.engine import make_engine
from leaderboard import stats, views
from tests import dashboard_fixtures
from tests.browser import (  # noqa: F401 - fixture
    GRID,
    SHOTS,
    browser,
    count_when_painted,
    dashboard,
    dashboard_env,
    find,
    needs_chromium,
    shot,
    wait_for_text,
    window,
)

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def server(fx, tmp_path_factory):
    env = dashboard_env(LEADERBOARD_DB=str(fx.revealed_db), LEADERBOARD_SUBMISSIONS=str(fx.submissions),
                        LEADERBOARD_MYSTERY=str(fx.mystery))
    with dashboard(env, tmp_path_factory.mktemp("log")) as url:
        yield url


def test_leaderboard_entry_and_drawing_in_chromium(server, browser):  # noqa: F811 - fixture
    browser.get(f"{server}/")
    body = wait_for_text(browser, "weights do not fit")  # the "Not ranked" list, under the board: painted last
    assert "Broken entry" in body and "Ranked by the guest's 100 handwritten digits" in body
    assert count_when_painted(browser, '[data-testid="stDataFrame"]', 1) == 1  # the grid paints after the text
    time.sleep(1.0)  # let the charts paint for the screenshot
    assert shot(browser, "leaderboard").stat().st_size > 20_000

    browser.get(f"{server}/entry?entry=ada")
    body = wait_for_text(browser, "Misread digits, most confident mistakes first")
    assert "Ada's template" in body and "Ada Lovelace" in body
    assert count_when_painted(browser, '[data-testid="stMain"] img', 30) >= 30  # pictures arrive after the text
    assert shot(browser, "entry").stat().st_size > 20_000

    browser.get(f"{server}/head-to-head")
    body = wait_for_text(browser, "digits on which they disagree")  # the subheader under "In plain words"
    assert "exact McNemar" in body and "In plain words" in body
    shot(browser, "head_to_head")

    browser.get(f"{server}/guest-gallery")
    body = wait_for_text(browser, "Hardest digits first")
    shot(browser, "guest_gallery")
    assert f"{dashboard_fixtures.GUEST_TOKEN}_" in body and "Left: the digit as written" in body
    assert count_when_painted(browser, '[data-testid="stMain"] img', 96) >= 96
    # Draw a digit: tests/e2e/test_draw_e2e.py


HEADER, ROW = 35, stats.ROW_HEIGHT  # the grid's header and row heights, in CSS pixels
# Every text of the compact board's four columns (header and cells, from the grid's accessible table) measured by
# the browser in the grid's fonts and wrapped at spaces into a column ``arguments[0][c]`` pixels wide less its 8 px
# padding each side, as the grid wraps it: per column the texts that do not fit in ``arguments[1]`` lines (a
# header in one), and the grid's whole width.
TEXTS = """
const g = document.querySelector('[data-testid="stDataFrame"]');
const ctx = document.createElement('canvas').getContext('2d');
const [widths, most] = arguments, cut = [[], [], [], []];
const lines = (text, room) => { let used = null, n = 1;
  for (const word of text.split(/\\s+/).filter(w => w)) { const w = ctx.measureText(word).width;
    if (w > room) return Infinity;
    if (used === null) used = w;
    else if (used + ctx.measureText(' ').width + w <= room) used += ctx.measureText(' ').width + w;
    else { used = w; n += 1; } }
  return n; };
ctx.font = "600 14px 'Source Sans', sans-serif";
g.querySelectorAll('th').forEach((t, c) => { if (c < 4 && ctx.measureText(t.textContent).width > widths[c] - 16)
  cut[c].push(t.textContent); });
ctx.font = "14px 'Source Sans', sans-serif";
let cells = 0;
for (const cell of g.querySelectorAll('[id^="glide-cell-"]')) {
  const c = Number(cell.id.split('-')[2]);
  if (c < 4) { cells += 1; if (lines(cell.textContent, widths[c] - 16) > most) cut[c].push(cell.textContent); }
}
return {cut: cut, cells: cells, total: g.querySelector('.dvn-scroller').scrollWidth};
"""
# The rows of the board's grid whose bottom is on the first screen (at the window's height, not innerHeight).
ROWS_SHOWN = """
const grid = document.querySelector('[data-testid="stDataFrame"]').getBoundingClientRect();
const rows = Math.floor((Math.min(grid.bottom, arguments[0]) - grid.top - arguments[1]) / arguments[2]);
return {rows: rows, gridHeight: grid.height, top: grid.top};
"""


def board_is_whole(driver, widths: list[int], height: int) -> dict:
    """The board's grid on this window: no text cut (each cell in at most ``stats.LINES`` lines at its column's
    width, measured by the browser), eight rows or more above ``height``, and no box as tall as the screen."""
    measured = driver.execute_script(TEXTS, widths, stats.LINES)
    assert measured["cells"] >= 4, measured  # the accessible table is there to measure
    assert not any(measured["cut"]), (measured["cut"], widths)
    assert measured["total"] >= sum(widths) - 2, (measured["total"], widths)  # at least these (a desktop stretches)
    shown = driver.execute_script(ROWS_SHOWN, height, HEADER, ROW)
    assert shown["rows"] >= 8 or shown["gridHeight"] < height - shown["top"], shown
    assert shown["gridHeight"] <= 0.7 * height, shown  # the page scrolls around it: no box that traps the thumb
    return shown


@pytest.mark.parametrize("width, height", [(1440, 900), (390, 844)])
def test_board_shows_who_is_winning_at_a_glance(server, fx, browser, tmp_path, width, height):  # noqa: F811
    """At a desktop's and a phone's size the leader's rank, name and score are in view without scrolling
    sideways, with room for eight rows on the first screen and no text cut (each wrapped at its column's width, as
    the grid wraps it); tapping a name opens that entry's page in the same tab and the same session (no reload)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    with window(browser, width, height):
        browser.get(f"{server}/")
        body = wait_for_text(browser, "cannot separate the top")
        assert count_when_painted(browser, '[data-testid="stDataFrame"] canvas', 1) >= 1
        time.sleep(1.5)  # the grid paints after the text
        browser.save_screenshot(str(shots / f"board_{width}x{height}.png"))
        box = browser.execute_script(GRID)
        assert box["width"] == width and box["page"] <= width, box  # nothing on the page scrolls sideways
        assert box["left"] >= 0 and box["right"] <= width, box
        assert box["top"] + HEADER + 8 * ROW <= height, box  # eight rows fit on the first screen
        board = views.board_view(make_engine(str(fx.revealed_db)), True).board
        widths = list(stats.compact_widths(board, "Guest ↑").values())
        board_is_whole(browser, widths, height)
        assert box["left"] + sum(widths) <= width and box["overflow"] <= 0, (box, widths)  # all four side by side
        # The fixture's leader (see test_dashboard.py's reference ranking): Eve, 43 of the 100 guest digits.
        assert box["rank"] == "🥇 1" and box["name"] == "eve" and \
            box["score"].startswith("43% ("), box

        if width >= 1000:  # details on demand: every column, scrolling sideways inside the grid if it must
            find(browser, "//summary[contains(., 'Filter, sort, all columns')]", xpath=True).click()
            toggle = find(browser, "//label[contains(., 'All columns')]//input", xpath=True, hidden=True)
            browser.execute_script("arguments[0].click()", toggle)
            deadline, headers = time.time() + 20, []
            while time.time() < deadline and "Author" not in headers:
                headers = browser.execute_script(
                    "return Array.from(document.querySelectorAll('[data-testid=\"stDataFrame\"] th'))"
                    ".map(h => h.textContent)")
                time.sleep(0.3)
            assert {"Author", "MNIST accuracy ↑", "vs. the leader"} <= set(headers), headers
            time.sleep(1.0)
            browser.save_screenshot(str(shots / f"board_all_columns_{width}x{height}.png"))
            find(browser, "//summary[contains(., 'Filter, sort, all columns')]", xpath=True).click()
            time.sleep(0.8)  # the expander closes: the grid moves back up
            box = browser.execute_script(GRID)

        before = set(browser.window_handles)
        browser.execute_script("window.sameSession = 'yes'")  # gone if the page reloads
        actions = ActionBuilder(browser)
        # The name in the second row (Ada): past the rank column, a few pixels into the link text.
        actions.pointer_action.move_to_location(int(box["left"] + 48 + 14), int(box["top"] + HEADER + ROW * 1.5))
        actions.pointer_action.click()
        actions.perform()
        body = wait_for_text(browser, "Misread digits, most confident mistakes first")
        assert "Ada's template" in body
        assert set(browser.window_handles) == before  # no new tab
        assert browser.current_url.endswith("/entry?entry=ada"), browser.current_url
        assert browser.execute_script("return window.sameSession") == "yes"  # the app was not loaded again
        time.sleep(1.0)  # let the page finish painting for the screenshot
        browser.save_screenshot(str(shots / f"entry_{width}x{height}.png"))

        if width >= 1000:  # back to the board through the sidebar: it stays there (the tap is not replayed)
            find(browser, "//*[@data-testid='stSidebarNav']//a[contains(., 'Leaderboard')]", xpath=True).click()
            wait_for_text(browser, "cannot separate the top")
            assert count_when_painted(browser, '[data-testid="stDataFrame"] canvas', 1) >= 1
            wait_for_text(browser, "Tap a name to open its page")  # the whole board ran, then nothing switched
            assert "/entry" not in browser.current_url and "Misread digits" not in \
                browser.execute_script("return document.body.innerText"), browser.current_url
            assert browser.execute_script("return window.sameSession") == "yes"


LONG_NAMES = ["Baseline: logistic regression", "Exported CNN (torch.export)", "Ada's augmented LeNet, take two"]


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    """A revealed board of 200 entries (benchmarks/dashboard_speed.py builds it), three of them with long names."""
    import sqlite3

    from benchmarks.dashboard_speed import build
    from harness.store import flags
    root = tmp_path_factory.mktemp("big")
    db = root / "big.db"
    build(db, entries=200, evaluations=1, n_mnist=500)
    flags.set_flag(make_engine(str(db)), flags.GUEST_REVEALED, "true")
    top = views.board_view(make_engine(str(db)), True).board["entry"].tolist()[:len(LONG_NAMES)]
    with sqlite3.connect(db) as con:  # the long names where a first screen shows them
        for entry, name in zip(top, LONG_NAMES, strict=False):
            con.execute("UPDATE entry_versions SET display_name = ? WHERE entry_id = "
                        "(SELECT id FROM entries WHERE name = ?)", (name, entry))
    (root / "submissions").mkdir()
    env = dashboard_env(LEADERBOARD_DB=str(db), LEADERBOARD_SUBMISSIONS=str(root / "submissions"),
                        LEADERBOARD_MYSTERY=str(root / "mystery"))
    with dashboard(env, root / "log") as url:
        yield url, db


@pytest.mark.parametrize("width, height", [(390, 844), (1440, 900)])
def test_two_hundred_entries_on_a_phone_and_a_laptop(big_server, browser, width, height):  # noqa: F811
    """200 entries, long names among them: every name, score and status whole, eight rows or more on the first
    screen, and the grid's own scroll box well short of the screen (the page scrolls under the thumb)."""
    url, db = big_server
    with window(browser, width, height):
        browser.get(f"{url}/")
        wait_for_text(browser, "Tap a name to open its page")
        assert count_when_painted(browser, '[data-testid="stDataFrame"] canvas', 1) >= 1
        time.sleep(1.5)
        board = views.board_view(make_engine(str(db)), True).board
        widths = list(stats.compact_widths(board, "Guest ↑").values())
        shown = board_is_whole(browser, widths, height)
        assert shown["rows"] >= 8, shown
        box = browser.execute_script(GRID)
        assert box["page"] <= width and box["left"] + sum(widths[:3]) <= width, (box, widths)  # rank, name, score
        names = browser.execute_script(
            "return Array.from(document.querySelectorAll('[data-testid=\"stDataFrame\"] [id^=\"glide-cell-1-\"]'))"
            ".map(c => c.textContent)")
        assert set(LONG_NAMES) <= set(names), names[:10]  # measured above, among the rows the grid drew
        scroller = browser.execute_script(
            "const s = document.querySelector('[data-testid=\"stDataFrame\"] .dvn-scroller');"
            "return [s.scrollHeight, s.clientHeight]")
        assert scroller[0] > scroller[1]  # the 200 rows scroll inside a box 8 rows high
        SHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SHOTS / f"board_200_{width}x{height}.png"))
