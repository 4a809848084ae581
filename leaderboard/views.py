"""What each page shows, assembled from queries and statistics (plain functions; cached in leaderboard/cache.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from harness.common.competition import Competition, is_secret
from harness.data.guest import sample_guest_dir
from harness.data.task import task_of
from harness.scoring import board, standings
from harness.store import eval_sets, evaluations, moderation, predictions, runs, versions
from leaderboard import stats


@dataclass
class BoardView:
    board: pd.DataFrame
    datasets: dict[str, eval_sets.DatasetInfo]
    primary: str           # the kind of the set the ranking uses: "guest"/"secret" or "mnist"/"public"
    revealed: bool
    hidden: list[str]      # entries an organiser hid (names only; for the organiser page)
    verdict: str = ""      # one sentence: how many entries the digits cannot separate from the leader
    secret_kind: str = "guest"  # the store's name for the secret set's results ("secret" for a [task])

    @property
    def ranks_on_secret(self) -> bool:
        return self.primary == self.secret_kind

    @property
    def slot(self) -> str:
        """The board frame's columns of the ranked set: "guest_*" for the secret set, "mnist_*" for the public."""
        return "guest" if self.ranks_on_secret else "mnist"

    @property
    def excluded(self) -> set[str]:
        """Entries that take no part any more: hidden or disqualified."""
        disqualified = self.board.loc[self.board["status"].str.startswith("disqualified"), "entry"]
        return set(self.hidden) | set(disqualified)


def board_view(engine: Engine, revealed: bool, rules: Competition | None = None) -> BoardView:
    rules = rules or Competition()
    ranked = board.read(engine, rules, is_revealed=revealed)
    table = stats.build_board(ranked, evaluations.accuracy_history(engine, ranked.datasets))
    hidden = sorted(n for n, (state, _) in moderation.decisions(engine).items() if state == standings.HIDDEN)
    return BoardView(table, ranked.datasets, ranked.primary, revealed, hidden, board.verdict(ranked),
                     rules.set_kinds[1])


def pending(engine: Engine) -> pd.DataFrame:
    """The uploads not scored yet, as the board's pending rows (``stats.pending_rows``): never ranked, no score."""
    return stats.pending_rows(runs.queue(engine))


@dataclass
class SetView:
    """One entry's results on one dataset, with what is needed to show its samples."""
    kind: str
    dataset: eval_sets.DatasetInfo
    accuracy: float
    ci: tuple[float, float]
    correct: int
    total: int
    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray
    confusion: np.ndarray
    recall: np.ndarray
    precision: np.ndarray


@dataclass
class EntryView:
    summary: evaluations.EvalSummary  # its standing and note say whether (and why) it is disqualified
    sets: dict[str, SetView] = field(default_factory=dict)
    versions: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    late: evaluations.EvalSummary | None = None  # a version submitted after the deadline, shown but not ranked


def entry_view(engine: Engine, name: str, revealed: bool, rules: Competition | None = None) -> EntryView | None:
    """Everything the entry page shows, for the evaluation that counts (its on-time version, else its late
    one); None if unknown or hidden."""
    rules = rules or Competition()
    datasets = eval_sets.current_datasets(engine, revealed)
    picked = [s for s in board.picked(engine, datasets, rules) if s.entry_name == name]
    summary = picked[0] if picked else None
    if summary is None:
        return None
    view = EntryView(summary, late=picked[1] if len(picked) > 1 else None)
    for kind, score in summary.scores.items():
        arrays = predictions.predictions(engine, summary.evaluation_id, score.dataset_id)
        if arrays is None:
            continue
        view.sets[kind] = SetView(kind=kind, dataset=datasets[kind], accuracy=score.accuracy,
                                  ci=(score.ci_low, score.ci_high), correct=score.correct, total=score.total,
                                  labels=eval_sets.dataset_labels(engine, score.dataset_id), **arrays)
    view.versions = versions.table(engine, name, rules.is_late)
    history = evaluations.accuracy_history(engine, datasets)
    view.history = history[history["entry"] == name].reset_index(drop=True)
    return view


@dataclass
class GuestView:
    dataset: eval_sets.DatasetInfo
    labels: np.ndarray
    images: np.ndarray | None
    files: list[str]
    consensus: pd.DataFrame        # per digit, hardest first (see stats.consensus)
    entries: list[str]             # display names of the entries counted


def guest_view(engine: Engine, rules: Competition | None = None) -> GuestView | None:
    """The guest gallery's data; callers must check the reveal first (this reads guest results)."""
    secret = (rules or Competition()).set_kinds[1]
    datasets = eval_sets.current_datasets(engine, revealed=True)
    if secret not in datasets:
        return None
    guest = datasets[secret]
    summaries = [s for s in board.latest(engine, datasets, rules)  # hidden entries are not among them
                 if s.status == "ok" and secret in s.scores and s.standing != standings.DISQUALIFIED]
    labels = eval_sets.dataset_labels(engine, guest.id)
    images, files = eval_sets.dataset_images(engine, guest.id)
    matrix = predictions.predicted_matrix(engine, [s.evaluation_id for s in summaries], guest.id)
    predicted = np.stack([matrix[s.evaluation_id] for s in summaries]) if summaries else np.zeros((0, len(labels)), int)
    return GuestView(guest, labels, images, files, stats.consensus(labels, predicted, task_of(rules).num_classes),
                     [s.display_name for s in summaries])


def original_picture(mystery: Path, source: str, file: str) -> Path | None:
    """The guest's picture as written, if it is still on disk (the shipped sample for a sample set)."""
    root = sample_guest_dir() if source == "sample" else Path(mystery)
    path = (root / file).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return None
    return path if path.is_file() else None


@dataclass
class DuelView:
    kind: str
    labels: np.ndarray
    images: np.ndarray | None
    a: evaluations.EvalSummary
    b: evaluations.EvalSummary
    pred_a: np.ndarray
    pred_b: np.ndarray
    conf_a: np.ndarray
    conf_b: np.ndarray
    result: stats.HeadToHead


def duel_view(engine: Engine, name_a: str, name_b: str, kind: str, revealed: bool,
              rules: Competition | None = None) -> DuelView | None:
    """Two entries' latest evaluations compared on one set (the guest set only after the reveal)."""
    if is_secret(kind) and not revealed:
        return None
    datasets = eval_sets.current_datasets(engine, revealed)
    if kind not in datasets:
        return None
    by_name = {s.entry_name: s for s in board.latest(engine, datasets, rules)}
    a, b = by_name.get(name_a), by_name.get(name_b)
    if a is None or b is None or kind not in a.scores or kind not in b.scores:
        return None
    dataset_id = datasets[kind].id
    pa, pb = (predictions.predictions(engine, e.evaluation_id, dataset_id) for e in (a, b))
    labels = eval_sets.dataset_labels(engine, dataset_id)
    images, _ = eval_sets.dataset_images(engine, dataset_id)
    return DuelView(kind, labels, images, a, b, pa["predicted"], pb["predicted"], pa["confidence"], pb["confidence"],
                    stats.head_to_head(labels, pa["predicted"], pb["predicted"]))


def sealed_view(engine: Engine, evaluation_id: int, entry_name: str, revealed: bool, organiser: bool,
                member_code: str = "") -> tuple[evaluations.SealedDetails | None, str]:
    """What the entry produced while it held the guest's digits (its log, error, time, memory), and a sentence for
    whoever may not see it: nobody before the reveal; after it, the organiser, and the member whose code owns the
    entry."""
    from harness.store import members
    if not revealed:
        return None, ("What the entry printed while it held the guest's digits stays sealed until the reveal; then "
                      "the organiser, and the member who owns the entry, can read it here.")
    if not organiser:
        member = members.verify_code(engine, member_code) if member_code else None
        if member is None or members.owner(engine, entry_name) != member:
            return None, "Enter the code of the member who owns this entry to read its log on the guest's digits."
    details = evaluations.sealed(engine, evaluation_id, revealed)
    return details, "" if details else "No separate run on the guest's digits was stored for this evaluation."


def times(n: int) -> str:
    """``once``, ``twice``, ``3 times``, ``1,200 times``."""
    return {1: "once", 2: "twice"}.get(n, f"{n:,} times")


def version_text(v, rules: Competition) -> str:
    """One version of an entry for the Organiser's list, in plain words: "Version 3 · submitted 2027-01-10
    23:30:00+00:00 (on time) · evaluated twice", with "its files are no longer stored" when only its hash is left, or
    "its files were removed to save space" when the organiser's ``[storage] keep_versions`` let them go."""
    shown = rules.local(v.submitted_at).isoformat(timespec="seconds")
    state = "late" if rules.is_late(v.submitted_at) else "on time"
    extra = f", overridden: {v.override_reason}" if v.overridden else ""
    evaluated = f"evaluated {times(v.evaluations)}" if v.evaluations else "not evaluated yet"
    return (f"Version {v.number} · submitted {shown} ({state}{extra}) · {evaluated}"
            + ("" if v.files_kept else " · its files were removed to save space (its results stay)"
               if v.files_pruned else " · its files are no longer stored"))


def storage_text(engine: Engine, rules: Competition) -> str:
    """The database's size on disk, how much of it the versions' files take, and the rule that bounds them, in
    plain words for the Organiser page (markdown; nothing in it is an entry's)."""
    from harness.store import db_errors, snapshots, space
    total, files = space.database_bytes(engine), snapshots.stored_bytes(engine)
    kept, pruned = snapshots.version_counts(engine)
    where = (f"the SQLite file `{db_errors.sqlite_file(engine.url)}`" if engine.dialect.name == "sqlite"
             else f"the {engine.dialect.name} database `{engine.url.database}`")
    share = f" ({files / total:.0%})" if total else ""
    removed = f"; {pruned:,} had theirs removed to save space, their results kept" if pruned else ""
    said = (f"The database takes **{space.size_text(total)}** ({where}); the versions' files take "
            f"**{space.size_text(files)}** of it{share}: {kept:,} version{'s' if kept != 1 else ''} keep their "
            f"files{removed}.")
    source = "`competition.toml`" if rules.source == "built-in defaults" else f"`{rules.source}`"
    if rules.keep_versions is None:
        return said + (" Every version's files are kept (`[storage] keep_versions = \"all\"`, the default). To keep "
                       "only each entry's ranked version and its last 2, add `[storage]` with `keep_versions = 2` to "
                       f"{source}, then see what it frees with `python -m harness.versions --prune --dry-run`.")
    n = rules.keep_versions
    return said + (f" Each entry keeps the files of its ranked version, of every version the board shows and of its "
                   f"last {n} (`[storage] keep_versions = {n}` in {source}); each evaluation run removes the "
                   "others' files, and `python -m harness.versions --prune` also gives the room back to the disk.")


def newest_first(history: list) -> list[int]:
    """The version numbers of ``history`` (oldest first, as ``harness.versions.history`` gives them), newest first."""
    return [v.number for v in sorted(history, key=lambda v: v.number, reverse=True)]


def moderation_text(entry_name: str, state: str, reason: str) -> str:
    """The organiser's confirmation, one sentence, once an entry was hidden, disqualified or made visible again."""
    if state == "visible":
        return f"{entry_name} is visible again on every page."
    if state == "hidden":
        return f"{entry_name} is now hidden from every page (reason: {reason.strip()})."
    return f"{entry_name} is now disqualified: shown unranked with the reason “{reason.strip()}”."


def archive_text(signed, rules: Competition) -> str:
    """The archive's one sentence: the competition is over, who signed its standings off and when."""
    when = rules.deadline.isoformat(timespec="minutes") if rules.deadline else "its deadline"
    return (f"This competition is over (deadline {when}): these are its final standings, signed off by {signed.by} "
            f"at {signed.at}. Nothing here changes any more.")


def archive_table(signed, names) -> pd.DataFrame:
    """The signed standings as the archive shows them: rank, entry, author, the accuracy on each set (the secret's
    only when it was revealed when signed), its standing."""
    public, secret = f"{names.public_score} accuracy", f"{names.secret_score} accuracy"
    rows = []
    for e in signed.entries:
        row = {"#": "" if e.get("rank") is None else int(e["rank"]), "Entry": e.get("display_name") or e.get("name"),
               "Author": e.get("author") or ""}
        if signed.revealed:  # harness.export names the columns by the sets' kinds
            row[secret] = _percent(e.get(f"{names.secret_kind}_accuracy"))
        row[public] = _percent(e.get(f"{names.public_kind}_accuracy"))
        row["Standing"] = e.get("standing") or ""
        rows.append(row)
    columns = ["#", "Entry", "Author"] + ([secret] if signed.revealed else []) + [public, "Standing"]
    return pd.DataFrame(rows, columns=columns)


def _percent(value) -> str:
    return "" if value is None else f"{100 * float(value):.2f}%"
