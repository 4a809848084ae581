"""Inputs that used to stop a whole run: a file name that is not UTF-8, an entry too big to keep, a database that
is read-only or whose disk is full, and a run killed with ``kill -9`` (its run row, claims and temporary folders).

The bad entry fails (or is left out) with one sentence while the others are evaluated; a database problem stops
the run with one sentence and exit status 2, and everything stored before stays readable."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from harness import evaluate, runner, verify, versions as versions_cli
from harness.entries.discovery import discover, load_entry
from harness.errors import HarnessError
from harness.store import runs, snapshots, upgrade, versions
from harness.store.engine import make_engine
from harness.store.schema import Claim, Evaluation, FileBlob, Result, Run, VersionFiles
from tests.conftest import REPO, evaluate_args, evaluate_command
from tests.entries import before_return, template_weights, write_entry

BAD_NAME = "its file 'w\\xff.pt' has a name that is not valid UTF-8; rename it using letters, digits, '-', '_' and '.'."


def write_bad_name(folder: Path, name: bytes = b"w\xff.pt") -> None:
    with open(os.path.join(os.fsencode(folder), name), "wb") as fh:
        fh.write(b"not utf-8 named")


# --- 1. file names that are not UTF-8 -----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_leaves_its_entry_out_and_the_rest_is_evaluated(tmp_path, small_mnist, means):
    subs = tmp_path / "subs"
    write_bad_name(write_entry(subs, "odd", weights=template_weights(means)))
    nested = write_entry(subs, "odd-folder", weights=template_weights(means))
    os.mkdir(os.path.join(os.fsencode(nested), b"d\xe9j\xe0"))
    write_bad_name(nested / os.fsdecode(b"d\xe9j\xe0"), b"notes.txt")
    write_entry(subs, "good", weights=template_weights(means))
    skipped: list[str] = []
    entries = discover(subs, skipped)
    assert list(entries) == ["good"]
    assert skipped == [f"entry folder 'odd' is left out: {BAD_NAME}",
                       "entry folder 'odd-folder' is left out: its file 'd\\xe9j\\xe0/notes.txt' has a name that is "
                       "not valid UTF-8; rename it using letters, digits, '-', '_' and '.'."]
    with pytest.raises(HarnessError, match="^entry folder 'odd': its file 'w"):
        load_entry(subs / "odd")  # harness.check and restores see the same sentence
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    summary = runner.run(engine, list(entries.values()), [small_mnist],
                         runner.Options(runner.Limits(device="cpu", timeout=60)), [])
    assert summary.outcome == {"good": runner.EVALUATED}


def test_a_file_renamed_to_a_bad_name_after_discovery_is_not_kept(tmp_path, means):
    """The folder changed between discovery and keeping: nothing is kept (the next run sees the new content)."""
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    entry = load_entry(folder)
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    version_id = versions.ensure_version(engine, entry)
    write_bad_name(folder)
    assert snapshots.keep(engine, version_id, entry) is False
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(VersionFiles)) == 0


# --- 2. entries too big to keep ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_entry_over_the_size_limit_fails_unread_and_its_neighbours_are_evaluated(tmp_path, mnist_dir, means,
                                                                                    monkeypatch, capsys):
    subs = tmp_path / "subs"
    big = write_entry(subs, "big", weights=template_weights(means))
    (big / "extra.bin").write_bytes(os.urandom(40_000))
    write_bad_name(write_entry(subs, "odd", weights=template_weights(means)))
    write_entry(subs, "good", weights=template_weights(means))
    total = sum(p.stat().st_size for p in big.iterdir())
    config = tmp_path / "competition.toml"
    config.write_text("max_entry_gb = 0.00005\n")  # 50,000 bytes: more than good's files, less than big's
    kept_folders = []
    real_keep = snapshots.keep
    monkeypatch.setattr(snapshots, "keep", lambda engine, vid, entry: kept_folders.append(entry.name) or
                        real_keep(engine, vid, entry))
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db, "--json", "--config",
                                       str(config))) == 0
    captured = capsys.readouterr()
    board = {e["name"]: e for e in json.loads(captured.out)["entries"]}
    assert board["good"]["status"] == "ok"
    assert board["big"]["status"] == "failed"
    assert board["big"]["error"] == (f"the entry's files take {total:,} bytes, more than the limit of 5e-05 GB; make "
                                     "them smaller, or ask the organiser to raise max_entry_gb in competition.toml.")
    assert f"entry folder 'odd' is left out: {BAD_NAME}" in " ".join(captured.err.split())
    assert board["odd"]["status"] == "left out" and board["odd"].get("mnist") is None  # a row saying why, never scored
    assert kept_folders == ["good"]  # big's bytes were never read to be kept
    engine = make_engine(db)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(VersionFiles)) == 1
        assert session.scalar(select(func.max(FileBlob.size))) < total
    # The organiser raises the limit: the entry is evaluated, without --force.
    config.write_text("max_entry_gb = 1\n")
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db, "--json", "--config",
                                       str(config))) == 0
    board = {e["name"]: e for e in json.loads(capsys.readouterr().out)["entries"]}
    assert board["big"]["status"] == "ok" and board["good"]["status"] == "ok"
    assert kept_folders == ["good", "big"]  # good's files are kept once: a re-run does not store them again


# --- 3. a read-only database, a full disk -----------------------------------------------------------------------

def stored_results(db: str) -> list[tuple]:
    engine = make_engine(db)
    with Session(engine) as session:
        rows = session.execute(select(Result.id, Result.correct, Result.predicted).order_by(Result.id)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.fixture()
def evaluated(tmp_path, mnist_dir, means) -> tuple[Path, Path]:
    """A database holding one evaluation, and a submissions folder with one more entry to evaluate."""
    subs = tmp_path / "subs"
    write_entry(subs, "ada", weights=template_weights(means))
    db = tmp_path / "lb.db"
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db)) == 0
    write_entry(subs, "bob", weights=template_weights(means[::-1].copy()))
    (subs / "bob" / "extra.bin").write_bytes(os.urandom(300_000))
    return subs, db


def immutable(db: Path) -> str:
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(db)]).returncode != 0:
        pytest.skip("chattr +i is not available here")
    return str(db)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["mode=ro", "immutable"])
def test_a_read_only_database_stops_the_run_with_one_sentence(tmp_path, evaluated, mnist_dir, how, capsys):
    subs, db = evaluated
    before = stored_results(str(db))
    url = f"sqlite:///file:{db}?mode=ro&uri=true" if how == "mode=ro" else immutable(db)
    try:
        out = subprocess.run(evaluate_command(*evaluate_args(subs, mnist_dir, tmp_path / "none", url)),
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    said = " ".join(out.stdout.split())
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"error: the database {db} is read-only (attempt to write a readonly database); give this user write " \
           "access to it and to its folder, or choose another database with --db." in said
    assert "Traceback" not in out.stdout + out.stderr
    assert stored_results(str(db)) == before


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_sentence_and_keeps_what_was_stored(tmp_path, evaluated, mnist_dir,
                                                                               monkeypatch, capsys):
    """SQLite's max_page_count stands in for a full disk: the next write that needs a page fails (SQLITE_FULL)."""
    subs, db = evaluated
    before = stored_results(str(db))
    with sqlite3.connect(db) as con:
        pages = con.execute("PRAGMA page_count").fetchone()[0] + 20  # room for the run, not for bob's 300 kB
    from harness.store import engine as db_module
    real = db_module._sqlite_pragmas

    def tiny_disk(dbapi_connection, record):
        real(dbapi_connection, record)
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(db_module, "_sqlite_pragmas", tiny_disk)
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "none", db)) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert (f"error: the disk holding the database {db} is full (database or disk is full); free space in "
            f"{db.parent}, or choose another database with --db; what was stored before is kept.") in said
    monkeypatch.undo()
    assert stored_results(str(db)) == before
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_versions_and_verify_stop_with_one_sentence_on_a_read_only_database(tmp_path, evaluated, capsys):
    _, db = evaluated
    url = f"sqlite:///file:{db}?mode=ro&uri=true"
    assert versions_cli.main(["ada", "--db", url]) == 0  # reading works
    assert "1  " in capsys.readouterr().out
    assert versions_cli.main(["ada", "--db", url, "--set-time", "1", "2027-01-10T23:30:00+01:00", "--reason",
                              "mail"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith(f"error: the database {db} is read-only (attempt to write a readonly database);")
    # A database that needs a schema upgrade cannot be upgraded read-only: verify says so.
    old = tmp_path / "old.db"
    raw = create_engine(f"sqlite:///{old}")
    with raw.begin() as connection:
        command.upgrade(upgrade.config(connection), "0004")
    raw.dispose()
    assert verify.main(["--db", f"sqlite:///file:{old}?mode=ro&uri=true", "--submissions", str(tmp_path / "subs")]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"error: the database {old} is read-only (attempt to write a readonly database);")
    with raw.connect() as connection:
        assert upgrade.current(connection) == "0004"


def test_store_writes_to_a_read_only_database_raise_one_sentence(tmp_path, db_url):
    engine = make_engine(db_url)
    runs.start_run(engine, "cpu", ["first"])
    engine.dispose()
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        read_only, where = f"sqlite:///file:{path}?mode=ro&uri=true", path
    else:
        read_only, where = db_url + "?options=-c%20default_transaction_read_only%3Don", db_url.rsplit("@", 1)[1]
    engine = make_engine(read_only)
    with pytest.raises(HarnessError) as info:
        runs.start_run(engine, "cpu", ["second"])
    assert str(info.value).startswith(f"the database {where}")
    assert "is read-only (" in str(info.value) and str(info.value).endswith(
        "give this user write access to it and to its folder, or choose another database with --db." if
        db_url.startswith("sqlite") else "connect as a user that may write to it, or choose another database with "
                                         "--db.")
    with Session(engine) as session:
        assert session.scalars(select(Run.argv)).all() == [["first"]]
    engine.dispose()


# --- 4. a run killed with kill -9 -----------------------------------------------------------------------------

SLEEPY = before_return("""
import time
if not getattr(self, "_slept", False):
    time.sleep(4.0)  # long enough to kill the first run while it holds the claim
    self._slept = True
""")


@pytest.mark.slow
def test_a_killed_run_is_marked_interrupted_and_leaves_no_claim_or_folder(tmp_path, db_url, mnist_dir, means):
    subs = tmp_path / "subs"
    write_entry(subs, "sleepy", code=SLEEPY, weights=template_weights(means))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    make_engine(db_url).dispose()
    argv = evaluate_command(*evaluate_args(subs, mnist_dir, tmp_path / "none", db_url))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    engine = make_engine(db_url)

    def claims_now() -> list[tuple[str, int]]:
        with Session(engine) as session:
            return [tuple(r) for r in session.execute(select(Claim.eval_key, Claim.run_id))]

    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not claims_now():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never claimed its entry"
            time.sleep(0.1)
        assert any(name.startswith(f"harness-{first.pid}-") for name in os.listdir(tmp))
        os.kill(first.pid, signal.SIGKILL)  # the harness alone, as `kill -9 PID` would
        first.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)  # whatever it left running
    [(key, killed_run)] = claims_now()
    with Session(engine) as session:
        killed = session.get(Run, killed_run)
        assert (killed.status, killed.pid) == ("running", first.pid)
        held_until = session.scalar(select(Claim.claimed_at)) + runner_lease()

    second = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:  # as soon as the second run has started, the dead run's claim and folders are gone
        with Session(engine) as session:
            if session.scalar(select(func.count()).select_from(Run)) == 2:
                break
        assert second.poll() is None and time.monotonic() < deadline, second.communicate()
        time.sleep(0.05)
    assert killed_run not in {run for _, run in claims_now()}
    with Session(engine) as session:
        assert session.get(Run, killed_run).status == "interrupted"
    assert not [name for name in os.listdir(tmp) if name.startswith(f"harness-{first.pid}-")]
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, out + err
    with Session(engine) as session:
        evaluation = session.scalars(select(Evaluation).where(Evaluation.eval_key == key)).one()
        assert evaluation.status == "ok" and evaluation.run_id != killed_run
        # stored before the dead run's lease would have run out: the second run did not wait for it
        assert evaluation.started_at < held_until
        assert {r.status for r in session.scalars(select(Run))} == {"interrupted", "finished"}
        assert session.scalar(select(func.count()).select_from(Claim)) == 0
    engine.dispose()
    assert not [name for name in os.listdir(tmp) if name.startswith("harness-")]


def runner_lease():
    from datetime import timedelta
    return timedelta(seconds=runner.CLAIM_LEASE_SECONDS)


def test_a_running_run_of_a_live_process_or_another_host_is_left_alone(tmp_path):
    """Only runs whose process is gone on this host are interrupted: a live one, one whose pid now belongs to a
    later process, and one on another machine (which keeps the lease rule) are told apart."""
    from datetime import timedelta

    from harness.common.tempfolders import this_process
    from harness.store import leftovers
    from harness.store.schema import utcnow
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    host, pid, started = this_process()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rows = {"alive": (host, pid, started), "other-host": ("elsewhere.example", 1, started),
                "pid-reused": (host, sleeper.pid, started - timedelta(hours=1)),  # now another process's pid
                "gone": (host, 2 ** 22 + 17, started)}
        ids = {}
        with Session(engine) as session, session.begin():
            for name, (h, p, s) in rows.items():
                run = Run(harness_version="t", torch_version="t", python_version="t", device="cpu", argv=[name],
                          host=h, pid=p, process_started_at=s)
                session.add(run)
                session.flush()
                ids[name] = run.id
                session.add(Claim(eval_key=name, run_id=run.id, claimed_at=utcnow()))
        assert sorted(leftovers.interrupt_dead_runs(engine)) == sorted([ids["pid-reused"], ids["gone"]])
        with Session(engine) as session:
            status = {run.argv[0]: run.status for run in session.scalars(select(Run))}
            held = set(session.scalars(select(Claim.eval_key)))
        assert status == {"alive": "running", "other-host": "running", "pid-reused": "interrupted",
                          "gone": "interrupted"}
        assert held == {"alive", "other-host"}
    finally:
        sleeper.kill()
        sleeper.wait()
