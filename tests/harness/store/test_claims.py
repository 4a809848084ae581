"""Concurrent runs on one database (SQLite and PostgreSQL): one claim per evaluation key, shared entry and dataset
rows, waiting for another run's evaluation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import torch
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.store import claims, eval_sets, evaluations, runs, versions
from harness.store.schema import Claim, Dataset, Entry, EntryVersion, utcnow
from tests.entries import write_entry

RACERS = 8


def start_runs(engine, n: int) -> list[int]:
    return [runs.start_run(engine, "cpu", [f"run {i}"]) for i in range(n)]


def race(fn, args: list) -> list:
    """Call ``fn`` with each args tuple in its own thread, all released at the same moment."""
    barrier = threading.Barrier(len(args))

    def go(a):
        barrier.wait()
        return fn(*a)
    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(go, args))


def holder(engine, key: str) -> int | None:
    with Session(engine) as session:
        return session.scalar(select(Claim.run_id).where(Claim.eval_key == key))


def test_of_runs_racing_for_a_key_exactly_one_wins(engine):
    ids = start_runs(engine, RACERS)
    won = race(claims.try_claim, [(engine, "k" * 64, run_id, 60) for run_id in ids])
    assert won.count(True) == 1
    assert holder(engine, "k" * 64) == ids[won.index(True)]
    assert claims.try_claim(engine, "k" * 64, ids[won.index(True)], 60)  # a run's own claim stays its own
    assert not claims.try_claim(engine, "k" * 64, ids[won.index(False)], 60)


def test_an_expired_claim_is_taken_over_by_exactly_one_run(engine):
    dead, *alive = start_runs(engine, RACERS + 1)
    with engine.begin() as connection:
        connection.execute(insert(Claim).values(eval_key="k", run_id=dead,
                                                claimed_at=utcnow() - timedelta(seconds=120)))
    assert not claims.try_claim(engine, "k", alive[0], lease_seconds=600)  # not expired under a longer lease
    won = race(claims.try_claim, [(engine, "k", run_id, 60) for run_id in alive])
    assert won.count(True) == 1
    assert holder(engine, "k") == alive[won.index(True)]


def test_a_refreshed_claim_does_not_expire(engine):
    owner, other = start_runs(engine, 2)
    assert claims.try_claim(engine, "k", owner, 60)
    with engine.begin() as connection:  # as if the owner had been evaluating for two minutes
        connection.execute(update(Claim).values(claimed_at=utcnow() - timedelta(seconds=120)))
    assert claims.refresh(engine, "k", owner)
    assert not claims.try_claim(engine, "k", other, 60)
    assert not claims.refresh(engine, "k", other)
    with engine.begin() as connection:  # now the owner has died
        connection.execute(update(Claim).values(claimed_at=utcnow() - timedelta(seconds=120)))
    assert claims.try_claim(engine, "k", other, 60)
    assert not claims.refresh(engine, "k", owner)  # the claim is the other run's now


def test_only_the_owner_releases_a_claim(engine):
    owner, other = start_runs(engine, 2)
    assert claims.try_claim(engine, "k", owner, 60)
    claims.release(engine, "k", other)
    assert holder(engine, "k") == owner and not claims.try_claim(engine, "k", other, 60)
    claims.release(engine, "k", owner)
    assert holder(engine, "k") is None and claims.try_claim(engine, "k", other, 60)


def test_waiting_run_gets_the_evaluation_the_claimant_stores(engine, tmp_path):
    owner, waiter = start_runs(engine, 2)
    write_entry(tmp_path / "subs", "alpha", weights={"fc.weight": torch.zeros(10, 784)})
    version_id = versions.ensure_version(engine, discover(tmp_path / "subs")["alpha"])
    assert claims.try_claim(engine, "k", owner, 60)

    def evaluate_then_release():
        time.sleep(0.5)
        stored.append(evaluations.save_evaluation(
            engine, run_id=owner, version_id=version_id, eval_key="k",
            record=evaluations.Record(status="failed", error="x", seconds=0.1, device="cpu", params=None)))
        claims.release(engine, "k", owner)
    stored: list[int] = []
    worker = threading.Thread(target=evaluate_then_release)
    worker.start()
    started = time.monotonic()
    assert claims.wait_for_evaluation(engine, "k", waiter, lease_seconds=60, poll=0.05) == stored[0]
    assert time.monotonic() - started >= 0.4
    worker.join()


def test_waiting_ends_without_an_evaluation_when_the_claim_goes_or_expires(engine):
    owner, waiter = start_runs(engine, 2)
    assert claims.try_claim(engine, "k", owner, 60)
    threading.Timer(0.3, claims.release, (engine, "k", owner)).start()
    assert claims.wait_for_evaluation(engine, "k", waiter, lease_seconds=60, poll=0.05) is None
    assert claims.try_claim(engine, "k", owner, 60)
    assert claims.wait_for_evaluation(engine, "k", waiter, lease_seconds=0.3, poll=0.05) is None  # owner died
    assert claims.try_claim(engine, "k", waiter, lease_seconds=0.3)


def test_runs_seeing_a_new_entry_at_once_share_one_version_row(engine, tmp_path):
    write_entry(tmp_path / "subs", "alpha", weights={"fc.weight": torch.zeros(10, 784)})
    entry = discover(tmp_path / "subs")["alpha"]
    ids = race(versions.ensure_version, [(engine, entry)] * RACERS)
    assert len(set(ids)) == 1
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Entry)) == 1
        assert session.scalar(select(func.count()).select_from(EntryVersion)) == 1


def test_runs_seeing_a_new_dataset_at_once_share_one_row(engine):
    spec = DatasetSpec(kind="mnist", content_hash="h", labels=np.arange(10) % 10,
                       images=np.zeros((10, 28, 28), np.uint8), source="test")
    ids = race(eval_sets.ensure_dataset, [(engine, spec)] * RACERS)
    assert len(set(ids)) == 1
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 1
