"""'What worked' report: hyperparameters beside accuracy, grouped; sealed guest results stay out."""

from __future__ import annotations

from datetime import datetime

import pytest

from harness import insights as cli
from harness.scoring import insights
from harness.store.evaluations import EvalSummary, Score


def summary(name, mnist, guest=None, status="ok", **hp) -> EvalSummary:
    scores = {"mnist": Score(1, 1, int(mnist * 100), 100, mnist, 0, 1)}
    if guest is not None:
        scores["guest"] = Score(2, 2, int(guest * 100), 100, guest, 0, 1)
    return EvalSummary(evaluation_id=1, entry_name=name, display_name=name, author="a", description=None,
                       hyperparameters=hp, constructor={}, content_hash="h", code_hash="c", weights_hash="w",
                       weights_bytes=1, version_id=1, status=status, error=None, device="cpu",
                       started_at=datetime(2026, 1, 1), seconds=1.0, params=1000, images_per_second=1.0,
                       peak_memory_bytes=1, output_kind="logits", log=None, scores=scores)


SUMMARIES = [
    summary("a", 0.99, 0.90, optimizer="Adam", epochs=5, augment=["affine"]),
    summary("b", 0.97, 0.80, optimizer="adam", epochs=3, augment=[]),
    summary("c", 0.95, 0.70, optimizer="sgd", epochs=5),
    summary("d", 0.50, 0.10, status="failed", optimizer="sgd"),
    summary("e", 0.98, None),  # a member who recorded no hyperparameters
]


def test_frame_and_groups_match_hand_computed_values():
    df = insights.frame(SUMMARIES, include_guest=True)
    assert list(df["entry"]) == ["a", "b", "c", "e"]  # the failed entry is left out
    assert list(df["augmented"].fillna("?")) == ["with", "without", "?", "?"]
    by_opt = insights.by_factor(df, "optimizer", "mnist").set_index("optimizer")
    assert by_opt.loc["adam", "entries"] == 2 and by_opt.loc["adam", "mean"] == pytest.approx(0.98)
    assert by_opt.loc["sgd", "best"] == pytest.approx(0.95)
    by_epochs = insights.by_factor(df, "epochs", "guest").set_index("epochs")
    assert by_epochs.loc[5, "median"] == pytest.approx(0.80) and by_epochs.loc[3, "worst"] == pytest.approx(0.80)


def test_sealed_frame_has_no_guest_column():
    df = insights.frame(SUMMARIES, include_guest=False)
    assert "guest" not in df.columns
    assert set(df.columns) >= {"entry", "mnist", "optimizer", "epochs", "augmented", "params"}


def test_charts_have_axis_titles():
    df = insights.frame(SUMMARIES, include_guest=True)
    spec = insights.box_chart(df, "optimizer").to_dict()
    assert spec["layer"][0]["encoding"]["y"]["title"] == "accuracy (higher is better)"  # the set: in the title
    assert spec["title"] == "MNIST test accuracy by optimizer"
    assert insights.size_chart(df).to_dict()["encoding"]["x"]["title"] == "Parameters (log scale)"


def test_cli_on_empty_database(tmp_path, capsys):
    assert cli.main(["--db", str(tmp_path / "empty.db")]) == 0
    assert "No evaluated entries yet" in capsys.readouterr().out
