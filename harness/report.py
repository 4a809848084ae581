"""The ranking as a terminal table or a JSON document."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from harness.ranking import Row, Score


def _pct(score: Score | None) -> str:
    if score is None:
        return "—"
    return f"{100 * score.accuracy:.2f}% ({score.correct}/{score.total}) [{100 * score.ci95[0]:.1f}–{100 * score.ci95[1]:.1f}]"


def _count(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def table(rows: list[Row], has_guest: bool, title: str) -> Table:
    out = Table(title=title, title_justify="left")
    out.add_column("#", justify="right")
    out.add_column("entry")
    out.add_column("author")
    if has_guest:
        out.add_column("guest ↑ (95% CI)", justify="right")
    out.add_column("MNIST test ↑ (95% CI)", justify="right")
    out.add_column("params", justify="right")
    out.add_column("img/s ↑", justify="right")
    for row in rows:
        if row.status != "ok":
            cells = ["✗", row.name, row.author or ""] + (["failed"] if has_guest else []) + [f"[red]{row.error}[/red]", "", ""]
            out.add_row(*cells)
            continue
        rank = f"{row.rank}" + (" =" if row.tied_with_above else "")
        cells = [rank, row.display_name if row.display_name == row.name else f"{row.display_name} ({row.name})",
                 row.author or ""]
        if has_guest:
            cells.append(_pct(row.guest))
        cells += [_pct(row.mnist), _count(row.params),
                  f"{row.images_per_second:,.0f}" if row.images_per_second else "—"]
        out.add_row(*cells)
    return out


def print_table(console: Console, rows: list[Row], has_guest: bool, notes: list[str]) -> None:
    title = "Ranking by guest accuracy, then MNIST" if has_guest else "Ranking by MNIST test accuracy (no guest digits)"
    console.print(table(rows, has_guest, title))
    if any(r.tied_with_above for r in rows):
        console.print("'=' marks an entry that a paired exact McNemar test (p ≥ 0.05) cannot tell apart from the one "
                      "above it: the data do not separate them.")
    unsandboxed = [r.name for r in rows if r.sandboxed is False]
    if unsandboxed:
        console.print(f"[yellow]NOT SANDBOXED:[/yellow] {', '.join(unsandboxed)} ran as plain child processes "
                      "(bubblewrap unavailable): their code could read and write anything this user can.")
    for note in notes:
        console.print(note)


def to_json(rows: list[Row], datasets: dict, run: dict, notes: list[str]) -> str:
    return json.dumps({"entries": [r.as_dict() for r in rows], "datasets": datasets, "run": run, "notes": notes},
                      indent=2)
