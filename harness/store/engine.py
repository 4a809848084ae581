"""The one engine factory: a database URL (``--db``, ``$LEADERBOARD_DB`` or ``leaderboard.db``) to an engine whose
schema is brought up to date (``harness.store.upgrade``) and whose refusals (read-only, full disk) read as one
sentence (``harness.store.db_errors``)."""

from __future__ import annotations

import os
import re
import sqlite3
import time

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from harness.errors import HarnessError
from harness.store import db_errors, upgrade
from harness.store.schema import _json_dumps

DEFAULT_URL = "sqlite:///leaderboard.db"
ENV_VAR = "LEADERBOARD_DB"


def resolve_url(arg: str | None = None) -> str:
    """``--db``, else $LEADERBOARD_DB, else ./leaderboard.db; a plain path means an SQLite file."""
    url = arg or os.environ.get(ENV_VAR) or DEFAULT_URL
    return url if "://" in url else f"sqlite:///{url}"


def shown_url(url: str) -> str:
    """The URL with its password masked, to print or store (a PostgreSQL URL may carry one)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: another process may be creating the database
    for attempt in range(300):  # switching a new file to WAL answers "locked" at once, without the busy timeout
        try:
            cursor.execute("PRAGMA journal_mode=WAL")  # a dashboard can read while the harness writes
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == db_errors.SQLITE_READONLY:
                break  # a read-only database keeps its journal mode: it can still be read
            if "locked" not in str(exc) or attempt == 299:
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def schema_in(parsed) -> str | None:
    """The schema a server URL's connections work in (``options=-csearch_path=NAME``, set for a competition that
    shares a server database: ``harness.common.competition.in_schema``), or None."""
    options = parsed.query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    found = re.search(r"search_path=([A-Za-z0-9_]+)", options)
    return found.group(1) if found else None


def _ensure_schema(engine: Engine, parsed) -> None:
    """Create the competition's schema in a shared server database before its tables (no-op elsewhere)."""
    schema = schema_in(parsed) if parsed.get_backend_name() == "postgresql" else None
    if schema is not None:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def make_engine(url: str | None = None, create: bool = True) -> Engine:
    """The engine for a database URL, its schema upgraded to this code's (``create``); bad URLs, unreachable
    servers and databases from a newer harness give one clear HarnessError."""
    url = resolve_url(url)
    shown = shown_url(url)
    hint = "use e.g. --db sqlite:///leaderboard.db or postgresql+psycopg://user:pass@host/dbname"
    try:
        parsed = make_url(url)
        # pre-ping: a hosted server may restart under a long-running dashboard
        engine = create_engine(parsed, json_serializer=_json_dumps, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except NoSuchModuleError as exc:
        raise HarnessError(f"--db {shown!r} names a database driver that is not installed ({exc}); {hint}.") from exc
    except (ArgumentError, ValueError) as exc:
        raise HarnessError(f"--db {shown!r} is not a database URL; {hint}.") from exc
    except ImportError as exc:
        raise HarnessError(f"--db {shown!r} needs the Python package {exc.name!r}; install it or {hint}.") from exc
    event.listen(engine, "handle_error", db_errors.listener(parsed))  # a read-only database, a full disk
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if (path := db_errors.sqlite_file(parsed)) is not None:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise HarnessError(f"--db {shown!r}: the folder {folder} does not exist; create it or choose another "
                                   "path.")
    if create:
        try:
            _ensure_schema(engine, parsed)
            upgrade.upgrade(engine)
        except DBAPIError as exc:
            raise HarnessError(f"cannot open the database {shown!r} ({str(exc.orig).strip()}); check the path, its "
                               f"permissions or the server, or {hint}.") from exc
    return engine
