"""Reads and writes of the results store, each in a short-lived session."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from harness import __version__
from harness.data.task import DatasetSpec  # noqa: F401  (the sets the store keeps)
from harness.entries.discovery import Entry as EntryOnDisk
from harness.store.leftovers import this_process
from harness.store.schema import Dataset, Entry, EntryVersion, Evaluation, Flag, Result, Run, pack, utcnow

GUEST_REVEALED = "guest_revealed"


class StoredMetrics(Protocol):
    """What the store keeps of an entry's metrics on one set (``harness.scoring.metrics.DatasetMetrics`` has it)."""
    @property
    def correct(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def ci95(self) -> tuple[float, float]: ...
    @property
    def log_loss(self) -> float | None: ...
    @property
    def confusion(self) -> np.ndarray: ...
    @property
    def precision(self) -> np.ndarray: ...
    @property
    def recall(self) -> np.ndarray: ...
    @property
    def predicted(self) -> np.ndarray: ...
    @property
    def confidence(self) -> np.ndarray: ...
    @property
    def probabilities(self) -> np.ndarray: ...


@dataclass
class Record:
    """One evaluation of an entry version as the store keeps it: how its run ended and, when it succeeded, its
    metrics by dataset id. Nothing in it is the entry's word but ``device`` and a failure's ``error``."""
    status: str                             # "ok" or "failed"
    error: str | None                       # one sentence when failed
    seconds: float                          # wall time of the entry's process (0 when nothing ran)
    device: str
    params: int | None                      # counted by the host from the weights (None: unreadable or not read)
    metrics: dict[int, StoredMetrics] = field(default_factory=dict)
    peak_memory_bytes: int | None = None    # None when nothing ran
    log: str | None = None
    sandboxed: bool | None = None           # None when nothing ran
    images_per_second: float | None = None  # timed by the host; None unless ok
    output_kind: str | None = None          # logits, probabilities or log-probabilities, on MNIST
    sealed: Sealed | None = None            # what the secret phase produced besides its outputs (None: none ran)
    memorisation: Memorisation | None = None  # the public images against their changed copies (None: not checked)
    timeout: float | None = None            # the limits it ran under (seconds, bytes)
    memory_limit: int | None = None


@dataclass(frozen=True)
class Sealed:
    """What an entry's process produced while it held the secret set, besides its outputs: its failure's sentence,
    its log, its time and its memory. Stored apart and never shown before the reveal (``reads.sealed``)."""
    error: str | None
    log: str | None
    seconds: float
    peak_memory_bytes: int | None


@dataclass(frozen=True)
class Memorisation:
    """Public images scored against imperceptibly changed copies of them: how many pairs, and in how many only the
    image as given (``only_original``) or only its copy (``only_copy``) was read right."""
    pairs: int
    only_original: int
    only_copy: int


def ensure_version(engine: Engine, entry: EntryOnDisk) -> int:
    """The id of this entry content's version row, creating the entry and version on first sight.

    Two runs may see a new entry at once: the one whose insert hits the unique constraint reads the other's row."""
    from sqlalchemy.exc import IntegrityError
    for attempt in range(3):
        try:
            with Session(engine) as session, session.begin():
                row = session.scalar(select(Entry).where(Entry.name == entry.name))
                if row is None:
                    row = Entry(name=entry.name)
                    session.add(row)
                    session.flush()
                version = session.scalar(select(EntryVersion).where(EntryVersion.entry_id == row.id,
                                                                    EntryVersion.content_hash == entry.content_hash))
                if version is None:
                    meta = entry.metadata
                    version = EntryVersion(entry_id=row.id, content_hash=entry.content_hash, code_hash=entry.code_hash,
                                           weights_hash=entry.weights_hash, weights_bytes=entry.weights_bytes,
                                           display_name=entry.display_name, author=meta.author,
                                           description=meta.description, hyperparameters=dict(meta.hyperparameters),
                                           constructor=dict(meta.constructor))
                    session.add(version)
                    session.flush()
                return version.id
        except IntegrityError:
            if attempt == 2:
                raise


def has_unseen(engine: Engine, entries: list[EntryOnDisk]) -> bool:
    """Whether some entry's folder holds content the store has never seen (so a run will evaluate it)."""
    with Session(engine) as session:
        known = {(name, content) for name, content in
                 session.execute(select(Entry.name, EntryVersion.content_hash).join(EntryVersion.entry))}
    return any((e.name, e.content_hash) not in known for e in entries)


def ensure_dataset(engine: Engine, spec: DatasetSpec) -> int:
    """The id of this dataset's row, stored on first sight (a concurrent run's identical insert wins)."""
    from sqlalchemy.exc import IntegrityError
    try:
        with Session(engine) as session, session.begin():
            row = session.scalar(select(Dataset).where(Dataset.kind == spec.kind,
                                                       Dataset.content_hash == spec.content_hash))
            if row is None:
                row = Dataset(kind=spec.kind, content_hash=spec.content_hash, size=len(spec.labels), source=spec.source,
                              preprocess_version=spec.preprocess_version, labels=pack(spec.labels.astype(np.int64)),
                              files=list(spec.files), images=pack(spec.images.astype(np.uint8)))
                session.add(row)
                session.flush()
            return row.id
    except IntegrityError:  # another run stored the same dataset meanwhile; datasets are never deleted
        with Session(engine) as session:
            return session.scalar(select(Dataset.id).where(Dataset.kind == spec.kind,
                                                           Dataset.content_hash == spec.content_hash))


def start_run(engine: Engine, device: str, argv: list[str]) -> int:
    """A new "running" run, with this process's host, pid and start time (see ``harness.store.leftovers``)."""
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


def find_evaluation(engine: Engine, eval_key: str) -> int | None:
    """The newest evaluation with this key (same entry content, datasets and harness), if any."""
    with Session(engine) as session:
        return session.scalar(select(Evaluation.id).where(Evaluation.eval_key == eval_key)
                              .order_by(Evaluation.id.desc()).limit(1))


def failure_and_limits(engine: Engine, evaluation_id: int) -> tuple[str | None, float | None, int | None] | None:
    """A failed evaluation's sentences (public and sealed, joined) and the time and memory limits it ran under;
    None when it succeeded."""
    with Session(engine) as session:
        row = session.execute(select(Evaluation.status, Evaluation.error, Evaluation.sealed_error, Evaluation.timeout,
                                     Evaluation.memory_limit).where(Evaluation.id == evaluation_id)).one()
    if row.status == "ok":
        return None
    return " ".join(filter(None, (row.error, row.sealed_error))), row.timeout, row.memory_limit


def save_evaluation(engine: Engine, *, run_id: int, version_id: int, eval_key: str, record: Record) -> int:
    """Store one evaluation with all its results in a single transaction."""
    with Session(engine) as session, session.begin():
        evaluation = Evaluation(run_id=run_id, version_id=version_id, eval_key=eval_key, status=record.status,
                                error=record.error, device=record.device, seconds=record.seconds, params=record.params,
                                images_per_second=record.images_per_second,
                                peak_memory_bytes=record.peak_memory_bytes, output_kind=record.output_kind,
                                log=record.log, sandboxed=record.sandboxed, timeout=record.timeout,
                                memory_limit=record.memory_limit)
        if record.sealed is not None:
            evaluation.sealed_error, evaluation.sealed_log = record.sealed.error, record.sealed.log
            evaluation.sealed_seconds = record.sealed.seconds
            evaluation.sealed_peak_memory_bytes = record.sealed.peak_memory_bytes
        if record.memorisation is not None:
            evaluation.memo_pairs = record.memorisation.pairs
            evaluation.memo_only_original = record.memorisation.only_original
            evaluation.memo_only_copy = record.memorisation.only_copy
        for dataset_id, m in record.metrics.items():
            evaluation.results.append(Result(
                dataset_id=dataset_id, correct=m.correct, total=m.total, accuracy=m.accuracy,
                ci_low=m.ci95[0], ci_high=m.ci95[1], log_loss=m.log_loss,
                confusion=np.asarray(m.confusion).tolist(),
                precision=[None if np.isnan(v) else float(v) for v in m.precision],
                recall=[None if np.isnan(v) else float(v) for v in m.recall],
                predicted=pack(m.predicted.astype(np.uint8)), confidence=pack(m.confidence.astype(np.float32)),
                probabilities=pack(m.probabilities.astype(np.float16))))
        session.add(evaluation)
        session.flush()
        return evaluation.id


def newest_evaluation_ids(engine: Engine, ok_only: bool = False) -> list[int]:
    """The id of each entry's newest evaluation (its newest successful one with ``ok_only``)."""
    query = select(func.max(Evaluation.id)).join(EntryVersion).group_by(EntryVersion.entry_id)
    if ok_only:
        query = query.where(Evaluation.status == "ok")
    with Session(engine) as session:
        return list(session.scalars(query))


def load_evaluations(engine: Engine, ids: list[int]) -> list[Evaluation]:
    """Evaluations with their version, entry, run, results and datasets loaded (detached, read-only use)."""
    with Session(engine) as session:
        rows = session.scalars(
            select(Evaluation).where(Evaluation.id.in_(ids)).options(
                selectinload(Evaluation.version).selectinload(EntryVersion.entry),
                selectinload(Evaluation.run),
                selectinload(Evaluation.results).selectinload(Result.dataset))).all()
        session.expunge_all()
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def get_flag(engine: Engine, name: str, default: str = "") -> str:
    with Session(engine) as session:
        row = session.get(Flag, name)
        return row.value if row else default


def set_flag(engine: Engine, name: str, value: str) -> None:
    with Session(engine) as session, session.begin():
        row = session.get(Flag, name)
        if row is None:
            session.add(Flag(name=name, value=value))
        else:
            row.value = value


# --- Dashboard: moderation and the organiser's audit log ---------------------------------------------------

MODERATION_STATES = ("visible", "hidden", "disqualified")


def log_action(engine: Engine, action: str, detail: str = "", entry_name: str | None = None) -> None:
    """Append one organiser action to the audit log (stamped with the current UTC time)."""
    from harness.store.schema import AuditLog
    with Session(engine) as session, session.begin():
        session.add(AuditLog(action=action, detail=detail, entry_name=entry_name))


def audit_log(engine: Engine, limit: int = 200) -> list[dict]:
    """The newest organiser actions first, as plain dicts."""
    from harness.store.schema import AuditLog
    with Session(engine) as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).all()
        return [{"at": r.at, "action": r.action, "entry": r.entry_name, "detail": r.detail} for r in rows]


def set_moderation(engine: Engine, entry_name: str, state: str, reason: str = "") -> None:
    """Hide, disqualify or restore an entry, and log the action; hiding or disqualifying needs a reason."""
    from harness.store.schema import AuditLog, Moderation
    if state not in MODERATION_STATES:
        raise ValueError(f"unknown moderation state {state!r}; use one of {', '.join(MODERATION_STATES)}.")
    reason = reason.strip()
    if state != "visible" and not reason:
        raise ValueError(f"say why the entry is {state}: the reason is shown to the organisers (and, for a "
                         "disqualification, on the board).")
    with Session(engine) as session, session.begin():
        row = session.get(Moderation, entry_name)
        if row is None:
            session.add(Moderation(entry_name=entry_name, state=state, reason=reason))
        else:
            row.state, row.reason = state, reason
        session.add(AuditLog(action={"visible": "restore", "hidden": "hide", "disqualified": "disqualify"}[state],
                             entry_name=entry_name, detail=reason))


def moderation(engine: Engine) -> dict[str, tuple[str, str]]:
    """{entry name: (state, reason)} for every entry an organiser has hidden or disqualified."""
    from harness.store.schema import Moderation
    with Session(engine) as session:
        return {r.entry_name: (r.state, r.reason) for r in session.scalars(select(Moderation))
                if r.state != "visible"}
