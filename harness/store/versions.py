"""Entries and their versions: a version's row on first sight of its content, the versions of an entry in the order
first seen (``history``, and as the Entry page's ``table``), and the organiser's override of when one counts as
submitted (always with a reason, written to the audit log). The command is ``python -m harness.versions``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harness.entries.discovery import EntryFolder
from harness.errors import HarnessError
from harness.store import audit
from harness.store.schema import Entry, EntryVersion, Evaluation, VersionFiles

if TYPE_CHECKING:  # pandas is imported where a DataFrame is built: the commands that only read the board need none
    import pandas as pd


def ensure_version(engine: Engine, entry: EntryFolder) -> int:
    """The id of this entry content's version row, creating the entry and version on first sight.

    Two runs may see a new entry at once: the one whose insert hits the unique constraint reads the other's row."""
    from sqlalchemy.exc import IntegrityError
    for attempt in range(3):
        try:
            with Session(engine) as session, session.begin():
                row = session.scalar(select(Entry).where(Entry.name == entry.name))
                if row is None:
                    row = Entry(name=entry.name)
                    session.add(row)
                    session.flush()
                version = session.scalar(select(EntryVersion).where(EntryVersion.entry_id == row.id,
                                                                    EntryVersion.content_hash == entry.content_hash))
                if version is None:
                    meta = entry.metadata
                    version = EntryVersion(entry_id=row.id, content_hash=entry.content_hash, code_hash=entry.code_hash,
                                           weights_hash=entry.weights_hash, weights_bytes=entry.weights_bytes,
                                           display_name=entry.display_name, author=meta.author,
                                           description=meta.description, hyperparameters=dict(meta.hyperparameters),
                                           constructor=dict(meta.constructor))
                    session.add(version)
                    session.flush()
                return version.id
        except IntegrityError:
            if attempt == 2:
                raise


def known_versions(engine: Engine, entries: list[EntryFolder]) -> dict[tuple[str, str], tuple[int, bool]]:
    """{(entry name, content hash): (version id, whether its files are kept and not pruned)} for the versions of
    ``entries`` the store has seen, in one query: what ``ensure_version`` would find and ``snapshots.keep`` skip."""
    wanted = {(e.name, e.content_hash) for e in entries}
    names = sorted({e.name for e in entries})
    out: dict[tuple[str, str], tuple[int, bool]] = {}
    with Session(engine) as session:
        for start in range(0, len(names), 500):  # 500 names per IN (...): SQLite before 3.32 allows 999 parameters
            rows = session.execute(select(Entry.name, EntryVersion.content_hash, EntryVersion.id,
                                          VersionFiles.version_id)
                                   .join(EntryVersion.entry)
                                   .outerjoin(VersionFiles, (VersionFiles.version_id == EntryVersion.id)
                                              & VersionFiles.pruned_at.is_(None))
                                   .where(Entry.name.in_(names[start:start + 500])))
            out.update({(name, content): (version_id, kept is not None) for name, content, version_id, kept in rows
                        if (name, content) in wanted})
    return out


def has_unseen(engine: Engine, entries: list[EntryFolder]) -> bool:
    """Whether some entry's folder holds content the store has never seen (so a run will evaluate it)."""
    with Session(engine) as session:
        known = {(name, content) for name, content in
                 session.execute(select(Entry.name, EntryVersion.content_hash).join(EntryVersion.entry))}
    return any((e.name, e.content_hash) not in known for e in entries)


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
    files_pruned: bool = False  # removed to save space ([storage] keep_versions); its results stay


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
                   VersionFiles.version_id.label("kept"), VersionFiles.pruned_at)
            .join(Entry, EntryVersion.entry_id == Entry.id)
            .outerjoin(evaluations, evaluations.c.version_id == EntryVersion.id)
            .outerjoin(VersionFiles, VersionFiles.version_id == EntryVersion.id)
            .where(Entry.name == entry_name).order_by(EntryVersion.first_seen_at, EntryVersion.id)).all()
    return [VersionInfo(i + 1, r.id, r.content_hash, r.first_seen_at, r.submitted_at,
                        r.override_reason, r.submitted_at_override is not None, r.n or 0,
                        r.kept is not None and r.pruned_at is None, r.pruned_at is not None)
            for i, r in enumerate(rows)]


def table(engine: Engine, entry_name: str, is_late=lambda submitted_at: False) -> pd.DataFrame:
    """One row per version of an entry: when first seen and counted as submitted, late or not (``is_late``: the
    competition's rule), hashes, metadata and how many evaluations."""
    import pandas as pd  # here, not at the top: about 0.9 s to import
    with Session(engine) as session:
        rows = session.execute(
            select(EntryVersion.id, EntryVersion.first_seen_at, EntryVersion.submitted_at,
                   EntryVersion.override_reason, EntryVersion.display_name, EntryVersion.content_hash,
                   EntryVersion.weights_hash, EntryVersion.code_hash, EntryVersion.hyperparameters,
                   func.count(Evaluation.id).label("evaluations"))
            .join(Entry, EntryVersion.entry_id == Entry.id)
            .outerjoin(Evaluation, Evaluation.version_id == EntryVersion.id)
            .where(Entry.name == entry_name).group_by(EntryVersion.id).order_by(EntryVersion.id)).all()
    return pd.DataFrame([{"version": i + 1, "first seen": r.first_seen_at,
                          "submitted": r.submitted_at, "late": is_late(r.submitted_at),
                          "override reason": r.override_reason or "", "display name": r.display_name,
                          "content hash": r.content_hash[:12], "weights hash": r.weights_hash[:12],
                          "code hash": r.code_hash[:12], "hyperparameters": r.hyperparameters,
                          "evaluations": r.evaluations} for i, r in enumerate(rows)])


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
    return when.astimezone(UTC).replace(tzinfo=None)


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
    audit.log_action(engine, "version-time" if when_utc else "version-time-cleared",
                     f"version {version.number} ({version.content_hash[:12]}): counted as submitted at "
                     f"{after.isoformat()}Z instead of {before.isoformat()}Z; reason: {reason.strip()}", entry_name)
    return find(history(engine, entry_name), str(version.number))
