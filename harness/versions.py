"""``python -m harness.versions ENTRY``: an entry's version history, and the organiser's submission-time override.

    python -m harness.versions ada                       # list versions: when seen, counted time, late or not
    python -m harness.versions ada --set-time 2 2027-01-10T23:30:00+01:00 --reason "upload failed at 23:40, mail at 23:30"
    python -m harness.versions ada --clear 2 --reason "mistake"

A version is numbered 1, 2, ... per entry in the order first seen, or named by a prefix of its content hash.
Every override is written to the audit log with its reason.
"""

from __future__ import annotations

import argparse
import sys
from harness import cli
from harness.scoring import competition
from harness.store.engine import make_engine
from harness.store.versions import VersionInfo, find, history, override, parse_time  # noqa: F401  (the dashboard's too)


def describe(v: VersionInfo, rules: competition.Competition) -> str:
    shown = rules.local(v.submitted_at).isoformat(timespec="seconds")
    state = "late" if rules.is_late(v.submitted_at) else "on time"
    extra = f", overridden: {v.override_reason}" if v.overridden else ""
    kept = "" if v.files_kept else ", files not kept"
    return (f"{v.number:>3}  {v.content_hash[:12]}  submitted {shown} ({state}{extra}); "
            f"{v.evaluations} evaluation(s){kept}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.versions", description=__doc__.splitlines()[0])
    p.add_argument("entry", help="entry folder name")
    cli.add_db_argument(p)
    competition.add_argument(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--set-time", nargs=2, metavar=("VERSION", "WHEN"), help="count VERSION as submitted at WHEN")
    group.add_argument("--clear", metavar="VERSION", help="drop the override of VERSION")
    p.add_argument("--reason", default="", help="why (required with --set-time and --clear; kept in the audit log)")
    args = p.parse_args(argv)
    return cli.run(lambda: show_or_override(args))


def show_or_override(args: argparse.Namespace) -> int:
    """List the entry's versions or change one's time; a HarnessError ends it with one sentence (see ``main``)."""
    rules = competition.load(args.config)
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


if __name__ == "__main__":
    sys.exit(main())
