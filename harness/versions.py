"""``python -m harness.versions ENTRY``: an entry's version history, and the organiser's submission-time override.

    python -m harness.versions ada                       # list versions: when seen, counted time, late or not
    python -m harness.versions ada --set-time 2 2027-01-10T23:30+01:00 --reason "upload failed at 23:40, mail at 23:30"
    python -m harness.versions ada --clear 2 --reason "mistake"
    python -m harness.versions --prune --dry-run         # what [storage] keep_versions in competition.toml would free
    python -m harness.versions --prune                   # remove those files (results stay), then shrink the database

A version is numbered 1, 2, ... per entry in the order first seen, or named by a prefix of its content hash.
Every override is written to the audit log with its reason. ``--prune`` removes the files of the versions that
``[storage] keep_versions`` lets go (``harness.scoring.retention``); their evaluations and results stay.
"""

from __future__ import annotations

import argparse
import sys

from harness import cli
from harness.common import competition
from harness.errors import HarnessError
from harness.scoring import retention
from harness.store import audit, space
from harness.store.engine import make_engine
from harness.store.versions import VersionInfo, history, override, parse_time


def describe(v: VersionInfo, rules: competition.Competition) -> str:
    shown = rules.local(v.submitted_at).isoformat(timespec="seconds")
    state = "late" if rules.is_late(v.submitted_at) else "on time"
    extra = f", overridden: {v.override_reason}" if v.overridden else ""
    kept = "" if v.files_kept else ", files removed to save space" if v.files_pruned else ", files not kept"
    return (f"{v.number:>3}  {v.content_hash[:12]}  submitted {shown} ({state}{extra}); "
            f"{v.evaluations} evaluation(s){kept}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli.prog("versions"), description=__doc__.splitlines()[0])
    p.add_argument("entry", nargs="?", help="entry folder name (not with --prune)")
    cli.add_db_argument(p)
    competition.add_argument(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--set-time", nargs=2, metavar=("VERSION", "WHEN"), help="count VERSION as submitted at WHEN")
    group.add_argument("--clear", metavar="VERSION", help="drop the override of VERSION")
    group.add_argument("--prune", action="store_true",
                       help="remove the files of every version [storage] keep_versions lets go (results stay)")
    p.add_argument("--dry-run", action="store_true", help="with --prune: say what it would free, delete nothing")
    p.add_argument("--reason", default="", help="why (required with --set-time and --clear; kept in the audit log)")
    args = p.parse_args(argv)
    return cli.run(lambda: show_or_override(args))


def show_or_override(args: argparse.Namespace) -> int:
    """List the entry's versions or change one's time; a HarnessError ends it with one sentence (see ``main``)."""
    competition.settle(args)
    rules = competition.load(args.config)
    if args.prune:
        if args.entry:
            raise HarnessError(f"--prune applies to every entry; drop {args.entry!r}: python -m harness.versions "
                               f"--prune{' --dry-run' if args.dry_run else ''}.")
        return prune(make_engine(args.db), rules, args.dry_run)
    if args.dry_run:
        raise HarnessError("--dry-run goes with --prune: python -m harness.versions --prune --dry-run.")
    if not args.entry:
        raise HarnessError("name an entry (python -m harness.versions ENTRY) or prune every entry's old files "
                           "(python -m harness.versions --prune --dry-run).")
    engine = make_engine(args.db)
    if args.set_time:
        changed = override(engine, args.entry, args.set_time[0], parse_time(args.set_time[1], rules.timezone),
                            args.reason)
        print(f"{args.entry}: {describe(changed, rules)}")
    elif args.clear:
        changed = override(engine, args.entry, args.clear, None, args.reason)
        print(f"{args.entry}: {describe(changed, rules)}")
    else:
        deadline = rules.deadline.isoformat() if rules.deadline else "none"
        print(f"{args.entry} (deadline {deadline}, times in {rules.timezone}):")
        for v in history(engine, args.entry):
            print(describe(v, rules))
    return 0


def prune(engine, rules: competition.Competition, dry_run: bool) -> int:
    """Apply ``[storage] keep_versions``: say what it frees, remove it unless ``dry_run``, then shrink the database."""
    n = rules.keep_versions
    if n is None:
        print(f"Every version's files are kept ([storage] keep_versions = \"all\", from {rules.source}); nothing to "
              "prune. To keep only each entry's ranked version and its last 2, add [storage] with keep_versions = 2 "
              "to competition.toml, then run python -m harness.versions --prune --dry-run.")
        return 0
    print(f"Rule ([storage] keep_versions = {n}, from {rules.source}): each entry keeps the files of its ranked "
          f"version, of every version the board shows and of its last {n} version{'s' if n != 1 else ''}; "
          "the others lose their files, never their results.")
    before = space.database_bytes(engine)
    freed = retention.prune(engine, rules, dry_run=dry_run)
    what = (f"the files of {freed.versions:,} version{'s' if freed.versions != 1 else ''} "
            f"({space.size_text(freed.bytes)} that no kept version shares)")
    if dry_run:
        print(f"Would remove {what}; nothing deleted (--dry-run).")
        return 0
    if freed.versions:
        audit.log_action(engine, "prune-files", f"removed {what} by [storage] keep_versions = {n}")
        print(f"Removed {what}; their evaluations and results stay.")
    else:  # the runs may have removed files already: the room they freed can still go back to the disk
        print("Nothing to remove: every version the rule lets go has no files left.")
    room = space.reclaim(engine)
    print(f"Database: {space.size_text(before)} before pruning, {space.size_text(room.after)} after. {room.note}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
