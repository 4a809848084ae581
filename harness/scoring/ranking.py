"""Order stored evaluations into a ranking, with statistically tied entries grouped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.scoring.competition import METRICS
from harness.store.schema import Evaluation, unpack
from harness.scoring.metrics import tie_groups


@dataclass(eq=False)
class Score:
    accuracy: float
    correct: int
    total: int
    ci95: tuple[float, float]
    correct_mask: np.ndarray = field(repr=False)  # per-sample correctness, for paired tests
    log_loss: float | None = None

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "ci95": list(self.ci95),
                "log_loss": self.log_loss}


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
    standing: str = "ranked"       # ranked, late (after the deadline), superseded (one entry per member), disqualified
    note: str = ""
    submitted_at: str | None = None
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
                "sandboxed": self.sandboxed, "standing": self.standing, "note": self.note,
                "submitted_at": self.submitted_at}


def _score(evaluation: Evaluation, kind: str) -> Score | None:
    for result in evaluation.results:
        if result.dataset.kind == kind:
            labels = unpack(result.dataset.labels)
            mask = unpack(result.predicted).astype(np.int64) == labels
            return Score(result.accuracy, result.correct, result.total, (result.ci_low, result.ci_high), mask,
                         result.log_loss)
    return None


def to_row(evaluation: Evaluation, standing: str = "ranked", note: str = "") -> Row:
    version = evaluation.version
    return Row(name=version.entry.name, display_name=version.display_name, author=version.author,
               status=evaluation.status, error=evaluation.error, mnist=_score(evaluation, "mnist"),
               guest=_score(evaluation, "guest"), params=evaluation.params,
               images_per_second=evaluation.images_per_second, weights_bytes=version.weights_bytes,
               content_hash=version.content_hash, evaluated_at=evaluation.started_at.isoformat(timespec="seconds"),
               evaluation_id=evaluation.id, sandboxed=evaluation.sandboxed, standing=standing, note=note,
               submitted_at=version.submitted_at.isoformat(timespec="seconds"))


def metric_value(row: Row, metric: str) -> float | None:
    """A row's value of one of competition.METRICS, or None when it has none."""
    kind, attribute, _ = METRICS[metric]
    holder = row if kind is None else getattr(row, kind)
    value = getattr(holder, attribute, None) if holder is not None else None
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def sort_key(row: Row, metrics: list[str]) -> tuple:
    """Smaller is better: each metric signed so that the better value sorts first; a missing value sorts last."""
    key = []
    for metric in metrics:
        value = metric_value(row, metric)
        higher_is_better = METRICS[metric][2]
        key.append((1, 0.0) if value is None else (0, -value if higher_is_better else value))
    return tuple(key)


def rank(rows: list[Row], alpha: float = 0.05, primary: str = "guest_accuracy",
         tie_break: tuple[str, ...] | list[str] = ("mnist_accuracy",)) -> list[Row]:
    """Rank the ok, ranked-standing rows by ``primary`` then ``tie_break``; failed, late, superseded rows follow,
    disqualified ones last.

    Without a guest result for every ok row, guest metrics are left out and MNIST accuracy leads. Equal keys
    share a rank. ``tie_group`` joins an entry to the one above when an exact McNemar test on the primary
    set's per-sample results cannot tell them apart at ``alpha``.
    """
    competing = [r for r in rows if r.standing == "ranked"]
    ok = [r for r in competing if r.status == "ok" and r.mnist is not None]
    failed = sorted((r for r in competing if r not in ok), key=lambda r: r.name.lower())
    unranked = sorted((r for r in rows if r.standing != "ranked"),
                      key=lambda r: (r.standing == "disqualified", r.standing, r.name.lower()))
    has_guest = bool(ok) and all(r.guest is not None and r.guest.total > 0 for r in ok)
    metrics = [m for m in [primary, *tie_break] if has_guest or METRICS[m][0] != "guest"]
    if not metrics or METRICS[metrics[0]][0] is None:
        metrics.insert(0, "mnist_accuracy")
    primary_kind = METRICS[metrics[0]][0]

    ok.sort(key=lambda r: (sort_key(r, metrics), r.name.lower()))
    for i, row in enumerate(ok):
        row.rank = ok[i - 1].rank if i and sort_key(ok[i - 1], metrics) == sort_key(row, metrics) else i + 1
    groups = tie_groups([getattr(r, primary_kind).correct_mask for r in ok], alpha=alpha)
    for i, (row, group) in enumerate(zip(ok, groups)):
        row.tie_group = group
        row.tied_with_above = i > 0 and groups[i - 1] == group
    return ok + failed + unranked
