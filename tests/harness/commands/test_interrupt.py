"""Ctrl-C in a command: one sentence (what was kept, how to resume), exit status 130, no traceback.

Each command runs as a real subprocess in a session of its own, and gets SIGINT in its whole process group, as a
terminal's Ctrl-C sends it, once it is in the middle of its work.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness import cli
from tests.conftest import evaluate_args
from tests.entries import before_return, template_weights, write_entry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SLOW = before_return("import time\ntime.sleep(0.5)")  # the template entry, half a second a batch


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftovers():
    """A test that fails half-way leaves no command running."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _started.append(proc)
    return proc


def wait_for(condition, proc: subprocess.Popen, seconds: float = 240.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"ended early ({proc.returncode}): {proc.communicate()}"
        assert time.monotonic() < deadline, "the command never got to the point where the test presses Ctrl-C"
        time.sleep(0.2)


def running_an_entry(proc: subprocess.Popen) -> bool:
    """Whether the command has started a process to run an entry in (the sandbox, or the fork server's child)."""
    try:
        return any(len(c.children()) > 0 for c in psutil.Process(proc.pid).children())
    except psutil.Error:
        return False


def ctrl_c(proc: subprocess.Popen) -> tuple[int, str, str]:
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_one_sentence(code: int, out: str, err: str, sentence: str) -> None:
    assert code == cli.INTERRUPTED == 130, (out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, (out, err)
    assert err.strip().splitlines()[-1] == f"interrupted: {sentence}", err


def evaluations(db: Path) -> list[str]:
    """The names of the entries with a stored evaluation ([] while the database is still being set up)."""
    try:
        with sqlite3.connect(db) as con:
            return [name for (name,) in con.execute(
                "select e.name from evaluations v join entry_versions ev on v.version_id = ev.id "
                "join entries e on ev.entry_id = e.id")]
    except sqlite3.OperationalError:
        return []


def test_ctrl_c_in_evaluate_keeps_the_entries_finished_and_says_how_to_go_on(tmp_path, mnist_dir, means):
    subs = tmp_path / "subs"
    write_entry(subs, "a-quick", weights=template_weights(means))
    write_entry(subs, "b-slow", code=SLOW, weights=template_weights(means))
    db = tmp_path / "lb.db"
    proc = start(["harness.evaluate", *evaluate_args(subs, mnist_dir, tmp_path / "none", db)], tmp_path)
    wait_for(lambda: db.exists() and evaluations(db) == ["a-quick"] and running_an_entry(proc), proc)
    code, out, err = ctrl_c(proc)
    assert_one_sentence(code, out, err, f"the entries finished before Ctrl-C are stored in sqlite:///{db}, the one "
                        "that was running is not; run the same command again to evaluate the rest (finished entries "
                        "are skipped).")
    assert evaluations(db) == ["a-quick"]
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from claims").fetchone() == (0,)  # b-slow is free for the next run


def test_ctrl_c_in_check(tmp_path, mnist_dir, means):
    folder = write_entry(tmp_path, "slow", code=SLOW, weights=template_weights(means))
    proc = start(["harness.check", str(folder), "--mnist-dir", str(mnist_dir)], tmp_path)
    wait_for(lambda: running_an_entry(proc), proc)
    time.sleep(1.0)
    code, out, err = ctrl_c(proc)
    assert_one_sentence(code, out, err, f"the check keeps nothing; run `python -m harness.check {folder}` again.")


def test_ctrl_c_in_verify(tmp_path, mnist_dir, means):
    subs = tmp_path / "subs"
    write_entry(subs, "quick", weights=template_weights(means))
    db = tmp_path / "lb.db"
    done = start(["harness.evaluate", *evaluate_args(subs, mnist_dir, tmp_path / "none", db)], tmp_path)
    assert done.wait(timeout=300) == 0, done.communicate()
    proc = start(["harness.verify", "--submissions", str(subs), "--db", str(db)], tmp_path)
    wait_for(lambda: running_an_entry(proc), proc)
    code, out, err = ctrl_c(proc)
    assert_one_sentence(code, out, err, "verify changes nothing in the database and the entries above were verified; "
                        "run the same command again, or `python -m harness.verify --only NAME` for the others.")
    assert evaluations(db) == ["quick"]


@pytest.mark.parametrize("when", ["before training", "while training"])
def test_ctrl_c_in_train(tmp_path, mnist_dir, when):
    checkpoint = tmp_path / "c.pt"
    proc = start(["harness.train", "--arch", "logreg", "--epochs", "50", "--limit", "3000", "--out",
                  str(tmp_path / "entry"), "--checkpoint", str(checkpoint), "--mnist-dir", str(mnist_dir),
                  "--author", "Ada"], tmp_path)
    said: list[str] = []
    if when == "while training":  # the loop is running once its first epoch has saved a checkpoint
        wait_for(checkpoint.is_file, proc)
        code, out, err = ctrl_c(proc)
        assert_one_sentence(code, out, err, f"the checkpoint is saved in {checkpoint}; continue with "
                            f"`python -m harness.train --resume {checkpoint}`.")
        assert checkpoint.is_file() and not (tmp_path / "entry").exists()
    else:  # while it imports torch and loads MNIST: nothing saved yet
        wait_for(lambda: said.append(proc.stderr.readline()) or said[-1].startswith("Author: "), proc)
        code, out, err = ctrl_c(proc)
        assert_one_sentence(code, out, err, "no checkpoint was saved yet; run the same command again.")
        assert not checkpoint.exists()
