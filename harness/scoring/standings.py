"""Which evaluation of each entry counts: the latest version submitted before the deadline.

A version counts as submitted when the harness first saw it, unless the organiser overrode that time.
A later version is still shown, as ``late``, but not ranked. With ``entries_per_member = "one"`` only
each member's most recently submitted entry is ranked; their other entries are ``superseded``; a version or entry
whose evaluation failed never supersedes a working one (the newest working one is ranked instead).

The organiser's moderation (``moderation.set_moderation``) is applied here too, and only here: a hidden entry is
left out altogether; a disqualified one is shown once (the version that would count, else its late one),
``disqualified`` with the organiser's reason as its note, and is never ranked. A disqualified entry does not
take part in "one entry per member": it supersedes none of its author's other entries, so their most recent
entry that is not disqualified is the one ranked. The terminal, ``--json``, the export, ``harness.verify`` and
the dashboard all take these decisions from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harness.common.competition import Competition
from harness.store import moderation
from harness.store.schema import Entry, EntryOwner, EntryVersion, Evaluation

RANKED, LATE, SUPERSEDED, DISQUALIFIED = "ranked", "late", "superseded", "disqualified"
HIDDEN = "hidden"


@dataclass(frozen=True)
class VersionRow:
    entry_name: str
    version_id: int
    content_hash: str
    author: str | None
    submitted_at: datetime        # naive UTC
    overridden: bool
    evaluation_id: int | None     # the newest evaluation of this version, if any
    owner: str | None = None      # the member whose code submitted the entry (Submit page); beats ``author``
    failed: bool = False          # its newest evaluation failed


@dataclass(frozen=True)
class Pick:
    """One evaluation shown on the board and whether it takes part in the ranking."""
    entry_name: str
    evaluation_id: int
    version_id: int
    submitted_at: datetime
    standing: str                 # ranked, late, superseded or disqualified
    note: str = ""


def version_rows(engine: Engine) -> list[VersionRow]:
    """Every version of every entry with its submission time and newest evaluation, oldest first."""
    newest = (select(Evaluation.version_id, func.max(Evaluation.id).label("evaluation_id"))
              .group_by(Evaluation.version_id).subquery())
    with Session(engine) as session:
        rows = session.execute(
            select(Entry.name, EntryVersion.id, EntryVersion.content_hash, EntryVersion.author,
                   EntryVersion.submitted_at, EntryVersion.submitted_at_override, newest.c.evaluation_id,
                   EntryOwner.member.label("owner"), Evaluation.status)
            .join(Entry, EntryVersion.entry_id == Entry.id)
            .outerjoin(newest, newest.c.version_id == EntryVersion.id)
            .outerjoin(Evaluation, Evaluation.id == newest.c.evaluation_id)
            .outerjoin(EntryOwner, EntryOwner.entry_key == func.lower(Entry.name))).all()
    out = [VersionRow(r.name, r.id, r.content_hash, r.author, r.submitted_at,
                      r.submitted_at_override is not None, r.evaluation_id, r.owner, r.status == "failed")
           for r in rows]
    return sorted(out, key=lambda v: (v.submitted_at, v.version_id))


def counted_versions(versions: list[VersionRow], competition: Competition) -> dict[str, VersionRow]:
    """{entry: its latest version submitted by the deadline} (evaluated or not): what the runner must score."""
    out: dict[str, VersionRow] = {}
    for v in versions:  # oldest first, so the last on-time version wins
        if not competition.is_late(v.submitted_at):
            out[v.entry_name] = v
    return out


def member(author: str | None, entry_name: str) -> str:
    """Who an entry belongs to: its author, case and spacing ignored; the folder name when there is none."""
    key = " ".join((author or "").split()).casefold()
    return key or f"entry:{entry_name}"


def picks(versions: list[VersionRow], competition: Competition,
          decisions: dict[str, tuple[str, str]] | None = None) -> list[Pick]:
    """The evaluation each entry shows: its latest on-time evaluated version (ranked), and a newer late one.

    ``decisions`` is ``harness.store.moderation.decisions``: {entry: (hidden or disqualified, the organiser's
    reason)}.
    """
    decisions = decisions or {}
    one = competition.entries_per_member == "one"
    by_entry: dict[str, list[VersionRow]] = {}
    for v in versions:
        if v.evaluation_id is not None:
            by_entry.setdefault(v.entry_name, []).append(v)
    out: list[Pick] = []
    for name, evaluated in sorted(by_entry.items()):
        state, reason = decisions.get(name, ("visible", ""))
        if state == HIDDEN:
            continue
        on_time = [v for v in evaluated if not competition.is_late(v.submitted_at)]
        late = [v for v in evaluated if competition.is_late(v.submitted_at)]
        if state == DISQUALIFIED:
            v = (on_time or late)[-1]
            out.append(Pick(name, v.evaluation_id, v.version_id, v.submitted_at, DISQUALIFIED, reason))
            continue
        if on_time:
            v = on_time[-1]
            working = [w for w in on_time if not w.failed]
            if one and v.failed and working:  # a newer version that failed never replaces the working one
                out.append(Pick(name, v.evaluation_id, v.version_id, v.submitted_at, SUPERSEDED,
                                "this newer version failed; the entry's latest working version is the one ranked "
                                "(one entry per member)"))
                v = working[-1]
            out.append(Pick(name, v.evaluation_id, v.version_id, v.submitted_at, RANKED))
        if late:
            v = late[-1]
            note = "submitted after the deadline" + ("; the on-time version is ranked" if on_time else "")
            out.append(Pick(name, v.evaluation_id, v.version_id, v.submitted_at, LATE, note))
    if one:  # only ranked picks compete: a disqualified one supersedes nothing
        # A code-verified owner beats the author an entry's own entry.toml claims (anyone can type another's name).
        out = _one_per_member(out, {v.version_id: v.owner or v.author for v in versions},
                              {v.version_id for v in versions if v.failed})
    return out


def _one_per_member(chosen: list[Pick], authors: dict[int, str | None], failed: set[int]) -> list[Pick]:
    """Each member's most recent ranked entry stays ranked, the others are superseded; an entry that failed never
    supersedes one that works (it is superseded by the member's most recent working entry instead)."""
    ranked = [p for p in chosen if p.standing == RANKED]
    latest: dict[str, Pick] = {}
    for p in sorted(ranked, key=lambda p: (p.version_id not in failed, p.submitted_at, p.version_id)):
        latest[member(authors.get(p.version_id), p.entry_name)] = p  # working ones last: the newest working wins
    out = []
    for p in chosen:
        keeper = latest.get(member(authors.get(p.version_id), p.entry_name)) if p.standing == RANKED else None
        if keeper is not None and keeper is not p:
            who = authors.get(p.version_id) or p.entry_name
            said = (f"{who}'s entry {keeper.entry_name} is the one ranked, since this newer one failed"
                    if p.submitted_at > keeper.submitted_at
                    else f"{who}'s newer entry {keeper.entry_name} is the one ranked")
            p = Pick(p.entry_name, p.evaluation_id, p.version_id, p.submitted_at, SUPERSEDED,
                     f"{said} (one entry per member)")
        out.append(p)
    return out


def current(engine: Engine, competition: Competition) -> list[Pick]:
    return picks(version_rows(engine), competition, moderation.decisions(engine))
