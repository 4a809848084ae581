"""The one read model, from the store to a ranked board: the terminal table, ``--json``, ``harness.export``,
``harness.insights`` and the dashboard all read the board here.

Who counts (late, superseded, disqualified, hidden) is ``harness.scoring.standings``'s decision; which set ranks
(the guest's once revealed and scored for every ranked entry, else MNIST) is decided once, in
:func:`primary_kind`; whether the guest results are revealed once, in :func:`revealed`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from harness.common.competition import METRICS, Competition
from harness.scoring import ranking, standings
from harness.store import eval_sets, evaluations, flags, predictions
from harness.store.eval_sets import DatasetInfo
from harness.store.evaluations import EvalSummary


@dataclass
class Board:
    rows: list[ranking.Row]                # ranked first, then failed, then unranked (late, superseded, disqualified)
    summaries: dict[int, EvalSummary]      # by evaluation id
    datasets: dict[str, DatasetInfo]       # the current sets (the guest's only when revealed)
    primary: str                           # "guest" or "mnist": the set the ranking uses
    revealed: bool


def revealed(engine: Engine, rules: Competition) -> bool:
    """Whether guest results may be shown: the competition's rule applied to the organiser's flag."""
    return rules.guest_revealed(flags.is_revealed(engine))


def picked(engine: Engine, datasets: dict[str, DatasetInfo], rules: Competition | None = None) -> list[EvalSummary]:
    """What the board shows, as standings decide: each entry's on-time evaluation (``ranked`` or ``superseded``)
    and, when there is one, its newer ``late`` evaluation; a disqualified entry once, a hidden one not at all;
    with scores on ``datasets`` only."""
    picks = standings.current(engine, rules or Competition())
    with Session(engine) as session:
        by_id = {s.evaluation_id: s for s in evaluations.summaries(session, [p.evaluation_id for p in picks], datasets)}
    out = [replace(by_id[p.evaluation_id], standing=p.standing, note=p.note, submitted_at=p.submitted_at)
           for p in picks if p.evaluation_id in by_id]
    return sorted(out, key=lambda s: (s.entry_name.lower(), s.standing == standings.LATE))


def latest(engine: Engine, datasets: dict[str, DatasetInfo], rules: Competition | None = None) -> list[EvalSummary]:
    """One evaluation per entry: the one that counts (its on-time version), else its late one."""
    out: dict[str, EvalSummary] = {}
    for summary in picked(engine, datasets, rules):
        out.setdefault(summary.entry_name, summary)
    return list(out.values())


def primary_kind(summaries: list[EvalSummary], revealed: bool, primary: str = "guest_accuracy") -> str:
    """The set the board ranks on: the guest set when the rules rank on it, it is revealed and every ranked ok
    entry has a result on it; else MNIST."""
    ok = [s for s in summaries if s.status == "ok" and "mnist" in s.scores and s.standing == standings.RANKED]
    if METRICS[primary][0] == "guest" and revealed and ok and \
            all("guest" in s.scores and s.scores["guest"].total > 0 for s in ok):
        return "guest"
    return "mnist"


def metrics(rules: Competition, kind: str) -> list[str]:
    """The ranking's metrics in order: the rules' primary and tie-breaks, less those of a set not ranked on."""
    chosen = [m for m in [rules.primary, *rules.tie_break] if kind == "guest" or METRICS[m][0] != "guest"]
    if not chosen or METRICS[chosen[0]][0] is None:
        chosen.insert(0, "mnist_accuracy")
    return chosen


def to_row(summary: EvalSummary, revealed: bool, mask: np.ndarray | None) -> ranking.Row:
    return ranking.Row(
        name=summary.entry_name, display_name=summary.display_name, author=summary.author, status=summary.status,
        error=summary.error, mnist=summary.scores.get("mnist"), guest=summary.scores.get("guest") if revealed else None,
        params=summary.params, images_per_second=summary.images_per_second, weights_bytes=summary.weights_bytes,
        content_hash=summary.content_hash, evaluated_at=summary.started_at.isoformat(timespec="seconds"),
        evaluation_id=summary.evaluation_id, sandboxed=summary.sandboxed, standing=summary.standing,
        note=summary.note,
        submitted_at=summary.submitted_at.isoformat(timespec="seconds") if summary.submitted_at else None,
        correct_mask=mask, memorisation=summary.memorisation)


def read(engine: Engine, rules: Competition, is_revealed: bool | None = None, names: set[str] | None = None,
         alpha: float = ranking.ALPHA) -> Board:
    """The ranked board: ``is_revealed`` None applies the rules to the organiser's flag; ``names`` limits it to
    some entries (a terminal run of ``--only``)."""
    shown = revealed(engine, rules) if is_revealed is None else is_revealed
    datasets = eval_sets.current_datasets(engine, shown)
    summaries = [s for s in picked(engine, datasets, rules) if names is None or s.entry_name in names]
    kind = primary_kind(summaries, shown, rules.primary)
    ids = [s.evaluation_id for s in summaries
           if s.status == "ok" and kind in s.scores and s.standing == standings.RANKED]
    masks = predictions.correct_masks(engine, ids, datasets[kind].id) if ids and kind in datasets else {}
    rows = [to_row(s, shown, masks.get(s.evaluation_id)) for s in summaries]
    order = metrics(rules, kind)
    ranked = ranking.rank(rows, alpha=alpha, primary=order[0], tie_break=order[1:])
    return Board(ranked, {s.evaluation_id: s for s in summaries}, datasets, kind, shown)


def verdict(board: Board) -> str:
    """The board in one plain sentence: how many entries the ranked set's digits cannot separate from the leader."""
    info = board.datasets.get(board.primary)
    size = f"{info.size:,} " if info is not None else ""
    digits = f"the guest's {size}digits" if board.primary == "guest" else f"the {size}MNIST test digits"
    return ranking.leader_sentence(board.rows, digits)
