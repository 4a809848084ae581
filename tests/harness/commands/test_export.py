"""``python -m harness.export``: signed-off standings with their hashes; sealed guest results stay out."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from harness import evaluate, export
from harness.store import flags, moderation
from harness.store.engine import make_engine
from tests.conftest import evaluate_args
from tests.entries import class_means, template_predictions, template_weights, write_entry


def test_export_sealed_then_revealed(tmp_path, db_url, means, mnist_dir, mnist_test, capsys):
    subs = tmp_path / "subs"
    write_entry(subs, "alpha", weights=template_weights(means), toml='author = "Ada"\n')
    write_entry(subs, "broken", weights={})
    db = db_url
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db)) == 0
    assert export.main(["--db", db, "--out", str(tmp_path / "sealed"), "--signed-off-by", "Org"]) == 0
    assert "guest results sealed" in capsys.readouterr().out
    with open(tmp_path / "sealed" / "standings.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["alpha", "broken"]
    expected = int((template_predictions(mnist_test.images, means) == mnist_test.labels).sum())
    assert int(rows[0]["mnist_correct"]) == expected and rows[0]["rank"] == "1"
    assert rows[0]["guest_accuracy"] == "" and rows[0]["guest_dataset_hash"] == ""
    assert len(rows[0]["weights_hash"]) == 64 and rows[0]["harness_version"] and rows[0]["torch_version"]
    assert rows[1]["status"] == "failed" and "missing keys" in rows[1]["error"]
    record = json.loads((tmp_path / "sealed" / "standings.json").read_text())
    assert record["signed_off_by"] == "Org" and record["guest_revealed"] is False
    assert record["csv_sha256"] == hashlib.sha256((tmp_path / "sealed" / "standings.csv").read_bytes()).hexdigest()

    flags.set_flag(make_engine(db), flags.GUEST_REVEALED, "true")
    assert export.main(["--db", db, "--out", str(tmp_path / "final"), "--signed-off-by", "Org"]) == 0
    with open(tmp_path / "final" / "standings.csv") as f:
        final = list(csv.DictReader(f))
    assert final[0]["guest_total"] == "100" and len(final[0]["guest_dataset_hash"]) == 64


def test_export_of_an_empty_database(tmp_path, db_url, capsys):
    assert export.main(["--db", db_url, "--out", str(tmp_path / "x"), "--signed-off-by", "Org"]) == 2
    assert "holds no evaluations yet" in capsys.readouterr().err


@pytest.mark.slow
def test_moderation_reaches_the_terminal_the_json_and_the_export(tmp_path, db_url, means, mnist_dir, capsys):
    """Decided once in harness.scoring.standings: the disqualified entry is unranked everywhere, the hidden one
    absent."""
    from harness.data import mnist
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    subs = tmp_path / "subs"
    write_entry(subs, "cheat", weights=template_weights(means))
    write_entry(subs, "honest", weights=template_weights(class_means(train.images[:100], train.labels[:100])))
    write_entry(subs, "withdrawn", weights=template_weights(class_means(train.images[:30], train.labels[:30])))
    argv = evaluate_args(subs, mnist_dir, tmp_path / "none", db_url, "--json")
    assert evaluate.main(argv) == 0
    before = {e["name"]: e for e in json.loads(capsys.readouterr().out)["entries"]}
    assert sorted(e["rank"] for e in before.values()) == [1, 2, 3]  # all three ranked until the organiser acts

    engine = make_engine(db_url)
    moderation.set_moderation(engine, "cheat", "disqualified", "trained on the test set")
    moderation.set_moderation(engine, "withdrawn", "hidden", "asked to withdraw")
    assert evaluate.main(argv) == 0
    out, err = capsys.readouterr()
    entries = json.loads(out)["entries"]
    assert [(e["name"], e["rank"], e["standing"]) for e in entries] == [("honest", 1, "ranked"),
                                                                       ("cheat", None, "disqualified")]
    assert entries[1]["note"] == "trained on the test set" and entries[1]["with_leader"] is None
    terminal = " ".join(err.split())
    assert "│ DQ │ cheat" in terminal and "cheat (disqualified by the organisers): trained on the test set." in terminal
    assert "│ withdrawn" not in terminal and "withdrawn (" not in terminal  # no row, no note (progress may name it)

    flags.set_flag(engine, flags.GUEST_REVEALED, "true")
    assert export.main(["--db", db_url, "--out", str(tmp_path / "out"), "--signed-off-by", "Org"]) == 0
    with open(tmp_path / "out" / "standings.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["rank"], r["standing"], r["note"]) for r in rows] == [
        ("honest", "1", "ranked", ""), ("cheat", "", "disqualified", "trained on the test set")]
    record = json.loads((tmp_path / "out" / "standings.json").read_text())
    assert [(e["name"], e["rank"]) for e in record["entries"]] == [("honest", 1), ("cheat", None)]
    engine.dispose()
