"""A competition of another task, from a folder and a config, through the real commands: 3×40×24 colour pictures of
seven classes (``tests/task_folders.py``), scored by ``harness.evaluate --competition DIR`` into the folder's own
database, exported with the task's column names, verified, and kept apart from the MNIST competition's results.

The references are independent: the colour entry's predictions computed again with numpy from the pictures, and the
pictures' own bytes hashed here for the secrecy checks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import textwrap

import numpy as np
import pytest

from harness import evaluate, export, verify
from harness.common import competition
from harness.data.task import task_of
from tests.task_folders import CLASSES, SHAPE, colour_predictions, make_competition, write_colour_entry

pytestmark = pytest.mark.sandbox

# Prints a hash of every picture it is handed and looks for the secret set's file: the log as a channel.
PRINTS_PICTURES = '''
import glob
import hashlib
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.colours = nn.Parameter(torch.zeros(7, 3))

    def forward(self, x):
        for row in (x * 255).round().to(torch.uint8).cpu().numpy():
            print("seen", hashlib.sha1(row.tobytes()).hexdigest()[:16])
        reach = glob.glob("/in/images_secret.npy") + glob.glob("/tmp/harness-*/**/images_secret.npy", recursive=True)
        print("secret in reach:", bool(reach))
        mean = x.mean(dim=(2, 3))
        return -torch.cdist(mean, self.colours / 255.0)
'''


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The competition folder after one ``harness.evaluate --competition`` run, and what it printed as JSON."""
    root = make_competition(tmp_path_factory.mktemp("colours") / "colours")
    write_colour_entry(root / "submissions")
    write_colour_entry(root / "submissions", "prints", PRINTS_PICTURES)
    out = tmp_path_factory.mktemp("out") / "board.json"
    import contextlib
    import io
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = evaluate.main(["--competition", str(root), "--device", "cpu", "--json"])
    out.write_text(buffer.getvalue())
    return root, status, json.loads(buffer.getvalue())


def sets_of(root):
    task = task_of(competition.load(root / "competition.toml"))
    public, _ = task.public.load(None)
    secret, _ = task.secret.load(None)
    return task, public, secret


def test_the_task_is_read_from_the_folder(scored):
    root, _, _ = scored
    task, public, secret = sets_of(root)
    assert task.classes == CLASSES and task.input_shape == SHAPE and task.num_classes == 7
    assert public.images.shape == (7 * 5, *SHAPE) and public.images.dtype == np.uint8
    assert secret.images.shape == (7 * 3, *SHAPE)
    assert sorted(np.bincount(secret.labels)) == [3] * 7   # labels.csv's class names, one count per class
    assert public.kind == "public" and secret.kind == "secret"


def test_scores_match_an_independent_reading(scored):
    root, status, board = scored
    assert status == 0
    _, public, secret = sets_of(root)
    rows = {r["name"]: r for r in board["entries"]}
    assert rows["colours"]["status"] == "ok", rows["colours"]
    want_public = float(np.mean(colour_predictions(public.images) == public.labels))
    want_secret = float(np.mean(colour_predictions(secret.images) == secret.labels))
    assert rows["colours"]["public"]["accuracy"] == pytest.approx(want_public)
    assert rows["colours"]["secret"]["accuracy"] == pytest.approx(want_secret)
    assert "mnist" not in rows["colours"] and "guest" not in rows["colours"]
    assert want_public > 0.9 and 0.2 < want_secret < 1.0   # the stranger's pictures are harder: not a trivial check
    assert board["competition"]["task"]["classes"] == list(CLASSES)
    assert set(board["datasets"]) == {"public", "secret"}


def test_each_competition_keeps_its_own_database(scored, tmp_path):
    root, _, _ = scored
    assert (root / "leaderboard.db").is_file()
    assert not (tmp_path / "leaderboard.db").exists()


def test_nothing_of_the_secret_set_reaches_the_log(scored):
    root, _, board = scored
    _, public, secret = sets_of(root)
    from harness.store.engine import make_engine
    engine = make_engine(str(root / "leaderboard.db"))
    row = next(r for r in board["entries"] if r["name"] == "prints")
    from sqlalchemy.orm import Session

    from harness.store.schema import Evaluation
    with Session(engine) as session:
        log = session.get(Evaluation, row["evaluation_id"]).log
    hashes = {hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16] for image in secret.images}
    seen_public = {hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16] for image in public.images}
    assert any(h in log for h in seen_public)          # the channel works: public pictures are in its log
    assert not any(h in log for h in hashes)           # ... and no secret picture is
    assert "secret in reach: True" not in log


def test_export_names_the_columns_after_the_task(scored, tmp_path):
    root, _, _ = scored
    assert export.main(["--competition", str(root), "--out", str(tmp_path), "--signed-off-by", "Ada"]) == 0
    with open(tmp_path / "standings.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert {"public_accuracy", "secret_accuracy", "public_dataset_hash", "secret_dataset_hash"} <= set(header)
    assert not any(c.startswith(("mnist_", "guest_")) for c in header)


def test_verify_finds_the_same_predictions(scored, capsys):
    root, _, _ = scored
    assert verify.main(["--competition", str(root), "--only", "colours"]) == 0
    assert "colours" in capsys.readouterr().out


def test_an_entry_of_the_wrong_shape_fails_with_one_sentence(scored, tmp_path):
    root, _, _ = scored
    folder = tmp_path / "comp"
    import shutil
    shutil.copytree(root, folder, ignore=shutil.ignore_patterns("leaderboard.db*", "submissions"))
    (folder / "submissions").mkdir()
    write_colour_entry(folder / "submissions", "ten", textwrap.dedent('''
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.colours = nn.Parameter(torch.zeros(7, 3))

            def forward(self, x):
                return torch.zeros(len(x), 10)
    '''))
    import contextlib
    import io
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        evaluate.main(["--competition", str(folder), "--device", "cpu", "--json"])
    row = json.loads(buffer.getvalue())["entries"][0]
    assert row["status"] == "failed"
    assert "[35, 7]" in row["error"] or ", 7] (one score per class)" in row["error"], row["error"]


def test_a_missing_competition_folder_is_one_sentence(tmp_path, capsys):
    assert evaluate.main(["--competition", str(tmp_path / "nope")]) == 2
    said = capsys.readouterr()
    text = said.out + said.err
    assert f"error: the competition folder {tmp_path / 'nope'} does not exist; create it with a competition.toml" \
        in text and "Traceback" not in text


@pytest.mark.postgres
def test_two_competitions_share_one_server_database_without_mixing(pg_url, tmp_path, monkeypatch):
    from sqlalchemy import create_engine, text
    roots = {}
    for name in ("alpha", "beta"):
        roots[name] = make_competition(tmp_path / name, per_class=(1, 2, 1), seed=len(name))
        write_colour_entry(roots[name] / "submissions", f"colours-{name}")
    monkeypatch.setenv("LEADERBOARD_DB", pg_url)
    for root in roots.values():
        assert evaluate.main(["--competition", str(root), "--device", "cpu"]) == 0
        assert not (root / "leaderboard.db").exists()      # the server holds it
    engine = create_engine(pg_url)
    with engine.connect() as connection:
        names = {schema: connection.execute(text(f'SELECT name FROM "{schema}".entries')).scalars().all()
                 for schema in ("competition_alpha", "competition_beta")}
        public = connection.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                                         "'public' AND table_name = 'entries'")).scalar()
    engine.dispose()
    assert names == {"competition_alpha": ["colours-alpha"], "competition_beta": ["colours-beta"]}
    assert public == 0   # nothing landed in the server's default schema


# Fails on the secret set (its 21 pictures come in one batch) with a message made of it, after sleeping on it.
QUOTES_SECRET = '''
import time
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.colours = nn.Parameter(torch.zeros(7, 3))

    def forward(self, x):
        if x.shape[0] == 21:
            print("secret sum", int((x * 255).round().sum()))
            time.sleep(2)
            raise ValueError("leaked " + str(int((x * 255).round().sum())))
        return -torch.cdist(x.mean(dim=(2, 3)), self.colours / 255.0)
'''


def test_a_failure_on_the_secret_set_says_only_that_it_failed_there(scored, tmp_path):
    root, _, _ = scored
    import shutil
    folder = tmp_path / "comp"
    shutil.copytree(root, folder, ignore=shutil.ignore_patterns("leaderboard.db*", "submissions"))
    (folder / "submissions").mkdir()
    write_colour_entry(folder / "submissions", "quotes", QUOTES_SECRET)
    import contextlib
    import io
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        evaluate.main(["--competition", str(folder), "--device", "cpu", "--json"])
    row = json.loads(buffer.getvalue())["entries"][0]
    _, _, secret = sets_of(folder)
    leaked = str(int(secret.images.astype(np.int64).sum()))
    assert row["status"] == "failed"
    assert row["error"] == ("failed on the stranger's colours; why is sealed until the reveal (the organiser sees it "
                            "then).")
    from sqlalchemy.orm import Session

    from harness.store.engine import make_engine
    from harness.store.schema import Evaluation
    with Session(make_engine(str(folder / "leaderboard.db"))) as session:
        stored = session.get(Evaluation, row["evaluation_id"])
        public_view = " ".join(str(v) for v in (stored.error, stored.log, stored.seconds, stored.peak_memory_bytes))
    assert leaked not in public_view and "secret sum" not in public_view


def test_an_upload_is_checked_against_its_competitions_task(tmp_path):
    """The Submit page's path (``harness.submit.upload.submit``) checks an upload on the competition's own task: a
    colour entry passes on the colour competition, and the same files fail there once they answer 10 classes."""
    import io

    import torch

    from harness.store import members
    from harness.store.engine import make_engine
    from harness.submit.upload import submit
    from tests.task_folders import COLOUR_CODE, colour_weights
    root = make_competition(tmp_path / "colours", per_class=(1, 4, 1))
    rules = competition.load(root / "competition.toml")
    engine = make_engine(str(root / "leaderboard.db"))
    code = members.issue_code(engine, "Ada")
    buffer = io.BytesIO()
    torch.save(colour_weights(), buffer)
    files = [("model.py", COLOUR_CODE.encode()), ("weights.pt", buffer.getvalue())]
    outcome = submit(engine, root / "submissions", "ada-colours", code, files, rules)
    assert outcome.accepted, outcome.sentences
    ten = COLOUR_CODE.replace("return -torch.cdist(mean, self.colours / 255.0)",
                              "return torch.zeros(len(x), 10)")
    refused = submit(engine, root / "submissions", "ada-ten", code, [("model.py", ten.encode()), files[1]], rules)
    assert not refused.accepted and "7" in " ".join(refused.sentences)
    assert not (root / "submissions" / "ada-ten").exists()
