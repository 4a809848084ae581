"""What a re-run with nothing changed costs (``benchmarks/harness_speed.py`` (c)): every entry's files are read once
to hash them, and reading the board or a cached guest set imports neither pandas nor scipy.ndimage."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.entries import discovery
from tests.conftest import REPO as ROOT


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _counting(monkeypatch) -> dict[Path, int]:
    reads: dict[Path, int] = {}
    real = discovery.read_chunks

    def counted(path, *args, **kwargs):
        reads[Path(path)] = reads.get(Path(path), 0) + 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(discovery, "read_chunks", counted)
    return reads


def test_an_entry_is_read_once_and_hashed_as_the_sum_of_its_named_files(tmp_path, monkeypatch):
    """The content, code and weights hashes against SHA-256 computed here by hand over the documented layout
    (relative name, NUL, bytes, NUL per file, in name order), from a single read of each file."""
    code, weights, notes = b"import torch\n", os.urandom(3 * (1 << 20) + 5), b"lr 0.1\n"  # weights: several chunks
    folder = _write(tmp_path / "ada", {"model.py": code, "weights.pt": weights, "notes.txt": notes})
    reads = _counting(monkeypatch)
    entry = discovery.load_entry(folder)

    def part(name: str, data: bytes) -> bytes:
        return name.encode() + b"\0" + data + b"\0"

    assert entry.content_hash == hashlib.sha256(part("model.py", code) + part("notes.txt", notes)
                                                + part("weights.pt", weights)).hexdigest()
    assert entry.code_hash == hashlib.sha256(part("model.py", code)).hexdigest()
    assert entry.weights_hash == hashlib.sha256(part("weights.pt", weights)).hexdigest()
    assert entry.weights_bytes == len(weights) and entry.total_bytes == len(code) + len(weights) + len(notes)
    assert reads == {folder / "model.py": 1, folder / "notes.txt": 1, folder / "weights.pt": 1}


@pytest.mark.parametrize("files, toml, weights_name", [
    ({"model.py": b"x", "w/weights.pt": b"w" * 5000}, 'weights = "w/weights.pt"\n', "w/weights.pt"),
    ({"model.py": b"x", "weights.pt": b"w" * 50}, 'weights = "./weights.pt"\n', "weights.pt"),
    ({"model.py": b"x", ".hidden/weights.pt": b"w" * 50}, 'weights = ".hidden/weights.pt"\n', ".hidden/weights.pt"),
    ({"model.py": b"x"}, 'weights = "model.py"\n', "model.py"),
    ({"model.pt2": b"e" * 500, "README.md": b"r"}, None, "model.pt2"),
    ({"model.py": b"x"}, None, None),
])
def test_the_code_and_weights_hashes_are_each_files_own_digest(tmp_path, monkeypatch, files, toml, weights_name):
    """Wherever the weights are (a sub-folder, './', a hidden folder the content hash leaves out, the code file
    itself, a code-free export, none), their hash is ``digest([file])``, and a file the content hash covers is read
    once."""
    folder = _write(tmp_path / "bob", files | ({"entry.toml": toml.encode()} if toml else {}))
    reads = _counting(monkeypatch)
    entry = discovery.load_entry(folder)
    listed = discovery.entry_files(folder)
    assert all(reads.get(path) == 1 for path in listed)
    monkeypatch.undo()
    assert entry.content_hash == discovery.digest(listed, folder)
    code = folder / "model.py"
    assert entry.code_hash == (discovery.digest([code], folder) if code.is_file() else "")
    assert entry.weights_hash == (discovery.digest([folder / weights_name], folder) if weights_name else "")


def test_the_board_and_a_cached_guest_set_need_neither_pandas_nor_ndimage(tmp_path):
    """A re-run with nothing changed reads the guest's digits from the cache and prints the board: importing pandas
    (about 0.9 s) and scipy.ndimage (0.2 s) is left to the pages and the normalisation that use them. The digits
    read from the cache are the ones the normalisation gave."""
    env = dict(os.environ, HARNESS_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    (tmp_path / "no-guest").mkdir()  # no real digits: the shipped sample
    load = ("import sys, numpy as np\n"
            "from harness.data.guest import resolve_guest_set\n"
            "images = resolve_guest_set(sys.argv[1]).images\n")
    fill = load + "assert 'scipy.ndimage' in sys.modules\nnp.save(sys.argv[2], images)\n"
    again = (load + "import harness.evaluate, harness.runner, harness.scoring.board, harness.scoring.report\n"
             "import harness.store.evaluations, harness.store.versions\n"
             "assert 'pandas' not in sys.modules, 'pandas imported'\n"
             "assert 'scipy.ndimage' not in sys.modules, 'scipy.ndimage imported'\n"
             "assert np.array_equal(images, np.load(sys.argv[2]))\n")
    for probe in (fill, again):
        done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "no-guest"), str(tmp_path / "first.npy")],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_the_dashboards_tables_still_come_as_data_frames(tmp_path):
    """pandas is imported where the history and the versions list are built."""
    from harness.store import evaluations, versions as entry_versions
    from harness.store.engine import make_engine
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    history, versions = evaluations.accuracy_history(engine, {}), entry_versions.table(engine, "ada")
    assert type(history).__name__ == type(versions).__name__ == "DataFrame"
    assert list(history.columns) == ["entry", "version_id", "version", "first_seen_at", "evaluation_id", "started_at",
                                     "status", "kind", "accuracy"] and len(history) == len(versions) == 0


@pytest.fixture()
def hash_cache(tmp_path, monkeypatch) -> Path:
    """The entries' remembered hashes in a folder of this test's own; files count as settled at once."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(discovery, "RACY_SECONDS", 0.0)
    return tmp_path / "cache" / "entry-hashes"


def _settled(folder: Path) -> None:
    time.sleep(0.05)  # past the change times the kernel gave the files (its clock ticks in milliseconds)


def test_an_unchanged_entry_is_not_read_again(tmp_path, monkeypatch, hash_cache):
    """The second look at an unchanged folder reads none of its files and describes it exactly as the first did
    (its hashes checked by hand, as above)."""
    code, weights = b"import torch\n", os.urandom(2 * (1 << 20) + 7)
    folder = _write(tmp_path / "ada", {"model.py": code, "weights.pt": weights})
    _settled(folder)
    first = discovery.load_entry(folder)
    reads = _counting(monkeypatch)
    again = discovery.load_entry(folder)
    assert reads == {} and again == first and len(list(hash_cache.glob("*.json"))) == 1
    assert again.weights_hash == hashlib.sha256(b"weights.pt\0" + weights + b"\0").hexdigest()
    assert again.code_hash == hashlib.sha256(b"model.py\0" + code + b"\0").hexdigest()


def test_a_changed_file_is_read_again_even_with_its_old_size_and_time(tmp_path, monkeypatch, hash_cache):
    """A file rewritten with bytes of the same length and its modification time put back (what ``cp -p`` or an
    unzip may do) is still seen: its change time and inode moved, so the entry is hashed anew."""
    folder = _write(tmp_path / "bob", {"model.py": b"x = 1\n", "weights.pt": b"a" * 5000})
    _settled(folder)
    first = discovery.load_entry(folder)
    before = (folder / "weights.pt").stat()
    (folder / "weights.pt").write_bytes(b"b" * 5000)
    os.utime(folder / "weights.pt", ns=(before.st_atime_ns, before.st_mtime_ns))
    reads = _counting(monkeypatch)
    again = discovery.load_entry(folder)
    assert reads.get(folder / "weights.pt") == 1
    assert again.weights_hash == hashlib.sha256(b"weights.pt\0" + b"b" * 5000 + b"\0").hexdigest()
    assert again.content_hash != first.content_hash


def test_files_changed_just_before_their_hashing_are_not_remembered(tmp_path, monkeypatch):
    """Within RACY_SECONDS of a change a file could change again in the same tick of its change time: such an
    entry is read every time until it has settled."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = _write(tmp_path / "cy", {"model.py": b"x = 1\n", "weights.pt": b"w" * 100})
    discovery.load_entry(folder)
    reads = _counting(monkeypatch)
    discovery.load_entry(folder)
    assert reads == {folder / "model.py": 1, folder / "weights.pt": 1}
    assert not (tmp_path / "cache" / "entry-hashes").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_a_damaged_hash_cache_is_only_a_cache(tmp_path, monkeypatch, hash_cache):
    """A remembered hash file that is not what the harness wrote (cut short, other keys) is ignored: the files are
    read and the hashes are right."""
    folder = _write(tmp_path / "dee", {"model.py": b"y = 2\n", "weights.pt": b"q" * 64})
    _settled(folder)
    truth = discovery.load_entry(folder)
    for damaged in ('{"content": "ab', '{"content": 3, "alone": {}}', '[1, 2]'):
        for path in hash_cache.glob("*.json"):
            path.write_text(damaged)
        reads = _counting(monkeypatch)
        assert discovery.load_entry(folder) == truth and reads.get(folder / "weights.pt") == 1
        monkeypatch.undo()
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(discovery, "RACY_SECONDS", 0.0)


def _scored(tmp_path: Path, names: list[str], datasets, rules) -> object:
    """A store where each entry in ``names`` (written under tmp_path/subs) has its version, kept files and an ok
    evaluation on ``datasets`` under this harness: what a run that scored them leaves."""
    from harness import runner
    from harness.store import evaluations, runs, snapshots, versions
    from harness.store.engine import make_engine
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    run_id = runs.start_run(engine, "cpu", [])
    for name in names:
        entry = discovery.load_entry(_write(tmp_path / "subs" / name, {"model.py": b"# " + name.encode(),
                                                                       "weights.pt": name.encode() * 100}))
        version_id = versions.ensure_version(engine, entry)
        snapshots.keep(engine, version_id, entry)
        evaluations.save_evaluation(engine, run_id=run_id, version_id=version_id,
                                    eval_key=runner.eval_key(entry, datasets, rules.max_entry_bytes),
                                    record=evaluations.Record("ok", None, 1.0, "cpu", 10))
    runs.finish_run(engine, run_id, "finished")
    return engine


@pytest.mark.parametrize("n", [2, 7])
def test_a_rerun_asks_the_store_the_same_number_of_questions_for_any_number_of_entries(tmp_path, monkeypatch, n):
    """The unchanged entries' versions, kept files and stored results are read in one query each, not one or two
    per entry: the SQL statements of a run where nothing changed, counted on the engine, are the same for 2 entries
    and for 7 (9 today), and nothing is evaluated."""
    from sqlalchemy import event

    from harness import runner
    from harness.common.competition import Competition
    from harness.data.task import DatasetSpec
    rules = Competition()
    datasets = [DatasetSpec("mnist", "h" * 64, np.zeros(4, np.int64), np.zeros((4, 28, 28), np.uint8), "test")]
    engine = _scored(tmp_path, [f"e{i}" for i in range(n)], datasets, rules)
    entries = list(discovery.discover(tmp_path / "subs").values())
    monkeypatch.setattr(runner, "evaluate_one", lambda *a, **k: pytest.fail("an unchanged entry was evaluated"))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: statements.append(sql))
    summary = runner.run(engine, entries, datasets, runner.Options(runner.Limits(device="cpu")), [],
                         competition=rules)
    assert summary.outcome == {e.name: runner.UNCHANGED for e in entries}
    assert len(statements) == 9, statements


def test_a_rerun_with_nothing_changed_imports_neither_torch_nor_scipy_special(tmp_path, mnist_dir, monkeypatch):
    """``python -m harness.evaluate`` over entries it has scored reads the store and prints the board: it starts no
    sandbox (whose server imports torch), and the board's exact fair-coin tests need no scipy.special (0.3 s)."""
    from harness import evaluate
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # the guest sample normalised here, read there
    (tmp_path / "no-guest").mkdir()
    argv = ["--submissions", str(tmp_path / "subs"), "--mnist-dir", str(mnist_dir), "--mystery",
            str(tmp_path / "no-guest"), "--db", str(tmp_path / "lb.db"), "--device", "cpu"]
    args = evaluate.parser().parse_args(argv)
    rules = evaluate.settle(args)
    datasets, _ = evaluate.load_datasets(args, rules)
    _scored(tmp_path, ["ada", "bob"], datasets, rules).dispose()
    probe = ("import sys\nfrom harness import evaluate\n"
             f"assert evaluate.main({argv!r}) == 0\n"
             "heavy = sorted({'torch', 'scipy.special', 'pandas', 'torchvision'} & set(sys.modules))\n"
             "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "0 evaluated, 0 failed, 2 unchanged" in done.stdout
