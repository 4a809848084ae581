"""The organiser's moderation: an entry hidden or disqualified, always with a reason, each change in the audit log.
``harness.scoring.standings`` applies it, and only it."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harness.store.schema import AuditLog, Moderation

MODERATION_STATES = ("visible", "hidden", "disqualified")


def set_moderation(engine: Engine, entry_name: str, state: str, reason: str = "") -> None:
    """Hide, disqualify or restore an entry, and log the action; hiding or disqualifying needs a reason."""
    if state not in MODERATION_STATES:
        raise ValueError(f"unknown moderation state {state!r}; use one of {', '.join(MODERATION_STATES)}.")
    reason = reason.strip()
    if state != "visible" and not reason:
        raise ValueError(f"say why the entry is {state}: the reason is shown to the organisers (and, for a "
                         "disqualification, on the board).")
    with Session(engine) as session, session.begin():
        row = session.get(Moderation, entry_name)
        if row is None:
            session.add(Moderation(entry_name=entry_name, state=state, reason=reason))
        else:
            row.state, row.reason = state, reason
        session.add(AuditLog(action={"visible": "restore", "hidden": "hide", "disqualified": "disqualify"}[state],
                             entry_name=entry_name, detail=reason))


def decisions(engine: Engine) -> dict[str, tuple[str, str]]:
    """{entry name: (state, reason)} for every entry an organiser has hidden or disqualified."""
    with Session(engine) as session:
        return {r.entry_name: (r.state, r.reason) for r in session.scalars(select(Moderation))
                if r.state != "visible"}
