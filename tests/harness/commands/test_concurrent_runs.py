"""Two ``python -m harness.evaluate`` started at once on one database: every entry version is evaluated once,
both runs print the same ranking, and nothing is left claimed. Against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harness.store import evaluations, runs, versions
from harness.store.engine import make_engine
from harness.store.schema import Claim, Evaluation, Run
from tests.conftest import REPO, evaluate_args, evaluate_command
from tests.entries import before_return, template_weights, write_entry

SLOW = before_return("""
import time
if not getattr(self, "_slept", False):
    time.sleep(1.0)  # slow enough that the two runs overlap on every entry
    self._slept = True
""")


@pytest.mark.slow
def test_two_runs_at_once_never_evaluate_a_version_twice(tmp_path, db_url, mnist_dir, means):
    subs = tmp_path / "subs"
    for name in ("ada", "bob", "cy"):
        write_entry(subs, name, code=SLOW, weights=template_weights(means))
    mystery = tmp_path / "mystery"
    mystery.mkdir()
    make_engine(db_url).dispose()  # the schema exists before the race (creating it at once is tested elsewhere)
    argv = evaluate_command(*evaluate_args(subs, mnist_dir, mystery, db_url, "--json"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.3)
    runs.append(subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True))
    outputs = [p.communicate(timeout=400) for p in runs]
    for p, (_out, err) in zip(runs, outputs, strict=True):
        assert p.returncode == 0, err
    boards = [json.loads(out)["entries"] for out, _ in outputs]
    engine = make_engine(db_url)
    with Session(engine) as session:
        per_key = session.execute(select(Evaluation.eval_key, func.count()).group_by(Evaluation.eval_key)).all()
        assert sorted(n for _, n in per_key) == [1, 1, 1]
        assert session.scalar(select(func.count()).select_from(Claim)) == 0
        assert {r.status for r in session.scalars(select(Run))} == {"finished"}
        by_run = dict(session.execute(select(Evaluation.run_id, func.count()).group_by(Evaluation.run_id)).all())
    assert sum(by_run.values()) == 3
    # Both print the same board, whichever run did the work.
    assert [(e["name"], e["evaluation_id"], e["mnist"]["accuracy"]) for e in boards[0]] == \
           [(e["name"], e["evaluation_id"], e["mnist"]["accuracy"]) for e in boards[1]]
    assert {e["status"] for e in boards[0]} == {"ok"}


@pytest.mark.slow
def test_a_claim_left_by_a_crashed_run_is_taken_over(tmp_path, db_url, small_mnist, means):
    from datetime import timedelta

    from harness import runner
    from harness.entries.discovery import discover
    from harness.store.schema import utcnow

    write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    entry = discover(tmp_path / "subs")["ada"]
    engine = make_engine(db_url)
    crashed = runs.start_run(engine, "cpu", ["crashed"])
    key = runner.eval_key(entry, [small_mnist])
    with Session(engine) as session, session.begin():
        session.add(Claim(eval_key=key, run_id=crashed, claimed_at=utcnow() - timedelta(hours=1)))
    summary = runner.run(engine, [entry], [small_mnist], runner.Options(runner.Limits(device="cpu", timeout=60)),
                         ["test"])
    assert summary.outcome == {"ada": runner.EVALUATED}
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Claim)) == 0
        assert session.scalar(select(Evaluation.run_id).where(Evaluation.eval_key == key)) == summary.run_id


def test_a_fresh_claim_makes_the_run_wait_for_the_holders_result(tmp_path, db_url, small_mnist, means):
    import threading

    from harness import runner
    from harness.entries.discovery import discover
    from harness.store import claims

    write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    entry = discover(tmp_path / "subs")["ada"]
    engine = make_engine(db_url)
    holder = runs.start_run(engine, "cpu", ["holder"])
    key = runner.eval_key(entry, [small_mnist])
    assert claims.try_claim(engine, key, holder, lease_seconds=600)
    version_id = versions.ensure_version(engine, entry)
    stored = {}

    def holder_finishes():  # the other run stores its result 1.5 s later and lets go
        time.sleep(1.5)
        stored["id"] = evaluations.save_evaluation(
            engine, run_id=holder, version_id=version_id, eval_key=key,
            record=evaluations.Record(status="failed", error="holder's result", seconds=0.0, device="cpu", params=None))
        claims.release(engine, key, holder)

    thread = threading.Thread(target=holder_finishes)
    thread.start()
    summary = runner.run(engine, [entry], [small_mnist], runner.Options(runner.Limits(device="cpu", timeout=60)),
                         ["waiter"])
    thread.join()
    assert summary.outcome == {"ada": runner.UNCHANGED}
    assert summary.evaluation_ids["ada"] == stored["id"]  # the holder's evaluation, not a second one
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Evaluation)) == 1
