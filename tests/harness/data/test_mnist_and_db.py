"""MNIST files (reading, verification, download) and the database engine."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from functools import partial

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from harness.data import mnist
from harness.entries.discovery import discover
from harness.errors import HarnessError
from harness.store import evaluations, runs, versions
from harness.store.engine import make_engine, resolve_url
from harness.store.schema import EntryVersion, Evaluation
from tests.entries import write_entry


def test_reader_agrees_with_torchvision(mnist_dir, mnist_test, tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_dir / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert np.array_equal(read_image_file(str(tmp_path / "t10k-images-idx3-ubyte")).numpy(), mnist_test.images)
    assert np.array_equal(read_label_file(str(tmp_path / "t10k-labels-idx1-ubyte")).numpy(), mnist_test.labels)
    assert mnist_test.images.shape == (10000, 28, 28)
    assert np.bincount(mnist_test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # Uncompressed files are read too, and give the same content hash.
    assert mnist.load_split(tmp_path, "test", allow_download=False).content_hash == mnist_test.content_hash


def test_corrupt_test_file_is_refused_by_md5(mnist_dir, tmp_path):
    for name, _ in mnist.FILES["test"]:
        shutil.copy(mnist_dir / name, tmp_path / name)
    data = bytearray((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    with pytest.raises(HarnessError, match=r"does not match the official MNIST md5 .* delete it"):
        mnist.load_split(tmp_path, "test", allow_download=False)


def test_truncated_training_file_is_reported(mnist_dir, tmp_path):
    shutil.copy(mnist_dir / "train-labels-idx1-ubyte.gz", tmp_path)
    cut = (mnist_dir / "train-images-idx3-ubyte.gz").read_bytes()[:5000]
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(cut)
    with pytest.raises(HarnessError, match="is not a readable IDX file"):
        mnist.load_split(tmp_path, "train", allow_download=False)


def test_reconstructed_training_file_loads_on_format_alone(mnist_dir):
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    assert train.images.shape == (60000, 28, 28) and len(train.labels) == 60000


def test_missing_files_offline_say_where_to_put_them(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    data = tmp_path / "data"
    with pytest.raises(HarnessError) as raised:
        mnist.load_split(data, "test")
    assert str(raised.value).startswith(f"MNIST file t10k-images-idx3-ubyte.gz is not in {data} and could not be "
                                        "downloaded (")
    assert str(raised.value).endswith(
        f"; offline, copy t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz into {data} (and, for harness.train, "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) or point --mnist-dir / $MNIST_DIR at a folder that "
        "holds them.")
    assert not list(data.glob("*.gz"))  # no half-downloaded file left behind
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # the test set copied by hand
        shutil.copy(mnist_dir / name, data / name)
    assert len(mnist.load_split(data, "test", allow_download=False).labels) == 10_000
    with pytest.raises(HarnessError) as raised:  # harness.train's message names the training files it needs
        mnist.load_split(data, "train", allow_download=False)
    assert str(raised.value) == (
        f"MNIST train files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz are missing from {data}; copy them "
        "there or point --mnist-dir / $MNIST_DIR at a folder that holds them.")
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(HarnessError) as raised:
        mnist.load_split(data, "train", allow_download=False)
    assert str(raised.value) == (
        f"MNIST train files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz are missing from {data}; copy them "
        "there (and, for harness.evaluate and harness.check, t10k-labels-idx1-ubyte.gz) or point --mnist-dir / "
        "$MNIST_DIR at a folder that holds them.")


def test_download_from_a_mirror_verifies_md5(mnist_dir, tmp_path, monkeypatch):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(mnist_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/", f"http://127.0.0.1:{server.server_port}/"])
        split = mnist.load_split(tmp_path / "fresh", "test")
    finally:
        server.shutdown()
    assert mnist.md5sum(tmp_path / "fresh" / "t10k-images-idx3-ubyte.gz") == "9fb629c4189551a2d022fa330f9573f3"
    assert len(split.labels) == 10000


def test_resolve_dir_prefers_flag_then_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    assert mnist.resolve_dir(None) == tmp_path
    assert str(mnist.resolve_dir("elsewhere")) == "elsewhere"
    monkeypatch.delenv("MNIST_DIR")
    assert str(mnist.resolve_dir(None)) == "data/mnist"


def test_sqlite_uses_wal_and_foreign_keys(tmp_path):
    engine = make_engine(str(tmp_path / "plain-path.db"))
    with engine.connect() as con:
        assert con.execute(text("pragma journal_mode")).scalar() == "wal"
        assert con.execute(text("pragma foreign_keys")).scalar() == 1
    assert resolve_url("x.db") == "sqlite:///x.db"
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_database_that_is_not_a_database(tmp_path):
    bogus = tmp_path / "bogus.db"
    bogus.write_text("this is not sqlite" * 100)
    with pytest.raises(HarnessError, match="cannot open the database"):
        make_engine(str(bogus))
    assert bogus.read_text().startswith("this is not sqlite")


def test_what_postgresql_would_refuse_is_stored_on_both(db_url, tmp_path):
    """NUL characters and over-long names from entry.toml or an entry's output, NaN in its hyperparameters and
    byte counts over 2 GiB: PostgreSQL would refuse the row and stop the run; SQLite would keep it unchanged."""
    write_entry(tmp_path / "subs", "odd", weights={}, toml=f'''
        display_name = "{'N' * 300}"
        author = "a\\u0000b"
        [hyperparameters]
        lr = nan
        limit = [1.5, -inf]
        ''')
    engine = make_engine(db_url)
    version_id = versions.ensure_version(engine, discover(tmp_path / "subs")["odd"])
    run_id = runs.start_run(engine, "cpu", [])
    evaluation_id = evaluations.save_evaluation(
        engine, run_id=run_id, version_id=version_id, eval_key="k",
        record=evaluations.Record(status="failed", error="bad\0byte", seconds=1.0, device="cpu", params=None,
                                  peak_memory_bytes=5 * 2**30, log="printed \0 this"))
    with Session(engine) as session:
        version, evaluation = session.get(EntryVersion, version_id), session.get(Evaluation, evaluation_id)
        assert version.display_name == "N" * 200 and version.author == "a\ufffdb"
        assert version.hyperparameters == {"lr": "nan", "limit": [1.5, "-inf"]}
        assert (evaluation.error, evaluation.log, evaluation.peak_memory_bytes) == \
            ("bad\ufffdbyte", "printed \ufffd this", 5 * 2**30)
    engine.dispose()
