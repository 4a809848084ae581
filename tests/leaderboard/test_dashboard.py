"""The dashboard: every page under AppTest against a realistic database, sealed and revealed, and the plain
query/statistics functions against independent references."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from scipy.stats import binomtest
from streamlit.testing.v1 import AppTest

from harness.scoring import board as scoring_board
from harness.store import audit, eval_sets, evaluations, flags, moderation, versions
from harness.store.engine import make_engine
from leaderboard import admin, config, drawing, figures, stats, views
from tests import dashboard_fixtures
from tests.conftest import REPO
from tests.entries import template_predictions

APP = str(REPO / "leaderboard" / "app.py")


def use_db(monkeypatch, fx, db, password: str | None = None):
    monkeypatch.setenv("LEADERBOARD_DB", str(db))
    monkeypatch.setenv("LEADERBOARD_SUBMISSIONS", str(fx.submissions))
    monkeypatch.setenv("LEADERBOARD_MYSTERY", str(fx.mystery))
    if password is None:
        monkeypatch.delenv(config.PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(config.PASSWORD_ENV, password)
    st.cache_data.clear()


def page(path: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if path:
        at.switch_page(path)
        at.query_params.update(query)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def everything_shown(at: AppTest) -> str:
    """All text of a rendered page, dataframes included (for scanning what a visitor could see)."""
    parts = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        if type(node).__name__ == "Dataframe":
            parts.append(node.value.to_string())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def rendered(markdown: str) -> str:
    """Markdown as a CommonMark renderer (markdown-it, as Streamlit's) turns it into HTML: the reference for what a
    visitor sees."""
    from markdown_it import MarkdownIt
    return MarkdownIt("commonmark").enable("strikethrough").render(markdown)


def seen(markdown: str) -> str:
    """What a visitor reads of one markdown source: its CommonMark HTML with the tags dropped, entities decoded."""
    from html import unescape
    return unescape(re.sub(r"<[^>]+>", "", rendered(markdown))).strip()


def guest_results(db) -> dict[str, float]:
    view = views.board_view(make_engine(str(db)), revealed=True)
    return dict(zip(view.board["entry"], view.board["guest_accuracy"], strict=True))


# --- the plain functions ----------------------------------------------------------------------------------------

def test_board_ranks_like_the_harness_and_marks_ties(fx):
    engine = make_engine(str(fx.revealed_db))
    board = views.board_view(engine, revealed=True).board
    ok = board[board["status"] == "ok"]
    # Independent reference: accuracy recomputed from stored predictions and the guest labels.
    evals = evaluations.load_evaluations(engine, ok["evaluation_id"].tolist())
    acc = {}
    masks = {}
    for e in evals:
        guest = next(r for r in e.results if r.dataset.kind == "guest")
        mnist_r = next(r for r in e.results if r.dataset.kind == "mnist")
        pred = np.load(__import__("io").BytesIO(guest.predicted))
        masks[e.version.entry.name] = pred == fx.guest_labels
        acc[e.version.entry.name] = (masks[e.version.entry.name].mean(), mnist_r.accuracy)
    expected = sorted(acc, key=lambda n: (-acc[n][0], -acc[n][1], n))
    assert ok["entry"].tolist() == expected
    assert ok["medal"].tolist()[:1] == ["🥇"]
    # Dee reads exactly like Ada's second version: the same rank, tied (p = 1).
    row = board.set_index("entry")
    assert row.loc["dee", "rank"] == row.loc["ada", "rank"]
    # Each row against the leader: the exact binomial test on the discordant digits, Holm-corrected by hand.
    names = ok["entry"].tolist()
    raw = []
    for below in names[1:]:
        a, b = masks[names[0]], masks[below]
        n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
        raw.append(1.0 if n01 + n10 == 0 else binomtest(n01, n01 + n10, 0.5).pvalue)
    m = len(raw)
    by_size = sorted(range(m), key=lambda i: raw[i])
    adjusted, running = [0.0] * m, 0.0
    for k, i in enumerate(by_size):
        running = max(running, min(1.0, (m - k) * raw[i]))
        adjusted[i] = running
    assert row.loc[names[0], "separation"] == "leader" and row.loc[names[0], "state"] == "leader"
    for below, p in zip(names[1:], adjusted, strict=True):
        assert row.loc[below, "p_vs_leader"] == pytest.approx(p)
        assert row.loc[below, "with_leader"] == (p >= 0.05)
        assert row.loc[below, "separation"].startswith("level with #1" if p >= 0.05 else "behind #1")
        assert row.loc[below, "state"] == ("≈ #1" if p >= 0.05 else "")
    level = 1 + sum(p >= 0.05 for p in adjusted)
    assert views.board_view(engine, revealed=True).verdict.startswith(
        f"The guest's 100 digits cannot separate the top {level} " if level > 1 else "The guest's 100 digits put")
    assert row.loc["ada", "link"] == "entry?entry=ada#Ada%27s%20template"
    assert row.loc["broken", "status"].startswith("failed: the weights do not fit the model")
    assert np.isnan(row.loc["broken", "rank"])
    assert row.loc["ada", "versions"] == 2 and len(row.loc["ada", "history"]) == 2
    assert row.loc["ada", "hp: optimizer"] == "sgd" and row.loc["bob", "hp: optimizer"] == ""


def test_sealed_board_ranks_by_mnist_and_holds_no_guest_number(fx):
    view = views.board_view(make_engine(str(fx.db)), revealed=False)
    assert view.primary == "mnist" and "guest" not in view.datasets
    assert set(view.board["guest_accuracy"]) == {stats.SEALED}
    assert view.board["guest_ci_low"].isna().all()
    ok = view.board[view.board["status"] == "ok"]
    assert ok["mnist_accuracy"].tolist() == sorted(ok["mnist_accuracy"], reverse=True)
    csv = stats.board_csv(view.board, revealed=False)
    assert "guest" not in csv.lower()


def test_history_takes_each_versions_accuracy(fx):
    engine = make_engine(str(fx.revealed_db))
    datasets = eval_sets.current_datasets(engine, revealed=True)
    history = evaluations.accuracy_history(engine, datasets)
    ada = history[(history["entry"] == "ada") & (history["kind"] == "mnist")]
    assert ada["version"].tolist() == [1, 2]
    evals = evaluations.load_evaluations(engine, ada["evaluation_id"].tolist())
    expected = [next(r.accuracy for r in e.results if r.dataset.kind == "mnist") for e in evals]
    assert ada["accuracy"].tolist() == expected


# Widths in pixels that headless Chromium measured (canvas measureText, 14 px Source Sans, the grid's font).
MEASURED = {"Bob's quick one": 92, "43% (34–53)": 71, "99.69% (99.6–99.8)": 110, "disqualified": 69,
            "Guest ↑ (95% CI)": 99, "MNIST ↑ (95% CI)": 103, "🥇 1": 27, "Baseline: robust CNN": 123,
            "memorised? ≈ #1": 99, "superseded": 68, "WWWWWWWWWW": 110, "iiiiiiiiii": 34}


@pytest.mark.parametrize("text, measured", MEASURED.items())
def test_a_grid_column_is_as_wide_as_its_longest_text(text, measured):
    """Room for the text and the cell's 8 px padding each side, and not much more."""
    assert measured + 16 <= stats.text_width([text]) <= 1.6 * measured + 24
    assert stats.text_width(["ab", text, ""]) == stats.text_width([text])  # the longest decides
    assert stats.text_width([text], most=40) == 40 and stats.text_width([text], least=400) == 400


@pytest.mark.parametrize("text, measured", MEASURED.items())
def test_a_wrapping_column_holds_its_words(text, measured):
    """On one line a wrapping column is as wide as the text; on more, at least as wide as its widest word (the
    words of MEASURED measured alone are a little narrower than the whole) and never wider than one line."""
    assert stats.wrapped_width([text], 1) == stats.text_width([text])
    assert stats.wrapped_width([text], 3) <= stats.wrapped_width([text], 2) <= stats.text_width([text])
    widest_word = max(stats.text_width([w]) for w in text.split())
    assert stats.wrapped_width([text], 2) >= widest_word and stats.wrapped_width([text, "ab"], 2, least=500) == 500


def compact_board(names: list[str], scores: list[str], states: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"place": [f"{i + 1}" for i in range(len(names))], "display_name": names, "score": scores,
                         "state": states})


def test_the_compact_board_fits_a_phone_and_long_names_wrap():
    """The committed entries' names (MNIST scores, one disqualified): all four columns in a 390 px phone's 336 px,
    the longest name wrapped in the rest of the phone's width (narrower than the whole name). A name too long
    for three lines pushes the status off the phone's screen, never the score."""
    names = ["Baseline: robust CNN", "Baseline: strong CNN", "Exported CNN (torch.export)", "Baseline: LeNet-5",
             "Baseline: logistic regression", "Organiser's LeNet"]
    scores = ["99.69% (99.6–99.8)", "99.64% (99.5–99.7)", "99.46% (99.3–99.6)", "99.14% (98.9–99.3)",
              "92.36% (91.8–92.9)", ""]
    states = ["leader", "", "", "", "", "disqualified"]
    widths = stats.compact_widths(compact_board(names, scores, states), "MNIST ↑")
    assert sum(widths.values()) <= stats.PHONE_ROOM
    assert stats.text_width(["regression"]) < widths["display_name"] < stats.text_width(names)  # wrapped, whole
    assert widths["display_name"] == stats.PHONE_ROOM - widths["place"] - widths["score"] - widths["state"]
    assert widths["score"] < stats.text_width(scores) and widths["state"] >= stats.text_width(["disqualified"])
    long = "An entry whose name goes on and on, well past anything that three lines of a phone could hold at all"
    widths = stats.compact_widths(compact_board([long, *names], ["", *scores], ["", *states]), "MNIST ↑")
    assert widths["place"] + widths["display_name"] + widths["score"] <= stats.PHONE_ROOM < sum(widths.values())
    short = stats.compact_widths(compact_board(["ada", "bob"], ["43% (34–53)", "40% (31–50)"], ["leader", ""]),
                                 "Guest ↑")
    assert short["display_name"] == 96 and short["score"] == stats.text_width(["43% (34–53)"])  # nothing wraps


def test_a_tapped_name_picks_its_entry_and_nothing_else_does():
    entries = ["eve", "ada", "dee"]
    assert stats.picked_entry({"cells": [[1, "display_name"]], "rows": []}, entries) == "ada"
    assert stats.picked_entry({"cells": [[0, "score"]]}, entries) is None  # a tap on a score stays on the board
    assert stats.picked_entry({"cells": [[0, "display_name"], [2, "display_name"]]}, entries) == "dee"  # the last
    assert stats.picked_entry({"cells": [[3, "display_name"]]}, entries) is None
    assert stats.picked_entry({"cells": []}, entries) is None and stats.picked_entry(None, entries) is None


def test_filter_sort_and_csv():
    board = pd.DataFrame({"display_name": ["A one", "B two", "C three"], "entry": ["a", "b", "c"],
                          "author": ["Ada", "Bob", "Cy"], "status": ["ok", "failed: x", "ok"],
                          "params": [300, 100, 200], "rank": [1, None, 2]})
    assert stats.filter_board(board, "bo")["entry"].tolist() == ["b"]
    assert stats.filter_board(board, statuses=["ok"])["entry"].tolist() == ["a", "c"]
    assert stats.filter_board(board, sort_by="params")["entry"].tolist() == ["b", "c", "a"]
    assert stats.filter_board(board, sort_by="params", descending=True)["entry"].tolist() == ["a", "c", "b"]
    board = board.assign(rank=[1.0, None, 2.0], with_leader=[True, None, False], p_vs_leader=[None, None, 0.012345],
                         guest_accuracy=[0.97, None, 0.9], mnist_accuracy=[0.991234567, None, 0.98],
                         images_per_second=[1234.567, None, 99.5], versions=[2, 1, 1],
                         evaluated_at=[datetime(2026, 3, 1, 12, 0, 5, 123456), None,
                                       datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))],
                         hyperparameters=[{"lr": 0.1, "augment": ["affine", "slant", "stroke"], "nesterov": True,
                                           "command": "python -m harness.train", "torch_version": "2.14.1",
                                           "train_data_sha256": "8fd8" * 16, "arch": "lenet5"},
                                          {}, {"learning_rate": 0.2, "augment": [], "architecture": {"a": 1}}],
                         **{"hp: lr": ["0.1", "", "0.2"], "hp: command": ["python -m harness.train", "", "x"]})
    rows = list(csv.DictReader(io.StringIO(stats.board_csv(board, revealed=True))))
    assert rows[0]["rank"] == "1" and rows[1]["rank"] == "" and rows[2]["rank"] == "2"
    assert rows[0]["mnist accuracy"] == "0.9912" and rows[2]["p vs leader (Holm)"] == "0.0123"
    assert rows[0]["images per second"] == "1235" and rows[2]["images per second"] == "100"
    assert rows[0]["last evaluated"] == "2026-03-01T12:00:05+00:00"
    assert rows[2]["last evaluated"] == "2026-03-01T12:00:00+00:00"  # 13:00 at +01:00, in UTC
    assert rows[0]["level with the leader"] == "yes" and rows[2]["level with the leader"] == "no"
    recipe = ["architecture", "optimizer", "learning rate", "schedule", "batch size", "epochs", "weight decay",
              "dropout", "label smoothing", "augmentation", "seed", "validation accuracy", "training seconds"]
    # the board's columns, then the flat recipe: no hashes, no hp:
    assert list(rows[0]) == ["rank", "level with the leader", "p vs leader (Holm)", "entry", "folder", "author",
                             "guest accuracy", "mnist accuracy", "parameters", "images per second", "last evaluated",
                             "status", "versions", *recipe]
    assert (rows[0]["architecture"], rows[0]["learning rate"], rows[0]["augmentation"]) == \
        ("lenet5", "0.1", "affine+slant+stroke")
    assert (rows[2]["architecture"], rows[2]["learning rate"], rows[2]["augmentation"]) == ("", "0.2", "none")
    assert all(rows[1][c] == "" for c in recipe)
    assert not any("8fd8" in v or "2.14.1" in v or "harness.train" in v for r in rows for v in r.values())


def test_mistakes_pairs_and_consensus_against_hand_counts():
    labels = np.array([1, 2, 3, 3, 4, 5])
    predicted = np.array([1, 7, 8, 8, 4, 6])
    confidence = np.array([0.9, 0.6, 0.99, 0.7, 0.8, 0.95], dtype=np.float32)
    assert stats.most_confident_mistakes(labels, predicted, confidence).tolist() == [2, 5, 3, 1]
    assert stats.pair_samples(labels, predicted, confidence, 3, 8).tolist() == [2, 3]
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (labels, predicted), 1)
    assert stats.top_confusion(confusion) == (3, 8)
    assert stats.top_confusion(np.eye(10, dtype=int)) is None
    votes = np.array([[1, 2, 3], [1, 5, 3], [1, 5, 9]])  # 3 entries × 3 digits with labels 1, 2, 3
    c = stats.consensus(np.array([1, 2, 3]), votes)
    assert c["index"].tolist() == [1, 2, 0]  # digit 1: one right; digit 2: two right; digit 0: all right
    assert c.set_index("index").loc[1, "consensus"] == 5
    assert c.set_index("index").loc[1, "consensus_share"] == pytest.approx(2 / 3)


def test_head_to_head_in_plain_words():
    labels = np.zeros(100, int)
    a = np.zeros(100, int)
    b = np.zeros(100, int)
    b[:12] = 1          # B misreads 12 digits that A reads right
    a[50:52] = 1        # A misreads 2 that B reads right
    r = stats.head_to_head(labels, a, b)
    assert (r.only_a, r.only_b, r.both_wrong) == (12, 2, 0)
    assert r.p_value == pytest.approx(binomtest(12, 14, 0.5).pvalue)
    assert "Ada is genuinely better" in r.verdict("Ada", "Bob")
    close = stats.head_to_head(labels, a, np.where(np.arange(100) < 3, 1, 0))
    assert "cannot tell them apart" in close.verdict("Ada", "Bob")


def test_head_to_head_says_chance_in_words_and_counts_with_commas():
    labels = np.zeros(3000, int)
    a, b = np.zeros(3000, int), np.zeros(3000, int)
    b[:1200] = 1        # B misreads 1,200 digits that A reads right
    a[2000:2003] = 1    # A misreads 3 that B reads right: p is about 1e-350, "1.1e-201%"-like before
    words = stats.head_to_head(labels, a, b).verdict("Ada", "Bob")
    assert ("Of the 1,203 digits that only one of them read right, Ada got 1,200 and Bob got 3. If the two were "
            "equally good, a split at least this uneven would happen by chance less than once in 1,000 times "
            "(exact McNemar test, p < 0.001). So Ada is genuinely better") in words
    assert "e-" not in words
    ten = stats.head_to_head(np.zeros(10, int), np.zeros(10, int), np.ones(10, int))  # 10 to 0: p = 2/2^10
    assert "about 2 times in 1,000 (exact McNemar test, p = 0.002)" in ten.verdict("Ada", "Bob")
    assert [stats.chance_text(p) for p in (0.0004, 0.0049, 0.0129, 0.5)] == [
        "less than once in 1,000 times", "about 5 times in 1,000", "1% of the time", "50% of the time"]


def test_figures_have_axis_titles_and_counts():
    confusion = np.arange(100).reshape(10, 10)
    spec = figures.confusion_chart(confusion, "CM").to_dict()
    layer = spec["layer"]
    assert layer[0]["encoding"]["x"]["title"] == "read as" and layer[0]["encoding"]["y"]["title"] == "true digit"
    frame = figures.confusion_frame(confusion)
    assert frame.query("true == 3 and predicted == 7")["count"].item() == 37
    assert frame.query("true == 3")["share"].sum() == pytest.approx(1.0)
    recall = figures.recall_chart(np.linspace(0, 1, 10)).to_dict()
    assert recall["layer"][0]["encoding"]["y"]["title"].startswith("recall")
    picture = figures.digit_picture(np.eye(28, dtype=np.uint8) * 255, 3)
    assert picture.shape == (84, 84) and picture[4, 4] == 255 and picture[0, 5] == 0


def test_confusion_matrix_gives_errors_their_own_scale():
    """An 11-count error next to 1,000-count diagonal cells gets the darkest error colour (its own scale), not the
    near-white a shared share-of-row scale gives it; empty cells show no number."""
    confusion = np.diag([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    confusion[4, 9], confusion[7, 2] = 11, 3
    spec = figures.confusion_chart(confusion, "CM").to_dict()
    right, wrong = spec["layer"][1], spec["layer"][2]
    assert right["encoding"]["color"]["field"] == "share" and right["transform"] == [{"filter": "datum.correct"}]
    assert wrong["encoding"]["color"]["field"] == "count"
    assert wrong["encoding"]["color"]["scale"]["domain"] == [0, 11]  # the worst error is the top of its scale
    assert wrong["transform"] == [{"filter": "!datum.correct && datum.count > 0"}]
    assert spec["resolve"] == {"scale": {"color": "independent"}}
    rows = next(iter(spec["datasets"].values()))
    labels = {(r["true"], r["predicted"]): r["count_label"] for r in rows}
    assert labels[(4, 9)] == "11" and labels[(1, 1)] == "1,135" and labels[(0, 1)] == ""


def test_four_digit_counts_fit_their_cells_at_a_phones_width():
    """The cell font follows the chart's width: "1135" in DejaVu Sans (as wide as Vega's default sans) stays inside
    a tenth of the width, from a 300-pixel phone chart to a 900-pixel desktop one."""
    import matplotlib
    from PIL import ImageFont
    font_file = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    for width in (300, 340, 600, 900):
        size = min(max(width / 34, 7), 12)  # figures.CELL_FONT: clamp(width / 34, 7, 12)
        assert figures.CELL_FONT == "clamp(width / 34, 7, 12)"
        text = ImageFont.truetype(font_file, round(size)).getlength("1135")
        assert text < 0.8 * width / 10, (width, size, text)


def test_recall_axis_zooms_to_the_digits_and_history_axis_reads_as_percent():
    recall = np.array([0.99, 0.98, 0.97, 0.995, 0.96, 0.985, 0.99, 0.975, 0.965, 0.97])
    assert figures.recall_range(recall) == (pytest.approx(0.90), 1.0)  # 96% rounds down to 95%, less 5 points
    assert figures.recall_range(np.array([0.3, 1.0])) == (pytest.approx(0.25), 1.0)
    assert figures.recall_range(np.array([0.02, 1.0])) == (0.0, 1.0)
    spec = figures.recall_chart(recall, np.array([10, 20, 30, 5, 40, 15, 10, 25, 35, 30])).to_dict()
    assert spec["layer"][0]["encoding"]["y"]["scale"]["domain"] == [pytest.approx(0.90), 1.0]
    rows = next(iter(spec["datasets"].values()))
    assert [r["label"] for r in rows][:2] == ["10 ✗", "20 ✗"]
    history = pd.DataFrame({"version": [1, 2], "kind": ["mnist", "mnist"], "accuracy": [0.9893, 0.9912],
                            "started_at": ["a", "b"]})
    axis = figures.history_chart(history).to_dict()["encoding"]["y"]["axis"]
    assert axis["format"] == ".2~%"  # d3: 0.9893 → "98.93%", 0.99 → "99%" (a bare "%" prints "98.930000%")


def test_a_clicked_cell_and_pages_and_the_guest_set_named():
    state = {"selection": {"cell": [{"true": 4, "predicted": 9}]}}
    assert stats.selected_cell(state) == (4, 9)
    assert stats.selected_cell({"selection": {"cell": []}}) is None and stats.selected_cell(None) is None
    assert stats.pages(108, 60) == [(0, 60), (60, 108)] and stats.pages(0, 60) == []
    assert sum(b - a for a, b in stats.pages(1234, 60)) == 1234
    sample = eval_sets.DatasetInfo(1, "guest", 100, "sample", "v")
    assert "shipped **sample** set of 100 digits from `mystery_digits/_sample/`" in stats.guest_set_text(sample)


@pytest.mark.parametrize("source, said", [
    ("folder:mystery_digits", "the guest's 1,592 handwritten digits, put by the organisers into `mystery_digits/`"),
    ("folder:semeion_2", "the guest's 1,592 handwritten digits, read from the folder semeion\\_2/ that the "
                         "organisers gave the evaluation (`--mystery`)"),
    ("folder", "the guest's 1,592 handwritten digits, read from the guest folder that the organisers gave the "
               "evaluation"),
])
def test_the_guest_set_is_described_by_where_it_came_from(source, said):
    """A set read with ``--mystery semeion_2`` is never said to be in mystery_digits/; the size has its comma."""
    assert stats.guest_set_text(eval_sets.DatasetInfo(2, "guest", 1592, source, "v")) == said


def test_the_store_notes_the_folder_the_guest_set_was_read_from(tmp_path):
    from harness.data.task import guest_source
    assert guest_source("folder", tmp_path / "semeion_2") == "folder:semeion_2"
    assert guest_source("folder", REPO / "mystery_digits") == "folder:mystery_digits"
    assert guest_source("sample", tmp_path / "anything") == "sample"


HOSTILE = ["**x**](javascript:alert(1))", "<img src=x onerror=alert(1)>", ":red[boom] $x$ a_b_c",
           "[click](http://e.vil)", "# Heading", "1. list", "- item", "Ada's `code` ~~gone~~ &lt;"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_entry_name_renders_as_literal_text(name):
    """Reference: markdown-it (CommonMark, as Streamlit's renderer) turns the escaped name into exactly the name as
    text: no link, no emphasis, no HTML, no heading or list."""
    html = rendered(f"by **{stats.literal(name)}** here")
    assert html == f"<p>by <strong>{escape(name, quote=False)}</strong> here</p>\n"


def test_interval_chart_shows_the_top_entries_and_who_is_level_with_the_leader():
    n = 200
    board = pd.DataFrame({"rank": range(1, n + 1), "display_name": [f"e{i}" for i in range(n)],
                          "with_leader": [i < 4 for i in range(n)], "guest_accuracy": np.linspace(0.99, 0.5, n),
                          "guest_ci_low": np.linspace(0.95, 0.4, n), "guest_ci_high": np.linspace(1.0, 0.6, n)})
    spec = figures.interval_chart(board, "guest_ci_low", "guest_ci_high", "guest_accuracy", top=20).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [r["label"] for r in rows] == [f"{i + 1}. e{i}" for i in range(20)]
    assert [r["versus"] for r in rows].count(figures.LEVEL) == 4
    colour = spec["layer"][0]["encoding"]["color"]
    assert colour["scale"]["domain"] == [figures.LEVEL, figures.BEHIND] and "group" not in str(spec).lower()
    everything = figures.interval_chart(board, "guest_ci_low", "guest_ci_high", "guest_accuracy").to_dict()
    assert len(next(iter(everything["datasets"].values()))) == n
    # ROW_PX pixels a row in pixels, only the width fitted: nothing for Vega to drop with a console warning
    assert (spec["height"], everything["height"], spec["autosize"]["type"]) == (40 * 20, 40 * n, "fit-x")
    name = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "text")  # its own line, never cut
    assert name["encoding"]["text"]["field"] == "label" and name["mark"]["limit"] == 0


def test_password_and_settings():
    assert config.configured_password({}, None) is None
    assert config.configured_password({config.PASSWORD_ENV: ""}, {}) is None
    assert config.configured_password({}, {"admin_password": "s3"}) == "s3"
    assert config.configured_password({config.PASSWORD_ENV: "env"}, {"admin_password": "s3"}) == "env"
    assert admin.password_ok("env", "env") and not admin.password_ok("x", "env") and not admin.password_ok("", None)
    s = config.settings({"LEADERBOARD_DB": "x.db"})
    assert s.db_url == "sqlite:///x.db" and str(s.submissions) == "submissions"


def test_moderation_and_audit_log(fx, tmp_path):
    db = tmp_path / "mod.db"
    shutil.copy(fx.db, db)
    engine = make_engine(str(db))
    with pytest.raises(ValueError, match="say why"):
        moderation.set_moderation(engine, "bob", "disqualified", " ")
    moderation.set_moderation(engine, "bob", "disqualified", "trained on the test set")
    moderation.set_moderation(engine, "eve", "hidden", "asked to withdraw")
    admin.set_revealed(engine, True)
    view = views.board_view(engine, revealed=True)
    row = view.board.set_index("entry")
    assert "eve" not in row.index and view.hidden == ["eve"] and view.excluded == {"eve", "bob"}
    assert row.loc["bob", "status"] == "disqualified: trained on the test set" and np.isnan(row.loc["bob", "rank"])
    assert views.entry_view(engine, "eve", True) is None
    log = audit.audit_log(engine)
    assert [e["action"] for e in log] == ["reveal", "hide", "disqualify"]
    assert all(e["at"] is not None for e in log)
    moderation.set_moderation(engine, "eve", "visible")
    assert "eve" in set(views.board_view(engine, revealed=True).board["entry"])


@pytest.mark.slow
def test_a_disqualified_entry_is_decided_by_standings_on_every_page(fx, monkeypatch, tmp_path):
    """The board, the entry page, the guest gallery and What worked all take bob's standing from
    harness.scoring.standings."""
    from harness.common.competition import Competition
    from harness.scoring import insights, standings
    db = tmp_path / "dq.db"
    shutil.copy(fx.revealed_db, db)
    engine = make_engine(str(db))
    moderation.set_moderation(engine, "bob", "disqualified", "trained on the test set")
    moderation.set_moderation(engine, "eve", "hidden", "asked to withdraw")
    picked = {p.entry_name: p for p in standings.current(engine, Competition())}
    assert "eve" not in picked and (picked["bob"].standing, picked["bob"].note) == ("disqualified",
                                                                                      "trained on the test set")
    board = views.board_view(engine, revealed=True).board
    assert board["entry"].tolist()[-1] == "bob"  # unranked, after every other row
    bob = board.set_index("entry").loc["bob"]
    assert bob["status"] == f"disqualified: {picked['bob'].note}" and np.isnan(bob["rank"]) and bob["medal"] == ""
    assert views.entry_view(engine, "bob", True).summary.standing == standings.DISQUALIFIED
    datasets = eval_sets.current_datasets(engine, True)
    worked = insights.frame(scoring_board.latest(engine, datasets), include_guest=True)
    assert "Bob's quick one" not in set(worked["entry"]) and "Ada's template" in set(worked["entry"])
    assert "Bob's quick one" not in views.guest_view(engine).entries

    use_db(monkeypatch, fx, db)
    at = page("screens/entry.py", entry="bob")
    assert [e.value for e in at.error] == ["Disqualified by the organisers: trained on the test set"]
    worked_page = page("screens/what_worked.py")  # bob was the only entry trained 1 epoch: that group is gone
    epochs = next(t.value for t in worked_page.dataframe if "epochs" in t.value.columns)
    assert epochs["epochs"].tolist() == [3] and epochs["entries"].tolist() == [1]
    assert set(worked["entry"]) == {"Ada's template", "Dee's copy"}  # eve hidden, bob disqualified, broken failed
    listed = page()
    assert "<li><strong>Bob's quick one</strong> (bob): disqualified: trained on the test set</li>" in [
        rendered(m.value).strip().removeprefix("<ul>\n").removesuffix("\n</ul>") for m in listed.markdown]


def test_background_job_reports_progress(tmp_path):
    import sys
    import time
    job = admin.start_job([sys.executable, "-c", "print('evaluating 1 of 1'); print('done')"], tmp_path)
    deadline = time.time() + 30
    while job.running and time.time() < deadline:
        time.sleep(0.1)
    assert job.returncode == 0 and job.log_tail().splitlines()[-1] == "done"
    assert admin.run_progress(None, job, 3) == (1.0, "finished")
    settings = config.Settings("sqlite:///x.db", tmp_path / "subs", tmp_path / "m", tmp_path)
    argv = admin.evaluation_command(settings, force=True, only=["ada"])
    assert argv[1:4] == ["-m", "harness.evaluate", "--submissions"] and argv[-3:] == ["--only", "ada", "--force"]
    assert "sqlite:///x.db" not in argv  # the URL (maybe with a password) travels in the environment
    probe = admin.start_job([sys.executable, "-c", "import os; print(os.environ['LEADERBOARD_DB'])"], tmp_path,
                            "postgresql+psycopg://u:secret@db/club")
    probe.process.wait(30)
    assert probe.log_tail() == "postgresql+psycopg://u:secret@db/club"


def test_drawing_goes_through_normalisation_and_isolated_entries(fx, mnist_test, means):
    # A test digit drawn as black ink on a white 280×280 RGBA canvas.
    ink = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(mnist_test.images[0]).resize((280, 280)))
    rgba = np.dstack([255 - ink] * 3 + [np.full_like(ink, 255)]).astype(np.uint8)
    assert drawing.has_ink(rgba) and not drawing.has_ink(np.full((50, 50, 4), 255, np.uint8))
    digit = drawing.normalise_drawing(rgba)
    assert digit.shape == (28, 28) and digit.dtype == np.float32 and digit.max() > 0.9
    entry = next(e for e in drawing.entries_on_disk(fx.submissions) if e.name == "dee")
    got = drawing.predict(entry, digit)
    assert got.error is None and got.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    expected = template_predictions(drawing.model_input(digit), means)[0]
    assert got.digit == expected
    broken = next(e for e in drawing.entries_on_disk(fx.submissions) if e.name == "broken")
    assert "weights do not fit" in drawing.predict(broken, digit).error


def test_the_drawn_digit_goes_through_the_guest_sets_uint8_step(fx, monkeypatch):
    """Entries receive the drawing exactly as they receive a guest digit: [0, 1] rounded to uint8 levels."""
    from harness.isolation import Prediction, prediction
    handed = {}

    def front_door(entry, images, limits, **_):
        handed.update(images=images, limits=limits)
        return Prediction("ok", None, outputs={"draw": np.eye(10, dtype=np.float32)[[3]] * 5})

    monkeypatch.setattr(prediction, "predict", front_door)
    digit = np.random.default_rng(1).random((28, 28), dtype=np.float32)  # levels between uint8's
    entry = next(e for e in drawing.entries_on_disk(fx.submissions) if e.name == "dee")
    assert drawing.predict(entry, digit).digit == 3
    (sent,) = handed["images"].values()
    assert sent.dtype == np.uint8 and sent.shape == (1, 28, 28)
    assert np.array_equal(sent[0], np.clip(np.rint(digit * 255), 0, 255).astype(np.uint8))
    assert (handed["limits"].device, handed["limits"].batch_size) == ("cpu", 1)


# --- the pages under AppTest ------------------------------------------------------------------------------------

def test_leaderboard_page_sealed(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.db)
    at = page()
    assert "sealed until the reveal" in at.info[0].value
    table = at.dataframe[0].value
    assert table["display_name"].tolist()[:2] == ["Ada's template", "Dee's copy"]
    size = views.board_view(make_engine(str(fx.db)), revealed=False).datasets["mnist"].size
    assert any(m.value.startswith(f"**The {size:,} MNIST test digits") for m in at.markdown)
    assert table.columns.tolist() == ["place", "display_name", "score", "state"]  # the compact view, all that is sent
    assert table["place"].tolist()[:2] == ["🥇 1", "🥇 1"]  # Dee reads exactly like Ada: the same rank and medal
    assert table["state"].tolist()[:3] == ["leader", "leader", "≈ #1"]  # joint leaders, then level with them
    assert any("Broken entry" in m.value and "weights do not fit" in m.value for m in at.markdown)
    assert at.get("download_button")


@pytest.mark.parametrize("path", [None, "screens/entry.py", "screens/head_to_head.py", "screens/guest_gallery.py",
                                  "screens/draw.py", "screens/organiser.py", "screens/what_worked.py"])
def test_no_page_shows_guest_results_before_the_reveal(fx, monkeypatch, path):
    use_db(monkeypatch, fx, fx.db, password="pw")
    at = page(path, entry="ada")
    if path is None:
        at.toggle[1].set_value(True).run()  # the board's "All columns": the sealed guest columns are in it
        assert set(at.dataframe[0].value["guest_pct"]) == {stats.SEALED}
    text = everything_shown(at)
    assert at.title and at.title[0].value in text  # the scan does see the page
    if path in (None, "screens/entry.py"):
        assert "Ada's template" in text or "Ada%27s%20template" in text  # the board's link column encodes it
    assert dashboard_fixtures.GUEST_TOKEN not in text
    for accuracy in guest_results(fx.revealed_db).values():
        if accuracy == accuracy:  # not NaN
            assert f"guest_accuracy: {accuracy}" not in text and f"{100 * accuracy:.0f}% guest" not in text
    assert "Guest digits" not in [t.label for t in at.tabs]
    assert not any("guest" in str(r.options).lower() for r in at.radio)
    if path == "screens/guest_gallery.py":
        assert not at.get("imgs") and "sealed until the reveal" in at.info[0].value
    for frame in at.dataframe:
        for column in ("guest_pct", "guest_ci"):
            if column in frame.value:
                assert set(frame.value[column]) == {stats.SEALED}


def test_leaderboard_page_revealed(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page()
    assert "Ranked by the guest's 100 handwritten digits" in at.success[0].value
    compact = at.dataframe[0].value
    results = guest_results(fx.revealed_db)
    eve = compact[compact["display_name"] == "eve"].iloc[0]
    assert eve["score"].startswith(f"{100 * results['eve']:.0f}% (")
    assert any(m.value.startswith("**The guest's 100 digits") for m in at.markdown)
    at.toggle[1].set_value(True).run()  # "All columns"
    table = at.dataframe[0].value
    assert {"author", "guest_pct", "mnist_pct", "separation", "params", "speed"} <= set(table.columns)
    assert "hp: command" not in table.columns and "entry" not in table.columns and "history" not in table.columns
    ada = table[table["display_name"] == "Ada's template"].iloc[0]
    assert ada["guest_pct"] == pytest.approx(100 * results["ada"])
    assert len(ada["history_pct"]) == 2
    at.text_input[0].input("bob").run()
    assert at.dataframe[0].value["display_name"].tolist() == ["Bob's quick one"]


@pytest.mark.slow
def test_entry_page_revealed(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page("screens/entry.py", entry="ada")
    assert at.header[0].value == "Ada's template"
    assert [t.label for t in at.tabs] == ["MNIST test", "Guest digits", "Details", "Versions"]
    metrics = {m.label: m.value for m in at.metric}
    engine = make_engine(str(fx.revealed_db))
    ada = views.entry_view(engine, "ada", True)
    assert metrics["MNIST accuracy ↑"] == f"{100 * ada.sets['mnist'].accuracy:.2f}%"
    assert metrics["Guest accuracy ↑"] == f"{100 * ada.sets['guest'].accuracy:.0f}%"
    # The pair picker defaults to the most frequent confusion and lists exactly those digits.
    t, p = stats.top_confusion(ada.sets["mnist"].confusion)
    expected = int(((ada.sets["mnist"].labels == t) & (ada.sets["mnist"].predicted == p)).sum())
    assert any(m.value.startswith(f"**{expected} digit") and f"true {t} read as {p}" in m.value for m in at.markdown)
    at.selectbox(key="true_ada_mnist").set_value(4).run()
    at.selectbox(key="pred_ada_mnist").set_value(9).run()
    n49 = int(((ada.sets["mnist"].labels == 4) & (ada.sets["mnist"].predicted == 9)).sum())
    assert any(m.value.startswith(f"**{n49} digit") and "true 4 read as 9" in m.value for m in at.markdown)
    tables = [t.value for t in at.table]
    assert any("optimizer" in str(t) for t in tables)
    assert at.dataframe[0].value["version"].tolist() == [1, 2]


def test_an_unknown_entry_in_the_address_says_so_in_one_sentence(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page("screens/entry.py", entry="nobody_here")
    assert [e.value for e in at.error] == ["No entry called “nobody\\_here”; choose one from the list."]
    assert at.selectbox[0].value is None and not at.header and not at.metric  # no entry opened in its place
    at.selectbox[0].set_value("dee").run()
    assert at.header[0].value == "Dee's copy" and at.query_params["entry"] == "dee" and not at.error


def test_entry_page_shows_the_failure(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.db)
    at = page("screens/entry.py", entry="broken")
    assert any("The latest evaluation failed" in e.value and "weights do not fit" in e.value for e in at.error)


@pytest.mark.slow
def test_head_to_head_page(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page("screens/head_to_head.py")
    assert at.radio[0].value == "guest"  # the set the board ranks on (revealed: the guest's), by default
    a, b = at.selectbox[0].value, at.selectbox[1].value
    duel = views.duel_view(make_engine(str(fx.revealed_db)), a, b, "guest", True)
    assert f"p = {duel.result.p_value:.3f}" in " ".join(m.value for m in at.markdown) or duel.result.p_value < 0.001
    assert f"The {len(duel.result.disagree)} digits on which they disagree" in [s.value for s in at.subheader]
    # Up front, before the figures: how many they read differently (reference: the stored predictions compared).
    differ = int((duel.pred_a != duel.pred_b).sum())
    assert at.markdown[0].value.startswith(f"**They read {differ} of the 100 digits differently**; all of them are "
                                           "below.  \nCompared on the guest's 100 handwritten digits")
    sealed = page("screens/head_to_head.py")
    use_db(monkeypatch, fx, fx.db)
    sealed = page("screens/head_to_head.py")
    assert sealed.radio[0].value == "mnist" and sealed.radio[0].options == ["MNIST test (ranked)"]


@pytest.mark.slow
def test_head_to_head_shows_every_disagreement_a_page_at_a_time(fx, monkeypatch):
    """On MNIST's 500 the weakest and the strongest entry disagree on more than 60 digits: every one of them is on
    exactly one page."""
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page("screens/head_to_head.py")
    at.selectbox[0].set_value("eve").run()
    at.selectbox[1].set_value("bob").run()
    at.radio[0].set_value("mnist").run()
    duel = views.duel_view(make_engine(str(fx.revealed_db)), "eve", "bob", "mnist", True)
    n = int((duel.pred_a != duel.pred_b).sum())
    assert n > 60, n
    pages = at.get("button_group")[0]
    assert len(pages.options) == -(-n // 60)
    seen = 0
    for number in range(1, len(pages.options) + 1):
        at.get("button_group")[0].set_value(number).run()
        start = (number - 1) * 60
        assert f"Digits {start + 1}–{min(start + 60, n)} of {n}." in at.caption[-1].value
        seen += min(start + 60, n) - start
    assert seen == n


def test_guest_gallery_page_revealed(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page("screens/guest_gallery.py")
    captions = [seen(c.value) for c in at.caption]  # the file names are escaped: what a visitor reads
    view = views.guest_view(make_engine(str(fx.revealed_db)))
    hardest = fx.guest_files[int(view.consensus["index"].iloc[0])]
    assert hardest in captions and captions.index(hardest) == 1  # right after the explanation
    assert {m.label: m.value for m in at.metric}["Entries counted"] == "4"
    assert at.markdown[0].value == ("The digits: the guest's 100 handwritten digits, read from the folder mystery/ "
                                    "that the organisers gave the evaluation (`--mystery`).")


def test_draw_page_waits_for_a_drawing(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.db)
    at = page("screens/draw.py")
    assert "Draw a digit on the canvas" in at.info[0].value


def test_password_from_streamlits_own_secrets(tmp_path, monkeypatch):
    """Streamlit's real st.secrets raises on access with no secrets.toml (the organiser controls are off) and with one
    it cannot parse (one sentence naming the file and the place, not controls off in silence). A good file gives the
    password."""
    from streamlit.runtime.secrets import Secrets
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.streamlit/secrets.toml either
    assert config.configured_password({}, Secrets()) is None
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text("admin_password = \n")  # not TOML
    with pytest.raises(ValueError, match=r"^Organiser controls are off: Streamlit could not read its secrets \(Error "
                       r"parsing secrets file at .*/\.streamlit/secrets\.toml: .*line 1.*\)\. Fix the file, or set "
                       r"LEADERBOARD_ADMIN_PASSWORD instead, then restart\.$"):
        config.configured_password({}, Secrets())
    assert config.configured_password({config.PASSWORD_ENV: "env"}, Secrets()) == "env"  # the file is not read
    (tmp_path / ".streamlit" / "secrets.toml").write_text('admin_password = "from the file"\n')
    assert config.configured_password({}, Secrets()) == "from the file"


def test_organiser_page_is_off_without_a_password(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.db)
    at = page("screens/organiser.py")
    assert "controls are off" in at.info[0].value and not at.button


def test_organiser_page_says_when_the_secrets_file_cannot_be_read(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.db)
    sentence = "Organiser controls are off: Streamlit could not read its secrets (…). Fix the file, then restart."

    def unreadable(env, secrets):
        raise ValueError(sentence)
    monkeypatch.setattr(config, "configured_password", unreadable)
    at = page("screens/organiser.py")
    assert [e.value for e in at.error] == [stats.literal(sentence)] and not at.info and not at.button  # shown as is


def test_organiser_reveals_and_disqualifies(fx, monkeypatch, tmp_path):
    db = tmp_path / "org.db"
    shutil.copy(fx.db, db)
    use_db(monkeypatch, fx, db, password="let-me-in")
    at = page("screens/organiser.py")
    at.text_input[0].input("wrong")
    at.button[0].click().run()  # a form's inputs are sent with its submit button
    assert at.error[0].value == "Wrong password."
    at.text_input[0].input("let-me-in")
    at.button[0].click().run()
    reveal = next(b for b in at.button if b.label == "Reveal the guest results")
    reveal.click().run()
    engine = make_engine(str(db))
    assert flags.is_revealed(engine)
    at.selectbox[0].set_value("bob")
    at.radio[0].set_value("disqualified")
    at.text_input[0].input("used the test labels")
    next(b for b in at.button if b.label == "Apply").click().run()
    assert moderation.decisions(engine) == {"bob": ("disqualified", "used the test labels")}
    said = [seen(s.value) for s in at.success]
    assert "bob is now disqualified: shown unranked with the reason “used the test labels”." in said, said
    form = (next(s for s in at.selectbox if s.key == "moderate_entry"), next(r for r in at.radio
            if r.key == "moderate_state"), next(t for t in at.text_input if t.key == "moderate_reason"))
    assert [w.value for w in form] == [form[0].options[0], "visible", ""]  # the form is empty again
    at.run()  # the confirmation is said once
    assert not any("now disqualified" in seen(s.value) for s in at.success)
    log = at.dataframe[-1].value
    assert log["action"].tolist()[:3] == ["disqualify", "reveal", "login"]
    assert "login-failed" in log["action"].tolist()


def organiser(fx, monkeypatch, db) -> AppTest:
    use_db(monkeypatch, fx, db, password="let-me-in")
    at = page("screens/organiser.py")
    at.text_input[0].input("let-me-in")
    at.button[0].click().run()
    return at


def test_apply_that_changes_nothing_writes_no_audit_line(fx, monkeypatch, tmp_path):
    db = tmp_path / "org.db"
    shutil.copy(fx.db, db)
    at = organiser(fx, monkeypatch, db)
    engine = make_engine(str(db))
    before = audit.audit_log(engine)
    next(b for b in at.button if b.label == "Apply").click().run()  # the defaults: first entry, visible
    assert audit.audit_log(engine) == before
    assert any(i.value.startswith("Nothing to change:") and i.value.endswith("is already visible.") for i in at.info)
    assert admin.moderate(engine, "bob", "hidden", "asked to withdraw") is True
    assert admin.moderate(engine, "bob", "hidden", " asked to withdraw ") is False  # same state, same reason
    assert admin.moderate(engine, "bob", "hidden", "another reason") is True
    assert [e["action"] for e in audit.audit_log(engine)][:2] == ["hide", "hide"]
    assert len(audit.audit_log(engine)) == len(before) + 2


def test_version_list_follows_the_chosen_entry(fx, monkeypatch, tmp_path):
    db = tmp_path / "org.db"
    shutil.copy(fx.db, db)
    at = organiser(fx, monkeypatch, db)
    def version():
        return next(s for s in at.selectbox if s.key == "override_version")

    engine = make_engine(str(db))
    for name in ("bob", "ada", "bob"):  # reference: each entry's versions' content hashes, read from the store
        next(s for s in at.selectbox if s.key == "override_entry").set_value(name).run()
        stored = versions.table(engine, name).sort_values("version", ascending=False)  # newest first
        said = [f"Version {n} · submitted {t:%Y-%m-%dT%H:%M:%S}"
                for n, t in zip(stored["version"], stored["submitted"], strict=True)]
        assert len(version().options) == len(said) and all(o.startswith(w)
                                                           for w, o in zip(said, version().options, strict=True))
    assert len(versions.table(engine, "ada")) == 2


@pytest.mark.slow
def test_organiser_names_the_guest_set_and_confirms_a_reveal_on_the_sample(fx, monkeypatch, tmp_path):
    import sqlite3
    db = tmp_path / "sample.db"
    shutil.copy(fx.db, db)
    at = organiser(fx, monkeypatch, db)
    assert any("the guest's 100 handwritten digits, read from the folder mystery/" in m.value for m in at.markdown)
    assert not next(b for b in at.button if b.label == "Reveal the guest results").disabled
    with sqlite3.connect(db) as con:
        con.execute("UPDATE datasets SET source = 'sample' WHERE kind = 'guest'")
    at = organiser(fx, monkeypatch, db)
    assert any("the shipped **sample** set of 100 digits" in m.value for m in at.markdown)
    reveal = next(b for b in at.button if b.label == "Reveal the guest results")
    assert reveal.disabled  # until the organiser confirms (AppTest, like a browser, cannot click it)
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Reveal the guest results").click().run()
    assert flags.is_revealed(make_engine(str(db)))
    use_db(monkeypatch, fx, db)
    board = page()
    assert any(w.value.startswith("Ranked by the shipped **sample** set") for w in board.warning)


def test_what_worked_page_revealed(fx, monkeypatch):
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page("screens/what_worked.py")
    assert at.title[0].value == "🧪 What worked"
    assert at.radio[0].options == ["MNIST test", "Guest digits"]
    results = guest_results(fx.revealed_db)
    at.radio[0].set_value("guest").run()
    assert not at.exception
    shown = pd.concat([f.value for f in at.dataframe])
    ok = {round(v, 6) for v in results.values() if v == v}
    assert len(shown) and {round(v, 6) for v in pd.concat([shown["best"], shown["worst"]])} <= ok


def ada_version_times(db) -> list:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from harness.store.schema import Entry, EntryVersion
    with Session(make_engine(str(db))) as session:
        return list(session.scalars(select(EntryVersion.first_seen_at).join(Entry).where(Entry.name == "ada")
                                    .order_by(EntryVersion.id)))


def rules_file(tmp_path, monkeypatch, text: str):
    path = tmp_path / "competition.toml"
    path.write_text(text)
    monkeypatch.setenv("COMPETITION_CONFIG", str(path))
    st.cache_data.clear()
    return path


@pytest.mark.slow
def test_board_ranks_the_on_time_version_and_shows_the_late_one(fx, monkeypatch, tmp_path):
    first, second = ada_version_times(fx.revealed_db)
    deadline = first + (second - first) / 2  # between Ada's two versions (naive UTC)
    rules_file(tmp_path, monkeypatch, f'title = "Winter cup"\ndeadline = {deadline.isoformat()}Z\n')
    from harness.common import competition
    engine = make_engine(str(fx.revealed_db))
    board = views.board_view(engine, True, competition.load()).board
    ada = board[board["entry"] == "ada"].set_index("status")
    assert len(ada) == 2
    late = next(s for s in ada.index if s.startswith("late: "))
    ranked = ada.loc["ok"]
    # Reference: the stored evaluations of each of Ada's versions, read directly.
    stored = (evaluations.load_evaluations(engine, evaluations.newest_evaluation_ids(engine))
              + evaluations.load_evaluations(engine, list(range(1, 20))))
    evals = {e.version.first_seen_at: e for e in stored if e.version.entry.name == "ada"}
    assert ranked["mnist_accuracy"] == next(r.accuracy for r in evals[first].results if r.dataset.kind == "mnist")
    assert ada.loc[late, "mnist_accuracy"] == next(r.accuracy for r in evals[second].results
                                                   if r.dataset.kind == "mnist")
    assert ranked["rank"] >= 1 and np.isnan(ada.loc[late, "rank"])
    # Dee no longer shares Ada's rank: Ada's on-time (weak) version is the one ranked, ordered by guest accuracy.
    row = board[board["status"] == "ok"].set_index("entry")
    assert row.loc["dee", "rank"] != row.loc["ada", "rank"]
    assert (row.loc["dee", "rank"] < row.loc["ada", "rank"]) == (row.loc["dee", "guest_accuracy"]
                                                                 > row.loc["ada", "guest_accuracy"])

    use_db(monkeypatch, fx, fx.revealed_db)
    at = page()
    assert at.title[0].value == "🏆 Winter cup"
    assert any("The deadline was" in c.value for c in at.caption)
    assert any("submitted after the deadline" in m.value for m in at.markdown)  # the "Not ranked" list
    entry = page("screens/entry.py", entry="ada")
    assert any("submitted after the deadline" in w.value for w in entry.warning)


def test_rules_can_keep_the_guest_sealed_or_reveal_it(fx, monkeypatch, tmp_path):
    rules_file(tmp_path, monkeypatch, 'reveal = "hidden"\n')
    use_db(monkeypatch, fx, fx.revealed_db)  # the organiser flag says revealed; the rules overrule it
    at = page()
    assert dashboard_fixtures.GUEST_TOKEN not in everything_shown(at)
    assert any("sealed until the reveal" in i.value for i in at.info)
    rules_file(tmp_path, monkeypatch, 'reveal = "revealed"\n')
    use_db(monkeypatch, fx, fx.db)  # flag says sealed; the rules reveal
    at = page()
    assert any("Ranked by the guest's" in s.value for s in at.success)


def test_an_invalid_rules_file_stops_the_dashboard_with_one_sentence(fx, monkeypatch, tmp_path):
    path = rules_file(tmp_path, monkeypatch, 'entries_per_member = "two"\n')
    use_db(monkeypatch, fx, fx.db)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert len(at.error) == 1 and str(path) in at.error[0].value
    assert "'entries_per_member' = 'two' must be \"one\" or \"several\"" in at.error[0].value
    assert not at.dataframe


def test_organiser_overrides_a_version_time(fx, monkeypatch, tmp_path):
    db = tmp_path / "org.db"
    shutil.copy(fx.db, db)
    first, second = ada_version_times(db)
    deadline = first + (second - first) / 2
    rules_file(tmp_path, monkeypatch, f'deadline = {deadline.isoformat()}Z\ntimezone = "UTC"\n')
    use_db(monkeypatch, fx, db, password="let-me-in")
    at = page("screens/organiser.py")
    at.text_input[0].input("let-me-in")
    at.button[0].click().run()
    form_entry = next(s for s in at.selectbox if s.key == "override_entry")
    form_entry.set_value("ada").run()
    versions_box = next(s for s in at.selectbox if s.key == "override_version")
    assert versions_box.value == 2 and versions_box.options[0].startswith("Version 2 · submitted ")  # newest first
    assert "evaluated once" in versions_box.options[0] and "(s)" not in " ".join(versions_box.options)
    versions_box.set_value(2)
    next(t for t in at.text_input if t.label.startswith("Counts as submitted")).input(
        (deadline - (second - first) / 4).isoformat(timespec="seconds"))
    next(t for t in at.text_input if t.key == "override_reason").input("upload failed before the deadline")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("(on time, overridden: upload failed before the deadline)" in seen(s.value) for s in at.success)
    from harness.common import competition
    board = views.board_view(make_engine(str(db)), False, competition.load()).board
    assert board["entry"].tolist().count("ada") == 1  # version 2 now counts; nothing late
    assert audit.audit_log(make_engine(str(db)))[0]["action"] == "version-time"


def test_versions_are_listed_newest_first_in_plain_words():
    from harness.common.competition import Competition
    from harness.store.versions import VersionInfo
    at = datetime(2027, 1, 10, 23, 30)
    rules = Competition()
    old = VersionInfo(1, 11, "a" * 64, at, at, None, False, 1, False)
    new = VersionInfo(2, 12, "b" * 64, at, at, "upload failed", True, 2, True)
    fresh = VersionInfo(3, 13, "c" * 64, at, at, None, False, 0, True)
    assert views.newest_first([old, new, fresh]) == [3, 2, 1]
    shown = rules.local(at).isoformat(timespec="seconds")
    assert views.version_text(old, rules) == (f"Version 1 · submitted {shown} (on time) · evaluated once · its "
                                              "files are no longer stored")
    assert views.version_text(new, rules) == (f"Version 2 · submitted {shown} (on time, overridden: upload failed) "
                                              "· evaluated twice")
    assert views.version_text(fresh, rules).endswith("· not evaluated yet")
    assert [views.times(n) for n in (1, 2, 3, 1200)] == ["once", "twice", "3 times", "1,200 times"]


def synthetic_board(n: int = 200, seed: int = 7) -> scoring_board.Board:
    """``n`` ranked entries on 100 guest digits, a few strong and many weak (as
    tests/harness/scoring/test_metrics.py's 200)."""
    from harness.scoring import ranking
    from harness.store.eval_sets import DatasetInfo
    from harness.store.evaluations import EvalSummary, Score
    rng = np.random.default_rng(seed)
    rows, summaries = [], {}
    for i in range(n):
        mask = rng.random(100) < 0.99 - 0.7 * (i / n) ** 0.5
        guest = Score(i, 2, int(mask.sum()), 100, mask.mean(), max(0.0, mask.mean() - 0.1), min(1.0, mask.mean() + 0.1))
        mnist = Score(i, 1, 9900 - i, 10000, (9900 - i) / 10000, 0.98, 0.995)
        name = f"entry-{i:03d}"
        summaries[i] = EvalSummary(i, name, f"Entry {i}", "Someone", None, {"command": "python -m harness.train"}, {},
                                   "h" * 12, "c", "w", 1, i, "ok", None, "cpu", datetime(2026, 3, 1), 1.0, 1000,
                                   1234.5, None, "logits", None, {"guest": guest, "mnist": mnist})
        rows.append(scoring_board.to_row(summaries[i], True, mask))
    datasets = {"mnist": DatasetInfo(1, "mnist", 10000, "mnist", None), "guest": DatasetInfo(2, "guest", 100, "g", "1")}
    return scoring_board.Board(ranking.rank(rows), summaries, datasets, "guest", True)


def test_leaderboard_page_with_two_hundred_entries(fx, monkeypatch):
    big = synthetic_board()
    level = sum(bool(r.with_leader) for r in big.rows)
    assert 1 < level < 10  # a handful level with the leader (the count itself: tests/harness/scoring/test_metrics.py)
    monkeypatch.setattr(views, "board_view", lambda engine, revealed, rules=None: views.BoardView(
        stats.build_board(big), big.datasets, big.primary, revealed, [], scoring_board.verdict(big)))
    use_db(monkeypatch, fx, fx.revealed_db)
    at = page()
    table = at.dataframe[0].value
    assert len(table) == 200 and table["state"].tolist()[:level] == ["leader"] + ["≈ #1"] * (level - 1)
    assert set(table["state"].tolist()[level:]) == {""}
    assert any(seen(m.value) == f"The guest's 100 digits cannot separate the top {level} (exact McNemar tests "
                                "against the leader, Holm-corrected, α = 0.05)." for m in at.markdown)

    def chart_rows() -> int:
        spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
        return len(spec["layer"][0]["encoding"]["y"]["sort"])

    assert chart_rows() == 20  # the top 20 by default, not a 5,000-pixel chart
    group = at.get("button_group")[0]
    assert group.options == ["top 20", "top 50", "top 100", "all"]
    group.set_value(200).run()
    assert chart_rows() == 200
    shown = stats.board_display(stats.build_board(big), True)
    rows = list(csv.DictReader(io.StringIO(stats.board_csv(shown, True))))
    assert len(rows) == 200 and rows[0]["rank"] == "1" and not [c for c in rows[0] if c.startswith("hp:")]


def test_folders_left_out_for_their_names_are_rows_saying_why(tmp_path, monkeypatch, means):
    """A folder whose name is not allowed and one holding a file whose name is not UTF-8 are never evaluated; the
    board shows a row for each, saying why, even before anything is scored."""
    import os

    from tests.entries import template_weights, write_entry
    subs = tmp_path / "submissions"
    write_entry(subs, "my entry", weights=template_weights(means))
    odd = write_entry(subs, "odd", weights=template_weights(means))
    (odd / os.fsdecode(b"notes-\xff.txt")).write_text("x")
    write_entry(subs, "fine", weights=template_weights(means))
    monkeypatch.setenv("LEADERBOARD_DB", str(tmp_path / "lb.db"))
    monkeypatch.setenv("LEADERBOARD_SUBMISSIONS", str(subs))
    st.cache_data.clear()
    at = page()
    (table,) = [d.value for d in at.dataframe if "left out because" in d.value.columns]
    assert table.to_dict("records") == [
        {"entry": "my entry", "left out because": "its folder name is not allowed: rename it using letters, digits, "
                                                  "'-', '_', '.'"},
        {"entry": "odd", "left out because": "a file's name is not valid UTF-8: rename the file"}]


def test_organiser_page_shows_the_database_size_and_what_the_versions_files_take(fx, monkeypatch, tmp_path):
    import os
    import sqlite3

    from harness import versions as versions_cli
    db = tmp_path / "org.db"
    shutil.copy(fx.db, db)
    at = organiser(fx, monkeypatch, db)
    size = sum(os.path.getsize(p) for p in (db, Path(f"{db}-wal")) if p.exists())  # what the page just measured
    with sqlite3.connect(db) as raw:  # the reference, in plain SQL: every kept file once
        files = raw.execute("SELECT sum(size) FROM file_blobs").fetchone()[0]
        kept = raw.execute("SELECT count(*) FROM version_files").fetchone()[0]
    said = next(seen(m.value) for m in at.markdown if "The database takes" in m.value)
    assert said.startswith(f"The database takes {size / 1e6:,.1f} MB (the SQLite file {db}); the versions' files "
                           f"take {files / 1e6:,.1f} MB of it ({files / size:.0%}): {kept} versions keep their files. "
                           "Every version's files are kept"), said

    rules_file(tmp_path, monkeypatch, "[storage]\nkeep_versions = 0\n")  # ada's first version is neither shown nor last
    assert versions_cli.main(["--prune", "--db", str(db)]) == 0
    at.run()
    said = next(seen(m.value) for m in at.markdown if "The database takes" in m.value)
    assert (f"{kept - 1} versions keep their files; 1 had theirs removed to save space, their results kept. Each "
            "entry keeps the files of its ranked version, of every version the board shows and of its last 0 "
            f"([storage] keep_versions = 0 in {tmp_path / 'competition.toml'})") in said, said
    next(s for s in at.selectbox if s.key == "override_entry").set_value("ada").run()
    options = next(s for s in at.selectbox if s.key == "override_version").options
    assert options[-1].startswith("Version 1 · ") and options[-1].endswith(
        " · its files were removed to save space (its results stay)") and "removed" not in options[0]


def test_an_empty_board_tells_a_member_how_to_get_on_it(fx, monkeypatch, tmp_path):
    """No evaluation stored yet: the board and an entry's page speak to a member (the Submit page), not in commands."""
    use_db(monkeypatch, fx, tmp_path / "empty.db")
    at = page()
    assert [i.value for i in at.info][-1:] == [
        "No entries scored yet. Upload one on the Submit page: it shows here as pending, then with its score "
        "(organisers: entries in `submissions/` are scored by the dashboard, or by `python -m harness.evaluate`)."]
    at = page("screens/entry.py", entry="anything")
    assert "No entries scored yet: an entry's page opens once it has a score on the Leaderboard." in \
        [i.value for i in at.info]
