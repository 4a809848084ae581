"""Order stored evaluations into a ranking, and say which entries the digits cannot separate from the leader and
the other medal positions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.common.competition import METRICS
from harness.scoring.metrics import against, memorisation_p, memorised
from harness.store.evaluations import Score

ALPHA = 0.05  # paired tests against a medal position, Holm-corrected: results differing at this level separate
MEDAL_POSITIONS = 3


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
    with_leader: bool | None = None         # the digits cannot separate it from #1 (the leader itself: True)
    p_vs_leader: float | None = None        # exact McNemar against #1, Holm-adjusted over the ranked entries
    level_with: tuple[int, ...] = ()        # medal positions (1-3, in rank order) it cannot be separated from
    correct_mask: np.ndarray | None = field(default=None, repr=False)  # per sample, on the set ranked on
    memorisation: tuple[int, int, int] | None = None  # (pairs, right only as given, right only as the copy)

    @property
    def memorised(self) -> bool:
        """Reads the exact public images far better than copies no person could tell apart (``metrics.memorised``)."""
        return self.memorisation is not None and memorised(*self.memorisation[1:])

    def memorisation_dict(self) -> dict | None:
        if self.memorisation is None:
            return None
        pairs, only_original, only_copy = self.memorisation
        return {"pairs": pairs, "right_only_as_given": only_original, "right_only_as_copy": only_copy,
                "p": memorisation_p(only_original, only_copy), "flagged": self.memorised}

    def as_dict(self) -> dict:
        return {"name": self.name, "display_name": self.display_name, "author": self.author, "status": self.status,
                "error": self.error, "rank": self.rank, "with_leader": self.with_leader,
                "p_vs_leader": self.p_vs_leader, "level_with": list(self.level_with),
                "mnist": self.mnist.as_dict() if self.mnist else None,
                "guest": self.guest.as_dict() if self.guest else None,
                "params": self.params, "images_per_second": self.images_per_second,
                "weights_bytes": self.weights_bytes, "version": self.content_hash[:12],
                "evaluated_at": self.evaluated_at, "evaluation_id": self.evaluation_id,
                "sandboxed": self.sandboxed, "standing": self.standing, "note": self.note,
                "submitted_at": self.submitted_at, "memorisation": self.memorisation_dict()}


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

    The metrics are taken as given (``harness.scoring.board`` chooses them). Equal keys share a rank; medals
    follow the rank. Each ranked row is then tested against the top ``MEDAL_POSITIONS`` rows with an exact paired
    McNemar test on ``correct_mask`` (the ranked set's per-sample results), Holm-corrected over the other ranked
    rows at ``alpha``: ``with_leader``, ``p_vs_leader`` and ``level_with`` carry the result.
    """
    ok, failed, unranked = ordered(rows, [primary, *tie_break])
    if all(r.correct_mask is not None for r in ok):  # else no per-sample results to compare: nothing to say
        separate(ok, alpha)
    return ok + failed + unranked


def ordered(rows: list[Row], metrics: list[str]) -> tuple[list[Row], list[Row], list[Row]]:
    """The ok rows of ranked standing in order, ranked (equal keys share a rank), then the failed ones by name, then
    the rows of other standings (disqualified last)."""
    competing = [r for r in rows if r.standing == "ranked"]
    ok = [r for r in competing if r.status == "ok" and r.mnist is not None]
    failed = sorted((r for r in competing if r not in ok), key=lambda r: r.name.lower())
    unranked = sorted((r for r in rows if r.standing != "ranked"),
                      key=lambda r: (r.standing == "disqualified", r.standing, r.name.lower()))
    ok.sort(key=lambda r: (sort_key(r, metrics), r.name.lower()))
    for i, row in enumerate(ok):
        row.rank = ok[i - 1].rank if i and sort_key(ok[i - 1], metrics) == sort_key(row, metrics) else i + 1
    return ok, failed, unranked


def separate(ok: list[Row], alpha: float) -> None:
    """Test each ranked row against the top MEDAL_POSITIONS ones (exact McNemar on ``correct_mask``, Holm-corrected):
    ``level_with``, ``with_leader`` and ``p_vs_leader``."""
    masks = [r.correct_mask for r in ok]
    for row in ok:
        row.level_with = ()
    for position in range(min(MEDAL_POSITIONS, len(ok))):
        adjusted = against(masks, position)
        for i, row in enumerate(ok):
            if i == position or adjusted[i] >= alpha:
                row.level_with += (position + 1,)
            if position == 0:
                row.with_leader = i == 0 or bool(adjusted[i] >= alpha)
                row.p_vs_leader = None if i == 0 else float(adjusted[i])

NAMED = 3  # the leader sentence names at most this many entries level with the leader


def leader_sentence(rows: list[Row], digits: str) -> str:
    """One plain sentence: how many entries ``digits`` (e.g. "the guest's 100 digits") cannot separate from the
    leader; empty when the rows carry no separation."""
    ranked = [r for r in rows if r.with_leader is not None]
    if not ranked:
        return ""
    level = [r for r in ranked if r.with_leader]
    how = f"exact McNemar tests against the leader, Holm-corrected, α = {ALPHA}"
    if len(level) == 1:
        return f"{digits[0].upper()}{digits[1:]} put {ranked[0].display_name} clearly ahead ({how})."
    if level == ranked[:len(level)]:
        return f"{digits[0].upper()}{digits[1:]} cannot separate the top {len(level)} ({how})."
    named = [r.display_name for r in level[1:NAMED + 1]]  # a few by name: the sentence stays a sentence
    more = len(level) - 1 - len(named)
    names = ", ".join(named) + (f" and {more:,} more, marked ≈ #1 on the board" if more else "")
    count = f"{len(level) - 1:,} {'entry' if len(level) == 2 else 'entries'}"
    return (f"{digits[0].upper()}{digits[1:]} cannot separate {count} from the leader, "
            f"{ranked[0].display_name}: {names} ({how}).")
