"""Two competitions in one dashboard, in a real headless Chromium: the MNIST club's (tests/dashboard_fixtures.py) and
a small colour-shapes one with a [task] table (tests/task_fixtures.py), each from its own folder with its own
database. A visitor opens the dashboard on the first, picks the second in the sidebar, and sees its board named by
its sets' titles and its entry page by its class names, at a desktop's 1440×900 and a phone's 390×844. The
screenshots are kept in docs/evidence/issue-23/."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from leaderboard import competitions
from tests import task_fixtures
from tests.browser import (  # noqa: F401 - fixture
    GRID,
    PATIENCE,
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
from tests.conftest import REPO

pytestmark = [pytest.mark.browser, needs_chromium]
EVIDENCE = REPO / "docs" / "evidence" / "issue-23"
SHAPES_TITLE = "Shapes: who reads the stranger's drawings best?"


@pytest.fixture(scope="module")
def server(fx, tmp_path_factory):
    root = tmp_path_factory.mktemp("competitions")
    club = root / "mnist-club"
    club.mkdir()
    (club / "competition.toml").write_text('title = "MNIST club competition"\n')
    shutil.copy(fx.revealed_db, club / "leaderboard.db")
    shutil.copytree(fx.submissions, club / "submissions")
    shapes = task_fixtures.build(root / "shapes-small")
    env = dashboard_env(**{competitions.LIST_ENV: os.pathsep.join([str(club), str(shapes.folder)]),
                           "LEADERBOARD_EVALUATE": "off"})
    with dashboard(env, tmp_path_factory.mktemp("log")) as url:
        yield url


def keep(path, name: str) -> None:
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, EVIDENCE / name)


def test_a_visitor_switches_to_the_second_competition_and_sees_its_names(server, browser):  # noqa: F811
    browser.get(f"{server}/")
    body = wait_for_text(browser, "Ranked by the guest's 100 handwritten digits")  # the first listed: MNIST's
    assert "MNIST club competition" in body
    choice = find(browser, f"//section[@data-testid='stSidebar']//label[contains(., \"{SHAPES_TITLE}\")]",
                  xpath=True)
    choice.click()
    wait_for_text(browser, "Ranked by the stranger's shapes: 200 pictures. Then by Shapes test.")
    # Streamlit keeps the previous page's elements on screen until the new run replaces them: wait for that too
    body = wait_for_text(browser, "The stranger's shapes accuracy with its 95% interval")
    deadline = time.time() + PATIENCE
    while ("Ranked by the guest" in body or "Guest accuracy with" in body) and time.time() < deadline:
        time.sleep(0.25)
        body = browser.execute_script("return document.body.innerText")
    assert "Ranked by the guest" not in body and "Guest accuracy with" not in body
    assert "competition=shapes-small" in browser.current_url
    assert count_when_painted(browser, '[data-testid="stDataFrame"]', 1) == 1
    time.sleep(1.0)  # the charts
    keep(shot(browser, "issue23_board_desktop"), "board-shapes-1440.png")

    browser.get(f"{server}/entry?competition=shapes-small&entry=circle-first")
    body = wait_for_text(browser, "Misread pictures, most confident mistakes first")
    body = wait_for_text(browser, "The stranger's shapes accuracy")  # the metrics may paint after the text below
    assert "Shapes test accuracy" in body
    assert "True class" in body and any(f"with true {c} read as" in body
                                        for c in ("circle", "square", "triangle", "star", "cross"))
    assert count_when_painted(browser, '[data-testid="stMain"] img', 10) >= 10  # the colour pictures
    keep(shot(browser, "issue23_entry_desktop"), "entry-shapes-1440.png")

    with window(browser, 390, 844):
        browser.get(f"{server}/?competition=shapes-small")  # a fresh visit: the address keeps the choice
        body = wait_for_text(browser, "Ranked by the stranger's shapes", PATIENCE)
        assert SHAPES_TITLE in body
        assert count_when_painted(browser, '[data-testid="stDataFrame"]', 1) == 1
        time.sleep(1.0)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the phone's page scrolls sideways ({width} px)"
        grid = browser.execute_script(GRID)
        assert grid["overflow"] <= 0 and grid["right"] <= 390, grid  # rank, entry, score and status all in view
        keep(shot(browser, "issue23_board_phone"), "board-shapes-390.png")
