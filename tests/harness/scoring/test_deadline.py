"""The deadline end to end: late versions shown but not ranked, the on-time version re-scored from its stored
files when the guest digits arrive later, and the organiser's override of a version's time."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import evaluate, export, versions
from harness.data.guest import load_guest_set
from harness.store.engine import make_engine
from harness.store.schema import AuditLog, Dataset, Evaluation, Result, unpack
from tests.conftest import evaluate_args, semeion_folder
from tests.entries import class_means, template_predictions, template_weights, write_entry

pytestmark = pytest.mark.slow


def guest_folder(root, offset):
    """Three Semeion digits per class, starting at ``offset`` (a different offset: a different guest set)."""
    source = semeion_folder()
    for label in range(10):
        (root / str(label)).mkdir(parents=True)
        for path in sorted((source / str(label)).glob("*.png"))[offset:offset + 3]:
            shutil.copy(path, root / str(label) / path.name)
    return root


def run(tmp_path, mnist_dir, mystery, config):
    return evaluate_args(tmp_path / "subs", mnist_dir, mystery, tmp_path / "lb.db", "--config", str(config), "--json")


def board(capsys, args) -> dict:
    capsys.readouterr()
    assert evaluate.main(args) == 0
    document = json.loads(capsys.readouterr().out)
    return {(e["name"], e["standing"]): e for e in document["entries"]}


def test_late_versions_rescoring_and_override(tmp_path, mnist_dir, means, capsys):
    from harness.data import mnist
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    weak = class_means(train.images[:30], train.labels[:30])
    subs = tmp_path / "subs"
    write_entry(subs, "ada", weights=template_weights(means), toml='author = "Ada"\n')
    write_entry(subs, "bob", weights=template_weights(weak), toml='author = "Bob"\n')
    open_rules = tmp_path / "open.toml"
    open_rules.write_text('title = "Winter cup"\n')
    first_guest = guest_folder(tmp_path / "guest1", 0)

    before = board(capsys, run(tmp_path, mnist_dir, first_guest, open_rules))
    assert set(before) == {("ada", "ranked"), ("bob", "ranked")}
    on_time_mnist = before["ada", "ranked"]["mnist"]["accuracy"]

    closed = tmp_path / "closed.toml"
    deadline = datetime.now(UTC)
    closed.write_text(f'title = "Winter cup"\ndeadline = {deadline.isoformat(timespec="microseconds")}\n')
    write_entry(subs, "ada", weights=template_weights(weak), toml='author = "Ada"\n')  # a change after the deadline
    after = board(capsys, run(tmp_path, mnist_dir, first_guest, closed))
    assert set(after) == {("ada", "ranked"), ("ada", "late"), ("bob", "ranked")}
    assert after["ada", "ranked"]["mnist"]["accuracy"] == on_time_mnist          # the on-time score stands
    assert after["ada", "late"]["mnist"]["accuracy"] == after["bob", "ranked"]["mnist"]["accuracy"]  # = weak weights
    assert after["ada", "late"]["rank"] is None and after["ada", "ranked"]["rank"] == 1
    assert after["ada", "ranked"]["version"] == before["ada", "ranked"]["version"]

    # The guest's digits change after the deadline: ada's on-time version is re-scored from its stored files,
    # although the folder now holds the late version.
    second_guest = guest_folder(tmp_path / "guest2", 3)
    final = board(capsys, run(tmp_path, mnist_dir, second_guest, closed))
    ranked = final["ada", "ranked"]
    assert ranked["version"] == before["ada", "ranked"]["version"]
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    guest = load_guest_set(second_guest)
    with Session(engine) as session:
        ev = session.get(Evaluation, ranked["evaluation_id"])
        result = session.scalar(select(Result).join(Dataset)
                                .where(Result.evaluation_id == ev.id, Dataset.kind == "guest"))
        assert result.dataset.content_hash == guest.content_hash
        predicted = unpack(result.predicted)
        seen = unpack(result.dataset.images)
    np.testing.assert_array_equal(predicted, template_predictions(seen, means))  # the ON-TIME weights' answers
    assert ranked["guest"]["total"] == len(guest.labels) == 30

    # The organiser accepts ada's second version as on time (its upload failed before the deadline).
    listing = capsys.readouterr()
    assert versions.main(["ada", "--db", str(tmp_path / "lb.db"), "--config", str(closed)]) == 0
    listing = capsys.readouterr().out
    assert "(on time)" in listing and "(late)" in listing
    assert versions.main(["ada", "--db", str(tmp_path / "lb.db"), "--config", str(closed), "--set-time", "2",
                          deadline.isoformat(), "--reason", "upload failed at 23:50"]) == 0  # at it = on time
    overridden = board(capsys, run(tmp_path, mnist_dir, second_guest, closed))
    assert set(overridden) == {("ada", "ranked"), ("bob", "ranked")}
    assert overridden["ada", "ranked"]["mnist"]["accuracy"] == overridden["bob", "ranked"]["mnist"]["accuracy"]
    with Session(engine) as session:
        log = session.scalars(select(AuditLog).where(AuditLog.entry_name == "ada")).all()
    assert len(log) == 1 and "upload failed at 23:50" in log[0].detail

    # The signed-off export agrees with the board and says which time was overridden and why.
    export.main(["--db", str(tmp_path / "lb.db"), "--config", str(closed), "--out", str(tmp_path / "out"),
                 "--signed-off-by", "Organiser"])
    record = json.loads((tmp_path / "out" / "standings.json").read_text())
    ada = [e for e in record["entries"] if e["name"] == "ada"]
    assert len(ada) == 1 and ada[0]["submitted_at_overridden"] and ada[0]["override_reason"] == "upload failed at 23:50"
    assert record["competition"]["deadline"] == deadline.isoformat(timespec="microseconds")


def test_override_needs_a_reason_and_a_known_version(tmp_path, mnist_dir, means, capsys):
    write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    rules = tmp_path / "rules.toml"
    rules.write_text("")
    mystery = tmp_path / "empty"
    mystery.mkdir()
    evaluate.main(run(tmp_path, mnist_dir, mystery, rules))
    capsys.readouterr()
    db = str(tmp_path / "lb.db")
    assert versions.main(["ada", "--db", db, "--set-time", "1", "2027-01-01T00:00:00Z"]) == 2
    assert "an override needs a reason" in capsys.readouterr().err
    assert versions.main(["ada", "--db", db, "--set-time", "7", "2027-01-01T00:00:00Z", "--reason", "x"]) == 2
    assert "give a number from 1 to 1" in capsys.readouterr().err
    assert versions.main(["ada", "--db", db, "--set-time", "1", "tomorrow", "--reason", "x"]) == 2
    assert "is not a date and time" in capsys.readouterr().err
    assert versions.main(["zed", "--db", db]) == 2
    assert "no entry named 'zed'" in capsys.readouterr().err
