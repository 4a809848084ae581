"""Which entry versions keep their files when the organiser keeps only some (``[storage] keep_versions = N``).

Each entry keeps the files of its last N versions (in the order submitted), of the version that counts (its latest
one submitted by the deadline: the runner re-scores it from these files when the datasets change) and of every
version the board shows (``standings.picks``, with and without the organiser's moderation: ranked, late, superseded,
disqualified). The others lose their files only: their evaluations, results and predictions stay, so a member never
loses a result. With ``keep_versions = "all"`` (the default) nothing is removed.
"""

from __future__ import annotations

from sqlalchemy import Engine

from harness.common.competition import Competition
from harness.scoring import standings
from harness.store import moderation, snapshots


def protected(versions: list[standings.VersionRow], competition: Competition,
              decisions: dict[str, tuple[str, str]]) -> set[int]:
    """The version ids that keep their files whatever N is: the one that counts and every one the board shows."""
    keep = {v.version_id for v in standings.counted_versions(versions, competition).values()}
    for moderated in (decisions, {}):  # a hidden entry's versions too: the organiser may make it visible again
        keep |= {p.version_id for p in standings.picks(versions, competition, moderated)}
    return keep


def to_prune(versions: list[standings.VersionRow], competition: Competition,
             decisions: dict[str, tuple[str, str]]) -> list[int]:
    """The version ids whose files the rule lets go (kept or not yet), oldest first; none with "all"."""
    n = competition.keep_versions
    if n is None:
        return []
    keep = protected(versions, competition, decisions)
    by_entry: dict[str, list[standings.VersionRow]] = {}
    for v in versions:  # oldest first
        by_entry.setdefault(v.entry_name, []).append(v)
    for rows in by_entry.values():
        keep |= {v.version_id for v in rows[max(0, len(rows) - n):]}
    return [v.version_id for v in versions if v.version_id not in keep]


def prune(engine: Engine, competition: Competition, dry_run: bool = False) -> snapshots.Freed:
    """Remove (or with ``dry_run`` count) the files the rule lets go; what it frees."""
    ids = to_prune(standings.version_rows(engine), competition, moderation.decisions(engine))
    return snapshots.drop_files(engine, ids, dry_run=dry_run) if ids else snapshots.Freed(0, 0)
