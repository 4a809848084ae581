"""``python -m harness.evaluate``: score every new or changed entry and print the ranking."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.console import Console

# Light imports only: main() starts the sandbox (its server imports torch) before importing the rest.
from harness import cli
from harness.common import competition
from harness.common.limits import DEFAULT_MEMORY, DEFAULT_TIMEOUT, GIB, Limits
from harness.data.task import DatasetSpec, is_secret, task_of
from harness.entries.discovery import discover, select
from harness.errors import HarnessError
from harness.isolation import process as isolation
from harness.store import evaluations, versions
from harness.store.engine import make_engine, resolve_url, shown_url

DEFAULT_SUBMISSIONS = Path("submissions")
DEFAULT_MYSTERY = Path("mystery_digits")
DEFAULT_INTERVAL = 10.0  # seconds between two looks with --watch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli.prog("evaluate"),
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
                   f"(default: [limits] in competition.toml, else {DEFAULT_TIMEOUT:g})")
    p.add_argument("--memory-limit", type=float, default=DEFAULT_MEMORY / GIB,
                   help=f"GiB of memory allowed per entry (default: {DEFAULT_MEMORY / GIB:g})")
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


def settle(args) -> competition.Competition:
    """The competition's rules, with ``args`` pointed into its folder (``--competition``) and ``args.mystery`` set to
    the secret set's folder: --mystery when given, else the task's [task.secret] folder, else mystery_digits."""
    folder = competition.settle(args, submissions=DEFAULT_SUBMISSIONS)
    rules = competition.load(args.config)
    if args.mystery is DEFAULT_MYSTERY:
        args.mystery = rules.task.secret.folder if rules.task else (folder or Path()) / DEFAULT_MYSTERY
    return rules


def load_datasets(args, rules: competition.Competition | None = None) -> tuple[list[DatasetSpec], list[str]]:
    """The task's public set (MNIST test, or its [task.public] folder) and its secret one (the guest's digits, else
    the shipped sample; or the task's secret folder: ``args.mystery``), and notes about what was used."""
    from harness.data.guest import GuestSetError
    from harness.data.task import task_of
    task = task_of(rules)
    try:
        public, notes = task.public.load(args.mnist_dir if rules is None or rules.task is None else None)
        if public is None:
            raise HarnessError(f"{task.public.title} has no labelled pictures in {rules.task.public.folder}; put "
                               "them in a folder per class (see docs/organiser.md).")
        secret, more = task.secret.load(args.mystery)
    except GuestSetError as exc:
        raise HarnessError(str(exc)) from exc
    return [public] + ([secret] if secret is not None else []), notes + more


def entry_limits(args, rules: competition.Competition, datasets: list[DatasetSpec]) -> Limits:
    """What each entry's process may use: the competition's [limits] for these sets' images, each value overridden by
    its flag (--timeout when given, --memory-limit, --device, --batch-size)."""
    return rules.limits(sum(len(d.labels) for d in datasets), timeout=args.timeout,
                        memory=int(args.memory_limit * GIB), device=args.device, batch_size=args.batch_size)


def time_limit(args, rules: competition.Competition, datasets: list[DatasetSpec]) -> float:
    """Seconds per entry: --timeout when given, else the competition's [limits] for these sets' images."""
    return entry_limits(args, rules, datasets).timeout


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
    rules = settle(args)
    engine = make_engine(args.db)
    skipped: list[str] = []
    left_out: dict[str, str] = {}  # {folder: why}: a row each on the board
    entries = to_evaluate(args, skipped, left_out, rules)
    # start the sandbox while the rest loads
    if not args.cluster and (args.force or versions.has_unseen(engine, entries)):
        isolation.prestart(isolation.needs_torchvision(entries), args.device)
    from harness import runner
    from harness.scoring import board, report
    datasets, notes = load_datasets(args, rules)
    limits = entry_limits(args, rules, datasets)
    options = runner.Options(limits, force=args.force, cluster=args.cluster)
    summary = run_with_progress(engine, entries, datasets, options, rules,
                                masked(sys.argv[1:] if argv is None else argv), console)
    rows = board.read(engine, rules, is_revealed=True, names={e.name for e in entries}).rows  # the organiser's view
    notes = skipped + summary.notes + notes + run_notes(args, rules, rows, summary, limits.timeout)
    has_guest = any(is_secret(d.kind) for d in datasets)
    sets = ("MNIST test", "guest") if rules.task is None else (rules.task.public.title, rules.task.secret.title)
    report.print_table(console, rows, has_guest, notes,
                       report.title([rules.primary, *rules.tie_break], has_guest, rules.title,
                                    None if rules.task is None else sets), left_out, sets)
    if args.json:
        meta = {d.kind: {"size": int(len(d.labels)), "hash": d.content_hash, "source": d.source,
                         "preprocess_version": d.preprocess_version} for d in datasets}
        print(report.to_json(rows, meta, {"id": summary.run_id, "device": summary.device}, notes, rules.as_dict(),
                             left_out, rules.set_kinds))
    failed = bool(skipped) or any(r.status != "ok" for r in rows if r.standing == "ranked")
    return 1 if args.strict and failed else 0


def to_evaluate(args: argparse.Namespace, skipped: list[str], left_out: dict[str, str],
                rules: competition.Competition | None = None) -> list:
    """The entries in --submissions (those named by --only), else a HarnessError; ``skipped`` and ``left_out`` get
    what cannot be evaluated (see ``discover``)."""
    entries = select(discover(args.submissions, skipped, left_out, task_of(rules).interface), args.only)
    if not entries and skipped:
        raise HarnessError(f"{args.submissions} holds no entry that can be evaluated: {skipped[0]}")
    if not entries:
        raise HarnessError(f"{args.submissions} holds no entries; add one folder per entry (see "
                           "submissions/README.md).")
    return entries


def run_with_progress(engine, entries: list, datasets: list[DatasetSpec], options, rules: competition.Competition,
                      argv: list[str], console: Console):
    """``runner.run`` under a progress bar: each entry's outcome, and its images done while it runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness import runner
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("evaluating", total=len(entries))

        def on_entry(entry, outcome):
            progress.update(task, advance=1, description=f"{entry.name}: {outcome}")

        def on_progress(entry, at):
            progress.update(task, description=isolation.describe(entry.name, at))

        return runner.run(engine, entries, datasets, options, argv=argv, on_entry=on_entry, competition=rules,
                          on_plan=lambda n: progress.update(task, total=n), on_progress=on_progress)


def run_notes(args: argparse.Namespace, rules: competition.Competition, rows: list, summary,
              timeout: float) -> list[str]:
    """The notes under the table that say how the run went: the counts, the flags behind the limits that stopped
    entries (``timeout``: the time limit that applied), the deadline."""
    from harness import runner
    counts = {k: list(summary.outcome.values()).count(k) for k in (runner.EVALUATED, runner.FAILED, runner.UNCHANGED)}
    notes = [f"{counts['evaluated']} evaluated, {counts['failed']} failed, {counts['unchanged']} unchanged "
             f"(stored in {shown_url(resolve_url(args.db))})."]
    hint = limit_flags([r.error for r in rows if r.status != "ok"], args, timeout)
    if hint:
        notes.append(hint)
    if rules.deadline is not None:
        notes.append(f"deadline {rules.deadline.isoformat()}: versions first seen later are shown as late, "
                     "not ranked.")
    return notes


def pending(engine, entries: list, datasets: list[DatasetSpec], rules: competition.Competition,
            limits=None) -> list:
    """The entries whose folder holds a version not yet scored on these sets (by this harness), or scored with a
    failure on a limit that ``limits`` (``isolation.Limits``) raise."""
    from harness import runner
    keys = {e.name: runner.eval_key(e, datasets, rules.max_entry_bytes) for e in entries}
    stored = evaluations.stored_by_key(engine, list(keys.values()))  # one query for all, every round
    return [e for e in entries if keys[e.name] not in stored
            or (limits is not None and runner.failure_outgrown(stored[keys[e.name]][1], limits))]


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
    if args.interval <= 0:
        raise HarnessError("--interval must be a positive number of seconds.")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    rules = settle(args)
    watcher = Watcher(args, masked(sys.argv[1:] if argv is None else argv), console, rules, make_engine(args.db))
    try:
        if args.parent is not None:
            follow_parent(args.parent)
        watcher.start()
        while True:
            watcher.round()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        console.print(f"stopped; {watcher.evaluated} version(s) evaluated while watching.")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        watcher.engine.dispose()


@dataclass
class Watcher:
    """``--watch`` between its rounds: the sets the entries are scored on, the limits that go with them, and the
    state of the guest's folder."""
    args: argparse.Namespace
    argv: list[str]                  # the command line, as stored with each run
    console: Console
    rules: competition.Competition
    engine: object
    datasets: list[DatasetSpec] = field(default_factory=list)
    limits: Limits = Limits()
    guest_state: object = None       # the guest folder's state the sets were read from
    changing: object = None          # its state at the last look
    evaluated: int = 0               # versions evaluated so far

    def start(self) -> None:
        """Read the sets and say what is watched."""
        from harness.data.guest import folder_state
        self.guest_state = self.changing = folder_state(self.args.mystery)
        for note in self.load():
            self.console.print(note)
        self.console.print(f"watching {self.args.submissions} and {self.args.mystery} every {self.args.interval:g} s "
                           f"(stored in {shown_url(resolve_url(self.args.db))}); Ctrl-C stops.")

    def load(self) -> list[str]:
        """Read the sets (and the limits for their images); notes about what was used."""
        datasets, notes = load_datasets(self.args, self.rules)
        self.datasets, self.limits = datasets, entry_limits(self.args, self.rules, datasets)
        return notes

    def round(self) -> None:
        """One look: the guest's digits, then every version not scored yet. Whatever stops it is said in one line,
        and the next round tries again; Ctrl-C, SIGTERM and the end of --parent stop the watcher."""
        try:
            self.follow_guest()
            if self.args.parent is not None and os.getppid() != self.args.parent:  # in case the signal was missed
                raise KeyboardInterrupt
            self.score_new()
        except HarnessError as exc:  # the next round tries again (a database restarting, a folder renamed)
            cli.say_error(exc, sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a bug or a hostile entry stops one round, never the watcher
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            cli.say_error(HarnessError(f"{datetime.now():%H:%M:%S} this round stopped on {type(exc).__name__}"
                                       f"{' (' + first + ')' if first else ''}; the next round tries again."),
                          sys.stderr)

    def follow_guest(self) -> None:
        """Read the sets again when the guest's folder has changed and then stayed the same for a round."""
        from harness.data.guest import folder_state
        now = folder_state(self.args.mystery)
        if now != self.guest_state and now == self.changing:    # changed, and settled for a round
            self.guest_state = now
            notes = self.load()
            guest = next((d for d in self.datasets if is_secret(d.kind)), None)
            where = "the shipped sample" if guest is not None and guest.source == "sample" else self.args.mystery
            shown = "none" if guest is None else f"{len(guest.labels)} digits ({where})"
            self.console.print(f"{datetime.now():%H:%M:%S} the guest's digits changed: now {shown}; "
                               "every entry is scored on them.")
            for note in notes:
                self.console.print(note)
        self.changing = now

    def score_new(self) -> None:
        """Evaluate the versions not scored yet on these sets, oldest upload first."""
        from harness import runner
        args = self.args
        found = discover(args.submissions, [], interface=task_of(self.rules).interface)
        todo = in_queue_order(self.engine, pending(self.engine, select(found, args.only),
                                                   self.datasets, self.rules, self.limits))
        if todo:
            self.console.print(f"{datetime.now():%H:%M:%S} new: {', '.join(e.name for e in todo)}")
            summary = runner.run(self.engine, todo, self.datasets, runner.Options(self.limits, cluster=args.cluster),
                                 competition=self.rules, argv=self.argv,
                                 on_entry=lambda e, outcome: self.console.print(f"  {e.name}: {outcome}"))
            self.evaluated += sum(o != runner.UNCHANGED for o in summary.outcome.values())


if __name__ == "__main__":
    sys.exit(cli.ended(main))
