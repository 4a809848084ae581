"""The dashboard's statistics: the honest board, galleries, head-to-head and consensus. No Streamlit, no I/O."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from math import ceil
from urllib.parse import quote

import numpy as np
import pandas as pd

from harness.data.task import TASK
from harness.scoring.board import Board
from harness.scoring.metrics import mcnemar_exact
from harness.scoring.ranking import ALPHA, Row
from harness.store.evaluations import EvalSummary
from harness.store.runs import Queued

MEDALS = {1: "🥇", 2: "🥈", 3: "🥉"}
SEALED = "🔒 sealed"


def build_board(ranked: Board, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The board as the dashboard's table: one row per row of ``harness.scoring.board`` (its order, ranks and
    separation from the leader), with medals, sealed guest columns before the reveal, each entry's score history and
    its hyperparameters as columns."""
    kind, revealed = ranked.primary, ranked.revealed
    records = []
    for row in ranked.rows:
        s = ranked.summaries[row.evaluation_id]
        status = None
        if s.standing != "ranked":
            status = f"{s.standing}: {s.note}" + ("" if s.status == "ok" else f" (failed: {one_line(s.error)})")
        records.append(_record(s, row, revealed, ranked.rules.set_kinds, ranked.ranks_on_secret, status))
    board = pd.DataFrame.from_records(records, columns=BOARD_COLUMNS)
    if history is not None and len(board):
        trend = history_series(history, kind)
        board["history"] = [trend.get(name, []) for name in board["entry"]]
        board["versions"] = [int(history.loc[history["entry"] == name, "version"].max())
                             if (history["entry"] == name).any() else 1 for name in board["entry"]]
    hp = hyperparameter_columns([ranked.summaries[i] for i in board["evaluation_id"]])
    return pd.concat([board, hp], axis=1) if len(hp.columns) else board


BOARD_COLUMNS = ["medal", "rank", "place", "with_leader", "p_vs_leader", "separation", "display_name", "entry",
                 "link", "author", "score", "guest_accuracy", "guest_ci", "guest_ci_low", "guest_ci_high",
                 "mnist_accuracy", "mnist_ci", "mnist_ci_low", "mnist_ci_high", "params", "images_per_second",
                 "evaluated_at", "status", "state", "history", "versions", "evaluation_id", "memorised",
                 "hyperparameters"]


def _record(s: EvalSummary, row: Row, revealed: bool, kinds: tuple[str, str], on_secret: bool,
            status: str | None = None) -> dict:
    """One row of the board; the public set's results go in the ``mnist_*`` columns and the secret set's in the
    ``guest_*`` ones, whatever ``kinds`` (the store's names for them) the task uses."""
    guest = s.scores.get(kinds[1]) if revealed else None
    mnist = s.scores.get(kinds[0])
    kind = "guest" if on_secret else "mnist"
    if status is None:
        status = "ok" if s.status == "ok" else f"failed: {one_line(s.error)}"
    rank = row.rank
    if row.with_leader is None:
        separation = ""
    elif rank == 1:
        separation = "leader"
    elif row.with_leader:
        separation = f"level with #1 ({p_text(row.p_vs_leader)})"
    else:
        separation = f"behind #1 ({p_text(row.p_vs_leader)})"
    ranked_score = guest if kind == "guest" else mnist
    return {"medal": MEDALS.get(rank, "") if rank is not None else "", "rank": rank,
            "place": "" if rank is None else f"{MEDALS.get(rank, '')} {rank}".strip(),
            "with_leader": row.with_leader, "p_vs_leader": row.p_vs_leader, "separation": separation,
            "display_name": s.display_name, "entry": s.entry_name, "link": entry_link(s.entry_name, s.display_name),
            "author": s.author or "",
            "score": score_text(ranked_score, kind) if rank is not None else "",
            "guest_accuracy": (guest.accuracy if guest else None) if revealed else SEALED,
            "guest_ci": ((f"{100 * guest.ci_low:.1f}–{100 * guest.ci_high:.1f}%" if guest else "") if revealed
                         else SEALED),
            "guest_ci_low": guest.ci_low if guest else None, "guest_ci_high": guest.ci_high if guest else None,
            "mnist_accuracy": mnist.accuracy if mnist else None,
            "mnist_ci": f"{100 * mnist.ci_low:.2f}–{100 * mnist.ci_high:.2f}%" if mnist else "",
            "mnist_ci_low": mnist.ci_low if mnist else None, "mnist_ci_high": mnist.ci_high if mnist else None,
            "params": s.params, "images_per_second": s.images_per_second,
            "evaluated_at": s.started_at, "status": status, "state": state_text(row, status),
            "history": [], "versions": 1, "evaluation_id": s.evaluation_id, "memorised": row.memorised,
            "hyperparameters": dict(s.hyperparameters)}


PENDING = "pending"  # the status of a row for an upload not scored yet: never ranked, no score
PENDING_PLACE = "⏳"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def pending_text(q: Queued, short: bool = False) -> str:
    """Where an upload is: "queued, 2nd in line", "being scored: 1,280/10,000 images" (the public sets' images
    only), "being scored: starting" or "... finishing"; ``short`` for the score cell ("scoring 1,280/10,000")."""
    if q.place is not None:
        return f"queued, {ordinal(q.place)} in line"
    head = "scoring" if short else "being scored:"
    if not q.done or not q.public:
        return f"{head} starting"
    if q.done >= q.public:
        return f"{head} finishing"
    return f"{head} {q.done:,}/{q.public:,}" + ("" if short else " images")


def pending_rows(queue: list[Queued]) -> pd.DataFrame:
    """The uploads waiting to be scored, or being scored, as rows of the board (``build_board``'s columns): no rank,
    no score, nothing of any set; the score cell says where the upload is, the status says it in full."""
    records = [{**dict.fromkeys(BOARD_COLUMNS), "medal": "", "place": PENDING_PLACE, "separation": "",
                "display_name": q.display_name, "entry": q.entry_name, "link": entry_link(q.entry_name, q.display_name),
                "author": q.author or "", "score": pending_text(q, short=True), "guest_ci": "", "mnist_ci": "",
                "status": f"{PENDING}: {pending_text(q)} (version {q.version})", "state": PENDING, "history": [],
                "versions": q.version, "hyperparameters": {}} for q in queue]
    return pd.DataFrame.from_records(records, columns=BOARD_COLUMNS)


def with_pending(board: pd.DataFrame, pending: pd.DataFrame) -> pd.DataFrame:
    """The pending rows first (the member who just uploaded finds theirs without scrolling), then the board."""
    if not len(pending):
        return board
    if not len(board):
        return pending.reset_index(drop=True)
    return pd.concat([pending, board], ignore_index=True)


def is_pending(board: pd.DataFrame) -> pd.Series:
    return board["status"].str.startswith(f"{PENDING}:")


def queue_key(pending: pd.DataFrame) -> tuple:
    """What a visitor sees of the queue: a change means the page should be drawn again."""
    return tuple(zip(pending["entry"], pending["status"], strict=True))


def entry_link(name: str, display_name: str) -> str:
    """A relative link to the entry page; the display name rides in the fragment for the table to show."""
    return f"entry?entry={quote(name)}#{quote(display_name)}"


LINK_TEXT = r"#(.*)$"  # LinkColumn's display_text: the fragment of entry_link
NAME_COLUMN = "display_name"  # the board's name column: a tap on one of its cells opens that entry's page, in-app


def text_width(texts, least: int = 0, most: int | None = None) -> int:
    """Pixels for a grid column to show its longest text whole in the grid's 14 px Source Sans (``char_px``), plus
    its cell padding; at least ``least``, at most ``most``."""
    width = max(least, ceil(round(max((sum(char_px(c) for c in str(t)) for t in texts), default=0), 6)) + CELL_PADDING)
    return width if most is None else min(width, most)


def wrapped_width(texts, lines: int, least: int = 0) -> int:
    """Pixels for a grid column whose cells wrap at spaces: the narrowest in which every text takes at most
    ``lines`` lines (``char_px`` widths plus the cell padding), at least ``least``."""
    def fits(room: float, text: str) -> bool:
        used, n = None, 1
        for word in str(text).split():
            w = sum(char_px(c) for c in word) - 1e-6  # float noise: 26.4 + 4.2 + 44.4 fits in 75
            if w > room:
                return False
            if used is None:
                used = w
            elif used + char_px(" ") + w <= room:
                used += char_px(" ") + w
            else:
                used, n = w, n + 1
        return n <= lines
    texts = [t for t in texts if str(t).strip()]
    low, high = 0, max((ceil(round(sum(char_px(c) for c in str(t)), 6)) for t in texts), default=0)
    while low < high:  # the narrowest room that fits every text
        middle = (low + high) // 2
        low, high = (low, middle) if all(fits(middle, t) for t in texts) else (middle + 1, high)
    return max(least, high + CELL_PADDING)


PHONE_ROOM = 336  # the board's width inside a 390 px phone: 16 px margins, the grid's border and scroll bar
ROW_HEIGHT = 65  # taller than 64 px (4rem), the grid wraps a cell's text: up to three lines of 14 px text
LINES = 3


def compact_widths(board: pd.DataFrame, score_title: str) -> dict[str, int]:
    """The compact board's column widths, from the texts they hold (one line for the rank and every header; cells
    wrap at spaces, at most ``LINES`` lines): all on one line when that fits a phone's ``PHONE_ROOM``; else the
    score's interval and the status on a second line, the name in as few lines as the rest of the width allows
    (wider for a very long name, the status then a swipe away; longer than three lines of that, it is cut). On a
    desktop the grid stretches the name, score and status to fill the page, so that each reads on one line."""
    widths = {"place": text_width([*board["place"], "#"], 40),
              "state": max(text_width(["Status"]), wrapped_width(board["state"], 2))}
    names, scores = board["display_name"], [*board["score"]]
    one, most = wrapped_width(names, 1, 96), wrapped_width(names, LINES, 96)
    score_one = max(text_width([score_title]), wrapped_width(scores, 1))
    if sum(widths.values()) + one + score_one <= PHONE_ROOM:  # all on one line
        return {"place": widths["place"], NAME_COLUMN: one, "score": score_one, "state": widths["state"]}
    widths["score"] = max(text_width([score_title]), wrapped_width(scores, 2))  # the interval on a line of its own
    rest = PHONE_ROOM - sum(widths.values())
    # A name too long for three lines beside the status: the status goes a swipe away, the score stays in view.
    widths[NAME_COLUMN] = one if one <= rest else rest if most <= rest else min(most, rest + widths["state"])
    return {c: widths[c] for c in ("place", NAME_COLUMN, "score", "state")}


CELL_PADDING = 20  # the grid's 8 px each side, and a little room
NARROW, WIDE = frozenset("iljtfrI.,;:'!|()[] "), frozenset("MWmw@%")


def char_px(c: str) -> float:
    """A character's width in the grid's 14 px Source Sans, a little over what Chromium measures (``W`` 11.2, ``e``
    6.3, ``i`` 3.4, a digit 7.0, an emoji 14)."""
    if unicodedata.east_asian_width(c) in "WF":
        return 15.0
    if c in NARROW:
        return 4.2
    if c in WIDE:
        return 12.0
    if c.isupper():
        return 9.0
    return 7.2


def picked_entry(selection, entries: list[str]) -> str | None:
    """The entry whose name was tapped last on the board, from its cell selection (``{"cells": [[row, column]]}``,
    rows as positions in the table shown, ``entries`` in the same order); None for a tap elsewhere or nothing."""
    cells = (selection or {}).get("cells") or []
    if not cells:
        return None
    row, column = cells[-1]
    return entries[row] if column == NAME_COLUMN and 0 <= row < len(entries) else None


def score_text(score, kind: str) -> str:
    """The ranked score with its 95% interval in few characters: ``97% (91–99)`` on 100 digits, ``99.21%
    (99.0–99.4)`` on MNIST's 10,000."""
    if score is None:
        return ""
    if kind == "guest" and score.total <= 1000:
        return f"{100 * score.accuracy:.0f}% ({100 * score.ci_low:.0f}–{100 * score.ci_high:.0f})"
    return f"{100 * score.accuracy:.2f}% ({100 * score.ci_low:.1f}–{100 * score.ci_high:.1f})"


def state_text(row: Row, status: str) -> str:
    """A short status for the compact board: who is level with the leader, failures, and the memorisation flag."""
    if row.memorised:
        shown = _state_text(row, status)
        return f"memorised? {shown}".strip()
    return _state_text(row, status)


def _state_text(row: Row, status: str) -> str:
    if row.standing != "ranked":
        return row.standing
    if status != "ok":
        return "failed"
    if row.rank == 1:
        return "leader"
    return "≈ #1" if row.with_leader else ""


MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~:$&")


def literal(text: object) -> str:
    """``text`` (an entry's name, author or description: the member's words) as Streamlit markdown that shows it
    literally: every markdown, HTML and Streamlit directive character backslash-escaped (CommonMark lets any ASCII
    punctuation be escaped), line breaks as spaces, so ``**x**](javascript:…)`` is neither bold nor a link."""
    flat = " ".join(str(text).split())
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in flat)


def literal_table(values: dict) -> dict[str, list[str]]:
    """A {name: value} mapping (an entry's hyperparameters or constructor arguments from its entry.toml) as the two
    columns of an ``st.table``, whose cells Streamlit renders as markdown: every name and value :func:`literal`."""
    return {"name": [literal(k) for k in values], "value": [literal(v) for v in values.values()]}


def guest_set_text(dataset) -> str:
    """Which guest set results are on, from its stored source (``harness.data.task.load_guest``): the shipped
    sample, used while the guest folder holds no digits of its own; ``folder:NAME``, the folder the evaluation read
    (``mystery_digits`` unless given with ``--mystery``); or ``folder``, a set stored before the folder was noted."""
    size = f"{dataset.size:,}"
    if dataset.source == "sample":
        return (f"the shipped **sample** set of {size} digits from `mystery_digits/_sample/`, not a guest's "
                "own (the organisers have imported no real guest set)")
    kind, _, folder = dataset.source.partition(":")
    if kind == "folder" and folder == "mystery_digits":
        return f"the guest's {size} handwritten digits, put by the organisers into `mystery_digits/`"
    if kind == "folder" and folder:
        return (f"the guest's {size} handwritten digits, read from the folder {literal(folder + '/')} that the "
                "organisers gave the evaluation (`--mystery`)")
    return f"the guest's {size} handwritten digits, read from the guest folder that the organisers gave the evaluation"


def secret_set_text(dataset, names) -> str:
    """Which secret set results are on: the guest's words for the MNIST warm-up (:func:`guest_set_text`), else the
    set's title and size ("the stranger's shapes: 250 pictures")."""
    if names.is_mnist:
        return guest_set_text(dataset)
    return f"{names.secret[:1].lower()}{names.secret[1:]}: {dataset.size:,} {names.item}s"


def in_sentence(title: str) -> str:
    """A set's title inside a sentence: "The stranger's shapes" as "the stranger's shapes" (an article starts it),
    a name such as "Shapes test" as it is."""
    first, _, rest = title.partition(" ")
    return f"{first.lower()} {rest}" if rest and first in ("The", "A", "An") else title


def ranked_by_text(datasets: dict, revealed: bool, on_secret: bool, names) -> str:
    """Which set ranks the board of a competition with a [task] table, in one or two sentences."""
    if not revealed:
        return (f"🔒 **The results on {in_sentence(names.secret)} are sealed until the reveal.** The board is ranked "
                f"by {names.public} accuracy for now; those columns open when the organisers reveal them.")
    if on_secret:
        return f"Ranked by {secret_set_text(datasets[names.secret_kind], names)}. Then by {names.public}."
    return (f"Revealed, but not every entry has a result on {in_sentence(names.secret)}: ranked by "
            f"{names.public}.")


def shape_text(images: np.ndarray) -> str:
    """One picture's size as the sets store it: "28×28" for grey, "3×32×32" for colour."""
    return "×".join(str(n) for n in np.asarray(images).shape[1:])


def one_line(text: str | None) -> str:
    """The first non-empty line of an error message (the harness writes one sentence)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "no reason recorded"


def format_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def chance_text(p: float) -> str:
    """How often chance alone would do it, in words: ``less than once in 1,000 times``, ``about 3 times in 1,000``,
    ``4% of the time``; never a power of ten."""
    if p < 0.001:
        return "less than once in 1,000 times"
    if p < 0.01:
        return f"about {round(p * 1000):,} times in 1,000"
    return f"{100 * p:.0f}% of the time"


def p_text(p: float) -> str:
    """``p < 0.001`` or ``p = 0.012``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def history_series(history: pd.DataFrame, kind: str) -> dict[str, list[float]]:
    """{entry: accuracy of each version's latest ok evaluation on ``kind``, oldest version first}."""
    h = history[(history["kind"] == kind) & (history["status"] == "ok")].dropna(subset=["accuracy"])
    h = h.sort_values("evaluation_id").groupby(["entry", "version"], as_index=False).last()
    return {name: g.sort_values("version")["accuracy"].round(4).tolist() for name, g in h.groupby("entry")}


def hyperparameter_columns(summaries: list[EvalSummary]) -> pd.DataFrame:
    """Each hyperparameter as its own column ``hp: NAME`` (text, so mixed types sort and export)."""
    names = sorted({k for s in summaries for k in s.hyperparameters})
    return pd.DataFrame({f"hp: {k}": [_text(s.hyperparameters.get(k)) for s in summaries] for k in names},
                        index=range(len(summaries)))


def _text(value) -> str:
    """A hyperparameter as a cell shows it: a list as ``affine, slant``, never Python's ``['affine', 'slant']``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def filter_board(board: pd.DataFrame, search: str = "", statuses: list[str] | None = None,
                 sort_by: str = "rank", descending: bool = False) -> pd.DataFrame:
    """Rows whose name or author contains ``search`` and whose status starts with one of ``statuses``."""
    out = board
    if search.strip():
        needle = search.strip().lower()
        hit = (out["display_name"].str.lower().str.contains(needle, regex=False)
               | out["entry"].str.lower().str.contains(needle, regex=False)
               | out["author"].str.lower().str.contains(needle, regex=False))
        out = out[hit]
    if statuses is not None:
        out = out[out["status"].map(lambda s: s.split(":")[0] in statuses)]
    if sort_by != "rank" or descending:
        column = out[sort_by]
        if column.dtype == object:
            column = pd.to_numeric(column, errors="coerce")
        out = out.iloc[column.argsort(kind="stable")[::-1] if descending else column.argsort(kind="stable")] \
            if column.notna().any() else out
    return out.reset_index(drop=True)


CSV_COLUMNS = {"rank": "rank", "with_leader": "level with the leader", "p_vs_leader": "p vs leader (Holm)",
               "display_name": "entry", "entry": "folder", "author": "author", "guest_accuracy": "guest accuracy",
               "guest_ci_low": "guest ci low", "guest_ci_high": "guest ci high", "mnist_accuracy": "mnist accuracy",
               "mnist_ci_low": "mnist ci low", "mnist_ci_high": "mnist ci high", "params": "parameters",
               "images_per_second": "images per second", "evaluated_at": "last evaluated", "status": "status",
               "versions": "versions", "memorised": "memorised"}
NOT_IN_CSV = {"hp: command"}  # a shell line, not a figure: it belongs on the entry's page

# The recipe columns of the board's CSV: {column: the entry.toml [hyperparameters] keys it is read from, first found
# first}. One flat value each (a list as "affine+slant", true/false as yes/no, a table left empty); the rest of
# entry.toml (hashes, torch and Python versions, the command) is on the entry's page and in `harness.export`.
RECIPE = {"architecture": ("arch", "architecture"), "optimizer": ("optimizer",),
          "learning rate": ("lr", "learning_rate"), "schedule": ("schedule",), "batch size": ("batch_size",),
          "epochs": ("epochs",), "weight decay": ("weight_decay",), "dropout": ("dropout",),
          "label smoothing": ("label_smoothing",), "augmentation": ("augment", "augmentation"),
          "seed": ("seed",), "validation accuracy": ("validation_accuracy",), "training seconds": ("train_seconds",)}


def recipe(hyperparameters: dict | None) -> dict[str, str]:
    """An entry's recipe as the CSV's flat columns (``RECIPE``): empty where entry.toml records nothing."""
    hp = hyperparameters if isinstance(hyperparameters, dict) else {}
    return {column: _flat(next((hp[k] for k in keys if k in hp), None)) for column, keys in RECIPE.items()}


def _flat(value) -> str:
    if value is None or isinstance(value, dict):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "+".join(_flat(v) for v in value) or "none"
    return " ".join(str(value).split())


def board_csv(board: pd.DataFrame, revealed: bool, sets: tuple[str, str] | None = None) -> str:
    """The board as CSV: its columns (integer ranks, accuracies to 4 decimals, p to 4, whole images per second, ISO
    times in UTC without microseconds), then the ``RECIPE`` columns; before the reveal the guest columns are left
    out entirely. ``sets``: a task's public and secret set titles, which then name the score columns ("Shapes test
    accuracy") in place of "mnist" and "guest"."""
    columns = {k: v for k, v in CSV_COLUMNS.items() if k in board.columns and (revealed or not k.startswith("guest"))}
    if sets is not None:
        columns = {k: (v.replace("mnist", sets[0], 1) if k.startswith("mnist") else
                       v.replace("guest", sets[1], 1) if k.startswith("guest") else v) for k, v in columns.items()}
    out = board[list(columns)].copy()
    for column in out.columns:
        if column.endswith(("accuracy", "ci_low", "ci_high")) or column == "p_vs_leader":
            out[column] = pd.to_numeric(out[column], errors="coerce").round(4)
    for column in ("rank", "params", "images_per_second", "versions"):
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").round(0).astype("Int64")
    if "with_leader" in out.columns:
        out["with_leader"] = out["with_leader"].map({True: "yes", False: "no"}).fillna("")
    if "evaluated_at" in out.columns:
        out["evaluated_at"] = [iso_utc(t) for t in out["evaluated_at"]]
    given = board["hyperparameters"] if "hyperparameters" in board.columns else [None] * len(board)
    recipes = pd.DataFrame([recipe(h) for h in given], columns=list(RECIPE), index=out.index)
    return pd.concat([out.rename(columns=columns), recipes], axis=1).to_csv(index=False)


def iso_utc(when) -> str:
    """``2026-03-01T12:00:00+00:00``: seconds, with the zone (naive times are the store's UTC)."""
    if when is None or (not isinstance(when, str) and pd.isna(when)):
        return ""
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("s").isoformat()


# --- entry page -------------------------------------------------------------------------------------------

def most_confident_mistakes(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                            limit: int | None = None) -> np.ndarray:
    """Indices of misread samples, the most confident mistakes first (ties: lower index first)."""
    wrong = np.flatnonzero(labels != predicted)
    order = wrong[np.argsort(-confidence[wrong].astype(np.float64), kind="stable")]
    return order if limit is None else order[:limit]


def pair_samples(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, true: int, pred: int) -> np.ndarray:
    """Indices of samples with this true label read as ``pred``, most confident first."""
    idx = np.flatnonzero((labels == true) & (predicted == pred))
    return idx[np.argsort(-confidence[idx].astype(np.float64), kind="stable")]


def selected_cell(selection) -> tuple[int, int] | None:
    """The (true, read as) pair of the confusion-matrix cell clicked last, from Streamlit's chart selection state
    (``{"selection": {"cell": [{"true": 4, "predicted": 9}]}}``); None when nothing is selected."""
    points = ((selection or {}).get("selection") or {}).get("cell") or []
    if not points or "true" not in points[-1] or "predicted" not in points[-1]:
        return None
    return int(points[-1]["true"]), int(points[-1]["predicted"])


def top_confusion(confusion: np.ndarray) -> tuple[int, int] | None:
    """The most frequent off-diagonal (true, predicted) pair, or None when nothing was misread."""
    off = np.asarray(confusion).copy()
    np.fill_diagonal(off, 0)
    if off.max() == 0:
        return None
    t, p = np.unravel_index(int(off.argmax()), off.shape)
    return int(t), int(p)


# --- head-to-head -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadToHead:
    total: int
    correct_a: int
    correct_b: int
    only_a: int   # samples A read right and B wrong
    only_b: int
    both_wrong: int
    p_value: float
    disagree: np.ndarray  # indices where the two predictions differ

    def verdict(self, name_a: str, name_b: str, alpha: float = ALPHA) -> str:
        """The paired test in plain words."""
        n = self.only_a + self.only_b
        if n == 0:
            return (f"{name_a} and {name_b} got exactly the same digits right, so nothing separates them "
                    f"(p = 1).")
        lead = (f"Of the {n:,} digits that only one of them read right, {name_a} got {self.only_a:,} and {name_b} "
                f"got {self.only_b:,}. ")
        odds = (f"If the two were equally good, a split at least this uneven would happen by chance "
                f"{chance_text(self.p_value)} (exact McNemar test, {p_text(self.p_value)}). ")
        if self.p_value >= alpha:
            return lead + odds + "So the data cannot tell them apart: they are tied."
        better = name_a if self.only_a > self.only_b else name_b
        return lead + odds + f"So {better} is genuinely better on these digits, not just lucky."


def head_to_head(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> HeadToHead:
    ok_a, ok_b = pred_a == labels, pred_b == labels
    return HeadToHead(total=len(labels), correct_a=int(ok_a.sum()), correct_b=int(ok_b.sum()),
                      only_a=int((ok_a & ~ok_b).sum()), only_b=int((~ok_a & ok_b).sum()),
                      both_wrong=int((~ok_a & ~ok_b).sum()), p_value=mcnemar_exact(ok_a, ok_b),
                      disagree=np.flatnonzero(pred_a != pred_b))


def pages(total: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of each page of ``size`` items out of ``total``: every item on exactly one page."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


# --- guest gallery ----------------------------------------------------------------------------------------

def consensus(labels: np.ndarray, predicted: np.ndarray, num_classes: int = TASK.num_classes) -> pd.DataFrame:
    """Per digit over entries (``predicted`` is [entries, N]): how many read it right, the most common reading
    and its share; hardest digits first (fewest right, then lowest consensus share, then index)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    n_entries, n = predicted.shape
    counts = np.zeros((n, num_classes), dtype=np.int64)
    for row in predicted:
        counts[np.arange(n), row] += 1
    right = counts[np.arange(n), labels]
    top = counts.argmax(axis=1)
    df = pd.DataFrame({"index": np.arange(n), "label": labels, "right": right, "entries": n_entries,
                       "consensus": top, "consensus_share": counts.max(axis=1) / max(n_entries, 1)})
    return df.sort_values(["right", "consensus_share", "index"], ascending=[True, True, True]).reset_index(drop=True)


def board_display(board: pd.DataFrame, revealed: bool) -> pd.DataFrame:
    """The board as the table shows it: accuracies in percent, speed rounded; guest columns sealed text."""
    out = board.copy()
    out["rank"] = pd.to_numeric(out["rank"], errors="coerce")
    out["mnist_pct"] = pd.to_numeric(out["mnist_accuracy"], errors="coerce") * 100
    if revealed:
        out["guest_pct"] = pd.to_numeric(out["guest_accuracy"], errors="coerce") * 100
    else:
        out["guest_pct"] = SEALED
    out["speed"] = pd.to_numeric(out["images_per_second"], errors="coerce").round(0)
    out["history_pct"] = [[round(100 * v, 2) for v in h] for h in out["history"]]
    return out
