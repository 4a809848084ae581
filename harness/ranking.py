"""Order stored evaluations into a ranking, with statistically tied entries grouped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.db import Evaluation, unpack
from harness.metrics import tie_groups


@dataclass(eq=False)
class Score:
    accuracy: float
    correct: int
    total: int
    ci95: tuple[float, float]
    correct_mask: np.ndarray = field(repr=False)  # per-sample correctness, for paired tests

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "ci95": list(self.ci95)}


@dataclass(eq=False)
class Row:
    name: str
    display_name: str
    author: str | None
    status: str
    error: str | None
    mnist: Score | None
    guest: Score | None
    params: int | None
    images_per_second: float | None
    weights_bytes: int
    content_hash: str
    evaluated_at: str
    evaluation_id: int
    sandboxed: bool | None = None
    rank: int | None = None
    tie_group: int | None = None
    tied_with_above: bool = False

    def as_dict(self) -> dict:
        return {"name": self.name, "display_name": self.display_name, "author": self.author, "status": self.status,
                "error": self.error, "rank": self.rank, "tie_group": self.tie_group,
                "tied_with_above": self.tied_with_above,
                "mnist": self.mnist.as_dict() if self.mnist else None,
                "guest": self.guest.as_dict() if self.guest else None,
                "params": self.params, "images_per_second": self.images_per_second,
                "weights_bytes": self.weights_bytes, "version": self.content_hash[:12],
                "evaluated_at": self.evaluated_at, "evaluation_id": self.evaluation_id,
                "sandboxed": self.sandboxed}


def _score(evaluation: Evaluation, kind: str) -> Score | None:
    for result in evaluation.results:
        if result.dataset.kind == kind:
            labels = unpack(result.dataset.labels)
            mask = unpack(result.predicted).astype(np.int64) == labels
            return Score(result.accuracy, result.correct, result.total, (result.ci_low, result.ci_high), mask)
    return None


def to_row(evaluation: Evaluation) -> Row:
    version = evaluation.version
    return Row(name=version.entry.name, display_name=version.display_name, author=version.author,
               status=evaluation.status, error=evaluation.error, mnist=_score(evaluation, "mnist"),
               guest=_score(evaluation, "guest"), params=evaluation.params,
               images_per_second=evaluation.images_per_second, weights_bytes=version.weights_bytes,
               content_hash=version.content_hash, evaluated_at=evaluation.started_at.isoformat(timespec="seconds"),
               evaluation_id=evaluation.id, sandboxed=evaluation.sandboxed)


def rank(rows: list[Row], alpha: float = 0.05) -> list[Row]:
    """Rank ok rows by guest then MNIST accuracy (MNIST alone without a guest set); failed rows last.

    Equal scores share a rank. ``tie_group`` joins an entry to the one above when an exact McNemar test on
    the primary set's per-sample results cannot tell them apart at ``alpha``.
    """
    ok = [r for r in rows if r.status == "ok" and r.mnist is not None]
    failed = sorted((r for r in rows if r not in ok), key=lambda r: r.name.lower())
    has_guest = bool(ok) and all(r.guest is not None and r.guest.total > 0 for r in ok)

    def key(r: Row) -> tuple:
        return (r.guest.accuracy if has_guest else 0.0, r.mnist.accuracy)

    ok.sort(key=lambda r: (tuple(-k for k in key(r)), r.name.lower()))
    for i, row in enumerate(ok):
        row.rank = ok[i - 1].rank if i and key(ok[i - 1]) == key(row) else i + 1
    groups = tie_groups([(r.guest if has_guest else r.mnist).correct_mask for r in ok], alpha=alpha)
    for i, (row, group) in enumerate(zip(ok, groups)):
        row.tie_group = group
        row.tied_with_above = i > 0 and groups[i - 1] == group
    return ok + failed
