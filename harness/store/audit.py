"""The organiser's audit log: every action (reveal, moderation, a version's time, members' codes, re-runs, pruning)
with its time, newest first when read."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harness.store.schema import AuditLog


def log_action(engine: Engine, action: str, detail: str = "", entry_name: str | None = None) -> None:
    """Append one organiser action to the audit log (stamped with the current UTC time)."""
    with Session(engine) as session, session.begin():
        session.add(AuditLog(action=action, detail=detail, entry_name=entry_name))


def audit_log(engine: Engine, limit: int = 200) -> list[dict]:
    """The newest organiser actions first, as plain dicts."""
    with Session(engine) as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).all()
        return [{"at": r.at, "action": r.action, "entry": r.entry_name, "detail": r.detail} for r in rows]
