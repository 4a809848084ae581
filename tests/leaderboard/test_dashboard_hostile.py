"""Every string an entry controls is literal text on every page: a leader whose entry.toml gives a hostile display
name, author, description and hyperparameters, and an entry whose model fails with a hostile sentence, evaluated by
the real harness; each page under AppTest, with every markdown source it sends (text, alerts, headings, metrics,
st.table cells, progress) rendered by a CommonMark renderer (markdown-it, as Streamlit's): no link, no image, no
HTML, and the hostile text shown as written."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from markdown_it import MarkdownIt

from harness import isolation, runner
from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.store.engine import make_engine
from leaderboard import cache, views
from tests.entries import class_means, template_weights, write_entry
from tests.leaderboard.test_dashboard import page, seen, use_db
from tests.leaderboard.test_draw_page import Canvas, button, drawing_of
from tests.leaderboard.test_submit import site, submit  # noqa: F401 - fixture

EVIL = "[organiser notice](http://evil) ![x](http://evil/x.png) <b>bold</b>"
NAME = f"Top {EVIL}"
AUTHOR = f"Mallory {EVIL}"
DESCRIPTION = f"Read me.\n\n# {EVIL}\n- {EVIL}"
ERROR = f"boom {EVIL}"
MARKDOWN_TYPES = {"markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader"}


def markdown_sources(at) -> list[str]:
    """Every string the page sends that Streamlit renders as markdown."""
    out = []
    for kind in MARKDOWN_TYPES:
        out += [e.value for e in at.get(kind)]
    out += [m.label for m in at.metric]
    out += [str(cell) for t in at.table for cell in [*t.value.columns, *t.value.to_numpy().ravel()]]
    out += [p.proto.text for p in at.get("progress")]
    return out


def assert_literal(at, *expected: str) -> None:
    """No markdown source of the page renders a link, an image or HTML from the hostile text, and each of
    ``expected`` is shown as written (flattened to one line, as names are)."""
    sources = markdown_sources(at)
    for source in sources:
        html = MarkdownIt("commonmark").render(source)
        assert "http://evil" not in re.sub(r"\s+", " ", "".join(re.findall(r"<[^>]*>", html))), (source, html)
        assert "<img" not in html and "<b>" not in html and "<a " not in html, (source, html)
        assert "<h1>" not in html, (source, html)  # no heading, and no list but the page's own (its "- " lines)
        assert html.count("<li>") == source.startswith("- ") + source.count("\n- "), (source, html)
    text = "\n".join(seen(s) for s in sources)
    for wanted in expected:
        assert " ".join(wanted.split()) in text, (wanted, text[-3000:])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, mnist_dir, mnist_test):
    """``lead`` (clearly ahead: the verdict names it) with a hostile entry.toml, ``plain`` behind it, and ``boom``,
    whose model fails with a hostile sentence, evaluated by ``harness.runner`` on 500 MNIST test digits."""
    root = tmp_path_factory.mktemp("hostile")
    subs = root / "submissions"
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    toml = "\n".join([f"display_name = {NAME!r}".replace("'", '"'), f"author = {AUTHOR!r}".replace("'", '"'),
                      f'description = """{DESCRIPTION}"""', "[hyperparameters]", f'"{EVIL}" = "{EVIL}"',
                      'optimizer = "sgd"'])
    write_entry(subs, "lead", weights=template_weights(class_means(train.images[:20000], train.labels[:20000])),
                toml=toml)
    write_entry(subs, "plain", weights=template_weights(class_means(train.images[:30], train.labels[:30])),
                toml='display_name = "Plain one"\nauthor = "Pat"\n')
    write_entry(subs, "boom", code=f"import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
                                   f"        raise RuntimeError({ERROR!r})\n",
                weights=template_weights(np.zeros((10, 784))), toml=f"author = {AUTHOR!r}\n".replace("'", '"'))
    datasets = [DatasetSpec(kind="mnist", content_hash="hostile-mnist-500", labels=mnist_test.labels[:500]
                            .astype(np.int64), images=mnist_test.images[:500], source="MNIST test (first 500)")]
    db = root / "hostile.db"
    engine = make_engine(str(db))
    runner.run(engine, list(discover(subs).values()), datasets,
               runner.Options(runner.Limits(device="cpu", timeout=120)), argv=["hostile"])
    engine.dispose()
    return type("Hostile", (), {"db": db, "submissions": subs, "mystery": root / "mystery"})()


def test_the_fixture_is_hostile_where_it_counts(hostile):
    view = views.board_view(make_engine(str(hostile.db)), revealed=False)
    assert view.verdict.startswith(f"The 500 MNIST test digits put {NAME} clearly ahead")  # the leader's name in it
    boom = view.board[view.board["entry"] == "boom"].iloc[0]
    assert ERROR in boom["status"] and boom["author"] == AUTHOR


def test_the_board_shows_the_leaders_name_in_its_verdict_as_text(hostile, monkeypatch):
    use_db(monkeypatch, hostile, hostile.db)
    at = page()
    assert any(NAME in seen(m.value) and "clearly ahead" in seen(m.value) for m in at.markdown)
    assert_literal(at, f"The 500 MNIST test digits put {NAME} clearly ahead", ERROR, "Top")


@pytest.mark.parametrize("entry", ["lead", "boom"])
def test_the_entry_page_shows_every_field_as_text(hostile, monkeypatch, entry):
    use_db(monkeypatch, hostile, hostile.db)
    at = page("screens/entry.py", entry=entry)
    if entry == "lead":
        assert_literal(at, NAME, AUTHOR, DESCRIPTION)
        table = at.table[0].value  # the hyperparameters, from entry.toml: st.table renders its cells as markdown
        assert [seen(c) for c in table["name"]] == [EVIL, "optimizer"]
        assert [seen(c) for c in table["value"]] == [EVIL, "sgd"]
    else:
        assert_literal(at, ERROR, AUTHOR)
        assert any(ERROR in seen(e.value) for e in at.error)


def test_head_to_head_and_what_worked_show_names_as_text(hostile, monkeypatch):
    use_db(monkeypatch, hostile, hostile.db)
    at = page("screens/head_to_head.py")
    assert {at.selectbox[0].value, at.selectbox[1].value} == {"lead", "plain"}
    assert_literal(at, NAME, "Plain one")
    assert any(NAME in seen(m.label) for m in at.metric)
    assert_literal(page("screens/what_worked.py"))


class FailingPool:
    """Stands in for the warm pool: ``boom`` fails with the hostile sentence, the others read a 3."""

    memory_budget = None  # no budget: nothing measured, no note

    def prepare(self, entries):
        pass

    def memory(self):
        return {}

    def ask_all(self, entries, images):
        for e in entries:
            yield e, (isolation.Prediction("failed", ERROR) if e.name == "boom" else
                      isolation.Prediction("ok", None, outputs={"draw": np.eye(10, dtype=np.float32)[[3]] * 5}))


def test_the_draw_page_shows_names_and_problems_as_text(hostile, monkeypatch, mnist_test):
    use_db(monkeypatch, hostile, hostile.db)
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", Canvas(drawing_of(mnist_test.images[0])).module())
    monkeypatch.setattr(cache, "warm_pool", lambda: FailingPool())
    at = button(page("screens/draw.py"), "Read my digit").click().run()
    assert not at.exception
    assert_literal(at, NAME, "boom", f"Problem: {ERROR}")


def test_the_organiser_page_shows_names_as_text(hostile, monkeypatch):
    use_db(monkeypatch, hostile, hostile.db, password="pw")
    at = page("screens/organiser.py")
    at.text_input[0].input("pw")
    next(b for b in at.button if b.label == "Unlock").click()
    at.run()
    assert not at.exception and any(s.value == "Audit log" for s in at.subheader)
    assert_literal(at)


@pytest.mark.slow
def test_the_submit_page_shows_the_members_file_names_as_text(site):  # noqa: F811 - fixture
    """A refused upload's sentence quotes the member's own file name: shown as written, no link or image."""
    name = "[organiser notice](http:evil) ![x](http:evil.png) <b>bold</b>"  # a plain file name: no '/'
    at = submit(site.ada, "ada-net", [(name, b"x"), ("model.py", b"")])
    assert_literal(at, f"The file name {name!r} is not one an entry uses")
