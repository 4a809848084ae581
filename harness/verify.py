"""``python -m harness.verify [--only NAME]``: re-score stored results and report any that differ.

Each entry's newest stored evaluation is re-run in its own (sandboxed) process on the very images it was
scored on (kept in the database, MNIST and guest alike), and every per-sample prediction is compared with the
stored one. An entry whose files changed since that evaluation cannot be re-scored and is reported as such (and said
to have had its files removed to save space when ``[storage] keep_versions`` pruned that version). The exit
status is 1 only for a real difference (a prediction, or a re-run that fails where the stored one worked); an entry
with no successful evaluation (it failed) has nothing to verify and is only reported.
The organiser's moderation comes from ``harness.scoring.standings``: a disqualified entry is re-scored (its results are
still shown, unranked) and said to be disqualified; a hidden one is shown on no board, so it is not re-scored,
and the line says so.
Each entry is re-run under the limits its stored evaluation ran under (time and memory, kept with it), so an entry
scored under ``[limits] timeout = "20 min"`` is re-checked under 20 minutes; ``--timeout`` overrides the time, and an
evaluation stored before limits were kept gets the competition's own (``--config``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from harness import __version__, cli, runner
from harness.common import competition, tempfolders
from harness.common.limits import Limits
from harness.data.task import MNIST_DIGITS, DatasetSpec, Task, task_of
from harness.entries.discovery import discover, select as select_entries
from harness.isolation.prediction import resolve_device
from harness.scoring import standings
from harness.store import evaluations, moderation, snapshots
from harness.store.engine import make_engine
from harness.store.schema import Evaluation, unpack


@dataclass
class Check:
    name: str
    status: str          # "same", "different", "changed", "pruned", "failed" (the re-run), "nothing", "hidden"
    detail: str


def latest_ok(engine) -> dict[str, Evaluation]:
    """The newest successful evaluation of each entry, by entry name."""
    ids = evaluations.newest_evaluation_ids(engine, ok_only=True)
    return {e.version.entry.name: e for e in evaluations.load_evaluations(engine, ids)}


def dataset_spec(result) -> DatasetSpec:
    d = result.dataset
    return DatasetSpec(kind=d.kind, content_hash=d.content_hash, labels=unpack(d.labels),
                       images=unpack(d.images), source=d.source, preprocess_version=d.preprocess_version)


def limits_of(evaluation: Evaluation, timeout: float | None, rules: competition.Competition, device: str) -> Limits:
    """The limits to re-run ``evaluation`` under: the ones it ran under (``timeout`` overrides the time), else, for
    one stored before limits were kept, the competition's limits for its images (its time limit, the default
    memory)."""
    return rules.limits(sum(r.total for r in evaluation.results),
                        timeout=timeout if timeout is not None else evaluation.timeout or None,
                        memory=evaluation.memory_limit or None, device=device)


def verify_one(entry, evaluation: Evaluation, limits: Limits, engine=None, task: Task = MNIST_DIGITS) -> Check:
    if entry.content_hash != evaluation.version.content_hash:
        if engine is not None and snapshots.pruned(engine, evaluation.version_id):
            return Check(entry.name, "pruned", f"the files of the evaluated version "
                         f"{evaluation.version.content_hash[:12]} were removed to save space ([storage] keep_versions "
                         "in competition.toml), so it cannot be re-scored; its stored results stand, nothing differs.")
        return Check(entry.name, "changed", "its files changed since the stored evaluation; run harness.evaluate.")
    specs = [dataset_spec(r) for r in evaluation.results]
    ids = {r.dataset.kind: r.dataset_id for r in evaluation.results}
    record = runner.evaluate_one(entry, specs, ids, limits, task=task)
    if record.status != "ok":
        return Check(entry.name, "failed", record.error)
    differences, ties = [], 0
    for result in evaluation.results:
        stored = unpack(result.predicted).astype(np.int64)
        again = record.metrics[result.dataset_id].predicted
        differ = stored != again
        at_tie = differ & near_tie(unpack(result.probabilities).astype(np.float32))
        ties += int(at_tie.sum())
        n = int((differ & ~at_tie).sum())
        if n:
            differences.append(f"{n} of {len(stored)} {result.dataset.kind} predictions differ")
    tie_note = (f" ({ties} other reading{'s' if ties > 1 else ''} changed where the stored top two probabilities were "
                f"within {TIE_MARGIN:g}: a tie that float rounding in another batch order can tip either way)"
                if ties else "")
    if differences:
        stored_by = evaluation.run.harness_version
        why = "" if stored_by == __version__ else (f" (stored by harness {stored_by}, re-run by {__version__}: run "
                                                  "harness.evaluate to score it with this version)")
        return Check(entry.name, "different", "; ".join(differences) + why + tie_note + ".")
    if ties:
        return Check(entry.name, "same", f"{sum(r.total for r in evaluation.results) - ties} predictions identical"
                                         f"{tie_note}.")
    return Check(entry.name, "same", f"{sum(r.total for r in evaluation.results)} predictions identical.")


MARKS = {"same": "[green]✓[/green]", "different": "[red]✗[/red]", "changed": "[yellow]~[/yellow]",
         "pruned": "[yellow]–[/yellow]", "failed": "[red]✗[/red]", "hidden": "[yellow]–[/yellow]",
         "nothing": "[yellow]–[/yellow]"}
TIE_MARGIN = 2e-3  # stored probabilities are float16: about 1e-3 of resolution near 1


DEFAULT_SUBMISSIONS = Path("submissions")


def near_tie(probabilities: np.ndarray) -> np.ndarray:
    """Per sample: whether its two highest stored probabilities are within TIE_MARGIN of each other."""
    top = np.sort(probabilities, axis=1)
    return top[:, -1] - top[:, -2] <= TIE_MARGIN


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli.prog("verify"), description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=Path, default=DEFAULT_SUBMISSIONS)
    cli.add_db_argument(p)
    p.add_argument("--only", action="append", metavar="NAME", help="verify only this entry (repeatable)")
    cli.add_device_argument(p, default="cpu")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per entry (default: the time limit each stored evaluation ran under)")
    competition.add_argument(p)
    args = p.parse_args(argv)
    return cli.run(lambda: verify_all(args, Console(soft_wrap=True, highlight=False)), stream=sys.stdout,
                   interrupted="verify changes nothing in the database and the entries above were verified; run the "
                               "same command again, or `python -m harness.verify --only NAME` for the others.")


def verify_all(args: argparse.Namespace, console: Console) -> int:
    """Re-score the chosen entries and print one line each; a HarnessError ends it with one sentence (see ``main``)."""
    competition.settle(args, submissions=DEFAULT_SUBMISSIONS)
    rules = competition.load(args.config)
    task = task_of(rules)
    engine = make_engine(args.db)
    skipped: list[str] = []
    entries = select_entries(discover(args.submissions, skipped, interface=task.interface), args.only)
    for sentence in skipped:
        console.print(f"[yellow]warning:[/yellow] {sentence}")
    stored = latest_ok(engine)
    device = resolve_device(args.device)
    checks: list[Check] = []

    def say(check: Check) -> None:  # each line as soon as it is known: Ctrl-C keeps what was verified on screen
        checks.append(check)
        console.print(f"{MARKS[check.status]} {escape(check.name)}: {escape(check.detail)}")

    tempfolders.remove_dead_folders()
    moderated = moderation.decisions(engine)
    for entry in entries:
        state, reason = moderated.get(entry.name, ("visible", ""))
        if state == standings.HIDDEN:
            say(Check(entry.name, "hidden", f"hidden by the organisers ({reason}): not re-scored; restore it on the "
                                            "Organiser page to verify it."))
            continue
        if entry.name not in stored:
            say(Check(entry.name, "nothing", "nothing to verify: it has no successful stored evaluation (it failed, or "
                                             "was never evaluated), so nothing can differ."))
            continue
        check = verify_one(entry, stored[entry.name], limits_of(stored[entry.name], args.timeout, rules, device),
                           engine, task)
        if state == standings.DISQUALIFIED:
            check.detail += f" Disqualified by the organisers ({reason}): shown unranked."
        say(check)
    return 1 if any(c.status in ("different", "failed") for c in checks) else 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
