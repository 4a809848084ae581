"""End to end in a real headless Chromium: `streamlit run leaderboard/app.py` on localhost, driven by Selenium
with Debian's chromium and chromium-driver (installed by .ci/run; the machinery is in tests/browser.py).
Screenshots go to screenshots/ (git-ignored)."""

from __future__ import annotations

import time

import pytest

from harness.data import mnist
from harness.store.engine import make_engine
from leaderboard import stats, views
from tests import dashboard_fixtures
from tests.browser import (  # noqa: F401 - fixture
    GRID,
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

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def fx(tmp_path_factory, mnist_dir, mnist_test):
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    return dashboard_fixtures.build(tmp_path_factory.mktemp("e2e"), train.images, train.labels, mnist_test.images,
                                    mnist_test.labels)


@pytest.fixture(scope="module")
def server(fx, tmp_path_factory):
    env = dashboard_env(LEADERBOARD_DB=str(fx.revealed_db), LEADERBOARD_SUBMISSIONS=str(fx.submissions),
                        LEADERBOARD_MYSTERY=str(fx.mystery))
    with dashboard(env, tmp_path_factory.mktemp("log")) as url:
        yield url


def test_leaderboard_entry_and_drawing_in_chromium(server, browser):  # noqa: F811 - fixture
    browser.get(f"{server}/")
    body = wait_for_text(browser, "Ranked by the guest's 100 handwritten digits")
    assert "Broken entry" in body and "weights do not fit" in body
    assert count_when_painted(browser, '[data-testid="stDataFrame"]', 1) == 1  # the grid paints after the text
    time.sleep(1.0)  # let the charts paint for the screenshot
    assert shot(browser, "leaderboard").stat().st_size > 20_000

    browser.get(f"{server}/entry?entry=ada")
    body = wait_for_text(browser, "Misread digits, most confident mistakes first")
    assert "Ada's template" in body and "Ada Lovelace" in body
    assert count_when_painted(browser, '[data-testid="stMain"] img', 30) >= 30  # pictures arrive after the text
    assert shot(browser, "entry").stat().st_size > 20_000

    browser.get(f"{server}/head-to-head")
    body = wait_for_text(browser, "In plain words")
    assert "exact McNemar" in body and "digits on which they disagree" in body
    shot(browser, "head_to_head")

    browser.get(f"{server}/guest-gallery")
    body = wait_for_text(browser, "Hardest digits first")
    shot(browser, "guest_gallery")
    assert f"{dashboard_fixtures.GUEST_TOKEN}_" in body and "Left: the digit as written" in body
    assert count_when_painted(browser, '[data-testid="stMain"] img', 96) >= 96
    # Draw a digit: tests/test_draw_e2e.py


HEADER, ROW = 35, 35  # the grid's header and row heights, in CSS pixels (Streamlit's defaults)
# Every text of the compact board's four columns (header and cells, from the grid's accessible table) measured by
# the browser in the grid's fonts, the widest of each column, and the grid's whole width.
TEXTS = """
const g = document.querySelector('[data-testid="stDataFrame"]');
const ctx = document.createElement('canvas').getContext('2d');
const widest = [0, 0, 0, 0], texts = [[], [], [], []];
g.querySelectorAll('th').forEach((t, c) => { if (c < 4) { ctx.font = "600 14px 'Source Sans', sans-serif";
  widest[c] = Math.max(widest[c], ctx.measureText(t.textContent).width); texts[c].push(t.textContent); } });
ctx.font = "14px 'Source Sans', sans-serif";
for (const cell of g.querySelectorAll('[id^="glide-cell-"]')) {
  const c = Number(cell.id.split('-')[2]);
  if (c < 4) { widest[c] = Math.max(widest[c], ctx.measureText(cell.textContent).width); texts[c].push(cell.textContent); }
}
return {widest: widest, texts: texts, total: g.querySelector('.dvn-scroller').scrollWidth};
"""


@pytest.mark.parametrize("width, height", [(1440, 900), (390, 844)])
def test_board_shows_who_is_winning_at_a_glance(server, fx, browser, tmp_path, width, height):  # noqa: F811
    """At a desktop's and a phone's size the leader's rank, name and score are in view without scrolling
    sideways, with room for eight rows on the first screen and no text wider than its column; tapping a name opens
    that entry's page in the same tab and the same session (no reload)."""
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
        assert 0 <= box["left"] and box["right"] <= width, box
        assert box["top"] + HEADER + 8 * ROW <= height, box  # eight rows fit on the first screen
        board = views.board_view(make_engine(str(fx.revealed_db)), True).board
        widths = list(stats.compact_widths(board, "Guest ↑ (95% CI)").values())
        measured = browser.execute_script(TEXTS)
        assert measured["total"] >= sum(widths) - 2, (measured["total"], widths)  # at least these (a desktop stretches)
        for column, (need, room) in enumerate(zip(measured["widest"], widths)):
            assert need + 16 <= room, (measured["texts"][column], need, room)  # 8 px padding each side: not cut
        assert box["left"] + sum(widths[:3]) <= width, (box, widths)  # rank, name and score side by side
        if width >= 1000:
            assert box["overflow"] <= 0, box  # on a desktop every column is in view
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
