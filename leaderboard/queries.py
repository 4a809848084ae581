"""Read-only queries of the results store for the dashboard: plain functions of an Engine, no Streamlit.

The board reads only the latest evaluation of each entry and never a blob except ``predicted`` of the
set it ranks on. Before the reveal, guest results are not even selected (``revealed=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harness.scoring import standings
from harness.store import results as store
from harness.scoring.competition import Competition
from harness.store.schema import Dataset, Entry, EntryVersion, Evaluation, Result, Run, unpack


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    kind: str
    size: int
    source: str
    preprocess_version: str | None


@dataclass(frozen=True)
class Score:
    """One result's headline numbers (no blobs)."""
    result_id: int
    dataset_id: int
    correct: int
    total: int
    accuracy: float
    ci_low: float
    ci_high: float
    log_loss: float | None = None


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
    standing: str = "ranked"       # ranked, late (submitted after the deadline) or superseded (one per member)
    note: str = ""
    submitted_at: datetime | None = None  # naive UTC: when the version counts as submitted


def is_revealed(engine: Engine) -> bool:
    return store.get_flag(engine, store.GUEST_REVEALED) == "true"


def current_datasets(engine: Engine, revealed: bool) -> dict[str, DatasetInfo]:
    """The newest dataset of each kind that has results; the guest set only after the reveal."""
    with Session(engine) as session:
        newest = (select(Dataset.kind, func.max(Dataset.id).label("id"))
                  .where(Dataset.id.in_(select(Result.dataset_id).distinct())).group_by(Dataset.kind)).subquery()
        rows = session.execute(select(Dataset.id, Dataset.kind, Dataset.size, Dataset.source,
                                      Dataset.preprocess_version).join(newest, newest.c.id == Dataset.id)).all()
    out = {r.kind: DatasetInfo(r.id, r.kind, r.size, r.source, r.preprocess_version) for r in rows}
    if not revealed:
        out.pop("guest", None)
    return out


def _summaries(session: Session, evaluation_ids: list[int], datasets: dict[str, DatasetInfo]) -> list[EvalSummary]:
    if not evaluation_ids:
        return []
    rows = session.execute(
        select(Evaluation.id, Evaluation.status, Evaluation.error, Evaluation.device, Evaluation.started_at,
               Evaluation.seconds, Evaluation.params, Evaluation.images_per_second, Evaluation.peak_memory_bytes,
               Evaluation.output_kind, Evaluation.log, Evaluation.sandboxed, EntryVersion.id.label("version_id"), EntryVersion.display_name,
               EntryVersion.author, EntryVersion.description, EntryVersion.hyperparameters, EntryVersion.constructor,
               EntryVersion.content_hash, EntryVersion.code_hash, EntryVersion.weights_hash,
               EntryVersion.weights_bytes, Entry.name)
        .join(EntryVersion, Evaluation.version_id == EntryVersion.id).join(Entry, EntryVersion.entry_id == Entry.id)
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
                        scores=scores[r.id], sandboxed=r.sandboxed) for r in rows]


def picked_evaluations(engine: Engine, datasets: dict[str, DatasetInfo],
                       rules: Competition | None = None) -> list[EvalSummary]:
    """What the board shows, as ``harness.scoring.standings`` decides: each entry's on-time evaluation (``ranked`` or
    ``superseded``) and, when there is one, its newer ``late`` evaluation; a disqualified entry once, a hidden one
    not at all; with scores on ``datasets`` only."""
    picks = standings.current(engine, rules or Competition())
    with Session(engine) as session:
        by_id = {s.evaluation_id: s for s in _summaries(session, [p.evaluation_id for p in picks], datasets)}
    out = [replace(by_id[p.evaluation_id], standing=p.standing, note=p.note, submitted_at=p.submitted_at)
           for p in picks if p.evaluation_id in by_id]
    return sorted(out, key=lambda s: (s.entry_name.lower(), s.standing == standings.LATE))


def latest_evaluations(engine: Engine, datasets: dict[str, DatasetInfo],
                       rules: Competition | None = None) -> list[EvalSummary]:
    """One evaluation per entry: the one that counts (its on-time version), else its late one."""
    out: dict[str, EvalSummary] = {}
    for summary in picked_evaluations(engine, datasets, rules):
        out.setdefault(summary.entry_name, summary)
    return list(out.values())


def evaluation(engine: Engine, evaluation_id: int, datasets: dict[str, DatasetInfo]) -> EvalSummary | None:
    with Session(engine) as session:
        found = _summaries(session, [evaluation_id], datasets)
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


def versions(engine: Engine, entry_name: str, rules: Competition | None = None) -> pd.DataFrame:
    """One row per version of an entry: when first seen and counted as submitted, late or not, hashes, metadata
    and how many evaluations."""
    rules = rules or Competition()
    with Session(engine) as session:
        rows = session.execute(
            select(EntryVersion.id, EntryVersion.first_seen_at, EntryVersion.submitted_at,
                   EntryVersion.override_reason, EntryVersion.display_name, EntryVersion.content_hash,
                   EntryVersion.weights_hash, EntryVersion.code_hash, EntryVersion.hyperparameters,
                   func.count(Evaluation.id).label("evaluations"))
            .join(Entry, EntryVersion.entry_id == Entry.id).outerjoin(Evaluation, Evaluation.version_id == EntryVersion.id)
            .where(Entry.name == entry_name).group_by(EntryVersion.id).order_by(EntryVersion.id)).all()
    return pd.DataFrame([{"version": i + 1, "first seen": r.first_seen_at,
                          "submitted": r.submitted_at, "late": rules.is_late(r.submitted_at),
                          "override reason": r.override_reason or "", "display name": r.display_name,
                          "content hash": r.content_hash[:12], "weights hash": r.weights_hash[:12],
                          "code hash": r.code_hash[:12], "hyperparameters": r.hyperparameters,
                          "evaluations": r.evaluations} for i, r in enumerate(rows)])


def latest_run(engine: Engine) -> dict | None:
    with Session(engine) as session:
        run = session.scalar(select(Run).order_by(Run.id.desc()).limit(1))
        if run is None:
            return None
        done = session.scalar(select(func.count(Evaluation.id)).where(Evaluation.run_id == run.id))
        return {"id": run.id, "started_at": run.started_at, "finished_at": run.finished_at, "status": run.status,
                "evaluations": int(done), "argv": list(run.argv or [])}
