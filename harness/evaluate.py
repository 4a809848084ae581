"""``python -m harness.evaluate``: score every new or changed entry and print the ranking."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from rich.console import Console

# Light imports only: main() starts the sandbox (its server imports torch) before importing the rest.
from harness import cli
from harness.common import competition
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover, select
from harness.errors import HarnessError
from harness.isolation import process as isolation
from harness.isolation.process import GIB
from harness.store import evaluations, versions
from harness.store.engine import make_engine, resolve_url, shown_url

DEFAULT_SUBMISSIONS = Path("submissions")
DEFAULT_MYSTERY = Path("mystery_digits")
DEFAULT_INTERVAL = 10.0  # seconds between two looks with --watch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.evaluate",
                                description="Score every new or changed entry on MNIST test and the guest digits.")
    p.add_argument("--submissions", type=Path, default=DEFAULT_SUBMISSIONS,
                   help="folder of entries (default: submissions)")
    p.add_argument("--mystery", type=Path, default=DEFAULT_MYSTERY,
                   help="guest digits folder (default: mystery_digits)")
    competition.add_argument(p)
    cli.add_db_argument(p)
    p.add_argument("--mnist-dir", help="folder with the MNIST IDX files (default: $MNIST_DIR or data/mnist)")
    cli.add_device_argument(p, default="auto")
    cli.add_cluster_argument(p)
    p.add_argument("--timeout", type=float, help="seconds allowed per entry, loading and all sets together "
                   "(default: [limits] in competition.toml, else 300)")
    p.add_argument("--memory-limit", type=float, default=8.0, help="GiB of memory allowed per entry (default: 8)")
    p.add_argument("--batch-size", type=int,
                   help="images per forward pass (default: on CPU the power of two that holds "
                   "about 200 GFLOPs of the model's arithmetic, at most 128; on CUDA what fits half the free GPU "
                   "memory, at most 8192, halved on out-of-memory)")
    p.add_argument("--only", action="append", metavar="NAME", help="evaluate only this entry (repeatable)")
    p.add_argument("--force", action="store_true", help="re-evaluate entries even if nothing changed")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any entry failed or an entry folder was left out")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON on stdout (human output on stderr)")
    p.add_argument("--watch", action="store_true", help="keep running: evaluate each new version as it appears in "
                   "--submissions (e.g. from the dashboard's Submit page) until Ctrl-C or SIGTERM")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                   help=f"with --watch, how often to look for new versions (default: {DEFAULT_INTERVAL:g})")
    p.add_argument("--parent", type=int, metavar="PID", help="with --watch, stop as on SIGTERM when process PID, "
                   "this one's parent, ends (the dashboard starts its watcher so)")
    return p


def load_datasets(args) -> tuple[list[DatasetSpec], list[str]]:
    """The task's public set (MNIST test) and its secret one (the guest's digits, else the shipped sample), and notes
    about what was used."""
    from harness.data.guest import GuestSetError
    from harness.data.task import TASK
    public, notes = TASK.public.load(args.mnist_dir)
    try:
        secret, more = TASK.secret.load(args.mystery)
    except GuestSetError as exc:
        raise HarnessError(str(exc)) from exc
    return [public] + ([secret] if secret is not None else []), notes + more


def time_limit(args, rules: competition.Competition, datasets: list[DatasetSpec]) -> float:
    """Seconds per entry: --timeout when given, else the competition's [limits] for these sets' images."""
    if args.timeout is not None:
        return args.timeout
    return rules.time_limit(sum(len(d.labels) for d in datasets))


def limit_flags(errors: list[str | None], args, timeout: float | None = None) -> str | None:
    """One line naming the flag behind each limit that stopped an entry in the table, or None; ``timeout``: the
    time limit that applied (default: --timeout)."""
    from harness.isolation.prediction import limits_hit
    hit = {name for error in errors for name in limits_hit(error)}
    timeout = args.timeout if timeout is None else timeout
    flags = {"time limit": f"raise it with `python -m harness.evaluate --timeout {2 * timeout:g}` (now {timeout:g} s), "
                           "or timeout / seconds_per_1000_images under [limits] in competition.toml",
             "memory limit": f"raise it with `python -m harness.evaluate --memory-limit {2 * args.memory_limit:g}` "
                             f"(now {args.memory_limit:g} GiB)"}
    said = "; ".join(f"{name}: {flags[name]}" for name in flags if name in hit)
    return f"{said}; an entry that failed on a limit is evaluated again once that limit is raised." if said else None


def masked(argv: list[str]) -> list[str]:
    """The command line as stored with the run: a database password replaced by ***."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        out.append(f"{flag}={shown_url(value)}" if eq and "://" in value else shown_url(arg) if "://" in arg else arg)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stream = sys.stderr if args.json else sys.stdout
    console = Console(stderr=args.json, soft_wrap=True, width=None if stream.isatty() else 200)
    return cli.run(lambda: evaluate(args, argv, console), stream=stream, interrupted=lambda: interrupted(args))


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: every entry finished before it is stored; the one running was not, and is free again."""
    return (f"the entries finished before Ctrl-C are stored in {shown_url(resolve_url(args.db))}, the one that was "
            "running is not; run the same command again to evaluate the rest (finished entries are skipped).")


def evaluate(args: argparse.Namespace, argv: list[str] | None, console: Console) -> int:
    """The command itself; a HarnessError ends it with one sentence (see ``main``)."""
    if (args.timeout is not None and args.timeout <= 0) or args.memory_limit <= 0:
        raise HarnessError("--timeout and --memory-limit must be positive numbers.")
    if args.watch:
        return watch(args, argv, console)
    if args.parent is not None:
        raise HarnessError("--parent applies to --watch only; leave it out, or add --watch.")
    if args.cluster:
        from harness.isolation.cluster import address_problem
        if address_problem(args.cluster):
            raise HarnessError(address_problem(args.cluster))
    rules = competition.load(args.config)
    engine = make_engine(args.db)
    skipped: list[str] = []
    left_out: dict[str, str] = {}  # {folder: why}: a row each on the board
    entries = select(discover(args.submissions, skipped, left_out), args.only)
    if not entries and skipped:
        raise HarnessError(f"{args.submissions} holds no entry that can be evaluated: {skipped[0]}")
    if not entries:
        raise HarnessError(f"{args.submissions} holds no entries; add one folder per entry (see "
                           "submissions/README.md).")
    # start the sandbox while the rest loads
    if not args.cluster and (args.force or versions.has_unseen(engine, entries)):
        isolation.prestart(isolation.needs_torchvision(entries), args.device)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness import runner
    from harness.scoring import board, report
    datasets, notes = load_datasets(args)
    timeout = time_limit(args, rules, datasets)
    options = runner.Options(device=args.device, timeout=timeout, memory_limit=int(args.memory_limit * GIB),
                             force=args.force, batch_size=args.batch_size, cluster=args.cluster)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("evaluating", total=len(entries))

        def on_entry(entry, outcome):
            progress.update(task, advance=1, description=f"{entry.name}: {outcome}")

        def on_progress(entry, at):
            progress.update(task, description=isolation.describe(entry.name, at))

        summary = runner.run(engine, entries, datasets, options, argv=masked(sys.argv[1:] if argv is None else argv),
                             on_entry=on_entry, competition=rules,
                             on_plan=lambda n: progress.update(task, total=n), on_progress=on_progress)
    notes = skipped + summary.notes + notes
    rows = board.read(engine, rules, is_revealed=True, names={e.name for e in entries}).rows  # the organiser's view
    has_guest = any(d.kind == "guest" for d in datasets)
    counts = {k: list(summary.outcome.values()).count(k) for k in (runner.EVALUATED, runner.FAILED, runner.UNCHANGED)}
    notes.append(f"{counts['evaluated']} evaluated, {counts['failed']} failed, {counts['unchanged']} unchanged "
                 f"(stored in {shown_url(resolve_url(args.db))}).")
    hint = limit_flags([r.error for r in rows if r.status != "ok"], args, timeout)
    if hint:
        notes.append(hint)
    if rules.deadline is not None:
        notes.append(f"deadline {rules.deadline.isoformat()}: versions first seen later are shown as late, "
                     "not ranked.")
    report.print_table(console, rows, has_guest, notes,
                       report.title([rules.primary, *rules.tie_break], has_guest, rules.title), left_out)
    if args.json:
        meta = {d.kind: {"size": int(len(d.labels)), "hash": d.content_hash, "source": d.source,
                         "preprocess_version": d.preprocess_version} for d in datasets}
        print(report.to_json(rows, meta, {"id": summary.run_id, "device": summary.device}, notes, rules.as_dict(),
                             left_out))
    failed = bool(skipped) or any(r.status != "ok" for r in rows if r.standing == "ranked")
    return 1 if args.strict and failed else 0


def pending(engine, entries: list, datasets: list[DatasetSpec], rules: competition.Competition,
            limits=None) -> list:
    """The entries whose folder holds a version not yet scored on these sets (by this harness), or scored with a
    failure on a limit that ``limits`` (``isolation.Limits``) raise."""
    from harness import runner
    found = {e.name: evaluations.find_evaluation(engine, runner.eval_key(e, datasets, rules.max_entry_bytes))
             for e in entries}
    return [e for e in entries if found[e.name] is None
            or (limits is not None and runner.outgrown(engine, found[e.name], limits))]


def follow_parent(pid: int) -> None:
    """SIGTERM this process when ``pid``, its parent, ends (Linux's parent-death signal, set before the parent is
    checked so that no moment is missed); a HarnessError if ``pid`` is not (or no longer) its parent."""
    from harness.isolation.inside.rlimits import die_with_parent
    die_with_parent(signal.SIGTERM)
    if os.getppid() != pid:
        raise HarnessError(f"--parent {pid} is not this process's parent (it has ended, or another process started "
                           "this one); start the watcher from the process it should stop with, or leave --parent out.")


def in_queue_order(engine, entries: list) -> list:
    """``entries`` in the order the board shows their versions waiting (``harness.store.runs.queue``: oldest upload
    first), then the others (new folders the store has not seen) by name."""
    from harness.store.runs import queue
    order = {q.entry_name: i for i, q in enumerate(sorted(queue(engine), key=lambda q: (q.first_seen_at,
                                                                                         q.version_id)))}
    return sorted(entries, key=lambda e: (order.get(e.name, len(order)), e.name))


def watch(args: argparse.Namespace, argv: list[str] | None, console: Console) -> int:
    """Look for new versions every --interval seconds and evaluate them, until Ctrl-C or SIGTERM (exit 0).

    The sets are read at the start, and the guest's digits again whenever their folder changes and then stays the
    same for one round (an import in progress is not read half-way); every entry is then scored on the new set.
    Each round is an ordinary run, so watchers and manual runs claim each version before scoring it and never score
    one twice; a round interrupted by a signal leaves its version unclaimed for the next run. A round scores the
    oldest upload first (the queue the board shows). With --parent (the dashboard's own watcher) it also stops when
    that process ends.
    """
    import time
    from dataclasses import replace
    from datetime import datetime

    from harness import runner
    from harness.data.guest import folder_state
    if args.interval <= 0:
        raise HarnessError("--interval must be a positive number of seconds.")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    rules = competition.load(args.config)
    engine = make_engine(args.db)
    evaluated = 0
    try:
        if args.parent is not None:
            follow_parent(args.parent)
        guest_state = changing = folder_state(args.mystery)
        datasets, notes = load_datasets(args)
        options = runner.Options(device=args.device, timeout=time_limit(args, rules, datasets),
                                 memory_limit=int(args.memory_limit * GIB), batch_size=args.batch_size,
                                 cluster=args.cluster)
        for note in notes:
            console.print(note)
        console.print(f"watching {args.submissions} and {args.mystery} every {args.interval:g} s (stored in "
                      f"{shown_url(resolve_url(args.db))}); Ctrl-C stops.")
        while True:
            try:
                now = folder_state(args.mystery)
                if now != guest_state and now == changing:    # changed, and settled for a round
                    guest_state = now
                    datasets, notes = load_datasets(args)
                    options = replace(options, timeout=time_limit(args, rules, datasets))
                    guest = next((d for d in datasets if d.kind == "guest"), None)
                    where = "the shipped sample" if guest is not None and guest.source == "sample" else args.mystery
                    shown = "none" if guest is None else f"{len(guest.labels)} digits ({where})"
                    console.print(f"{datetime.now():%H:%M:%S} the guest's digits changed: now {shown}; "
                                  "every entry is scored on them.")
                    for note in notes:
                        console.print(note)
                changing = now
                if args.parent is not None and os.getppid() != args.parent:  # in case the signal was missed
                    raise KeyboardInterrupt
                todo = in_queue_order(engine, pending(engine, select(discover(args.submissions, []), args.only),
                                                      datasets, rules, options.limits))
                if todo:
                    console.print(f"{datetime.now():%H:%M:%S} new: {', '.join(e.name for e in todo)}")
                    summary = runner.run(engine, todo, datasets, options, competition=rules,
                                         argv=masked(sys.argv[1:] if argv is None else argv),
                                         on_entry=lambda e, outcome: console.print(f"  {e.name}: {outcome}"))
                    evaluated += sum(o != runner.UNCHANGED for o in summary.outcome.values())
            except HarnessError as exc:  # the next round tries again (a database restarting, a folder renamed)
                cli.say_error(exc, sys.stderr)
            except Exception as exc:  # noqa: BLE001 - a bug or a hostile entry stops one round, never the watcher
                first = str(exc).splitlines()[0][:200] if str(exc) else ""
                cli.say_error(HarnessError(f"{datetime.now():%H:%M:%S} this round stopped on {type(exc).__name__}"
                                           f"{' (' + first + ')' if first else ''}; the next round tries again."),
                              sys.stderr)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        console.print(f"stopped; {evaluated} version(s) evaluated while watching.")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
