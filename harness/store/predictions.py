"""Each result's per-sample predictions (the stored blobs), read only where they are asked for: one set's predicted
labels of several evaluations (paired tests, the disagreements of two entries) and one result's predictions with its
confusion matrix."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harness.store.eval_sets import dataset_labels
from harness.store.schema import Result, unpack


def correct_masks(engine: Engine, evaluation_ids: list[int], dataset_id: int) -> dict[int, np.ndarray]:
    """Per-sample correctness (bool [N]) of each evaluation on one dataset, for paired tests."""
    labels = dataset_labels(engine, dataset_id)
    with Session(engine) as session:
        rows = session.execute(select(Result.evaluation_id, Result.predicted)
                               .where(Result.evaluation_id.in_(evaluation_ids), Result.dataset_id == dataset_id)).all()
    return {r.evaluation_id: unpack(r.predicted).astype(np.int64) == labels for r in rows}


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
