"""Harness runs: each one's start (with its versions, device, command and process), its progress through the entry
it is scoring, its end; the newest run; and the queue of versions waiting to be scored."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.orm import Session

from harness import __version__
from harness.common.tempfolders import this_process
from harness.store.schema import Claim, Entry, EntryVersion, Evaluation, Moderation, Run, utcnow


def start_run(engine: Engine, device: str, argv: list[str]) -> int:
    """A new "running" run, with this process's host, pid and start time (see ``harness.common.tempfolders``)."""
    host, pid, started = this_process()
    with Session(engine) as session, session.begin():
        run = Run(harness_version=__version__, torch_version=metadata.version("torch"),
                  python_version=sys.version.split()[0], device=device, argv=list(argv), host=host, pid=pid,
                  process_started_at=started)
        session.add(run)
        session.flush()
        return run.id


def finish_run(engine: Engine, run_id: int, status: str = "finished") -> None:
    with Session(engine) as session, session.begin():
        run = session.get(Run, run_id)
        run.finished_at, run.status, run.progress = utcnow(), status, None


def note_progress(engine: Engine, run_id: int, entry: str, done: int, total: int, seconds_left: float | None,
                  phase: str = "predicting", version_id: int | None = None, public: int | None = None) -> None:
    """Where the run is: ``entry`` (its version ``version_id``) is ``phase`` (loading, warming up, predicting) and has
    done ``done`` of ``total`` images, of which ``public`` are the public sets' (the board shows those only), about
    ``seconds_left`` to go."""
    with Session(engine) as session, session.begin():
        session.get(Run, run_id).progress = {
            "entry": entry, "version_id": version_id, "done": int(done), "total": int(total),
            "public": None if public is None else int(public), "at": utcnow().isoformat(),
            "seconds_left": None if seconds_left is None else round(float(seconds_left), 1), "phase": phase}


def latest_run(engine: Engine) -> dict | None:
    with Session(engine) as session:
        run = session.scalar(select(Run).order_by(Run.id.desc()).limit(1))
        if run is None:
            return None
        done = session.scalar(select(func.count(Evaluation.id)).where(Evaluation.run_id == run.id))
        return {"id": run.id, "started_at": run.started_at, "finished_at": run.finished_at, "status": run.status,
                "evaluations": int(done), "argv": list(run.argv or []), "device": run.device,
                "progress": run.progress}


@dataclass(frozen=True)
class Queued:
    """An entry's newest version with no evaluation yet: waiting to be scored (``place`` 1 is next) or being scored
    (``place`` None; ``done`` of ``public`` images of the public sets, as the scoring run last noted them)."""
    entry_name: str
    display_name: str
    author: str | None
    version: int               # 1, 2, ... among the entry's versions
    version_id: int
    first_seen_at: datetime    # naive UTC: when it arrived (the queue's order)
    place: int | None = None
    done: int | None = None
    public: int | None = None


def queue(engine: Engine, alive_seconds: float = 30.0) -> list[Queued]:
    """The versions waiting to be scored, those being scored first, then oldest first: each visible entry's newest
    version that has no evaluation. A version is being scored when a running run, whose claim was renewed in the
    last ``alive_seconds`` (the runner's claim lease), last noted progress on it.

    Only the public phase's count is read: a run's progress stays where the public sets left it while the entry
    holds the secret set, and ``public`` counts the public images only, so nothing here depends on the secret phase.
    """
    newest = (select(EntryVersion.entry_id, func.max(EntryVersion.id).label("id"),
                     func.count(EntryVersion.id).label("versions")).group_by(EntryVersion.entry_id).subquery())
    scored = exists(select(Evaluation.id).where(Evaluation.version_id == EntryVersion.id))
    moderated = select(Moderation.entry_name).where(Moderation.state != "visible")
    alive = exists(select(Claim.eval_key).where(Claim.run_id == Run.id,
                                                Claim.claimed_at >= utcnow() - timedelta(seconds=alive_seconds)))
    with Session(engine) as session:
        rows = session.execute(
            select(Entry.name, EntryVersion.id, EntryVersion.display_name, EntryVersion.author,
                   EntryVersion.first_seen_at, newest.c.versions)
            .join(newest, newest.c.id == EntryVersion.id).join(Entry, Entry.id == EntryVersion.entry_id)
            .where(~scored, Entry.name.not_in(moderated))
            .order_by(EntryVersion.first_seen_at, EntryVersion.id)).all()
        noted = session.scalars(select(Run.progress).where(Run.status == "running", Run.finished_at.is_(None),
                                                           alive)).all() if rows else []
    scoring: dict = {}
    for progress in noted:  # keyed by version id; a run of an older harness noted the entry's name only
        if isinstance(progress, dict) and isinstance(progress.get("done"), int):
            scoring[progress.get("version_id") or progress.get("entry")] = progress
    out, place = [], 0
    for r in rows:
        progress = scoring.get(r.id) or scoring.get(r.name)
        if progress is None:
            place += 1
            out.append(Queued(r.name, r.display_name, r.author, int(r.versions), r.id, r.first_seen_at, place))
            continue
        public = progress.get("public") or progress.get("total")
        out.append(Queued(r.name, r.display_name, r.author, int(r.versions), r.id, r.first_seen_at, None,
                          min(int(progress["done"]), int(public)), int(public)))
    return sorted(out, key=lambda q: q.place is not None)  # stable: being scored first, then the queue's order
