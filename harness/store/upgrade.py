"""Bring a results database made by this or an older harness to the newest schema (Alembic, no alembic.ini).

``harness.store.engine.make_engine`` calls :func:`upgrade` on every start; ``python -m harness.migrate`` runs it by
hand. To change the schema, edit ``harness/store/schema.py`` and add a revision to
``harness/store/migrations/versions/`` (``python -m harness.migrate --db DB_AT_HEAD --new "what changed"`` drafts
one from the difference).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from harness.errors import HarnessError

if TYPE_CHECKING:  # alembic is imported only when a database needs upgrading: every CLI start checks, few upgrade
    from alembic.config import Config
    from alembic.script import ScriptDirectory

SCRIPTS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema that create_all made before there were migrations (commit c82d84d)
BASELINE_TABLES = {"entries", "entry_versions", "datasets", "runs", "evaluations", "results", "flags", "moderation",
                   "audit_log"}
LOCK_KEY = 7_262_021_417  # pg_advisory_xact_lock key: one schema upgrade at a time on a PostgreSQL database


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the package's migrations (no alembic.ini), bound to ``connection``."""
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(config())


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision: revisions are numbered 0001, 0002, ... and their files start with the number
    (tests check that this is Alembic's own head)."""
    return f"{max(int(p.name[:4]) for p in (SCRIPTS / 'versions').glob('[0-9][0-9][0-9][0-9]_*.py')):04d}"


def current(connection: Connection) -> str | None:
    """The database's schema revision: None for an empty database or one made before migrations."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the schema to the newest revision; returns the revisions before and after.

    A database already there costs two small queries. Otherwise the upgrade runs in one transaction under a
    lock, so two processes starting at once on a fresh database do it once."""
    with engine.connect() as connection:
        before = current(connection)
    if before == head():
        return before, before
    _refuse_unknown(before)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # batch migrations copy tables, which foreign keys would block; the pragma only works here
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            _lock(connection)
            before = current(connection)  # another process may have upgraded while this one waited
            _refuse_unknown(before)
            if before is None and inspect(connection).has_table("entries"):
                _adopt(connection)
            from alembic import command
            command.upgrade(config(connection), "head")
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                raise HarnessError("a schema migration left rows that break a foreign key; nothing was changed.")
            connection.commit()
        finally:
            connection.rollback()
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    return before, head()


def _lock(connection: Connection) -> None:
    """Begin the upgrade's transaction holding the database's write lock."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits (busy_timeout) while another process upgrades


def _refuse_unknown(revision: str | None) -> None:
    if revision is not None and revision not in {s.revision for s in scripts().walk_revisions()}:
        raise HarnessError(f"the database was made by a newer version of the harness (revision {revision}); "
                           "upgrade the code (git pull, then pip install -e .) to use it.")


def _adopt(connection: Connection) -> None:
    """A database made before migrations: check that it has the baseline's tables, then mark it as baseline."""
    inspector = inspect(connection)
    missing = sorted(BASELINE_TABLES - set(inspector.get_table_names()))
    if not missing and "sandboxed" not in {c["name"] for c in inspector.get_columns("evaluations")}:
        missing = ["evaluations.sandboxed"]
    if missing:
        raise HarnessError(f"the database was made by a harness older than any known schema (it lacks "
                           f"{', '.join(missing)}); evaluate into a new database instead.")
    from alembic import command
    command.stamp(config(connection), BASELINE)


def draft_revision(connection: Connection, message: str) -> str:
    """Write the next revision file from the differences between ``harness/store/schema.py`` and a database at head."""
    from alembic import command
    script = command.revision(config(connection), message=message, autogenerate=True, rev_id=f"{int(head()) + 1:04d}")
    return script.path
