"""What a re-run with nothing changed costs (``benchmarks/harness_speed.py`` (c)): every entry's files are read once
to hash them, and reading the board or a cached guest set imports neither pandas nor scipy.ndimage."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.entries import discovery
from tests.conftest import REPO as ROOT  # noqa: E402


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
