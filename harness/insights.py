"""``python -m harness.insights``: what worked — accuracy by optimizer, epochs, augmentation and model size."""

from __future__ import annotations

import argparse
import sys

import altair as alt
from rich.console import Console
from rich.table import Table

from harness import cli
from harness.common import competition
from harness.errors import HarnessError
from harness.scoring import board, insights
from harness.store import eval_sets
from harness.store.engine import make_engine


def factor_table(df, factor: str, metric: str, titles: dict[str, str] | None = None) -> Table:
    stats = insights.by_factor(df, factor, metric)
    table = Table(title=f"{insights.title(metric, factor, titles)} (higher is better)",
                  title_justify="left")
    for column in ("value", "entries", "median", "mean", "best", "worst"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for row in stats.itertuples(index=False):
        table.add_row(str(getattr(row, factor)), str(row.entries),
                      *(f"{100 * getattr(row, c):.2f}%" for c in ("median", "mean", "best", "worst")))
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli.prog("insights"), description=__doc__)
    cli.add_db_argument(p)
    competition.add_argument(p)
    p.add_argument("--html", help="also write the charts to this HTML file")
    args = p.parse_args(argv)
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    try:
        competition.settle(args)
        rules = competition.load(args.config)
        engine = make_engine(args.db)
    except HarnessError as exc:
        cli.say_error(exc)
        return 2
    revealed = board.revealed(engine, rules)
    df = insights.frame(board.latest(engine, eval_sets.current_datasets(engine, revealed), rules), revealed,
                        rules.set_kinds)
    if df.empty:
        console.print("No evaluated entries yet: run `python -m harness.evaluate` first.")
        return 0
    metrics = ["mnist"] + (["guest"] if revealed and df["guest"].notna().any() else [])
    titles = insights.metric_titles(*((rules.task.public.title, rules.task.secret.title) if rules.task else ()))
    for metric in metrics:
        for factor in insights.FACTORS:
            if df[factor].notna().any():
                console.print(factor_table(df, factor, metric, titles))
    if not revealed:
        console.print("Guest results are sealed until the organiser reveals them; MNIST only." if rules.task is None
                      else f"Results on {rules.task.secret.title} are sealed until the organiser reveals them.")
    if args.html:
        charts = [insights.size_chart(df, m) for m in metrics] + [
            insights.box_chart(df, f, m) for m in metrics for f in insights.FACTORS if df[f].notna().any()]
        alt.concat(*charts, columns=2).save(args.html)
        console.print(f"charts written to {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
