"""Kept entry files: every version restores byte for byte, a file shared by versions is stored once, large files
are kept in chunks without being held in memory whole, and what revisions 0002-0004 kept still restores."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tracemalloc
import zipfile

import pytest
from alembic import command
from sqlalchemy import create_engine, delete, event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from harness.entries.discovery import load_entry
from harness.store import snapshots, upgrade, versions
from harness.store.engine import make_engine
from harness.store.schema import EntryVersion, FileBlob, FileChunk
from tests.entries import template_weights, write_entry


def files_of(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_versions_restore_exactly_and_share_their_unchanged_files(tmp_path, db_url, means):
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means), toml='author = "Ada"\n')
    (folder / "lib").mkdir()
    (folder / "lib" / "helpers.py").write_text("SCALE = 1\n")
    first = files_of(folder)
    v1 = versions.ensure_version(engine, load_entry(folder))
    assert snapshots.keep(engine, v1, load_entry(folder)) is True
    assert snapshots.keep(engine, v1, load_entry(folder)) is False  # already kept
    (folder / "entry.toml").write_text('author = "Ada Lovelace"\n')  # version 2: only entry.toml changes
    second = files_of(folder)
    v2 = versions.ensure_version(engine, load_entry(folder))
    assert v2 != v1 and snapshots.keep(engine, v2, load_entry(folder)) is True

    for version_id, expected in ((v1, first), (v2, second)):
        restored = snapshots.restore(engine, version_id, "ada", tmp_path / f"restored-{version_id}")
        assert files_of(restored.folder) == expected
        with Session(engine) as session:
            assert restored.content_hash == session.get(EntryVersion, version_id).content_hash
    with Session(engine) as session:
        sizes = dict(session.execute(select(FileBlob.sha256, FileBlob.size)).all())
    # model.py, weights.pt and lib/helpers.py once, entry.toml twice: five files, not eight
    expected_blobs = {hashlib.sha256(data).hexdigest(): len(data) for data in [*first.values(), *second.values()]}
    assert sizes == expected_blobs and len(sizes) == 5
    assert snapshots.restore(engine, 999, "nobody", tmp_path / "none") is None
    engine.dispose()


def test_a_zip_kept_before_revision_0004_still_restores(tmp_path, means):
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    entry = load_entry(folder)
    raw = create_engine(url)
    with raw.begin() as connection:
        command.upgrade(upgrade.config(connection), "0003")
    raw.dispose()
    # As revision 0003's harness stored it: the version row and one uncompressed zip of its files.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files_of(folder).items():
            zf.writestr(name, data)
    raw = create_engine(url)
    with raw.begin() as connection:
        connection.exec_driver_sql("INSERT INTO entries (id, name, created_at) "
                                   "VALUES (1, 'ada', '2026-11-27 10:00:00')")
        connection.exec_driver_sql(
            "INSERT INTO entry_versions (id, entry_id, content_hash, code_hash, weights_hash, weights_bytes, "
            "display_name, author, description, hyperparameters, constructor, first_seen_at) VALUES "
            f"(1, 1, '{entry.content_hash}', '', '', 0, 'ada', NULL, NULL, '{{}}', '{{}}', '2026-11-27 10:00:00')")
        connection.exec_driver_sql("INSERT INTO version_files (version_id, archive, stored_at) VALUES "
                                   "(1, ?, '2026-11-27 10:00:00')", (buf.getvalue(),))
    raw.dispose()
    engine = make_engine(url)  # upgrades to head
    restored = snapshots.restore(engine, 1, "ada", tmp_path / "restored")
    assert files_of(restored.folder) == files_of(folder) and restored.content_hash == entry.content_hash
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(FileBlob)) == 0  # the zip was left as it was
    engine.dispose()


def chunk_rows(engine) -> dict[str, int]:
    with Session(engine) as session:
        return dict(session.execute(select(FileChunk.sha256, func.count()).group_by(FileChunk.sha256)).all())


def test_large_files_are_kept_in_chunks_and_restore_byte_for_byte(tmp_path, db_url, means, monkeypatch):
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 1000)
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))  # 31 kB of weights: 32 chunks
    (folder / "exact.bin").write_bytes(os.urandom(3000))  # exactly three chunks
    (folder / "small.txt").write_bytes(b"x" * 1000)  # one chunk's worth: kept inline
    first = files_of(folder)
    v1 = versions.ensure_version(engine, load_entry(folder))
    assert snapshots.keep(engine, v1, load_entry(folder)) is True
    (folder / "model.py").write_text((folder / "model.py").read_text() + "\n# v2\n")
    v2 = versions.ensure_version(engine, load_entry(folder))
    assert snapshots.keep(engine, v2, load_entry(folder)) is True
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in first.items()}
    weights = first["weights.pt"]
    assert chunk_rows(engine) == {sha["weights.pt"]: -(-len(weights) // 1000), sha["exact.bin"]: 3}  # once, not twice
    with Session(engine) as session:
        inline = dict(session.execute(select(FileBlob.sha256, FileBlob.data)).all())
        pieces = session.scalars(select(FileChunk.data).where(FileChunk.sha256 == sha["weights.pt"])
                                 .order_by(FileChunk.seq)).all()
    assert inline[sha["weights.pt"]] is None and inline[sha["exact.bin"]] is None
    assert inline[sha["small.txt"]] == b"x" * 1000
    assert b"".join(pieces) == weights and {len(p) for p in pieces[:-1]} == {1000}
    for version_id in (v1, v2):
        restored = snapshots.restore(engine, version_id, "ada", tmp_path / f"restored-{version_id}")
        with Session(engine) as session:
            assert restored.content_hash == session.get(EntryVersion, version_id).content_hash
    assert files_of(tmp_path / f"restored-{v1}" / "ada") == first
    engine.dispose()


def test_chunks_stay_under_the_databases_value_limit(tmp_path, means, monkeypatch):
    """SQLite refuses a value longer than its length limit (1e9 bytes by default; 5,000 here): a file larger than
    that is kept only because it is stored in chunks."""
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    engine = make_engine(url)
    event.listen(engine, "connect", lambda con, _: con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 5000))
    engine.dispose()  # connections from now on carry the limit
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    version_id = versions.ensure_version(engine, load_entry(folder))
    with pytest.raises(DBAPIError, match="too big"):  # one value: refused, as a 2 GB file is refused by default
        snapshots.keep(engine, version_id, load_entry(folder))
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 4096)
    assert snapshots.keep(engine, version_id, load_entry(folder)) is True
    restored = snapshots.restore(engine, version_id, "ada", tmp_path / "restored")
    assert files_of(restored.folder) == files_of(folder)


def test_keeping_and_restoring_never_hold_a_large_file_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 256 * 1024)
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    folder = write_entry(tmp_path / "subs", "big", code="class Net:\n    pass\n")
    (folder / "weights.pt").write_bytes(os.urandom(16 * 1024 ** 2))
    entry = load_entry(folder)
    version_id = versions.ensure_version(engine, entry)
    tracemalloc.start()
    try:
        assert snapshots.keep(engine, version_id, entry) is True
        _, kept_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        restored = snapshots.restore(engine, version_id, "big", tmp_path / "restored")
        _, restore_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert restored.content_hash == entry.content_hash
    assert kept_peak < 4 * 1024 ** 2 and restore_peak < 4 * 1024 ** 2  # a quarter of the file at most


def test_a_damaged_chunk_is_refused_on_restore(tmp_path, means, monkeypatch):
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 1000)
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    version_id = versions.ensure_version(engine, load_entry(folder))
    snapshots.keep(engine, version_id, load_entry(folder))
    with Session(engine) as session, session.begin():
        session.execute(delete(FileChunk).where(FileChunk.seq == 3))
    with pytest.raises(ValueError, match=r"stored files of version \d+ are incomplete or damaged: weights.pt does not "
                                         "match its SHA-256."):
        snapshots.restore(engine, version_id, "ada", tmp_path / "restored")


def test_a_file_changed_while_it_is_kept_is_not_kept(tmp_path, means, monkeypatch):
    """The folder changed after it was read: nothing is kept for the version, which no longer matches it."""
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 1000)
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    entry = load_entry(folder)
    version_id = versions.ensure_version(engine, entry)
    real = snapshots.read_chunks

    def changing(path, size=1 << 20):  # the member saves new weights while they are being stored
        for i, chunk in enumerate(real(path, size)):
            yield chunk if size != 1000 or i < 5 else bytes(len(chunk))

    monkeypatch.setattr(snapshots, "read_chunks", changing)
    assert snapshots.keep(engine, version_id, entry) is False
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(FileChunk)) == 0
        assert session.scalar(select(func.count()).select_from(FileBlob)) == 0


def test_a_blob_kept_by_revision_0004_still_restores(tmp_path, means):
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    entry = load_entry(folder)
    raw = create_engine(url)
    with raw.begin() as connection:
        command.upgrade(upgrade.config(connection), "0004")
        connection.exec_driver_sql("INSERT INTO entries (id, name, created_at) "
                                   "VALUES (1, 'ada', '2026-11-30 10:00:00')")
        connection.exec_driver_sql(
            "INSERT INTO entry_versions (id, entry_id, content_hash, code_hash, weights_hash, weights_bytes, "
            "display_name, author, description, hyperparameters, constructor, first_seen_at) VALUES "
            f"(1, 1, '{entry.content_hash}', '', '', 0, 'ada', NULL, NULL, '{{}}', '{{}}', '2026-11-30 10:00:00')")
        manifest = {}
        for name, data in files_of(folder).items():  # as revision 0004's harness stored it: each file inline
            manifest[name] = hashlib.sha256(data).hexdigest()
            connection.exec_driver_sql("INSERT INTO file_blobs (sha256, size, data) VALUES (?, ?, ?)",
                                       (manifest[name], len(data), data))
        connection.exec_driver_sql("INSERT INTO version_files (version_id, manifest, stored_at) VALUES "
                                   "(1, ?, '2026-11-30 10:00:00')", (json.dumps(manifest),))
    raw.dispose()
    engine = make_engine(url)  # upgrades to head
    restored = snapshots.restore(engine, 1, "ada", tmp_path / "restored")
    assert files_of(restored.folder) == files_of(folder) and restored.content_hash == entry.content_hash
    engine.dispose()


def test_a_run_keeps_a_new_versions_files_while_its_entry_loads_and_the_others_once_it_has_scored(tmp_path, db_url,
                                                                                                 means, mnist_test,
                                                                                                 monkeypatch):
    """The host keeps a new version's files once it has written the entry's images, while the entry's process loads
    (where it would only wait for it); a version the run does not run, and one whose keeping failed then, are kept
    once the run has scored (``runner.settle``)."""
    from harness import runner
    from harness.data.task import DatasetSpec
    from harness.entries.discovery import discover
    from harness.isolation import order, process

    events: list[tuple[str, ...]] = []
    keep, save, watch = snapshots.keep, order.save, process._watch

    def keeping(engine, version_id, entry):
        events.append(("keep", entry.name))
        if entry.name == "flaky" and events.count(("keep", "flaky")) == 1:
            raise OSError("the disk hiccuped")
        return keep(engine, version_id, entry)

    monkeypatch.setattr(snapshots, "keep", keeping)
    monkeypatch.setattr(order, "save", lambda images, shuffled: events.append(("images",)) or save(images, shuffled))
    monkeypatch.setattr(process, "_watch", lambda *a, **k: events.append(("wait for ready",)) or watch(*a, **k))
    for name in ("ada", "flaky"):
        write_entry(tmp_path / "subs", name, weights=template_weights(means))
    write_entry(tmp_path / "subs", "refused", weights=template_weights(means), toml="this is not [toml\n")
    engine = make_engine(db_url)
    spec = DatasetSpec("mnist", "mnist-50", mnist_test.labels[:50], mnist_test.images[:50], "test")
    summary = runner.run(engine, list(discover(tmp_path / "subs").values()), [spec],
                         runner.Options(runner.Limits(device="cpu")), argv=[])
    assert summary.outcome == {"ada": "evaluated", "flaky": "evaluated", "refused": "failed"}
    assert events == [("images",), ("keep", "ada"), ("wait for ready",),
                      ("images",), ("keep", "flaky"), ("wait for ready",),  # failed: kept again below
                      ("keep", "flaky"), ("keep", "refused")]               # refused: never run
    for name in ("ada", "flaky", "refused"):
        (kept,) = versions.history(engine, name)
        assert kept.files_kept
        restored = snapshots.restore(engine, kept.version_id, name, tmp_path / "restored")
        assert files_of(restored.folder) == files_of(tmp_path / "subs" / name)
    engine.dispose()
