"""Read-only queries of the results store: plain functions of an Engine, each in a short session, no Streamlit.

Summaries carry headline numbers only; a blob is read only where it is asked for (``predicted`` of the set a board
ranks on, one entry's predictions). Before the reveal, guest results are not even selected (``revealed=False``).
Which evaluations count is decided above, in ``harness.scoring.board``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, exists, func, select
from sqlalchemy.orm import Session

from harness.store import results as store
from harness.store.schema import (Claim, Dataset, Entry, EntryVersion, Evaluation, Moderation, Result, Run, unpack,
                                  utcnow)

if TYPE_CHECKING:  # pandas is imported where a DataFrame is built (the dashboard's history and versions list)
    import pandas as pd


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    kind: str
    size: int
    source: str
    preprocess_version: str | None
    content_hash: str = ""


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


def is_revealed(engine: Engine) -> bool:
    """The organiser's reveal flag (what the rules make of it: ``harness.scoring.board.revealed``)."""
    return store.get_flag(engine, store.GUEST_REVEALED) == "true"


def current_datasets(engine: Engine, revealed: bool) -> dict[str, DatasetInfo]:
    """The newest dataset of each kind that has results; the guest set only after the reveal."""
    with Session(engine) as session:
        newest = (select(Dataset.kind, func.max(Dataset.id).label("id"))
                  .where(Dataset.id.in_(select(Result.dataset_id).distinct())).group_by(Dataset.kind)).subquery()
        rows = session.execute(select(Dataset.id, Dataset.kind, Dataset.size, Dataset.source,
                                      Dataset.preprocess_version, Dataset.content_hash)
                               .join(newest, newest.c.id == Dataset.id)).all()
    out = {r.kind: DatasetInfo(r.id, r.kind, r.size, r.source, r.preprocess_version, r.content_hash) for r in rows}
    if not revealed:
        out.pop("guest", None)
    return out


def summaries(session: Session, evaluation_ids: list[int], datasets: dict[str, DatasetInfo]) -> list[EvalSummary]:
    """The evaluations' headline summaries, with scores on ``datasets`` only."""
    if not evaluation_ids:
        return []
    rows = session.execute(
        select(Evaluation.id, Evaluation.status, Evaluation.error, Evaluation.device, Evaluation.started_at,
               Evaluation.seconds, Evaluation.params, Evaluation.images_per_second, Evaluation.peak_memory_bytes,
               Evaluation.output_kind, Evaluation.log, Evaluation.sandboxed, EntryVersion.id.label("version_id"), EntryVersion.display_name,
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


def evaluation(engine: Engine, evaluation_id: int, datasets: dict[str, DatasetInfo]) -> EvalSummary | None:
    with Session(engine) as session:
        found = summaries(session, [evaluation_id], datasets)
    return found[0] if found else None


def correct_masks(engine: Engine, evaluation_ids: list[int], dataset_id: int) -> dict[int, np.ndarray]:
    """Per-sample correctness (bool [N]) of each evaluation on one dataset, for paired tests."""
    labels = dataset_labels(engine, dataset_id)
    with Session(engine) as session:
        rows = session.execute(select(Result.evaluation_id, Result.predicted)
                               .where(Result.evaluation_id.in_(evaluation_ids), Result.dataset_id == dataset_id)).all()
    return {r.evaluation_id: unpack(r.predicted).astype(np.int64) == labels for r in rows}


def dataset_labels(engine: Engine, dataset_id: int) -> np.ndarray:
    with Session(engine) as session:
        return unpack(session.scalar(select(Dataset.labels).where(Dataset.id == dataset_id))).astype(np.int64)


def dataset_images(engine: Engine, dataset_id: int) -> tuple[np.ndarray | None, list[str]]:
    """The images as the models saw them (uint8 [N,28,28], or None if not stored) and the file names."""
    with Session(engine) as session:
        row = session.execute(select(Dataset.images, Dataset.files).where(Dataset.id == dataset_id)).one()
    return (unpack(row.images) if row.images else None), list(row.files or [])


def predictions(engine: Engine, evaluation_id: int, dataset_id: int) -> dict[str, np.ndarray] | None:
    """Per-sample ``predicted`` [N], ``confidence`` [N] and ``probabilities`` [N,10] of one result."""
    with Session(engine) as session:
        row = session.execute(select(Result.predicted, Result.confidence, Result.probabilities, Result.confusion,
                                     Result.recall, Result.precision)
                              .where(Result.evaluation_id == evaluation_id, Result.dataset_id == dataset_id)).first()
    if row is None:
        return None
    return {"predicted": unpack(row.predicted).astype(np.int64), "confidence": unpack(row.confidence),
            "probabilities": unpack(row.probabilities).astype(np.float32),
            "confusion": np.asarray(row.confusion, dtype=np.int64),
            "recall": np.array([np.nan if v is None else v for v in row.recall], dtype=float),
            "precision": np.array([np.nan if v is None else v for v in row.precision], dtype=float)}


def predicted_matrix(engine: Engine, evaluation_ids: list[int], dataset_id: int) -> dict[int, np.ndarray]:
    """{evaluation id: predicted labels [N]} for several evaluations on one dataset."""
    with Session(engine) as session:
        rows = session.execute(select(Result.evaluation_id, Result.predicted)
                               .where(Result.evaluation_id.in_(evaluation_ids), Result.dataset_id == dataset_id)).all()
    return {r.evaluation_id: unpack(r.predicted).astype(np.int64) for r in rows}


def history(engine: Engine, datasets: dict[str, DatasetInfo]) -> pd.DataFrame:
    """Every evaluation's accuracy on the current datasets: one row per evaluation × kind, oldest first.

    Columns: entry, version_id, version (1-based per entry), first_seen_at, evaluation_id, started_at,
    status, kind, accuracy (NaN for a failed evaluation).
    """
    import pandas as pd  # here: the commands that only read the board need no pandas (about 0.9 s to import)
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


def versions(engine: Engine, entry_name: str, is_late=lambda submitted_at: False) -> pd.DataFrame:
    """One row per version of an entry: when first seen and counted as submitted, late or not (``is_late``: the
    competition's rule), hashes, metadata and how many evaluations."""
    import pandas as pd
    with Session(engine) as session:
        rows = session.execute(
            select(EntryVersion.id, EntryVersion.first_seen_at, EntryVersion.submitted_at,
                   EntryVersion.override_reason, EntryVersion.display_name, EntryVersion.content_hash,
                   EntryVersion.weights_hash, EntryVersion.code_hash, EntryVersion.hyperparameters,
                   func.count(Evaluation.id).label("evaluations"))
            .join(Entry, EntryVersion.entry_id == Entry.id).outerjoin(Evaluation, Evaluation.version_id == EntryVersion.id)
            .where(Entry.name == entry_name).group_by(EntryVersion.id).order_by(EntryVersion.id)).all()
    return pd.DataFrame([{"version": i + 1, "first seen": r.first_seen_at,
                          "submitted": r.submitted_at, "late": is_late(r.submitted_at),
                          "override reason": r.override_reason or "", "display name": r.display_name,
                          "content hash": r.content_hash[:12], "weights hash": r.weights_hash[:12],
                          "code hash": r.code_hash[:12], "hyperparameters": r.hyperparameters,
                          "evaluations": r.evaluations} for i, r in enumerate(rows)])


def newest_evaluation(engine: Engine) -> int:
    """The newest evaluation's id (0 when there is none): a new one means the board has changed."""
    with Session(engine) as session:
        return int(session.scalar(select(func.max(Evaluation.id))) or 0)


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
