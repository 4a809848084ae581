"""The Draw-a-digit page under AppTest: nothing is read until "Read my digit"; the answers stay while the drawing
does; Undo and Clear redraw the canvas from what is left; real warm entries read the drawing like the references.

The canvas component is replaced by a stand-in that returns a fixed drawing (AppTest runs no browser; the real canvas
is driven in tests/e2e/test_draw_e2e.py)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

from harness import isolation
from leaderboard import cache, drawing
from tests.entries import template_predictions
from tests.leaderboard.test_dashboard import page, seen, use_db

STROKES = [{"type": "path", "path": [["M", 1, 1]]}, {"type": "path", "path": [["M", 2, 2]]}]


def drawing_of(image: np.ndarray) -> np.ndarray:
    """An MNIST digit as the canvas returns it: black ink on white, RGBA, 280×280."""
    ink = np.asarray(Image.fromarray(image).resize((280, 280)))
    return np.dstack([255 - ink] * 3 + [np.full_like(ink, 255)]).astype(np.uint8)


class Canvas:
    """Stands in for streamlit_drawable_canvas: returns ``image``, and records what each render was given."""

    def __init__(self, image: np.ndarray | None, strokes: list | None = None):
        self.image, self.strokes, self.calls = image, strokes if strokes is not None else list(STROKES), []

    def module(self) -> types.ModuleType:
        module = types.ModuleType("streamlit_drawable_canvas")
        module.st_canvas = self.render
        return module

    def render(self, **kwargs):
        self.calls.append(kwargs)
        return types.SimpleNamespace(image_data=self.image, json_data={"version": "6", "background": "#FFFFFF",
                                                                       "objects": self.strokes})


class Pool:
    """Stands in for the warm pool: every entry reads a 3, but the broken one, answering in reverse order."""

    memory_budget = 2 * 1024 ** 3

    def __init__(self):
        self.asked, self.prepared = [], []

    def memory(self):
        return {"dee": 300 * 2 ** 20}

    def prepare(self, entries):
        self.prepared.append([e.name for e in entries])

    def ask_all(self, entries, images):
        self.asked.append(([e.name for e in entries], images.copy()))
        for e in reversed(entries):
            if e.name == "broken":
                yield e, isolation.Prediction("failed", "the weights do not fit the model (missing keys "
                                                        "\"fc.weight\"); save the state_dict of this exact model.")
            else:
                yield e, isolation.Prediction("ok", None, outputs={"draw": np.eye(10, dtype=np.float32)[[3]] * 5})


def button(at, label: str):
    return next(b for b in at.button if b.label.endswith(label))


@pytest.fixture()
def stand_ins(fx, monkeypatch, mnist_test):
    use_db(monkeypatch, fx, fx.db)
    canvas, pool = Canvas(drawing_of(mnist_test.images[0])), Pool()
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", canvas.module())
    monkeypatch.setattr(cache, "warm_pool", lambda: pool)
    return canvas, pool


def test_nothing_is_read_until_the_button_then_every_entry_fills_in(stand_ins, mnist_test):
    canvas, pool = stand_ins
    at = page("screens/draw.py")
    assert [i.value for i in at.info] == ["Press **Read my digit** when the drawing is finished."]
    assert pool.asked == [] and pool.prepared == [["ada", "bob", "broken", "dee", "eve"]]  # loading, not asking
    assert not at.metric and not button(at, "Read my digit").disabled

    at = button(at, "Read my digit").click().run()
    assert not at.exception
    (names, images), = pool.asked
    assert names == ["ada", "bob", "broken", "dee", "eve"]
    expected = drawing.model_input(drawing.normalise_drawing(drawing_of(mnist_test.images[0])))
    assert images.dtype == np.uint8 and np.array_equal(images, expected)  # the drawing, as the models see it
    assert {m.label: m.value for m in at.metric} == {"The club reads": "3"}
    assert "1 of 5 entries are kept loaded between drawings, holding 300 MiB of the 2.0 GiB set by" in \
        " ".join(c.value for c in at.caption)
    text = " ".join(m.value for m in at.markdown)
    for name in ("Ada's template", "Bob's quick one", "Dee's copy", "eve"):
        assert f"**{name}**  \nreads **3** · 94% sure" in text  # softmax of logits 5 vs 0: e⁵/(e⁵ + 9)
    assert [seen(e.value) for e in at.error] == ["Problem: the weights do not fit the model (missing keys "
                                           "\"fc.weight\"); save the state_dict of this exact "
                                           "model."]  # in full, never cut
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert len(charts) == 4  # one probability chart per entry that answered, over the digits 0–9
    assert all(c["encoding"]["x"]["field"] == "digit" and c["encoding"]["x"]["type"] == "ordinal" for c in charts)

    at.run()  # a rerun with the same drawing (a click elsewhere): the answers stay, nothing is asked again
    assert len(pool.asked) == 1 and {m.label: m.value for m in at.metric} == {"The club reads": "3"}

    canvas.image = drawing_of(mnist_test.images[1])  # another stroke: the old answers go, nothing is read
    at.run()
    assert len(pool.asked) == 1 and not at.metric
    assert [i.value for i in at.info] == ["Press **Read my digit** when the drawing is finished."]


def test_a_blank_canvas_cannot_be_read(stand_ins):
    canvas, pool = stand_ins
    canvas.image, canvas.strokes = np.full((280, 280, 4), 255, np.uint8), []
    at = page("screens/draw.py")
    assert "Draw a digit on the canvas" in at.info[0].value
    assert button(at, "Read my digit").disabled and button(at, "Undo").disabled and button(at, "Clear").disabled
    assert pool.asked == []


def test_undo_and_clear_redraw_the_canvas_from_what_is_left(stand_ins):
    canvas, _ = stand_ins
    at = page("screens/draw.py")
    assert canvas.calls[-1]["initial_drawing"] is None
    at = button(at, "Undo").click().run()
    undone = canvas.calls[-1]["initial_drawing"]
    assert undone["objects"] == STROKES[:1] and undone["background"] == "#FFFFFF" and undone["edit"] == 1
    at = button(at, "Undo").click().run()  # again: a new edit number, so the canvas redraws even if equal
    assert canvas.calls[-1]["initial_drawing"]["objects"] == STROKES[:1]
    assert canvas.calls[-1]["initial_drawing"]["edit"] == 2
    at = button(at, "Clear").click().run()
    assert canvas.calls[-1]["initial_drawing"]["objects"] == [] and canvas.calls[-1]["initial_drawing"]["edit"] == 3
    assert len({c["key"] for c in canvas.calls}) == 1  # the same canvas throughout: it sends what it redrew
    assert not at.exception


@pytest.mark.slow
def test_real_warm_entries_read_the_drawing(fx, monkeypatch, mnist_test, means):
    use_db(monkeypatch, fx, fx.db)
    image = mnist_test.images[0]
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", Canvas(drawing_of(image)).module())
    pool = drawing.warm_pool(memory_budget=1024 ** 3)
    monkeypatch.setattr(cache, "warm_pool", lambda: pool)
    try:
        at = button(page("screens/draw.py"), "Read my digit").click().run(timeout=120)
        held = pool.memory()  # measured after each answer; the broken one never loads
    finally:
        pool.close()
    assert not at.exception
    digit = drawing.normalise_drawing(drawing_of(image))
    expected = template_predictions(drawing.model_input(digit), means)[0]  # Dee holds these class means
    text = " ".join(m.value for m in at.markdown)
    assert f"**Dee's copy**  \nreads **{expected}**" in text
    assert any("weights do not fit" in e.value for e in at.error)
    # four entries of about 300 MiB each against 1 GiB: the least recently asked goes (which one depends on the order
    # the answers end in), every one kept holds its torch and model, and together they fit the budget
    assert held and all(50 * 2 ** 20 < used < 2 ** 30 for used in held.values()), held
    assert sum(held.values()) <= 1024 ** 3 and "broken" not in held
    assert len(held) >= 1024 ** 3 // max(held.values())  # none shut down that fitted (the same model, the same size)
    assert any(c.value.startswith(f"{len(held)} of ") and "of the 1.0 GiB set by `[dashboard] warm_memory`" in c.value
               for c in at.caption), [c.value for c in at.caption]


def test_the_warm_note_says_what_is_kept_within_the_budget():
    assert drawing.warm_note({}, None, 3) is None
    assert drawing.warm_note({"a": 300 * 2 ** 20, "b": 724 * 2 ** 20}, 2 * 1024 ** 3, 2) == (
        "2 of 2 entries are kept loaded between drawings, holding 1.0 GiB of the 2.0 GiB set by "
        "`[dashboard] warm_memory` in competition.toml.")
    assert drawing.warm_note({"a": 283 * 2 ** 20}, 512 * 2 ** 20, 1_200) == (
        "1 of 1,200 entries are kept loaded between drawings, holding 283 MiB of the 512 MiB set by "
        "`[dashboard] warm_memory` in competition.toml; the others load again for each drawing, which takes a few "
        "seconds more.")
