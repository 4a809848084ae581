"""Database errors the user must fix (a read-only database, a full disk) as one sentence, for every command.

``db.make_engine`` registers :func:`listener` on each engine: SQLAlchemy calls it for every failed statement,
commit or connection, and the sentence replaces the driver's traceback. Every other error (a unique-constraint
race, a lost connection) passes through unchanged.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL

from harness.errors import HarnessError

SQLITE_READONLY, SQLITE_FULL = 8, 13        # primary result codes (the low byte of an extended code)
PG_READ_ONLY, PG_NO_PRIVILEGE, PG_DISK_FULL = "25006", "42501", "53100"  # SQLSTATEs
ELSEWHERE = "or choose another database with --db"


class StoreError(HarnessError):
    """The database refused a write for a reason the user must fix; nothing already stored is lost."""


def sqlite_file(url: URL) -> str | None:
    """The file of an SQLite URL, plain or as a ``file:`` URI (``?mode=ro&uri=true``); None in memory."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return database.removeprefix("file:").split("?")[0] if database.startswith("file:") else database


def where(url: URL) -> str:
    """The database as a person names it: its file for SQLite, else host/name (never the password)."""
    path = sqlite_file(url)
    if path is not None:
        return path
    host = f"{url.host or 'localhost'}{f':{url.port}' if url.port else ''}"
    return f"{host}/{url.database}" if url.database else url.render_as_string(hide_password=True)


def sentence(original: BaseException, url: URL) -> str | None:
    """One sentence for an error the user must fix, or None for any other."""
    detail = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    name = where(url)
    code = getattr(original, "sqlite_errorcode", None)
    if code is not None:
        folder = os.path.dirname(os.path.abspath(name))
        if code & 0xFF == SQLITE_READONLY:
            return (f"the database {name} is read-only ({detail}); give this user write access to it and to its "
                    f"folder, {ELSEWHERE}.")
        if code & 0xFF == SQLITE_FULL:
            return (f"the disk holding the database {name} is full ({detail}); free space in {folder}, {ELSEWHERE}; "
                    "what was stored before is kept.")
        return None
    state = getattr(original, "sqlstate", None)
    if state == PG_READ_ONLY:
        return f"the database {name} is read-only ({detail}); connect as a user that may write to it, {ELSEWHERE}."
    if state == PG_NO_PRIVILEGE:
        return (f"the database {name} refuses this user ({detail}); grant the user access to the harness's tables, "
                f"{ELSEWHERE}.")
    if state == PG_DISK_FULL:
        return (f"the disk of the database server holding {name} is full ({detail}); free space on the server, "
                f"{ELSEWHERE}; what was stored before is kept.")
    return None


def listener(url: URL):
    """A ``handle_error`` listener that turns the errors above into a :class:`StoreError`."""
    def handle_error(context) -> StoreError | None:
        said = sentence(context.original_exception, url)
        return StoreError(said) if said else None
    return handle_error
