"""The sets entries are scored on, as stored: each set's labels, images (as the models saw them) and file names, one
row per kind and content (a new guest set is a new row; none is ever deleted)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harness.common.competition import is_secret
from harness.data.task import DatasetSpec
from harness.store.schema import Dataset, Result, pack, unpack


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    kind: str
    size: int
    source: str
    preprocess_version: str | None
    content_hash: str = ""


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


def current_datasets(engine: Engine, revealed: bool) -> dict[str, DatasetInfo]:
    """The newest dataset of each kind that has results; the secret set (the guest's) only after the reveal."""
    with Session(engine) as session:
        newest = (select(Dataset.kind, func.max(Dataset.id).label("id"))
                  .where(Dataset.id.in_(select(Result.dataset_id).distinct())).group_by(Dataset.kind)).subquery()
        rows = session.execute(select(Dataset.id, Dataset.kind, Dataset.size, Dataset.source,
                                      Dataset.preprocess_version, Dataset.content_hash)
                               .join(newest, newest.c.id == Dataset.id)).all()
    out = {r.kind: DatasetInfo(r.id, r.kind, r.size, r.source, r.preprocess_version, r.content_hash) for r in rows}
    if not revealed:
        out = {kind: info for kind, info in out.items() if not is_secret(kind)}
    return out


def dataset_labels(engine: Engine, dataset_id: int) -> np.ndarray:
    with Session(engine) as session:
        return unpack(session.scalar(select(Dataset.labels).where(Dataset.id == dataset_id))).astype(np.int64)


def dataset_images(engine: Engine, dataset_id: int) -> tuple[np.ndarray | None, list[str]]:
    """The images as the models saw them (uint8 [N,H,W] or [N,C,H,W], or None if not stored) and the file names."""
    with Session(engine) as session:
        row = session.execute(select(Dataset.images, Dataset.files).where(Dataset.id == dataset_id)).one()
    return (unpack(row.images) if row.images else None), list(row.files or [])
