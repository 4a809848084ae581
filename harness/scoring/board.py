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

from harness.common.competition import Competition
from harness.scoring import ranking, standings
from harness.store import eval_sets, evaluations, flags, predictions
from harness.store.eval_sets import DatasetInfo
from harness.store.evaluations import EvalSummary


@dataclass
class Board:
    rows: list[ranking.Row]                # ranked first, then failed, then unranked (late, superseded, disqualified)
    summaries: dict[int, EvalSummary]      # by evaluation id
    datasets: dict[str, DatasetInfo]       # the current sets (the guest's only when revealed)
    primary: str                           # the kind of the set the ranking uses: "guest"/"secret" or "mnist"/"public"
    revealed: bool
    rules: Competition = Competition()

    @property
    def ranks_on_secret(self) -> bool:
        return self.primary == self.rules.set_kinds[1]


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


def primary_kind(summaries: list[EvalSummary], revealed: bool, primary: str = "guest_accuracy",
                 rules: Competition | None = None) -> str:
    """The set the board ranks on: the secret set (the guest's) when the rules rank on it, it is revealed and every
    ranked ok entry has a result on it; else the public one (MNIST test)."""
    rules = rules or Competition()
    public, secret = rules.set_kinds
    ok = [s for s in summaries if s.status == "ok" and public in s.scores and s.standing == standings.RANKED]
    if rules.metrics[primary][0] == secret and revealed and ok and \
            all(secret in s.scores and s.scores[secret].total > 0 for s in ok):
        return secret
    return public


def metrics(rules: Competition, kind: str) -> list[str]:
    """The ranking's metrics in order: the rules' primary and tie-breaks, less those of a set not ranked on."""
    public, secret = rules.set_kinds
    names = rules.metrics
    chosen = [m for m in [rules.primary, *rules.tie_break] if kind == secret or names[m][0] != secret]
    if not chosen or names[chosen[0]][0] is None:
        chosen.insert(0, f"{public}_accuracy")
    return chosen


def to_row(summary: EvalSummary, revealed: bool, mask: np.ndarray | None,
           kinds: tuple[str, str] = ("mnist", "guest")) -> ranking.Row:
    """The board's row of one evaluation: ``mnist`` holds its score on the public set and ``guest`` on the secret
    one (whatever the task calls them: ``kinds``), the latter only once revealed."""
    public, secret = kinds
    return ranking.Row(
        name=summary.entry_name, display_name=summary.display_name, author=summary.author, status=summary.status,
        error=summary.error, mnist=summary.scores.get(public), guest=summary.scores.get(secret) if revealed else None,
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
    kind = primary_kind(summaries, shown, rules.primary, rules)
    ids = [s.evaluation_id for s in summaries
           if s.status == "ok" and kind in s.scores and s.standing == standings.RANKED]
    masks = predictions.correct_masks(engine, ids, datasets[kind].id) if ids and kind in datasets else {}
    rows = [to_row(s, shown, masks.get(s.evaluation_id), rules.set_kinds) for s in summaries]
    order = [role_metric(m, rules) for m in metrics(rules, kind)]
    ranked = ranking.rank(rows, alpha=alpha, primary=order[0], tie_break=order[1:])
    return Board(ranked, {s.evaluation_id: s for s in summaries}, datasets, kind, shown, rules)


def role_metric(name: str, rules: Competition) -> str:
    """A metric of the rules as ``ranking`` names it on a row: the public set's as ``mnist_*``, the secret set's as
    ``guest_*`` (the row's slots)."""
    public, secret = rules.set_kinds
    for kind, slot in ((public, "mnist"), (secret, "guest")):
        if name.startswith(kind + "_"):
            return slot + name[len(kind):]
    return name


def verdict(board: Board) -> str:
    """The board in one plain sentence: how many entries the ranked set's digits cannot separate from the leader."""
    info = board.datasets.get(board.primary)
    size = f"{info.size:,} " if info is not None else ""
    if board.rules.task is None:
        digits = f"the guest's {size}digits" if board.primary == "guest" else f"the {size}MNIST test digits"
    else:
        task = board.rules.task
        named = task.secret if board.ranks_on_secret else task.public
        digits = f"the {size}pictures of {named.title}"
    return ranking.leader_sentence(board.rows, digits)
