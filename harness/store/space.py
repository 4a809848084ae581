"""How much room the database takes, and giving freed room back to the disk after versions' files were removed.

SQLite: the file plus its write-ahead log; ``VACUUM`` rewrites the file without its free pages (it needs about the
file's size free on the disk, and no other process writing). PostgreSQL: ``pg_database_size``; a plain ``VACUUM``
lets new rows reuse the freed room but seldom shrinks the files (``VACUUM FULL`` would, locking the tables meanwhile,
so it is left to the organiser).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from harness.store import db_errors


def size_text(n: int | None) -> str:
    """Bytes as a person reads them: "940.2 MB", "1,234.57 GB" (MB and GB are 10^6 and 10^9 bytes)."""
    if n is None:
        return "unknown"
    return f"{n / 1e9:,.2f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def database_bytes(engine: Engine) -> int | None:
    """The database's size on disk: the SQLite file and its WAL, or PostgreSQL's pg_database_size; None when unknown
    (an in-memory SQLite database)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar())
    path = db_errors.sqlite_file(engine.url)
    if path is None:
        return None
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


@dataclass(frozen=True)
class Reclaimed:
    before: int | None
    after: int | None
    note: str  # one sentence: what was done, or why the room stays in the database file


def reclaim(engine: Engine) -> Reclaimed:
    """Give the room freed inside the database back to the disk where the engine can (see the module)."""
    before = database_bytes(engine)
    if engine.dialect.name == "postgresql":
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM file_blobs"))
                connection.execute(text("VACUUM file_chunks"))
        except DBAPIError as exc:
            return Reclaimed(before, database_bytes(engine),
                             f"PostgreSQL did not vacuum ({str(exc.orig).strip()}); it reuses the freed room for new "
                             "rows anyway.")
        return Reclaimed(before, database_bytes(engine),
                         "PostgreSQL vacuumed the file tables: new rows reuse the freed room; to give it back to the "
                         "disk, run VACUUM FULL file_blobs, file_chunks in psql when nobody is submitting (it locks "
                         "them).")
    if before is None:
        return Reclaimed(None, None, "an in-memory database has no file to shrink.")
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            free = connection.execute(text("PRAGMA freelist_count")).scalar()
            if not free:
                connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
                return Reclaimed(before, database_bytes(engine), "The SQLite file has no free room to give back.")
            connection.execute(text("VACUUM"))
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    except DBAPIError as exc:
        return Reclaimed(before, database_bytes(engine),
                         f"SQLite could not VACUUM ({str(exc.orig).strip()}): it reuses the freed room for new "
                         "versions but the file keeps its size; run python -m harness.versions --prune again when no "
                         "evaluation or dashboard upload is running and the disk has the file's size free.")
    return Reclaimed(before, database_bytes(engine), "SQLite rewrote the file without the freed room (VACUUM).")
