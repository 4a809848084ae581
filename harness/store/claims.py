"""Claims on evaluation keys, so that two harness runs at once never evaluate the same entry version twice.

A run claims a key before it evaluates; another run that wants the same key waits for the stored evaluation
instead. A claim older than its lease belongs to a run that died, and one other run may take it over. Claim
times come from the harness machines' UTC clocks, so runs on different machines need synchronised clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from harness.store import evaluations
from harness.store.schema import Claim, utcnow


def try_claim(engine: Engine, eval_key: str, run_id: int, lease_seconds: float) -> bool:
    """Claim ``eval_key`` for ``run_id``; True if this run should evaluate it now.

    An existing claim is taken over only when it is older than ``lease_seconds`` (or is this run's own), with
    a compare-and-swap update, so of several runs racing for the same stale claim exactly one wins."""
    for _ in range(3):
        now = utcnow()
        try:
            with engine.begin() as connection:
                connection.execute(insert(Claim).values(eval_key=eval_key, run_id=run_id, claimed_at=now))
            return True
        except IntegrityError as exc:  # the key is claimed (or run_id names no run: raised below)
            error = exc
        held = _holder(engine, eval_key)
        if held is None:
            continue  # released between our insert and our look: try again
        holder, claimed_at = held
        if holder != run_id and now - claimed_at < timedelta(seconds=lease_seconds):
            return False
        with engine.begin() as connection:
            taken = connection.execute(update(Claim)
                                       .where(Claim.eval_key == eval_key, Claim.run_id == holder,
                                              Claim.claimed_at == claimed_at)
                                       .values(run_id=run_id, claimed_at=now))
        return taken.rowcount == 1
    raise error


def refresh(engine: Engine, eval_key: str, run_id: int) -> bool:
    """Renew this run's claim, as a heartbeat while it evaluates (so that a short lease tells a dead run from a
    slow one); False if the claim is no longer this run's."""
    with engine.begin() as connection:
        renewed = connection.execute(update(Claim).where(Claim.eval_key == eval_key, Claim.run_id == run_id)
                                     .values(claimed_at=utcnow()))
    return renewed.rowcount == 1


def release(engine: Engine, eval_key: str, run_id: int) -> None:
    """Drop this run's claim on ``eval_key``; another run's claim is left alone."""
    with engine.begin() as connection:
        connection.execute(delete(Claim).where(Claim.eval_key == eval_key, Claim.run_id == run_id))


def release_all(engine: Engine, run_id: int) -> None:
    """Drop every claim of this run (it is ending: Ctrl-C), so the next run need not wait for their leases."""
    with engine.begin() as connection:
        connection.execute(delete(Claim).where(Claim.run_id == run_id))


def wait_for_evaluation(engine: Engine, eval_key: str, run_id: int, lease_seconds: float, poll: float = 0.5,
                        find: Callable[[Engine, str], int | None] = evaluations.find_evaluation) -> int | None:
    """Wait while another run holds the claim on ``eval_key``: the id of the evaluation it stores, or None
    once the claim is gone or expired with no evaluation (then try to claim the key again)."""
    while True:
        found = find(engine, eval_key)
        if found is not None:
            return found
        held = _holder(engine, eval_key)
        if held is None or held[0] == run_id or utcnow() - held[1] >= timedelta(seconds=lease_seconds):
            return find(engine, eval_key)  # the holder may have stored it and released since we looked
        time.sleep(poll)


def _holder(engine: Engine, eval_key: str) -> tuple[int, datetime] | None:
    """(run id, claimed_at) of the claim on ``eval_key``, if there is one."""
    with engine.connect() as connection:
        row = connection.execute(select(Claim.run_id, Claim.claimed_at).where(Claim.eval_key == eval_key)).first()
    return None if row is None else (row.run_id, row.claimed_at)
