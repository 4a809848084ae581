"""Kept entry files: every version restores byte for byte, a file shared by versions is stored once, and the
zips kept by revisions 0002-0003 still restore after the upgrade."""

from __future__ import annotations

import hashlib
import io
import zipfile

from alembic import command
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from harness import migrate, snapshots, store
from harness.db import EntryVersion, FileBlob, make_engine
from harness.discovery import load_entry
from tests.entries import template_weights, write_entry


def files_of(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_versions_restore_exactly_and_share_their_unchanged_files(tmp_path, db_url, means):
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means), toml='author = "Ada"\n')
    (folder / "lib").mkdir()
    (folder / "lib" / "helpers.py").write_text("SCALE = 1\n")
    first = files_of(folder)
    v1 = store.ensure_version(engine, load_entry(folder))
    assert snapshots.keep(engine, v1, load_entry(folder)) is True
    assert snapshots.keep(engine, v1, load_entry(folder)) is False  # already kept
    (folder / "entry.toml").write_text('author = "Ada Lovelace"\n')  # version 2: only entry.toml changes
    second = files_of(folder)
    v2 = store.ensure_version(engine, load_entry(folder))
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
        command.upgrade(migrate.config(connection), "0003")
    raw.dispose()
    # As revision 0003's harness stored it: the version row and one uncompressed zip of its files.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files_of(folder).items():
            zf.writestr(name, data)
    raw = create_engine(url)
    with raw.begin() as connection:
        connection.exec_driver_sql("INSERT INTO entries (id, name, created_at) VALUES (1, 'ada', '2026-11-27 10:00:00')")
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
