"""Evaluations and their results: what one scoring of an entry version stores (a ``Record``, in one transaction) and
what is read back of it (headline ``summaries``, the secret phase's details after the reveal, every evaluation's
accuracy over time). Plain functions of an Engine, each in a short-lived session.

Summaries carry headline numbers only; the per-sample blobs are read in ``harness.store.predictions``. Before the
reveal, guest results are not even selected (``revealed=False``). Which evaluations count is decided above, in
``harness.scoring.board``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from harness.store.eval_sets import DatasetInfo
from harness.store.schema import Entry, EntryVersion, Evaluation, Result, Run, pack

if TYPE_CHECKING:  # pandas is imported where a DataFrame is built: the commands that only read the board need none
    import pandas as pd


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
    its log, its time and its memory. Stored apart and never shown before the reveal (``sealed``)."""
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


BATCH = 500  # keys per IN (...) query: SQLite before 3.32 allows 999 parameters


def stored_by_key(engine: Engine, eval_keys: list[str]) -> dict[str, tuple[int, tuple | None]]:
    """For each key with an evaluation, what ``find_evaluation`` and then ``failure_and_limits`` would give: the
    newest evaluation's id and its failure with the limits it ran under (None when it succeeded), in one query per
    BATCH keys rather than two per key."""
    out: dict[str, tuple[int, tuple | None]] = {}
    keys = sorted(set(eval_keys))
    with Session(engine) as session:
        for start in range(0, len(keys), BATCH):
            rows = session.execute(select(Evaluation.eval_key, Evaluation.id, Evaluation.status, Evaluation.error,
                                          Evaluation.sealed_error, Evaluation.timeout, Evaluation.memory_limit)
                                   .where(Evaluation.eval_key.in_(keys[start:start + BATCH]))
                                   .order_by(Evaluation.id))
            for row in rows:  # ascending ids: the newest per key is written last
                failed = None if row.status == "ok" else (" ".join(filter(None, (row.error, row.sealed_error))),
                                                          row.timeout, row.memory_limit)
                out[row.eval_key] = (row.id, failed)
    return out


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


def newest_evaluation(engine: Engine) -> int:
    """The newest evaluation's id (0 when there is none): a new one means the board has changed."""
    with Session(engine) as session:
        return int(session.scalar(select(func.max(Evaluation.id))) or 0)


@dataclass(frozen=True)
class Score:
    """One result's headline numbers (no blobs): the one score class of the terminal, JSON, export and dashboard."""
    result_id: int
    dataset_id: int
    correct: int
    total: int
    accuracy: float
    ci_low: float
    ci_high: float
    log_loss: float | None = None

    @property
    def ci95(self) -> tuple[float, float]:
        return self.ci_low, self.ci_high

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total,
                "ci95": [self.ci_low, self.ci_high], "log_loss": self.log_loss}


@dataclass(frozen=True)
class EvalSummary:
    """An evaluation with its entry version and headline scores per dataset kind."""
    evaluation_id: int
    entry_name: str
    display_name: str
    author: str | None
    description: str | None
    hyperparameters: dict
    constructor: dict
    content_hash: str
    code_hash: str
    weights_hash: str
    weights_bytes: int
    version_id: int
    status: str
    error: str | None
    device: str
    started_at: datetime
    seconds: float
    params: int | None
    images_per_second: float | None
    peak_memory_bytes: int | None
    output_kind: str | None
    log: str | None
    scores: dict[str, Score]  # kind -> score on the current dataset of that kind
    sandboxed: bool | None = None  # False: the entry ran as a plain child process, not in the sandbox
    standing: str = "ranked"       # set by harness.scoring.board from harness.scoring.standings
    note: str = ""
    submitted_at: datetime | None = None  # naive UTC: when the version counts as submitted
    override_reason: str | None = None    # why the organiser set the version's time, if they did
    overridden: bool = False
    harness_version: str = ""
    torch_version: str = ""
    python_version: str = ""
    memorisation: tuple[int, int, int] | None = None  # (pairs, read right only as given, only as the copy)


def summaries(session: Session, evaluation_ids: list[int], datasets: dict[str, DatasetInfo]) -> list[EvalSummary]:
    """The evaluations' headline summaries, with scores on ``datasets`` only."""
    if not evaluation_ids:
        return []
    rows = session.execute(
        select(Evaluation.id, Evaluation.status, Evaluation.error, Evaluation.device, Evaluation.started_at,
               Evaluation.seconds, Evaluation.params, Evaluation.images_per_second, Evaluation.peak_memory_bytes,
               Evaluation.output_kind, Evaluation.log, Evaluation.sandboxed, EntryVersion.id.label("version_id"),
               EntryVersion.display_name,
               EntryVersion.author, EntryVersion.description, EntryVersion.hyperparameters, EntryVersion.constructor,
               EntryVersion.content_hash, EntryVersion.code_hash, EntryVersion.weights_hash,
               EntryVersion.weights_bytes, EntryVersion.submitted_at_override, EntryVersion.override_reason,
               Entry.name, Run.harness_version, Run.torch_version, Run.python_version, Evaluation.memo_pairs,
               Evaluation.memo_only_original, Evaluation.memo_only_copy)
        .join(EntryVersion, Evaluation.version_id == EntryVersion.id).join(Entry, EntryVersion.entry_id == Entry.id)
        .join(Run, Evaluation.run_id == Run.id)
        .where(Evaluation.id.in_(evaluation_ids))).all()
    kind_of = {d.id: d.kind for d in datasets.values()}
    scores: dict[int, dict[str, Score]] = {i: {} for i in evaluation_ids}
    if kind_of:
        for r in session.execute(select(Result.id, Result.evaluation_id, Result.dataset_id, Result.correct,
                                        Result.total, Result.accuracy, Result.ci_low, Result.ci_high, Result.log_loss)
                                 .where(Result.evaluation_id.in_(evaluation_ids),
                                        Result.dataset_id.in_(list(kind_of)))):
            scores[r.evaluation_id][kind_of[r.dataset_id]] = Score(r.id, r.dataset_id, r.correct, r.total, r.accuracy,
                                                                   r.ci_low, r.ci_high, r.log_loss)
    return [EvalSummary(evaluation_id=r.id, entry_name=r.name, display_name=r.display_name, author=r.author,
                        description=r.description, hyperparameters=dict(r.hyperparameters or {}),
                        constructor=dict(r.constructor or {}), content_hash=r.content_hash, code_hash=r.code_hash,
                        weights_hash=r.weights_hash, weights_bytes=r.weights_bytes, version_id=r.version_id,
                        status=r.status, error=r.error, device=r.device, started_at=r.started_at, seconds=r.seconds,
                        params=r.params, images_per_second=r.images_per_second,
                        peak_memory_bytes=r.peak_memory_bytes, output_kind=r.output_kind, log=r.log,
                        scores=scores[r.id], sandboxed=r.sandboxed, override_reason=r.override_reason,
                        overridden=r.submitted_at_override is not None, harness_version=r.harness_version,
                        torch_version=r.torch_version, python_version=r.python_version,
                        memorisation=None if r.memo_pairs is None else
                        (r.memo_pairs, r.memo_only_original, r.memo_only_copy)) for r in rows]


def evaluation(engine: Engine, evaluation_id: int, datasets: dict[str, DatasetInfo]) -> EvalSummary | None:
    with Session(engine) as session:
        found = summaries(session, [evaluation_id], datasets)
    return found[0] if found else None


@dataclass(frozen=True)
class SealedDetails:
    """What an entry's process produced while it held the secret set, besides its outputs."""
    error: str | None
    log: str | None
    seconds: float | None
    peak_memory_bytes: int | None


def sealed(engine: Engine, evaluation_id: int, revealed: bool) -> SealedDetails | None:
    """The secret phase's error, log, time and memory of one evaluation: None before the reveal (whoever asks),
    and None when no secret phase ran. The caller decides who may see them after it (the organiser, the owner)."""
    if not revealed:
        return None
    with Session(engine) as session:
        row = session.execute(select(Evaluation.sealed_error, Evaluation.sealed_log, Evaluation.sealed_seconds,
                                     Evaluation.sealed_peak_memory_bytes)
                              .where(Evaluation.id == evaluation_id)).one_or_none()
    if row is None or (row.sealed_seconds is None and row.sealed_error is None and row.sealed_log is None):
        return None
    return SealedDetails(row.sealed_error, row.sealed_log, row.sealed_seconds, row.sealed_peak_memory_bytes)


def accuracy_history(engine: Engine, datasets: dict[str, DatasetInfo]) -> pd.DataFrame:
    """Every evaluation's accuracy on the current datasets: one row per evaluation × kind, oldest first.

    Columns: entry, version_id, version (1-based per entry), first_seen_at, evaluation_id, started_at,
    status, kind, accuracy (NaN for a failed evaluation).
    """
    import pandas as pd  # here, not at the top: about 0.9 s to import
    kind_of = {d.id: d.kind for d in datasets.values()}
    with Session(engine) as session:
        evals = session.execute(
            select(Entry.name, EntryVersion.id.label("version_id"), EntryVersion.first_seen_at, Evaluation.id,
                   Evaluation.started_at, Evaluation.status)
            .join(EntryVersion, Evaluation.version_id == EntryVersion.id).join(Entry, EntryVersion.entry_id == Entry.id)
            .order_by(Evaluation.id)).all()
        results = session.execute(select(Result.evaluation_id, Result.dataset_id, Result.accuracy)
                                  .where(Result.dataset_id.in_(list(kind_of)))).all() if kind_of else []
    acc = {(r.evaluation_id, kind_of[r.dataset_id]): r.accuracy for r in results}
    version_number: dict[int, int] = {}
    per_entry: dict[str, int] = {}
    rows = []
    for e in sorted(evals, key=lambda e: (e.version_id, e.id)):
        if e.version_id not in version_number:
            per_entry[e.name] = per_entry.get(e.name, 0) + 1
            version_number[e.version_id] = per_entry[e.name]
    for e in evals:
        for kind in sorted(set(kind_of.values())):
            rows.append({"entry": e.name, "version_id": e.version_id, "version": version_number[e.version_id],
                         "first_seen_at": e.first_seen_at, "evaluation_id": e.id, "started_at": e.started_at,
                         "status": e.status, "kind": kind, "accuracy": acc.get((e.id, kind), np.nan)})
    return pd.DataFrame(rows, columns=["entry", "version_id", "version", "first_seen_at", "evaluation_id",
                                       "started_at", "status", "kind", "accuracy"])
