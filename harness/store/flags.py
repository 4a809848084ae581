"""Named flags the organiser sets: for now the guest reveal."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from harness.store.schema import Flag

GUEST_REVEALED = "guest_revealed"


def get_flag(engine: Engine, name: str, default: str = "") -> str:
    with Session(engine) as session:
        row = session.get(Flag, name)
        return row.value if row else default


def set_flag(engine: Engine, name: str, value: str) -> None:
    with Session(engine) as session, session.begin():
        row = session.get(Flag, name)
        if row is None:
            session.add(Flag(name=name, value=value))
        else:
            row.value = value


def is_revealed(engine: Engine) -> bool:
    """The organiser's reveal flag (what the rules make of it: ``harness.scoring.board.revealed``)."""
    return get_flag(engine, GUEST_REVEALED) == "true"
