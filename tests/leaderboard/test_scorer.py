"""The dashboard scores uploads itself (``leaderboard.scorer``) and shows them pending until then (``runs.queue``,
``stats.pending_rows``): the queue's order and the version being scored, read from the store as runs write it; a
watcher kept running (started again when it dies) that stops with the process that started it, SIGKILL included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
import torch
from sqlalchemy import update
from sqlalchemy.orm import Session

from harness.entries.discovery import load_entry
from harness.evaluate import in_queue_order, main as evaluate_main
from harness.store import claims, evaluations, moderation, runs, versions
from harness.store.engine import make_engine
from harness.store.schema import Claim, EntryVersion, utcnow
from leaderboard import config, scorer, stats, views
from tests.conftest import REPO
from tests.entries import write_entry


def version(engine, subs: Path, name: str, seed: int, minutes_ago: float) -> int:
    """A stored version of entry ``name`` (its own weights), first seen ``minutes_ago``."""
    folder = write_entry(subs, name, weights={"fc.weight": torch.full((10, 784), float(seed))})
    version_id = versions.ensure_version(engine, load_entry(folder))
    with Session(engine) as session, session.begin():
        session.execute(update(EntryVersion).where(EntryVersion.id == version_id)
                        .values(first_seen_at=utcnow() - timedelta(minutes=minutes_ago)))
    return version_id


def failed(engine, run_id: int, version_id: int) -> None:
    evaluations.save_evaluation(engine, run_id=run_id, version_id=version_id, eval_key=f"key-{version_id}",
                                record=evaluations.Record(status="failed", error="it failed", seconds=0.0, device="cpu",
                                                    params=None))


def shown(engine) -> list[tuple[str, str, str, str]]:
    rows = views.pending(engine)
    return list(zip(rows["entry"], rows["place"], rows["score"], rows["status"], strict=True))


def test_the_queue_is_oldest_first_and_names_the_version_being_scored(db_url, tmp_path):
    """On SQLite and PostgreSQL: four entries, one of them scored; a second version of the scored one waits too."""
    engine = make_engine(db_url)
    subs = tmp_path / "subs"
    run = runs.start_run(engine, "cpu", [])
    old = version(engine, subs, "eve", 1, minutes_ago=50)
    failed(engine, run, old)                                    # scored: not pending
    version(engine, subs, "bob", 2, minutes_ago=30)
    ada = version(engine, subs, "ada", 3, minutes_ago=40)       # uploaded before bob
    version(engine, subs, "cy", 4, minutes_ago=20)
    version(engine, subs, "eve", 5, minutes_ago=10)             # eve's second version, newest of all
    version(engine, subs, "hid", 6, minutes_ago=45)
    moderation.set_moderation(engine, "hid", "hidden", "spam")             # the organiser hid it: not even pending
    runs.finish_run(engine, run)
    assert shown(engine) == [
        ("ada", "⏳", "queued, 1st in line", "pending: queued, 1st in line (version 1)"),
        ("bob", "⏳", "queued, 2nd in line", "pending: queued, 2nd in line (version 1)"),
        ("cy", "⏳", "queued, 3rd in line", "pending: queued, 3rd in line (version 1)"),
        ("eve", "⏳", "queued, 4th in line", "pending: queued, 4th in line (version 2)")]
    # The watcher takes them in that order (a folder the store has not seen last).
    entries = [load_entry(subs / n) for n in ("cy", "eve", "bob", "ada")] + [load_entry(write_entry(subs, "new"))]
    assert [e.name for e in in_queue_order(engine, entries)] == ["ada", "bob", "cy", "eve", "new"]

    scoring = runs.start_run(engine, "cpu", [])                 # a run claims ada and notes its progress
    assert claims.try_claim(engine, "ada's key", scoring, 30)
    runs.note_progress(engine, scoring, "ada", 1280, 10100, 20.0, version_id=ada, public=10000)
    assert shown(engine)[:2] == [
        ("ada", "⏳", "scoring 1,280/10,000", "pending: being scored: 1,280/10,000 images (version 1)"),
        ("bob", "⏳", "queued, 1st in line", "pending: queued, 1st in line (version 1)")]
    # In the secret phase the count stays at the public sets' end, and only they are counted.
    runs.note_progress(engine, scoring, "ada", 10000, 10100, None, version_id=ada, public=10000)
    assert shown(engine)[0][2:] == ("scoring finishing", "pending: being scored: finishing (version 1)")
    board = stats.with_pending(views.board_view(engine, revealed=False).board, views.pending(engine))
    assert list(board["entry"]) == ["ada", "bob", "cy", "eve", "eve"]  # pending first, then eve's failed version 1
    assert board["rank"].isna().all() and set(board["mnist_accuracy"].iloc[:4]) == {None}
    assert list(stats.is_pending(board)) == [True, True, True, True, False]

    with Session(engine) as session, session.begin():          # the run died: its claim is no longer renewed
        session.execute(update(Claim).values(claimed_at=utcnow() - timedelta(seconds=31)))
    assert shown(engine)[0][2] == "queued, 1st in line"
    with Session(engine) as session, session.begin():
        session.execute(update(Claim).values(claimed_at=utcnow()))
    failed(engine, scoring, ada)                                 # scored: off the queue
    runs.finish_run(engine, scoring)
    assert [row[:3] for row in shown(engine)] == [("bob", "⏳", "queued, 1st in line"),
                                                  ("cy", "⏳", "queued, 2nd in line"),
                                                  ("eve", "⏳", "queued, 3rd in line")]
    engine.dispose()


def test_a_run_notes_the_version_it_scores_at_once(tmp_path, monkeypatch, small_mnist):
    """The first note comes before the entry has done anything, with its version and the public sets' size."""
    from harness import runner
    folder = write_entry(tmp_path / "subs", "zeros", weights={"fc.weight": torch.zeros(10, 784)})
    noted = []
    monkeypatch.setattr(runs, "note_progress", lambda engine, run_id, *at: noted.append(at))
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    runner.run(engine, [load_entry(folder)], [small_mnist], runner.Options(runner.Limits(device="cpu", batch_size=50)),
               argv=[])
    version_id = versions.ensure_version(engine, load_entry(folder))
    assert noted[0] == ("zeros", 0, 300, None, "loading", version_id, 300)
    assert noted[-1][:2] == ("zeros", 300) and noted[-1][5:] == (version_id, 300)


@pytest.mark.parametrize(("n", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                         (12, "12th"), (13, "13th"), (21, "21st"), (22, "22nd"), (101, "101st"),
                                         (111, "111th")])
def test_ordinals(n, text):
    assert stats.ordinal(n) == text


def test_the_watchers_command_uses_the_dashboards_settings_and_can_be_turned_off(tmp_path):
    settings = config.settings({"LEADERBOARD_DB": "postgresql+psycopg://club:pw@db/club",
                                "LEADERBOARD_SUBMISSIONS": "/srv/subs", "LEADERBOARD_MYSTERY": "/srv/guest"})
    argv = scorer.command(settings, 4242, {scorer.ARGS_ENV: "--interval 5 --device cuda"})
    assert argv[1:] == ["-m", "harness.evaluate", "--watch", "--submissions", "/srv/subs", "--mystery", "/srv/guest",
                        "--parent", "4242", "--interval", "5", "--device", "cuda"]
    env = scorer.child_env(settings, {"PYTHONPATH": "/x"})
    assert env["LEADERBOARD_DB"] == "postgresql+psycopg://club:pw@db/club" and "pw" not in " ".join(argv)
    assert env["PYTHONPATH"] == f"{REPO}{os.pathsep}/x"
    assert [scorer.enabled({scorer.ENV: v}) for v in ("off", "OFF", "0", "no", "false", "on", "1", "")] == \
        [False] * 5 + [True] * 3
    assert scorer.start(settings, {scorer.ENV: "off"}) is None
    with pytest.raises(ValueError, match=r"\$LEADERBOARD_EVALUATE_ARGS cannot be read as flags"):
        scorer.command(settings, 1, {scorer.ARGS_ENV: "--interval '5"})


def test_the_watcher_is_started_again_when_it_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(scorer, "RESTART_SECONDS", 0.2)
    keeper = scorer.Scorer([sys.executable, "-c", "import time; time.sleep(120)"], dict(os.environ),
                           tmp_path / "jobs" / scorer.LOG_NAME).start()
    try:
        first = wait_until(lambda: keeper.pid, "the watcher did not start")
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: keeper.pid if keeper.pid not in (None, first) else None,
                            "the watcher was not started again")
        assert keeper.running() and keeper.starts == 2 and "1 restart(s)" in keeper.status()
    finally:
        keeper.stop()
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE
    log = (tmp_path / "jobs" / scorer.LOG_NAME).read_text()
    assert "the watcher stopped (exit code -9); starting it again in" in log


PARENT = """
import sys, time
from leaderboard import config, scorer
keeper = scorer.start(config.settings())
while keeper.pid is None:
    time.sleep(0.1)
print(keeper.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_watcher_stops_when_the_dashboard_process_ends(tmp_path, mnist_dir, how):
    """A process that starts the watcher as the dashboard does, then ends (killed, or stopped); the real watcher
    hears the parent-death signal and stops as on SIGTERM."""
    subs, mystery, jobs = tmp_path / "subs", tmp_path / "mystery", tmp_path / "jobs"
    subs.mkdir(), mystery.mkdir()
    env = dict(os.environ, LEADERBOARD_EVALUATE="on", LEADERBOARD_DB=str(tmp_path / "lb.db"), MNIST_DIR=str(mnist_dir),
               LEADERBOARD_SUBMISSIONS=str(subs), LEADERBOARD_MYSTERY=str(mystery), LEADERBOARD_JOBS=str(jobs),
               LEADERBOARD_EVALUATE_ARGS="--interval 1 --device cpu", PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        watcher = int(parent.stdout.readline())
        log = jobs / scorer.LOG_NAME
        wait_until(lambda: "watching" in log.read_text(), "the watcher did not start watching", timeout=120)
        assert psutil.Process(watcher).ppid() == parent.pid
    finally:
        parent.send_signal(how)
        parent.wait(30)
    wait_until(lambda: not psutil.pid_exists(watcher) or psutil.Process(watcher).status() == psutil.STATUS_ZOMBIE,
               "the watcher outlived the process that started it", timeout=60)
    assert "stopped; 0 version(s) evaluated while watching." in log.read_text()


@pytest.mark.slow
def test_parent_is_refused_without_watch_and_when_it_is_not_the_parent(tmp_path, capsys):
    assert evaluate_main(["--parent", "1", "--db", str(tmp_path / "lb.db")]) == 2
    assert "--parent applies to --watch only; leave it out, or add --watch." in capsys.readouterr().out
    (tmp_path / "mystery").mkdir()
    done = subprocess.run([sys.executable, "-m", "harness.evaluate", "--watch", "--parent", "1", "--db",
                           str(tmp_path / "lb.db"), "--submissions", str(tmp_path), "--mystery",
                           str(tmp_path / "mystery")], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--parent 1 is not this process's parent" in done.stdout + done.stderr


def wait_until(check, message: str, timeout: float = 30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)
