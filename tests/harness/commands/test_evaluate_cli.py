"""``python -m harness.evaluate`` end to end: ranking, JSON, re-runs, versions, flags and bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session

from harness import evaluate
from harness.data.guest import load_guest_set
from harness.store.engine import make_engine
from harness.store.schema import Dataset, Entry, EntryVersion, Evaluation, Result, Run
from tests.conftest import REPO, evaluate_args, evaluate_command
from tests.entries import TEMPLATE_CODE, before_return, class_means, template_predictions, template_weights, write_entry


@pytest.fixture()
def guest_dir(tmp_path, semeion_dir) -> Path:
    """Five real handwritten digits per class from Semeion, as a guest folder (label sub-folders)."""
    source = semeion_dir
    folder = tmp_path / "mystery"
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for path in sorted((source / str(label)).glob("*.png"))[:5]:
            shutil.copy(path, folder / str(label) / path.name)
    return folder


@pytest.fixture()
def subs(tmp_path, means, mnist_dir) -> Path:
    from harness.data import mnist
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    weak = class_means(train.images[:30], train.labels[:30])
    folder = tmp_path / "subs"
    write_entry(folder, "strong", weights=template_weights(means),
                toml='author = "Ada"\ndisplay_name = "Strong template"\n')
    write_entry(folder, "weak", weights=template_weights(weak), toml='author = "Bob"\n')
    write_entry(folder, "broken", weights={})
    return folder


def count(db: str, model) -> int:
    engine = make_engine(db)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(model))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_json_ranking_matches_independent_reference(tmp_path, subs, mnist_dir, mnist_test, means, guest_dir, capsys):
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {e["name"]: e for e in doc["entries"]}
    assert [e["name"] for e in doc["entries"]] == ["strong", "weak", "broken"]
    strong = by_name["strong"]
    expected = template_predictions(mnist_test.images, means)
    assert strong["mnist"]["correct"] == int((expected == mnist_test.labels).sum())
    assert strong["mnist"]["total"] == 10000
    guest = load_guest_set(guest_dir)
    guest_expected = template_predictions(np.rint(guest.images[:, 0] * 255).astype(np.uint8), means)
    assert strong["guest"]["total"] == 50
    assert strong["guest"]["correct"] == int((guest_expected == guest.labels).sum())
    lo, hi = strong["mnist"]["ci95"]
    assert lo < strong["mnist"]["accuracy"] < hi
    assert strong["rank"] == 1 and strong["author"] == "Ada" and strong["display_name"] == "Strong template"
    assert strong["params"] == 7840 and strong["images_per_second"] > 0 and strong["status"] == "ok"
    assert strong["sandboxed"] is (shutil.which("bwrap") is not None)
    assert by_name["broken"]["status"] == "failed" and by_name["broken"]["rank"] is None
    assert "missing keys" in by_name["broken"]["error"]
    assert doc["datasets"]["guest"]["size"] == 50 and doc["datasets"]["mnist"]["size"] == 10000


@pytest.mark.slow
def test_rerun_skips_unchanged_and_reevaluates_changed(tmp_path, db_url, subs, mnist_dir, guest_dir, capsys):
    args = evaluate_args(subs, mnist_dir, guest_dir, db_url)
    assert evaluate.main(args) == 0
    assert count(db_url, Evaluation) == 3
    capsys.readouterr()
    assert evaluate.main(args) == 0
    assert "0 evaluated, 0 failed, 3 unchanged" in capsys.readouterr().out
    assert count(db_url, Evaluation) == 3
    (subs / "weak" / "entry.toml").write_text('author = "Bob"\ndescription = "now with a description"\n')
    assert evaluate.main(args) == 0
    assert "1 evaluated, 0 failed, 2 unchanged" in capsys.readouterr().out
    assert count(db_url, EntryVersion) == 4  # the old version of 'weak' is kept
    assert evaluate.main(args + ["--force", "--only", "strong"]) == 0
    assert "1 evaluated, 0 failed, 0 unchanged" in capsys.readouterr().out
    assert count(db_url, Evaluation) == 5 and count(db_url, Result) == 8  # two per successful evaluation


@pytest.mark.postgres
def test_postgresql_stores_what_sqlite_stores(tmp_path, pg_url, subs, mnist_dir, guest_dir, capsys):
    """One full evaluation into each database: the same ranking, metrics and stored predictions."""
    docs, predicted = {}, {}
    for db in (f"sqlite:///{tmp_path / 'lb.db'}", pg_url):
        assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, db, "--json")) == 0
        captured = capsys.readouterr()
        doc = json.loads(captured.out)
        password = make_url(db).password
        if password:  # neither the terminal nor the stored run shows the database password
            assert f":{password}@" not in captured.err and ":***@" in captured.err
            with Session(make_engine(db)) as session:
                stored = session.scalars(select(Run.argv)).all()
            assert stored and all(f":{password}@" not in " ".join(argv) for argv in stored)
        for entry in doc["entries"]:  # measured, or drawn anew each run (the memorisation check's copies)
            for key in ("seconds", "images_per_second", "peak_memory_bytes", "evaluated_at", "submitted_at",
                        "memorisation"):
                entry.pop(key, None)
        docs[db], doc["run"], doc["notes"] = doc, None, None
        engine = make_engine(db)
        with Session(engine) as session:
            predicted[db] = {(name, kind): blob for name, kind, blob in session.execute(
                select(Entry.name, Dataset.kind, Result.predicted).join(Result.evaluation).join(Evaluation.version)
                .join(EntryVersion.entry).join(Result.dataset))}
        engine.dispose()
    sqlite_doc, pg_doc = docs.values()
    assert [e["name"] for e in pg_doc["entries"]] == ["strong", "weak", "broken"]
    assert pg_doc == sqlite_doc
    sqlite_predicted, pg_predicted = predicted.values()
    assert len(pg_predicted) == 4 and pg_predicted == sqlite_predicted  # MNIST and guest for strong and weak
    assert all(isinstance(blob, bytes) for blob in pg_predicted.values())


@pytest.mark.slow
def test_new_guest_set_triggers_reevaluation(tmp_path, subs, mnist_dir, guest_dir, capsys):
    args = evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--only", "strong")
    evaluate.main(args)
    shutil.rmtree(guest_dir / "9")
    capsys.readouterr()
    evaluate.main(args)
    assert "1 evaluated" in capsys.readouterr().out


@pytest.mark.slow
def test_strict_turns_entry_failures_into_exit_code(tmp_path, subs, mnist_dir, guest_dir, capsys):
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--strict")) == 1
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--strict", "--only",
                                       "strong")) == 0


def test_no_guest_digits_says_so(tmp_path, subs, mnist_dir, capsys, monkeypatch):
    import harness.data.guest
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(harness.data.guest, "SAMPLE_DIR", tmp_path / "no-sample")
    assert evaluate.main(evaluate_args(subs, mnist_dir, empty, tmp_path / "lb.db", "--only", "strong",
                                       "--json")) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["entries"][0]["guest"] is None and "guest" not in doc["datasets"]
    assert "evaluated on MNIST alone" in captured.err


@pytest.mark.parametrize("extra, message", [
    (["--only", "nobody"], "no entry named 'nobody'; available entries: broken, strong, weak."),
    (["--db", "notadriver://x"], "names a database driver that is not installed"),
    (["--db", "postgresql+psycopg://::bad::"], "is not a database URL"),
    (["--db", "/nonexistent/dir/lb.db"], "the folder /nonexistent/dir does not exist"),
    (["--db", "postgresql+psycopg://club:club@127.0.0.1:1/club"], "cannot open the database"),
    (["--timeout", "0"], "must be positive"),
])
def test_bad_flags_give_one_clear_sentence(tmp_path, subs, mnist_dir, guest_dir, capsys, extra, message):
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db") + extra) == 2
    out = capsys.readouterr().out
    assert message in " ".join(out.split())


def test_empty_submissions_folder(tmp_path, mnist_dir, guest_dir, capsys):
    (tmp_path / "none").mkdir()
    assert evaluate.main(evaluate_args(tmp_path / "none", mnist_dir, guest_dir, tmp_path / "lb.db")) == 2
    assert "holds no entries" in capsys.readouterr().out


@pytest.mark.slow
def test_folders_that_cannot_be_entries_are_left_out_and_the_rest_evaluated(tmp_path, subs, mnist_dir, guest_dir,
                                                                           means, capsys):
    """A bad folder name, two names that differ only in case, or an unreadable file: one sentence each; the other
    entries are still evaluated, and only --strict turns it into a failing exit status."""
    weights = template_weights(means)
    write_entry(subs, "my entry", weights=weights)
    write_entry(subs, "x" * 101, weights=weights)
    write_entry(subs, "Twin", weights=weights)
    write_entry(subs, "twin", weights=weights)
    locked = write_entry(subs, "locked", weights=weights)
    (locked / "model.py").chmod(0)
    readable = os.access(locked / "model.py", os.R_OK)  # root reads anything: no unreadable file to test then
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--json")) == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert ("entry folder name 'my entry' is not allowed; rename it using letters, digits, '-', '_' and '.' "
            "(at most 100 characters, starting with a letter or digit); it is left out until then.") in err
    assert f"entry folder name '{'x' * 101}' is not allowed" in err
    assert ("entry folders 'Twin' and 'twin' are left out: entry names are case-insensitive, so they clash; "
            "rename one.") in err
    if not readable:
        assert f"entry folder 'locked' is left out: {locked / 'model.py'} could not be read (Permission denied)" in err
    entries = json.loads(captured.out)["entries"]
    assert {e["name"] for e in entries if e["status"] != "left out"} == \
        {"strong", "weak", "broken"} | ({"locked"} if readable else set())
    rows = {e["name"]: (e["standing"], e["rank"], e["note"]) for e in entries if e["status"] == "left out"}
    name_rule = "its folder name is not allowed: rename it using letters, digits, '-', '_', '.'"
    clash = "its name clashes with 'Twin' and 'twin' (case-insensitive): rename one"
    assert rows == {"my entry": ("left out", None, name_rule), "x" * 101: ("left out", None, name_rule),
                    "Twin": ("left out", None, clash), "twin": ("left out", None, clash),
                    **({} if readable else {"locked": ("left out", None, "a file cannot be read")})}
    table = [line for line in captured.err.splitlines() if "│" in line]  # the terminal board has a row each
    assert any("✗" in line and "my entry" in line and "left out:" in line for line in table)
    assert any("✗" in line and "Twin" in line for line in table)
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--strict", "--only",
                                       "strong")) == 1


def test_only_folders_that_cannot_be_entries(tmp_path, mnist_dir, guest_dir, capsys):
    write_entry(tmp_path / "odd", "bad name!", weights={})
    assert evaluate.main(evaluate_args(tmp_path / "odd", mnist_dir, guest_dir, tmp_path / "lb.db")) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "holds no entry that can be evaluated: entry folder name 'bad name!' is not allowed" in out


def test_unknown_flag_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--frobnicate"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


@pytest.mark.slow
def test_existing_results_survive_a_failed_run(tmp_path, db_url, subs, mnist_dir, guest_dir, capsys):
    args = evaluate_args(subs, mnist_dir, guest_dir, db_url)
    evaluate.main(args)
    before = count(db_url, Result)
    assert evaluate.main(args + ["--only", "nobody"]) == 2
    assert evaluate.main([a if a != str(mnist_dir) else str(tmp_path / "no-mnist") for a in args]) == 2
    assert count(db_url, Result) == before


@pytest.mark.slow
def test_kill_9_leaves_a_consistent_database_and_the_next_run_finishes(tmp_path, means, mnist_dir, guest_dir):
    """Kill the whole harness mid-run; every stored evaluation is complete, and a re-run does only the rest."""
    subs = tmp_path / "subs"
    template = (REPO / "tests" / "entries.py").read_text().split("TEMPLATE_CODE = '''")[1].split("'''")[0]
    slow = ("import time\n" + template
            .replace("return self.scale", "time.sleep(0.6)\n        return self.scale"))
    for i in range(6):
        write_entry(subs, f"slow-{i}", code=slow, weights=template_weights(means))
    db = tmp_path / "lb.db"
    cmd = evaluate_command(*evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db"), "--batch-size", "5000")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            time.sleep(0.2)
            if db.exists():
                with sqlite3.connect(db) as con:
                    try:
                        if con.execute("select count(*) from evaluations").fetchone()[0] >= 2:
                            break
                    except sqlite3.OperationalError:
                        pass
        else:
            pytest.fail("the harness committed no evaluation in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with sqlite3.connect(db) as con:
        assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
        done = con.execute("select count(*) from evaluations").fetchone()[0]
        incomplete = con.execute("select count(*) from evaluations e where e.status = 'ok' and "
                                 "(select count(*) from results r where r.evaluation_id = e.id) != 2").fetchone()[0]
        assert 2 <= done < 6 and incomplete == 0
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{6 - done} evaluated, 0 failed, {done} unchanged" in " ".join(out.stdout.split())


@pytest.mark.slow
def test_corrupt_guest_image_is_skipped_and_reported(tmp_path, subs, mnist_dir, guest_dir, capsys):
    (guest_dir / "3" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--only", "strong",
                                       "--json")) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["entries"][0]["guest"]["total"] == 50
    assert any(note.startswith("skipped guest image 3/torn.png:") for note in doc["notes"])
    assert "skipped guest image 3/torn.png" in captured.err


def test_guest_label_folder_that_is_not_a_digit_stops_before_anything_is_stored(tmp_path, db_url, subs, mnist_dir,
                                                                                 guest_dir, capsys):
    (guest_dir / "seven").mkdir()
    shutil.copy(next((guest_dir / "7").glob("*.png")), guest_dir / "seven" / "x.png")
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, db_url)) == 2
    assert "seven" in capsys.readouterr().out
    assert count(db_url, Evaluation) == 0


@pytest.mark.slow
def test_results_say_whether_they_were_sandboxed(tmp_path, subs, mnist_dir, guest_dir, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_SANDBOX", "off")
    import harness.isolation.sandbox
    monkeypatch.setattr(harness.isolation.sandbox, "_box", None)  # forget this process's sandbox for the test
    monkeypatch.setattr(harness.isolation.sandbox, "_unavailable", None)
    assert evaluate.main(evaluate_args(subs, mnist_dir, guest_dir, tmp_path / "lb.db", "--only", "strong",
                                       "--json")) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["entries"][0]["sandboxed"] is False
    assert "entries run without a sandbox (HARNESS_SANDBOX is off)" in captured.err
    assert "NOT SANDBOXED: strong ran as plain child processes" in " ".join(captured.err.split())


@pytest.mark.slow
def test_an_entry_stopped_by_a_limit_gets_the_flag_under_the_table(tmp_path, mnist_dir, means, capsys):
    subs = tmp_path / "subs"
    write_entry(subs, "spins", code=before_return("while True:\n    pass"), weights=template_weights(means))
    assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "no-guests", tmp_path / "lb.db", "--timeout",
                                       "3")) == 0
    out = capsys.readouterr().out
    assert "took longer than its time limit of 3 s and was stopped" in " ".join(out.split())
    assert any(line.startswith("time limit: raise it with `python -m harness.evaluate --timeout 6` (now 3 s), or "
                               "timeout") for line in out.splitlines())
    assert "memory limit:" not in out


@pytest.mark.slow
def test_an_entry_that_failed_on_the_time_limit_is_evaluated_again_when_it_is_raised(tmp_path, mnist_dir, means,
                                                                                      capsys):
    """An entry that sleeps 5 s on import fails under --timeout 3; the same limit again leaves it unchanged; a
    larger one evaluates it again (and it then works), after which the result stands."""
    subs = tmp_path / "subs"
    write_entry(subs, "slow", code=TEMPLATE_CODE + "\nimport time\ntime.sleep(5)\n", weights=template_weights(means))

    def run(timeout: str) -> tuple[str, str, str]:
        assert evaluate.main(evaluate_args(subs, mnist_dir, tmp_path / "no-guests", tmp_path / "lb.db", "--timeout",
                                           timeout, "--json")) == 0
        doc = json.loads(capsys.readouterr().out)
        (row,) = doc["entries"]
        counts = next(n for n in doc["notes"] if " evaluated, " in n)
        return row["status"], row["error"] or "", counts.split(" (stored")[0]

    status, error, counts = run("3")
    assert (status, counts) == ("failed", "0 evaluated, 1 failed, 0 unchanged")
    assert "took longer than its time limit of 3 s" in error
    assert run("3")[::2] == ("failed", "0 evaluated, 0 failed, 1 unchanged")
    assert run("120") == ("ok", "", "1 evaluated, 0 failed, 0 unchanged")
    assert run("120") == ("ok", "", "0 evaluated, 0 failed, 1 unchanged")


def test_limit_flags_names_each_limit_hit_once():
    args = evaluate.parser().parse_args(["--timeout", "60", "--memory-limit", "1.5"])
    errors = [None, "used more than its memory limit of 1.5 GiB and was stopped; ...", "missing keys \"fc.weight\"",
              "took longer than its time limit of 60 s and was stopped; ...", "the entry ran out of memory (over its "
              "memory limit); use a smaller model or batch, or raise the memory limit."]
    assert evaluate.limit_flags(errors, args) == (
        "time limit: raise it with `python -m harness.evaluate --timeout 120` (now 60 s), or timeout / "
        "seconds_per_1000_images under [limits] in competition.toml; memory limit: raise it with `python -m "
        "harness.evaluate --memory-limit 3` (now 1.5 GiB); an entry that failed on a limit is evaluated again once "
        "that limit is raised.")
    assert evaluate.limit_flags(errors[:3:2], args) is None
