"""Draw a digit end to end in headless Chromium: draw a stroke with the mouse (and with a finger on a phone-sized
window), press "Read my digit", see every entry's reading, and use the always-visible Undo and Clear buttons.
Screenshots go to screenshots/ (git-ignored)."""

from __future__ import annotations

import time

import pytest

from tests.browser import PATIENCE, browser, needs_chromium, shot, wait_for_text  # noqa: F401 - fixture
from tests.e2e.test_dashboard_e2e import server  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, needs_chromium]

ENTRIES = ("Ada's template", "Bob's quick one", "Dee's copy", "eve", "Broken entry")  # tests/dashboard_fixtures.py

FIND_CANVAS = """
function find(root) {
  for (const el of root.querySelectorAll('*')) {
    if (el.tagName === 'CANVAS' && el.classList.contains('dc-canvas')) return el;
    if (el.shadowRoot) { const r = find(el.shadowRoot); if (r) return r; }
  }
  return null;
}
const c = find(document); if (!c) return null;
c.scrollIntoView({block: 'center'});
const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height];"""

INK = """
function find(root) {
  for (const el of root.querySelectorAll('*')) {
    if (el.tagName === 'CANVAS' && el.classList.contains('dc-canvas')) return el;
    if (el.shadowRoot) { const r = find(el.shadowRoot); if (r) return r; }
  }
  return null;
}
const c = find(document); if (!c) return -1;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 128) n++;  // dark ink
return n;"""


def canvas_box(driver) -> tuple[float, float, float, float]:
    for _ in range(120):
        box = driver.execute_script(FIND_CANVAS)
        if box and box[2] > 100:
            time.sleep(0.3)
            return driver.execute_script(FIND_CANVAS)
        time.sleep(0.25)
    raise AssertionError("the drawing canvas did not appear")


def stroke(driver, points: list[tuple[float, float]], touch: bool = False) -> None:
    """One stroke through ``points`` (fractions of the canvas), with the mouse or a finger."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    x, y, w, h = canvas_box(driver)
    kind = interaction.POINTER_TOUCH if touch else interaction.POINTER_MOUSE
    actions = ActionBuilder(driver, mouse=PointerInput(kind, "finger" if touch else "mouse"))
    pointer = actions.pointer_action
    (x0, y0), rest = points[0], points[1:]
    pointer.move_to_location(int(x + x0 * w), int(y + y0 * h)).pointer_down()
    for (ax, ay), (bx, by) in zip(points[:-1], rest, strict=True):
        for t in range(1, 9):
            pointer.move_to_location(int(x + (ax + (bx - ax) * t / 8) * w), int(y + (ay + (by - ay) * t / 8) * h))
    pointer.pointer_up()
    actions.perform()


def click_button(driver, label: str, touch: bool = False) -> None:
    """Press the Streamlit button whose text is ``label`` (a tap with a finger when ``touch``)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By
    deadline = time.time() + PATIENCE
    while True:
        buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] button')
                   if b.text.strip().endswith(label) and b.is_enabled()]
        if buttons or time.time() > deadline:
            break
        time.sleep(0.25)
    assert buttons, f"no enabled {label!r} button"
    button = buttons[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    time.sleep(0.3)
    if not touch:
        button.click()
        return
    r = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.x, r.y, r.width, r.height]",
                              button)
    actions = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    actions.pointer_action.move_to_location(int(r[0] + r[2] / 2), int(r[1] + r[3] / 2)).pointer_down().pointer_up()
    actions.perform()


def ink(driver, at_least: int = 1, at_most: int | None = None, timeout: float = 20) -> int:
    """Painted pixels on the canvas once their count is in range (or the timeout passed)."""
    deadline, n = time.time() + timeout, -1
    while time.time() < deadline:
        n = driver.execute_script(INK)
        if n >= at_least and (at_most is None or n <= at_most):
            break
        time.sleep(0.25)
    return n


SEVEN = [(0.3, 0.25), (0.7, 0.25), (0.45, 0.8)]  # across the top, then down to the left
BAR = [(0.5, 0.2), (0.5, 0.8)]


@pytest.mark.parametrize("width, height", [(1440, 900), (390, 844)])
def test_draw_read_undo_clear(server, browser, width, height):  # noqa: F811 - fixtures
    touch = width < 600
    browser.set_window_size(width, height)
    browser.get(f"{server}/draw")
    wait_for_text(browser, "Draw a digit on the canvas")
    # Undo and Clear are always on the page (no hover needed), disabled while there is nothing to take away. The
    # caption can paint before the buttons under load, so wait for the last button before reading the page.
    body = wait_for_text(browser, "Clear")
    assert "Undo" in body and "Clear" in body and "Read my digit" in body

    stroke(browser, SEVEN[:2], touch)
    first = ink(browser)
    stroke(browser, SEVEN[1:], touch)  # a two-stroke 7: nothing is read after either stroke
    both = ink(browser, at_least=first + 1)
    body = wait_for_text(browser, "Press Read my digit")
    assert first > 0 and both > first and "The club reads" not in body and "reading…" not in body
    click_button(browser, "Undo", touch)
    assert ink(browser, at_least=1, at_most=both - 1) == pytest.approx(first, rel=0.05)  # the first stroke is left
    wait_for_text(browser, "Press Read my digit")
    stroke(browser, SEVEN[1:], touch)
    assert ink(browser, at_least=first + 1) == pytest.approx(both, rel=0.05)
    wait_for_text(browser, "Press Read my digit")

    click_button(browser, "Read my digit", touch)
    body = wait_for_text(browser, "The club reads", timeout=120)
    for name in ENTRIES:
        assert name in body
    assert body.count(" sure") == 4 and "weights do not fit" in body  # four read it, the broken one says why
    assert "reading…" not in body
    shot(browser, f"draw_{width}")

    click_button(browser, "Clear", touch)
    body = wait_for_text(browser, "Draw a digit on the canvas")
    assert ink(browser, at_least=0, at_most=0) == 0 and "The club reads" not in body
    shot(browser, f"draw_{width}_cleared")
    browser.set_window_size(1440, 900)
