"""``python -m harness.verify`` re-scores stored results: same, tampered, changed entry."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import __version__, evaluate, verify
from harness.store import evaluations, moderation
from harness.store.engine import make_engine
from harness.store.schema import Result, pack, unpack
from tests.conftest import evaluate_args
from tests.entries import template_weights, with_forward, write_entry


@pytest.mark.slow
def test_verify_finds_tampered_results_and_changed_entries(tmp_path, db_url, means, mnist_dir, capsys):
    subs = tmp_path / "subs"
    write_entry(subs, "alpha", weights=template_weights(means))
    write_entry(subs, "beta", weights=template_weights(means[::-1].copy()))
    db = db_url
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db)) == 0
    capsys.readouterr()
    args = ["--submissions", str(subs), "--db", db]
    assert verify.main(args) == 0
    out = capsys.readouterr().out
    assert "✓ alpha: 10100 predictions identical." in out and "✓ beta:" in out  # MNIST 10k + 100 sample guest digits

    engine = make_engine(db)
    with Session(engine) as session, session.begin():  # tamper with one stored MNIST prediction of alpha
        result = session.scalars(select(Result).order_by(Result.id)).first()
        predicted = unpack(result.predicted).copy()
        predicted[7] = (predicted[7] + 1) % 10
        result.predicted = pack(predicted)
    assert verify.main(args + ["--only", "alpha"]) == 1
    assert "✗ alpha: 1 of 10000 mnist predictions differ." in capsys.readouterr().out
    with Session(engine) as session, session.begin():  # as if scored by an older harness: the message says so
        result = session.scalars(select(Result).order_by(Result.id)).first()
        result.evaluation.run.harness_version = "0.1.0"
    assert verify.main(args + ["--only", "alpha"]) == 1
    assert (f"✗ alpha: 1 of 10000 mnist predictions differ (stored by harness 0.1.0, re-run by {__version__}: run "
            "harness.evaluate to score it with this version).") in " ".join(capsys.readouterr().out.split())

    (subs / "beta" / "entry.toml").write_text('author = "someone else"\n')
    assert verify.main(args + ["--only", "beta"]) == 0
    assert "~ beta: its files changed since the stored evaluation" in capsys.readouterr().out


@pytest.mark.slow
def test_an_entry_that_simply_failed_has_nothing_to_verify_and_exits_0(tmp_path, means, mnist_dir, capsys):
    """alpha works, broken's forward raises: its evaluation failed, so verify has nothing to compare for it and says
    so; only a real difference (alpha's tampered prediction) exits 1."""
    subs = tmp_path / "subs"
    write_entry(subs, "alpha", weights=template_weights(means))
    write_entry(subs, "broken", code=with_forward("raise RuntimeError('no')"), weights=template_weights(means))
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db))
    engine = make_engine(db)
    stored = evaluations.load_evaluations(engine, evaluations.newest_evaluation_ids(engine))
    assert {e.version.entry.name: e.status for e in stored} == {"alpha": "ok", "broken": "failed"}
    capsys.readouterr()
    assert verify.main(["--submissions", str(subs), "--db", db]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("– broken: nothing to verify: it has no successful stored evaluation (it failed, or was never evaluated), "
            "so nothing can differ.") in out and "✓ alpha: 10100 predictions identical." in out
    with Session(engine) as session, session.begin():
        result = session.scalars(select(Result).order_by(Result.id)).first()
        result.predicted = pack((unpack(result.predicted) + 1) % 10)
    assert verify.main(["--submissions", str(subs), "--db", db]) == 1


@pytest.mark.slow
def test_verify_says_an_entry_is_hidden_or_disqualified(tmp_path, means, mnist_dir, capsys):
    subs = tmp_path / "subs"
    write_entry(subs, "alpha", weights=template_weights(means))
    write_entry(subs, "beta", weights=template_weights(means[::-1].copy()))
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db)) == 0
    engine = make_engine(db)
    moderation.set_moderation(engine, "alpha", "hidden", "asked to withdraw")
    moderation.set_moderation(engine, "beta", "disqualified", "copied weights")
    capsys.readouterr()
    assert verify.main(["--submissions", str(subs), "--db", db]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("– alpha: hidden by the organisers (asked to withdraw): not re-scored; restore it on the Organiser page "
            "to verify it.") in out
    assert ("✓ beta: 10100 predictions identical. Disqualified by the organisers (copied weights): shown "
            "unranked.") in out


def test_a_near_tie_is_told_apart_from_a_difference():
    """Stored probabilities are float16: two classes within 2e-3 are a tie that another batch order may tip."""
    import numpy as np

    from harness.verify import near_tie
    probs = np.array([[0.5, 0.499, 0.001] + [0.0] * 7,     # within 1e-3: a tie
                      [0.6, 0.39, 0.01] + [0.0] * 7,       # 0.21 apart: not a tie
                      [0.3, 0.3, 0.4] + [0.0] * 7,         # top two 0.4 and 0.3: not a tie
                      [0.4986, 0.5005, 0.001] + [0.0] * 7])  # 1.9e-3 apart: a tie
    assert near_tie(probs.astype(np.float32)).tolist() == [True, False, False, True]


@pytest.mark.slow
def test_verify_re_runs_each_entry_under_the_limits_it_was_scored_under(tmp_path, means, mnist_dir, capsys,
                                                                        monkeypatch):
    """Scored under [limits] timeout = "40 s" and --memory-limit 3: verify re-runs it under exactly those (not a
    fixed 300 s); --timeout overrides the time; an evaluation stored before limits were kept gets the rules' own."""
    subs = tmp_path / "subs"
    write_entry(subs, "alpha", weights=template_weights(means))
    config = tmp_path / "competition.toml"
    config.write_text('[limits]\ntimeout = "40 s"\n')
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db, "--config", str(config),
                                       "--memory-limit", "3")) == 0
    seen = []
    real = verify.runner.evaluate_one

    def spy(entry, specs, ids, limits, *args, **kwargs):
        seen.append((limits.timeout, limits.memory))
        return real(entry, specs, ids, limits, *args, **kwargs)

    monkeypatch.setattr(verify.runner, "evaluate_one", spy)
    args = ["--submissions", str(subs), "--db", db]
    assert verify.main(args) == 0 and seen[-1] == (40.0, 3 * 1024 ** 3)
    assert verify.main(args + ["--timeout", "77"]) == 0 and seen[-1] == (77.0, 3 * 1024 ** 3)

    engine = make_engine(db)
    with Session(engine) as session, session.begin():  # as if stored before the limits were kept
        result = session.scalars(select(Result)).first()
        result.evaluation.timeout, result.evaluation.memory_limit = None, None
    config.write_text("[limits]\nseconds_per_1000_images = 10\n")
    assert verify.main(args + ["--config", str(config)]) == 0
    assert seen[-1] == (101.0, 8 * 1024 ** 3)  # 10 s per 1,000 of its 10,100 images (MNIST + the sample); 8 GiB
    assert "✓ alpha: 10100 predictions identical." in capsys.readouterr().out


def test_verify_re_runs_an_entry_scored_under_a_20_min_limit_under_1200_s(tmp_path, means, mnist_dir, capsys,
                                                                          monkeypatch):
    """competition.toml's [limits] timeout = "20 min" is the one Limits value the evaluation ran under (1,200 s, and the
    default 8 GiB), stored with it; verify re-runs it under 1,200 s, whatever the rules it is given say now."""
    subs = tmp_path / "subs"
    write_entry(subs, "alpha", weights=template_weights(means))
    config = tmp_path / "competition.toml"
    config.write_text('[limits]\ntimeout = "20 min"\n')
    seen = []
    real = verify.runner.evaluate_one

    def spy(entry, specs, ids, limits, *args, **kwargs):
        seen.append((limits.timeout, limits.memory, limits.device))
        return real(entry, specs, ids, limits, *args, **kwargs)

    monkeypatch.setattr(verify.runner, "evaluate_one", spy)
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    assert evaluate.main(["--submissions", str(subs), "--db", db, "--mnist-dir", str(mnist_dir), "--config",
                          str(config), "--mystery", str(tmp_path / "none"), "--device", "cpu"]) == 0
    assert seen == [(1200.0, 8 * 1024 ** 3, "cpu")]
    with Session(make_engine(db)) as session:
        stored = session.scalars(select(Result)).first().evaluation
        assert (stored.timeout, stored.memory_limit) == (1200.0, 8 * 1024 ** 3)
    config.write_text('[limits]\ntimeout = "1 min"\n')  # the rules have changed since: the stored limit stands
    assert verify.main(["--submissions", str(subs), "--db", db, "--config", str(config)]) == 0
    assert seen[-1] == (1200.0, 8 * 1024 ** 3, "cpu")
    assert "✓ alpha: 10100 predictions identical." in capsys.readouterr().out
