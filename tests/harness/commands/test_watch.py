"""``python -m harness.evaluate --watch``: two real watcher processes and a manual run on one database evaluate each
entry version exactly once, including versions that appear while they watch; SIGTERM stops a watcher cleanly; the
guest's digits arriving while a watcher runs get every entry scored on them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harness.store.engine import make_engine
from harness.store.schema import Claim, EntryVersion, Evaluation
from tests.conftest import REPO, evaluate_args, evaluate_command
from tests.entries import before_return, template_weights, write_entry

SLOW = before_return("""
import time
if not getattr(self, "_slept", False):
    time.sleep(1.0)  # slow enough that the watchers overlap on every entry
    self._slept = True
""")


def counts(engine) -> tuple[int, int, list[int]]:
    """Versions, evaluations and evaluations per version (each must be 1)."""
    with Session(engine) as session:
        versions = session.scalar(select(func.count()).select_from(EntryVersion))
        per_version = [n for _, n in session.execute(select(Evaluation.version_id, func.count())
                                                      .group_by(Evaluation.version_id))]
    return versions, sum(per_version), per_version


def wait_for(engine, evaluations: int, procs, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if counts(engine)[1] >= evaluations:
            return
        assert all(p.poll() is None for p in procs), "a watcher stopped early"
        time.sleep(0.5)
    raise AssertionError(f"not {evaluations} evaluations after {timeout} s: {counts(engine)}")


def start_watcher(cwd, subs, mystery, db_url: str, mnist_dir, interval: float) -> subprocess.Popen:
    """A real ``python -m harness.evaluate --watch`` process, its output (stdout and stderr) in a pipe."""
    argv = evaluate_command(*evaluate_args(subs, mnist_dir, mystery, db_url, "--watch", "--interval", str(interval)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(watcher: subprocess.Popen) -> str:
    """SIGTERM, as a service manager stops it; what it printed."""
    watcher.send_signal(signal.SIGTERM)
    return watcher.communicate(timeout=60)[0]


@pytest.mark.slow
def test_two_watchers_and_a_manual_run_never_evaluate_a_version_twice(tmp_path, db_url, mnist_dir, means):
    """On SQLite and PostgreSQL."""
    subs, mystery = tmp_path / "subs", tmp_path / "mystery"
    mystery.mkdir()
    for name in ("ada", "bob"):
        write_entry(subs, name, code=SLOW, weights=template_weights(means))
    engine = make_engine(db_url)
    base = evaluate_command(*evaluate_args(subs, mnist_dir, mystery, db_url))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    logs = [tmp_path / f"watch{i}.log" for i in range(2)]
    watchers = []
    for log in logs:
        with open(log, "w") as out:  # the watcher writes to its own copy of the file descriptor
            watchers.append(subprocess.Popen(base + ["--watch", "--interval", "0.5"], cwd=tmp_path, env=env,
                                             stdout=out, stderr=subprocess.STDOUT, text=True))
    try:
        wait_for(engine, 2, watchers)
        # New versions while they watch (as the Submit page writes them), and a manual run at the same moment.
        write_entry(subs, "cy", code=SLOW, weights=template_weights(means))
        write_entry(subs, "ada", code=SLOW, weights=template_weights(means * 0.5))  # ada's second version
        manual = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
        assert manual.returncode == 0, manual.stderr
        wait_for(engine, 4, watchers)
        time.sleep(2)  # a few more rounds: nothing left to do, nothing evaluated again
        for p in watchers:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(60) for p in watchers] == [0, 0]
    finally:
        for p in watchers:
            if p.poll() is None:
                p.kill()
    versions, evaluations, per_version = counts(engine)
    assert (versions, evaluations, per_version) == (4, 4, [1, 1, 1, 1])
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Claim)) == 0
    outputs = [log.read_text() for log in logs]
    assert all("stopped;" in out for out in outputs), outputs
    # Each evaluation was done by exactly one process: what the watchers say they did plus the manual run's count.
    said = sum(int(re.search(r"stopped; (\d+) version", out).group(1)) for out in outputs)
    assert said + int(re.search(r"(\d+) evaluated, ", manual.stdout).group(1)) == 4, (outputs, manual.stdout)
    engine.dispose()


@pytest.mark.slow
def test_sigterm_during_an_evaluation_stops_the_watcher_and_leaves_the_version_to_the_next(tmp_path, mnist_dir,
                                                                                            means):
    subs, mystery = tmp_path / "subs", tmp_path / "mystery"
    mystery.mkdir()
    write_entry(subs, "slow", code=before_return("import time\ntime.sleep(60)"), weights=template_weights(means))
    db_url = f"sqlite:///{tmp_path / 'lb.db'}"
    engine = make_engine(db_url)
    watcher = start_watcher(tmp_path, subs, mystery, db_url, mnist_dir, interval=0.5)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # the watcher has claimed the version: it is evaluating it
            with Session(engine) as session:
                if session.scalar(select(func.count()).select_from(Claim)):
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the watcher never started evaluating")
        out = stop(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0 and "stopped; 0 version(s) evaluated while watching." in out, out
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Claim)) == 0  # the next run may take the version
        assert session.scalar(select(func.count()).select_from(Evaluation)) == 0
    engine.dispose()


@pytest.mark.slow
def test_the_watcher_scores_every_entry_again_when_the_guests_digits_arrive(tmp_path, mnist_dir, means, semeion_dir):
    """The organiser imports the guest's digits while a watcher runs: without a restart, the entry is scored on them."""
    import shutil

    from harness.data.guest import load_guest_set
    from harness.store.schema import Dataset, Result
    subs, mystery = tmp_path / "subs", tmp_path / "mystery"
    mystery.mkdir()
    write_entry(subs, "ada", weights=template_weights(means))
    db_url = f"sqlite:///{tmp_path / 'lb.db'}"
    engine = make_engine(db_url)
    watcher = start_watcher(tmp_path, subs, mystery, db_url, mnist_dir, interval=0.5)
    try:
        wait_for(engine, 1, [watcher])                       # scored on the shipped sample
        for d in range(10):                                  # the import: two digits of each kind
            (mystery / str(d)).mkdir()
            for f in sorted((semeion_dir / str(d)).iterdir())[:2]:
                shutil.copyfile(f, mystery / str(d) / f.name)
        wait_for(engine, 2, [watcher])
        time.sleep(2)                                        # a few more rounds: nothing scored a third time
        out = stop(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0 and "the guest's digits changed: now 20 digits" in out, out
    assert "stopped; 2 version(s) evaluated while watching." in out, out
    with Session(engine) as session:
        guest_sets = session.execute(select(Evaluation.id, Dataset.source, Dataset.content_hash, Result.total)
                                     .join(Result, Result.evaluation_id == Evaluation.id)
                                     .join(Dataset, Dataset.id == Result.dataset_id)
                                     .where(Dataset.kind == "guest").order_by(Evaluation.id)).all()
        assert session.scalar(select(func.count()).select_from(EntryVersion)) == 1
    assert guest_sets[0][1] == "sample"
    assert len(guest_sets) == 2 and guest_sets[1][1:] == ("folder:mystery", load_guest_set(mystery).content_hash, 20)
    engine.dispose()


@pytest.mark.slow
def test_a_guest_folder_that_cannot_be_read_is_said_once_and_the_watcher_keeps_its_sets(tmp_path, mnist_dir, means,
                                                                                       semeion_dir):
    import shutil
    subs, mystery = tmp_path / "subs", tmp_path / "mystery"
    (mystery / "3").mkdir(parents=True)
    shutil.copyfile(sorted((semeion_dir / "3").iterdir())[0], mystery / "3" / "a.png")
    write_entry(subs, "ada", weights=template_weights(means))
    db_url = f"sqlite:///{tmp_path / 'lb.db'}"
    engine = make_engine(db_url)
    watcher = start_watcher(tmp_path, subs, mystery, db_url, mnist_dir, interval=0.3)
    try:
        wait_for(engine, 1, [watcher])
        (mystery / "sevens").mkdir()                               # a label folder that is not a digit
        shutil.copyfile(mystery / "3" / "a.png", mystery / "sevens" / "b.png")
        time.sleep(4)                                              # many rounds
        out = stop(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, out
    assert out.count("label folder 'sevens' is not a digit 0–9") == 1, out
    assert "stopped; 1 version(s) evaluated while watching." in out, out
    assert counts(engine)[1] == 1
    engine.dispose()


def test_a_round_that_raises_anything_is_said_in_one_line_and_the_watcher_goes_on(tmp_path, means, mnist_dir,
                                                                                  monkeypatch, capsys):
    """Whatever one round raises (here the OverflowError a hostile figure once caused in the store), the watcher says
    it in one line and the next round scores the entry."""
    from harness import evaluate, runner
    write_entry(tmp_path / "subs", "plain", weights=template_weights(means))
    (tmp_path / "mystery").mkdir()
    rounds: list[list[str]] = []

    def run(engine, entries, *args, **kwargs):
        rounds.append([e.name for e in entries])
        if len(rounds) == 1:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return runner.RunSummary(run_id=0, outcome={e.name: runner.EVALUATED for e in entries})

    def sleep(seconds):
        if len(rounds) >= 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", run)
    monkeypatch.setattr(time, "sleep", sleep)
    status = evaluate.main(["--watch", "--interval", "0.01", "--submissions", str(tmp_path / "subs"), "--db",
                            str(tmp_path / "lb.db"), "--mnist-dir", str(mnist_dir), "--mystery",
                            str(tmp_path / "mystery"), "--device", "cpu"])
    said = capsys.readouterr()
    assert status == 0 and rounds == [["plain"], ["plain"]]
    lines = [line for line in said.err.splitlines() if "OverflowError" in line]
    assert len(lines) == 1 and lines[0].endswith("the next round tries again.") and "Traceback" not in said.err
    assert "1 version(s) evaluated while watching" in said.out


@pytest.mark.slow
def test_stride0_tensors_beside_a_good_entry_never_stop_the_watcher(tmp_path, mnist_dir, means):
    """The upload that once killed ``--watch``: float tensors of 2^62 elements over one stored value. Every entry is
    stored (the strict one failed with its sentence, the one that drops them scored with the values it stores) and
    the watcher keeps running."""
    from tests.harness.entries.test_hostile_files import IGNORES_BLOBS, stride0
    subs, mystery = tmp_path / "subs", tmp_path / "mystery"
    mystery.mkdir()
    blobs = dict(template_weights(means), blob_a=stride0(), blob_b=stride0())
    write_entry(subs, "good", weights=template_weights(means))
    write_entry(subs, "strict", weights=blobs)
    write_entry(subs, "drops-them", code=IGNORES_BLOBS, weights=blobs)
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    watcher = start_watcher(tmp_path, subs, mystery, f"sqlite:///{tmp_path / 'lb.db'}", mnist_dir, 0.5)
    try:
        wait_for(engine, 3, [watcher])
        assert watcher.poll() is None
    finally:
        said = stop(watcher)
    assert "Traceback" not in said
    with Session(engine) as session:
        rows = {name: (status, params) for name, status, params in session.execute(
            select(EntryVersion.display_name, Evaluation.status, Evaluation.params)
            .join(EntryVersion, Evaluation.version_id == EntryVersion.id))}
    assert sorted(s for s, _ in rows.values()) == ["failed", "ok", "ok"]
    assert sorted(p for _, p in rows.values() if p is not None) == [7840, 7842]
