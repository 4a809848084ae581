"""Schema migrations: old databases are upgraded with their rows, the result is harness/store/schema.py's schema, on
SQLite and PostgreSQL; a newer database is refused; concurrent first starts create the schema once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from harness import migrate
from harness.errors import HarnessError
from harness.store import upgrade
from harness.store.engine import make_engine
from harness.store.schema import (
    AuditLog,
    Base,
    Claim,
    Dataset,
    Entry,
    EntryVersion,
    Evaluation,
    Flag,
    Moderation,
    Run,
    VersionFiles,
    unpack,
)
from tests.conftest import REPO

OLD_DUMP = Path(__file__).parents[2] / "data" / "leaderboard_c82d84d.sql"  # made by the harness's db.py at c82d84d
WHEN = datetime(2026, 11, 20, 18, 30, 5, 123456)


def revision(engine) -> str | None:
    with engine.connect() as connection:
        return upgrade.current(connection)


def schema_diff(engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_database_made_before_migrations_is_upgraded_with_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:
        con.executescript(OLD_DUMP.read_text())
    engine = make_engine(f"sqlite:///{path}")
    assert revision(engine) == upgrade.head()
    assert schema_diff(engine) == []
    with Session(engine) as session:
        version = session.scalars(select(EntryVersion)).one()
        assert (version.entry.name, version.display_name, version.author, version.weights_bytes) == \
            ("alpha", "Alpha net", "Ada", 31_456)
        assert version.hyperparameters == {"lr": 0.01, "epochs": 3} and version.constructor == {"scale": 0.05}
        assert version.first_seen_at == WHEN and version.submitted_at == WHEN
        assert version.submitted_at_override is None and version.override_reason is None
        evaluation = session.scalars(select(Evaluation)).one()
        assert (evaluation.eval_key, evaluation.status, evaluation.seconds, evaluation.peak_memory_bytes,
                evaluation.log, evaluation.sandboxed, evaluation.run.argv) == \
            ("a" * 64, "ok", 1.25, 123_456_789, "hello from alpha", True, ["--device", "cpu"])
        result = evaluation.results[0]
        assert (result.correct, result.total, result.precision, result.confusion) == \
            (3, 4, [1.0, None], [[1, 0], [1, 2]])
        assert unpack(result.predicted).tolist() == [7, 2, 1, 6]
        assert unpack(result.dataset.labels).tolist() == [7, 2, 1, 0]
        assert np.array_equal(unpack(result.dataset.images), np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28))
        assert session.get(Flag, "guest_revealed").value == "false"
        assert (session.get(Moderation, "alpha").state, session.get(Moderation, "alpha").reason) == \
            ("disqualified", "copied weights")
        assert session.scalars(select(AuditLog)).one().detail == "copied weights"
        assert session.scalars(select(VersionFiles)).all() == [] and session.scalars(select(Claim)).all() == []
        assert len(session.scalars(select(Dataset)).all()) == 1 and len(session.scalars(select(Entry)).all()) == 1


@pytest.mark.postgres
def test_a_postgresql_database_made_before_migrations_is_upgraded(pg_url):
    """As create_all made it (the baseline revision's tables, no alembic_version), with a row kept."""
    engine = create_engine(pg_url)
    with engine.begin() as connection:
        command.upgrade(upgrade.config(connection), upgrade.BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text("INSERT INTO runs (started_at, harness_version, torch_version, python_version, device, "
                                "argv, status) VALUES (now(), '0.1.0', '2.5', '3.11', 'cpu', '[]', 'finished')"))
    engine.dispose()
    engine = make_engine(pg_url)
    assert revision(engine) == upgrade.head() and schema_diff(engine) == []
    with Session(engine) as session:
        assert session.scalars(select(Run.status)).all() == ["finished"]
    engine.dispose()


def test_migrations_make_the_schema_of_db_py(db_url):
    engine = make_engine(db_url)
    assert revision(engine) == upgrade.head()
    assert schema_diff(engine) == []
    engine.dispose()


def test_a_database_from_a_newer_harness_is_refused(db_url):
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(HarnessError, match=r"^the database was made by a newer version of the harness "
                                           r"\(revision 9999\); upgrade the code"):
        make_engine(db_url)


def test_a_database_at_head_is_not_migrated_again(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    make_engine(url)
    monkeypatch.setattr(command, "upgrade", lambda *a, **k: pytest.fail("upgrade ran on a database at head"))
    assert revision(make_engine(url)) == upgrade.head()


def test_tables_from_an_unknown_older_harness_are_refused(tmp_path):
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, name VARCHAR(200))")
    with pytest.raises(HarnessError, match="older than any known schema .* lacks audit_log, datasets"):
        make_engine(f"sqlite:///{path}")


@pytest.mark.slow
def test_processes_starting_at_once_on_a_fresh_database_create_it_once(db_url):
    start = time.time() + 3  # after every process has imported the harness
    code = ("import sys, time; from harness.store.engine import make_engine; time.sleep(max(0, float(sys.argv[2]) - "
            "time.time())); make_engine(sys.argv[1])")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, str(start)], cwd=REPO, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    engine = make_engine(db_url)
    assert revision(engine) == upgrade.head() and schema_diff(engine) == []
    assert "claims" in inspect(engine).get_table_names()
    engine.dispose()


def test_migrate_command_prints_the_revisions(tmp_path, capsys):
    db = str(tmp_path / "lb.db")
    assert migrate.main(["--db", db]) == 0
    assert f"revision none -> {upgrade.head()}." in capsys.readouterr().out
    assert migrate.main(["--db", db]) == 0
    assert f"already at revision {upgrade.head()}." in capsys.readouterr().out


def test_migrations_need_no_alembic_ini_and_run_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert upgrade.head() == sorted(s.revision for s in upgrade.scripts().walk_revisions())[-1]
    assert revision(make_engine("sqlite:///here.db")) == upgrade.head()
    assert not (tmp_path / "alembic.ini").exists()


def test_the_quick_head_is_alembics_head():
    """make_engine reads the head from the file names so that a database at head costs no alembic import."""
    assert upgrade.head() == upgrade.scripts().get_current_head()
    assert [s.revision for s in upgrade.scripts().walk_revisions()][0] == upgrade.head()
