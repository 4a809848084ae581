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
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harness import cli
from harness.scoring import competition
from harness.store import results as store
from harness.store.engine import make_engine
from harness.store.schema import Entry, EntryVersion, Evaluation, VersionFiles
from harness.errors import HarnessError


@dataclass(frozen=True)
class VersionInfo:
    number: int
    version_id: int
    content_hash: str
    first_seen_at: datetime          # naive UTC
    submitted_at: datetime           # naive UTC: the override, else first_seen_at
    override_reason: str | None
    overridden: bool
    evaluations: int
    files_kept: bool


def history(engine: Engine, entry_name: str) -> list[VersionInfo]:
    """The entry's versions in the order first seen; a HarnessError when the entry is unknown."""
    evaluations = (select(Evaluation.version_id, func.count(Evaluation.id).label("n"))
                   .group_by(Evaluation.version_id).subquery())
    with Session(engine) as session:
        if session.scalar(select(Entry.id).where(Entry.name == entry_name)) is None:
            known = ", ".join(session.scalars(select(Entry.name).order_by(Entry.name))) or "none yet"
            raise HarnessError(f"no entry named {entry_name!r} in the database; known entries: {known}.")
        rows = session.execute(
            select(EntryVersion.id, EntryVersion.content_hash, EntryVersion.first_seen_at,
                   EntryVersion.submitted_at, EntryVersion.submitted_at_override, EntryVersion.override_reason,
                   evaluations.c.n,
                   VersionFiles.version_id.label("kept"))
            .join(Entry, EntryVersion.entry_id == Entry.id)
            .outerjoin(evaluations, evaluations.c.version_id == EntryVersion.id)
            .outerjoin(VersionFiles, VersionFiles.version_id == EntryVersion.id)
            .where(Entry.name == entry_name).order_by(EntryVersion.first_seen_at, EntryVersion.id)).all()
    return [VersionInfo(i + 1, r.id, r.content_hash, r.first_seen_at, r.submitted_at,
                        r.override_reason, r.submitted_at_override is not None, r.n or 0, r.kept is not None)
            for i, r in enumerate(rows)]


def find(versions: list[VersionInfo], ref: str) -> VersionInfo:
    """A version by its number or a content-hash prefix (at least 6 characters)."""
    if ref.isdigit() and 1 <= int(ref) <= len(versions):
        return versions[int(ref) - 1]
    matches = [v for v in versions if len(ref) >= 6 and v.content_hash.startswith(ref.lower())]
    if len(matches) == 1:
        return matches[0]
    raise HarnessError(f"no single version {ref!r}; give a number from 1 to {len(versions)} or 6+ characters of "
                       "its content hash (run without --set-time to list them).")


def parse_time(text: str, zone: str) -> datetime:
    """An ISO time as naive UTC; without an offset it is read in the competition's time zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise HarnessError(f"{text!r} is not a date and time; write e.g. 2027-01-10T23:30:00+01:00.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    return when.astimezone(timezone.utc).replace(tzinfo=None)


def override(engine: Engine, entry_name: str, ref: str, when_utc: datetime | None, reason: str) -> VersionInfo:
    """Set (or with None, clear) when a version counts as submitted; logged with the reason."""
    if not reason.strip():
        raise HarnessError("an override needs a reason (--reason \"...\"); it is kept in the audit log.")
    version = find(history(engine, entry_name), ref)
    with Session(engine) as session, session.begin():
        row = session.get(EntryVersion, version.version_id, with_for_update=True)
        before = row.submitted_at
        row.submitted_at_override = when_utc
        row.override_reason = reason.strip() if when_utc is not None else None
        after = row.submitted_at
    store.log_action(engine, "version-time" if when_utc else "version-time-cleared",
                     f"version {version.number} ({version.content_hash[:12]}): counted as submitted at "
                     f"{after.isoformat()}Z instead of {before.isoformat()}Z; reason: {reason.strip()}", entry_name)
    return find(history(engine, entry_name), str(version.number))


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
