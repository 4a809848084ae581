"""Several competitions in one dashboard, and a dashboard that reads the competition's task: the competition list,
the archive of signed standings, the sets' and classes' names, colour pictures, and the pages of a [task]
competition under AppTest against a really scored database (tests/task_fixtures.py)."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from harness import export
from harness.common import competition
from leaderboard import competitions, config, figures, stats, views
from leaderboard.naming import names_of
from tests import task_fixtures
from tests.conftest import REPO

APP = str(REPO / "leaderboard" / "app.py")
SHAPES = REPO / "competitions" / "shapes"


def folder_with_rules(path, text: str = 'title = "A test"\n'):
    path.mkdir(parents=True, exist_ok=True)
    (path / "competition.toml").write_text(text)
    return path


# --- the competition list ---------------------------------------------------------------------------------------

def test_folders_come_from_the_command_line_then_the_list_then_the_current_one_each_once(tmp_path):
    a, b, c = (folder_with_rules(tmp_path / n) for n in ("a", "b", "c"))
    env = {competitions.LIST_ENV: os.pathsep.join([str(b), "", str(c)]), competition.FOLDER_ENV: str(a)}
    assert competitions.named_folders(["--competition", str(a), f"--competition={b}"], env) == [a, b, c]
    served = competitions.served(["--competition", str(a)], env)
    assert [s.name for s in served] == ["a", "b", "c"]
    assert served[1].config == b / "competition.toml" and served[1].database == str(b / "leaderboard.db")


def test_without_any_folder_the_dashboard_serves_the_repository_root_as_before():
    [only] = competitions.served([], {})
    assert only.folder is None and only.config is None and only.database is None
    legacy = config.settings({"LEADERBOARD_DB": "x.db"}, only)
    assert legacy == config.settings({"LEADERBOARD_DB": "x.db"})
    assert competitions.chosen([only], None, {}) == (only, False)


def test_each_folder_reads_the_database_the_commands_write(tmp_path):
    """The dashboard and ``harness.evaluate --competition DIR`` agree: DIR/leaderboard.db, whatever an SQLite
    $LEADERBOARD_DB says (another competition's); on a server, the competition's own schema."""
    a, b = folder_with_rules(tmp_path / "a"), folder_with_rules(tmp_path / "b")
    env = {"LEADERBOARD_DB": str(tmp_path / "elsewhere.db")}
    assert competitions.served(["--competition", str(a)], env)[0].database == str(a / "leaderboard.db")
    both = competitions.served(["--competition", str(a), "--competition", str(b)], env)
    assert [s.database for s in both] == [str(a / "leaderboard.db"), str(b / "leaderboard.db")]
    import argparse
    args = argparse.Namespace(competition=str(a), config=None, db=None)
    server = {"LEADERBOARD_DB": "postgresql+psycopg://u:p@host/club"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEADERBOARD_DB", server["LEADERBOARD_DB"])
        competition.settle(args)
    assert competitions.served(["--competition", str(a)], server)[0].database == args.db
    assert args.db.endswith("?options=-csearch_path%3Dcompetition_a")


def test_a_competition_folder_sets_every_path_of_the_dashboard(tmp_path):
    shapes = competitions.served(["--competition", str(SHAPES)], {})[0]
    rules = competition.load(shapes.config)
    s = config.settings({}, shapes, rules)
    assert s.db_url == f"sqlite:///{SHAPES / 'leaderboard.db'}" or s.db_url.endswith(str(SHAPES / "leaderboard.db"))
    assert (s.submissions, s.mystery, s.jobs, s.folder) == (SHAPES / "submissions", SHAPES / "secret",
                                                            SHAPES / ".leaderboard-jobs", SHAPES)


@pytest.mark.parametrize("argv, said", [
    (["--competition"], "--competition needs a folder after it"),
    (["--competition", "--other"], "--competition needs a folder after it"),
    (["--competition", "/no/such/place"], "the competition folder /no/such/place does not exist"),
])
def test_a_bad_competition_list_is_one_sentence(argv, said):
    with pytest.raises(competitions.CompetitionListError, match=said):
        competitions.served(argv, {})


def test_a_folder_without_rules_or_two_folders_named_alike_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(competitions.CompetitionListError, match="has no competition.toml; give the dashboard"):
        competitions.served(["--competition", str(tmp_path / "empty")], {})
    one, two = folder_with_rules(tmp_path / "x" / "same"), folder_with_rules(tmp_path / "y" / "same")
    with pytest.raises(competitions.CompetitionListError, match="two competition folders are named 'same'"):
        competitions.served(["--competition", str(one), "--competition", str(two)], {})


def test_the_address_picks_the_competition_else_the_current_one(tmp_path):
    a, b = folder_with_rules(tmp_path / "a"), folder_with_rules(tmp_path / "b")
    served = competitions.served(["--competition", str(a), "--competition", str(b)], {})
    assert competitions.chosen(served, "b", {}) == (served[1], False)
    assert competitions.chosen(served, None, {}) == (served[0], False)
    assert competitions.chosen(served, None, {competition.FOLDER_ENV: str(b)}) == (served[1], False)
    assert competitions.chosen(served, "nope", {}) == (served[0], True)


def test_draw_only_where_one_can_draw_and_an_archive_changes_nothing():
    assert competitions.offered_pages(True, False) == list(competitions.PAGES)
    assert "draw" not in competitions.offered_pages(False, False)
    assert competitions.offered_pages(True, True) == ["leaderboard", "entry", "head-to-head", "guest-gallery",
                                                      "what-worked"]


# --- the archive --------------------------------------------------------------------------------------------------

ROWS = [{"rank": 1, "standing": "ranked", "name": "ada", "display_name": "Ada's", "author": "Ada",
         "guest_accuracy": 0.96, "mnist_accuracy": 0.9912},
        {"rank": None, "standing": "disqualified", "name": "bob", "display_name": "Bob's", "author": "Bob",
         "guest_accuracy": None, "mnist_accuracy": 0.5}]


def signed_folder(tmp_path, deadline: str):
    folder = folder_with_rules(tmp_path / "old", f'title = "Old"\ndeadline = "{deadline}"\n')
    rows = [dict.fromkeys(export.COLUMNS) | r for r in ROWS]
    export.write(rows, folder / "standings", "Grace", True, competition.load(folder / "competition.toml"))
    return competitions.served(["--competition", str(folder)], {})[0]


def test_signed_standings_after_the_deadline_make_an_archive(tmp_path):
    served = signed_folder(tmp_path, "2020-01-01T00:00:00+00:00")
    rules = competition.load(served.config)
    signed = competitions.archive(served, rules)
    assert signed is not None and signed.by == "Grace" and signed.revealed and signed.csv_matches
    table = views.archive_table(signed, names_of(rules))
    assert table.columns.tolist() == ["#", "Entry", "Author", "Guest accuracy", "MNIST accuracy", "Standing"]
    assert table.iloc[0].tolist() == [1, "Ada's", "Ada", "96.00%", "99.12%", "ranked"]
    assert table.iloc[1].tolist() == ["", "Bob's", "Bob", "", "50.00%", "disqualified"]
    assert "signed off by Grace" in views.archive_text(signed, rules)
    (served.folder / "standings" / "standings.csv").write_text("rank\n1\n")  # changed after signing
    assert not competitions.archive(served, rules).csv_matches


def test_before_the_deadline_signed_standings_are_no_archive(tmp_path):
    served = signed_folder(tmp_path, "2999-01-01T00:00:00+00:00")
    rules = competition.load(served.config)
    assert competitions.archive(served, rules) is None
    assert competitions.archive(served, rules, datetime(3000, 1, 1)) is not None
    assert competitions.archive(competitions.Served("", None), rules, datetime(3000, 1, 1)) is None


def test_unreadable_signed_standings_say_how_to_write_them_again(tmp_path):
    served = signed_folder(tmp_path, "2020-01-01T00:00:00+00:00")
    (served.folder / "standings" / "standings.json").write_text(json.dumps({"entries": []}))
    with pytest.raises(competitions.CompetitionListError, match="cannot be read .*python -m harness.export"):
        competitions.archive(served, competition.load(served.config))


# --- names of sets and classes, pictures ---------------------------------------------------------------------------

def test_the_mnist_competition_keeps_its_words_and_a_task_takes_its_own():
    mnist = names_of(competition.Competition())
    assert (mnist.public, mnist.secret, mnist.public_score, mnist.secret_score, mnist.item) == (
        "MNIST test", "Guest digits", "MNIST", "Guest", "digit")
    assert mnist.axis_classes is None and mnist.label(7) == "7" and mnist.drawable and mnist.is_mnist
    shapes = names_of(competition.load(SHAPES / "competition.toml"))
    assert (shapes.public, shapes.secret, shapes.public_kind, shapes.secret_kind) == (
        "Shapes test", "The stranger's shapes", "public", "secret")
    assert shapes.axis_classes == ["circle", "square", "triangle", "star", "cross"] and shapes.label(3) == "star"
    assert not shapes.drawable and not shapes.digits and shapes.item == "picture"
    assert shapes.role("secret") == "guest" and shapes.kind("mnist") == "public"
    assert (mnist.column("guest"), mnist.column("mnist"), shapes.column("secret")) == ("Guest", "MNIST", "Accuracy")


def test_a_colour_picture_is_enlarged_as_height_width_channels():
    image = np.arange(3 * 2 * 4, dtype=np.uint8).reshape(3, 2, 4)  # [C, H, W] as the sets store it
    big = figures.digit_picture(image, 3)
    assert big.shape == (6, 12, 3) and big.dtype == np.uint8
    for y, x in [(0, 0), (5, 11), (3, 7)]:  # each pixel is the source's (y // 3, x // 3) with its three channels
        assert big[y, x].tolist() == [image[c, y // 3, x // 3] for c in range(3)]
    grey = figures.digit_picture(np.full((1, 2, 2), 0.5), 2)
    assert grey.shape == (4, 4) and (grey == 128).all()
    with pytest.raises(ValueError, match=r"neither grey \[H, W\] nor \[C, H, W\] with 1 or 3 channels"):
        figures.digit_picture(np.zeros((5, 2, 2)))


def test_class_names_label_the_confusion_matrix_and_the_recall_axis():
    confusion = np.array([[3, 1, 0], [0, 2, 2], [1, 0, 4]])
    df = figures.confusion_frame(confusion, ["circle", "star", "cross"])
    cell = df[(df["true"] == 1) & (df["predicted"] == 2)].iloc[0]
    assert (cell["true_name"], cell["predicted_name"], cell["count"], cell["share"]) == ("star", "cross", 2, 0.5)
    spec = json.dumps(figures.confusion_chart(confusion, "t", classes=["circle", "star", "cross"],
                                              item="picture").to_dict())
    assert '[\\"circle\\", \\"star\\", \\"cross\\"][datum.value]' in spec and "true class" in spec
    recall = json.dumps(figures.recall_chart(np.array([0.75, 0.5, 0.8]), None, ["circle", "star", "cross"]).to_dict())
    assert "true class" in recall and "circle" in recall
    plain = json.dumps(figures.confusion_chart(np.eye(10, dtype=int), "t").to_dict())
    assert "labelExpr" not in plain and "true digit" in plain  # the MNIST chart as before


def test_consensus_counts_the_tasks_classes():
    labels = np.array([4, 0])
    predicted = np.array([[4, 0], [3, 0], [4, 1]])  # three entries
    c = stats.consensus(labels, predicted, 5).set_index("index")
    assert c.loc[0, "right"] == 2 and c.loc[0, "consensus"] == 4 and c.loc[1, "consensus_share"] == pytest.approx(2 / 3)


# --- a [task] competition's pages --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return task_fixtures.build(tmp_path_factory.mktemp("tasks") / "shapes-small")


def open_page(monkeypatch, folder, path: str | None = None, **query) -> AppTest:
    """The dashboard serving ``folder`` (None: the competitions already in $LEADERBOARD_COMPETITIONS)."""
    if folder is not None:
        monkeypatch.setenv(competitions.LIST_ENV, str(folder))
    for name in ("LEADERBOARD_DB", competition.FOLDER_ENV, config.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADERBOARD_EVALUATE", "off")
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if path:
        at.switch_page(path)
        at.query_params.update(query)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_task_board_is_ranked_on_its_secret_set_and_named_by_its_titles(shapes, monkeypatch):
    at = open_page(monkeypatch, shapes.folder)
    text = " ".join(m.value for m in at.markdown) + " ".join(e.value for e in at.success) + " ".join(
        i.value for i in at.info)
    assert "Shapes: who reads the stranger's drawings best?" in at.title[0].value
    assert "Ranked by the stranger's shapes: 200 pictures. Then by Shapes test." in text
    assert "The stranger's shapes accuracy with its 95% interval" in text
    assert "MNIST" not in text and "guest" not in text.lower()
    board = at.dataframe[0].value
    assert board["score"].str.endswith(")").all() and len(board) == 3


def test_a_task_entry_names_its_classes_and_its_sets(shapes, monkeypatch):
    at = open_page(monkeypatch, shapes.folder, "screens/entry.py", entry="circle-first")
    assert [t.label for t in at.tabs][:2] == ["Shapes test", "The stranger's shapes"]
    labels = [m.label for m in at.metric]
    assert labels[:2] == ["Shapes test accuracy ↑", "The stranger's shapes accuracy ↑"]
    true_box = at.selectbox(key="true_circle-first_public")
    assert true_box.label == "True class" and true_box.options == ["circle", "square", "triangle", "star", "cross"]
    assert any("Misread pictures" in s.value for s in at.subheader)



def test_a_tasks_archive_reads_the_columns_export_names_by_its_sets(tmp_path):
    rules = competition.load(SHAPES / "competition.toml")
    row = {export.named(c, rules): None for c in export.COLUMNS} | {
        "rank": 1, "standing": "ranked", "name": "a", "display_name": "A", "author": "Ann",
        "public_accuracy": 0.9, "secret_accuracy": 0.755}
    export.write([row], tmp_path / "standings", "Grace", True, rules)
    signed = competitions.signed_standings(tmp_path)
    table = views.archive_table(signed, names_of(rules))
    assert table.columns.tolist() == ["#", "Entry", "Author", "The stranger's shapes accuracy",
                                      "Shapes test accuracy", "Standing"]
    assert table.iloc[0].tolist() == [1, "A", "Ann", "75.50%", "90.00%", "ranked"]


@pytest.fixture(scope="module")
def archived(shapes, tmp_path_factory):
    """The shapes competition again, its deadline passed and its standings signed off with harness.export."""
    folder = tmp_path_factory.mktemp("old") / "shapes-2020"
    shutil.copytree(shapes.folder, folder)
    toml = (folder / "competition.toml").read_text()
    deadline = (datetime.now(UTC) + timedelta(seconds=2)).isoformat(timespec="seconds")  # after every version
    (folder / "competition.toml").write_text(toml.replace('reveal = "organiser"',
                                                          f'reveal = "organiser"\ndeadline = "{deadline}"'))
    time.sleep(3)  # then past
    assert export.main(["--competition", str(folder), "--out", str(folder / "standings"), "--signed-off-by",
                        "Grace Hopper"]) == 0
    return folder


def test_the_sidebar_switches_competitions_and_an_archive_shows_its_signed_standings(shapes, archived, monkeypatch):
    monkeypatch.setenv(competitions.LIST_ENV, os.pathsep.join([str(shapes.folder), str(archived)]))
    at = open_page(monkeypatch, None)
    assert at.title[0].value == "🏆 Shapes: who reads the stranger's drawings best?"
    assert at.query_params["competition"] == ["shapes-small"] or at.query_params["competition"] == "shapes-small"
    at.sidebar.radio[0].set_value("shapes-2020").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "signed off by Grace Hopper" in at.info[0].value
    assert "This competition is over" in at.info[0].value
    table = at.dataframe[0].value
    assert table.columns.tolist() == ["#", "Entry", "Author", "The stranger's shapes accuracy",
                                      "Shapes test accuracy", "Standing"]
    live = open_page(monkeypatch, None).dataframe[0].value  # the live board of the same results, ranked alike
    assert table["Entry"].tolist() == live["display_name"].tolist()  # ranked alike, on time
    assert table["#"].tolist() == [1, 2, 3] and set(table["Standing"]) == {"ranked"}
    assert not at.button and not at.text_input  # nothing to change here


def test_the_board_csv_names_a_tasks_score_columns_after_its_sets():
    import pandas as pd

    from leaderboard import stats
    board = pd.DataFrame([{"rank": 1, "display_name": "a", "entry": "a", "author": "x", "guest_accuracy": 0.5,
                           "mnist_accuracy": 0.75, "status": "ok"}])
    header = stats.board_csv(board, True, ("Shapes test", "The stranger's shapes")).splitlines()[0].split(",")
    assert "Shapes test accuracy" in header and "The stranger's shapes accuracy" in header
    assert not any("mnist" in h or "guest" in h for h in header)
    assert "mnist accuracy" in stats.board_csv(board, True).splitlines()[0]  # the warm-up's as before


def test_the_dashboards_scorer_never_settles_into_another_competition(tmp_path):
    """$LEADERBOARD_COMPETITION names the dashboard's opening competition; the watcher of another one it serves is
    handed that one's paths and must not be moved into the opening one's folder by the variable."""
    from leaderboard import scorer
    a = folder_with_rules(tmp_path / "a")
    shapes = competitions.served(["--competition", str(SHAPES)], {})[0]
    settings = config.settings({}, shapes, competition.load(shapes.config))
    env = scorer.child_env(settings, {competition.FOLDER_ENV: str(a), "PATH": os.environ.get("PATH", "")})
    assert competition.FOLDER_ENV not in env and env["LEADERBOARD_DB"] == settings.db_url
    argv = scorer.command(settings, 1, env)
    assert argv[argv.index("--config") + 1] == str(SHAPES / "competition.toml")
