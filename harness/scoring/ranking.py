"""Order stored evaluations into a ranking, with statistically tied entries grouped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.scoring.competition import METRICS
from harness.scoring.metrics import tie_groups
from harness.store.reads import Score

ALPHA = 0.05  # paired tests: entries whose per-sample results differ at this level are separated


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
    correct_mask: np.ndarray | None = field(default=None, repr=False)  # per sample, on the set ranked on

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


def rank(rows: list[Row], alpha: float = ALPHA, primary: str = "guest_accuracy",
         tie_break: tuple[str, ...] | list[str] = ("mnist_accuracy",)) -> list[Row]:
    """Rank the ok, ranked-standing rows by ``primary`` then ``tie_break``; failed, late, superseded rows follow,
    disqualified ones last.

    The metrics are taken as given (``harness.scoring.board`` chooses them). Equal keys share a rank. ``tie_group``
    joins an entry to the one above when an exact McNemar test on each row's ``correct_mask`` (the ranked set's
    per-sample results) cannot tell them apart at ``alpha``.
    """
    competing = [r for r in rows if r.standing == "ranked"]
    ok = [r for r in competing if r.status == "ok" and r.mnist is not None]
    failed = sorted((r for r in competing if r not in ok), key=lambda r: r.name.lower())
    unranked = sorted((r for r in rows if r.standing != "ranked"),
                      key=lambda r: (r.standing == "disqualified", r.standing, r.name.lower()))
    metrics = [primary, *tie_break]
    ok.sort(key=lambda r: (sort_key(r, metrics), r.name.lower()))
    for i, row in enumerate(ok):
        row.rank = ok[i - 1].rank if i and sort_key(ok[i - 1], metrics) == sort_key(row, metrics) else i + 1
    if any(r.correct_mask is None for r in ok):
        return ok + failed + unranked  # no per-sample results to compare: no tie groups
    groups = tie_groups([r.correct_mask for r in ok], alpha=alpha)
    for i, (row, group) in enumerate(zip(ok, groups)):
        row.tie_group = group
        row.tied_with_above = i > 0 and groups[i - 1] == group
    return ok + failed + unranked
