"""The ranking as a terminal table or a JSON document."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.scoring.metrics import memorisation_p
from harness.scoring.ranking import Row, leader_sentence
from harness.store.evaluations import Score


def _pct(score: Score | None) -> str:
    if score is None:
        return "—"
    return (f"{100 * score.accuracy:.2f}% ({score.correct}/{score.total}) "
            f"[{100 * score.ci95[0]:.1f}–{100 * score.ci95[1]:.1f}]")


def _count(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


UNRANKED_MARKS = {"late": "late", "disqualified": "DQ"}  # the rank column of an unranked row (superseded: —)


LEFT_OUT = "left out"  # the status and standing of a folder discovery left out (a row saying why, never ranked)


def table(rows: list[Row], has_guest: bool, title: str, left_out: dict[str, str] | None = None,
          sets: tuple[str, str] = ("MNIST test", "guest")) -> Table:
    """The board; ``left_out`` ({folder: why}) adds a row for each folder that was not evaluated, saying why.
    ``sets``: the public and the secret set's titles, as the columns name them."""
    out = Table(title=title, title_justify="left")
    out.add_column("#", justify="right")
    out.add_column("entry")
    out.add_column("author")
    if has_guest:
        out.add_column(f"{sets[1]} ↑ (95% CI)", justify="right")
    out.add_column(f"{sets[0]} ↑ (95% CI)", justify="right")
    out.add_column("params", justify="right")
    out.add_column("img/s ↑", justify="right")
    for row in rows:
        mark = UNRANKED_MARKS.get(row.standing, "")
        if row.status != "ok":
            cells = [f"{mark} ✗".strip(), Text(row.name), Text(row.author or "")] + \
                (["failed"] if has_guest else []) + \
                [Text(row.error or "", style="red"), "", ""]  # Text: an entry's words are never markup
            out.add_row(*cells)
            continue
        rank = mark or ("—" if row.rank is None
                        else f"{row.rank}" + (" ≈" if row.with_leader and row.rank != 1 else ""))
        rank += " memorised?" if row.memorised else ""
        cells = [rank, Text(row.display_name if row.display_name == row.name else f"{row.display_name} ({row.name})"),
                 Text(row.author or "")]
        if has_guest:
            cells.append(_pct(row.guest))
        cells += [_pct(row.mnist), _count(row.params),
                  f"{row.images_per_second:,.0f}" if row.images_per_second else "—"]
        out.add_row(*cells)
    for name, why in sorted((left_out or {}).items()):
        out.add_row("✗", Text(name), "", *(["left out"] if has_guest else []), Text(f"left out: {why}", style="red"),
                    "", "")
    return out


METRIC_WORDS = {"guest_accuracy": "guest accuracy", "mnist_accuracy": "MNIST accuracy",
                "guest_log_loss": "guest log loss", "mnist_log_loss": "MNIST log loss", "params": "fewer parameters",
                "images_per_second": "speed"}


def metric_words(metric: str, sets: tuple[str, str] | None = None) -> str:
    """A metric in words; a task's set metrics (``public_accuracy``, ``secret_log_loss``) by the set's title."""
    if metric in METRIC_WORDS:
        return METRIC_WORDS[metric]
    kind, _, what = metric.partition("_")
    return f"{(sets or ('public set', 'secret set'))[kind == 'secret']} {what.replace('_', ' ')}"


def title(metrics: list[str], has_guest: bool, competition_title: str = "",
          sets: tuple[str, str] | None = None) -> str:
    """The table's title: the ranking's metrics in words (``sets``: a task's public and secret set titles)."""
    secret_metric = ("guest_", "secret_")
    used = [metric_words(m, sets) for m in metrics if has_guest or not m.startswith(secret_metric)]
    used = used or [f"{sets[0]} accuracy" if sets else "MNIST accuracy"]
    head = f"{competition_title} · " if competition_title else ""
    missing = f" (no {sets[1]} results)" if sets else " (no guest digits)"
    return head + "ranking by " + ", then ".join(used) + ("" if has_guest else missing)


def print_table(console: Console, rows: list[Row], has_guest: bool, notes: list[str], heading: str = "",
                left_out: dict[str, str] | None = None, sets: tuple[str, str] = ("MNIST test", "guest")) -> None:
    console.print(table(rows, has_guest, heading or title(["guest_accuracy", "mnist_accuracy"], has_guest), left_out,
                        sets))
    for row in rows:
        if row.standing != "ranked" and row.note:
            why = "disqualified by the organisers" if row.standing == "disqualified" else row.standing
            console.print(f"{row.name} ({why}): {row.note.rstrip('.')}.", markup=False, highlight=False)
    leader = next((r for r in rows if r.with_leader is not None and r.correct_mask is not None), None)
    if leader is not None:
        things = "digits" if sets == ("MNIST test", "guest") else "pictures"
        console.print(leader_sentence(rows, f"the {len(leader.correct_mask):,} {things} ranked on"), markup=False,
                      highlight=False)
    if any(r.with_leader and r.rank != 1 for r in rows):
        things = "digits" if sets == ("MNIST test", "guest") else "pictures"
        console.print(f"'≈' marks an entry that the {things} cannot separate from the leader.")
    unsandboxed = [r.name for r in rows if r.sandboxed is False]
    if unsandboxed:
        console.print(f"[yellow]NOT SANDBOXED:[/yellow] {', '.join(unsandboxed)} ran as plain child processes "
                      "(bubblewrap unavailable): their code could read any file this user can (the guest's labels "
                      "and the database included) and use the network; under a user's harness it could also write "
                      "as that user. Time, memory, CPU, process and file-size limits still applied.")
    for row in rows:
        if row.memorised:
            console.print(memorisation_sentence(row), markup=False, highlight=False)
    for note in notes:
        console.print(note, markup=False, highlight=False)  # notes quote file and entry names: never markup


def memorisation_sentence(row: Row) -> str:
    """The flag of an entry that reads the exact public images far better than their changed copies."""
    pairs, only_original, only_copy = row.memorisation
    return (f"MEMORISED? {row.name} read {only_original:,} of {pairs:,} MNIST test digits right only as given and "
            f"{only_copy:,} only as an imperceptibly changed copy (p = "
            f"{memorisation_p(only_original, only_copy):.1e}): it looks up the public test set rather than reading the "
            "digits; its MNIST score means nothing.")


def left_out_row(name: str, why: str) -> dict:
    """A folder that was not evaluated, as a JSON board row: status and standing "left out", the reason as its note."""
    return {"name": name, "display_name": name, "author": None, "status": LEFT_OUT, "error": None, "rank": None,
            "standing": LEFT_OUT, "note": why}


def to_json(rows: list[Row], datasets: dict, run: dict, notes: list[str], competition: dict | None = None,
            left_out: dict[str, str] | None = None, kinds: tuple[str, str] = ("mnist", "guest")) -> str:
    """The board as JSON; each entry's scores under its sets' kinds (``kinds``: the public and the secret set's,
    ``Competition.set_kinds``)."""
    left = [left_out_row(name, why) for name, why in sorted((left_out or {}).items())]
    slots = dict(zip(("mnist", "guest"), kinds, strict=True))
    entries = [{slots.get(k, k): v for k, v in r.as_dict().items()} for r in rows]
    document = {"entries": entries + left, "datasets": datasets, "run": run, "notes": notes}
    if competition is not None:
        document["competition"] = competition
    return json.dumps(document, indent=2)
