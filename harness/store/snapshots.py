"""Each entry version's files, kept in the store, so that a version can be scored after its folder changed.

This is what lets the harness rank the version submitted before the deadline even when the member has
since replaced it, and re-score it when the guest digits arrive after the deadline.

A version is a manifest (path -> SHA-256) and every file's bytes are stored once (``file_blobs``): a member
who changes one line of ``model.py`` adds a few kilobytes, not another copy of the weights. A file larger than
``CHUNK_BYTES`` is kept as ordered chunks (``file_chunks``, schema revision 0005), since one database value holds at
most 1 GB; files are read, stored and restored a chunk at a time, so a large file is never held in memory whole.
Versions kept before revision 0004 are one zip each and are still read.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harness.entries.discovery import Entry, digest, entry_files, load_entry, read_chunks
from harness.store.schema import FileBlob, FileChunk, VersionFiles

ATTEMPTS = 5  # a concurrent run may add the same file between our look and our insert: look again
CHUNK_BYTES = 64 * 1024 ** 2  # larger files are kept in pieces of this size


class _Changed(Exception):
    """A file changed while it was being stored: the version on disk is no longer the one described."""


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _kept(session: Session, version_id: int) -> bool:
    """Whether the version's files are stored (without loading them)."""
    return session.scalar(select(VersionFiles.version_id).where(VersionFiles.version_id == version_id)) is not None


def keep(engine: Engine, version_id: int, entry: Entry) -> bool:
    """Store the files of ``entry`` for ``version_id`` unless already stored; True when stored now.

    Nothing is stored when the folder no longer holds the content ``entry`` describes (it changed since it was
    read; the next run sees the new version) or holds a file name the store cannot keep as text."""
    with Session(engine) as session:
        if _kept(session, version_id):
            return False
    paths = entry_files(entry.folder)
    manifest: dict[str, str] = {}
    if digest(paths, entry.folder, manifest) != entry.content_hash or not all(map(_utf8, manifest)):
        return False
    by_sha = {manifest[path.relative_to(entry.folder).as_posix()]: path for path in paths}
    for _ in range(ATTEMPTS):
        try:
            with Session(engine) as session, session.begin():
                if _kept(session, version_id):
                    return False  # a concurrent run stored this version first
                there = set(session.scalars(select(FileBlob.sha256).where(FileBlob.sha256.in_(list(by_sha)))))
                for sha, path in by_sha.items():
                    if sha not in there:
                        _store_file(session, sha, path)
                session.add(VersionFiles(version_id=version_id, manifest=manifest))
            return True
        except IntegrityError:  # the same file or version inserted by another run meanwhile: look again
            continue
        except _Changed:
            return False
    return False


def _store_file(session: Session, sha: str, path: Path) -> None:
    """One file's bytes, inline or chunk by chunk (Core inserts: the session never holds them)."""
    check = hashlib.sha256()
    size = path.stat().st_size
    if size <= CHUNK_BYTES:
        data = b"".join(read_chunks(path, CHUNK_BYTES + 1))
        check.update(data)
        if check.hexdigest() != sha:
            raise _Changed(path)
        session.execute(insert(FileBlob).values(sha256=sha, size=len(data), data=data))
        return
    session.execute(insert(FileBlob).values(sha256=sha, size=size, data=None))
    stored = 0
    for seq, chunk in enumerate(read_chunks(path, CHUNK_BYTES)):
        check.update(chunk)
        stored += len(chunk)
        session.execute(insert(FileChunk).values(sha256=sha, seq=seq, data=chunk))
    if check.hexdigest() != sha or stored != size:
        raise _Changed(path)


def _chunks(session: Session, sha: str) -> Iterator[bytes]:
    """A kept file's bytes in order: inline, or its chunks fetched one at a time."""
    data = session.scalar(select(FileBlob.data).where(FileBlob.sha256 == sha))
    if data is not None:
        yield data
        return
    for seq in session.scalars(select(FileChunk.seq).where(FileChunk.sha256 == sha).order_by(FileChunk.seq)).all():
        yield session.scalar(select(FileChunk.data).where(FileChunk.sha256 == sha, FileChunk.seq == seq))


def _write(version_id: int, folder: Path, files: Iterator[tuple[str, Iterator[bytes], str | None]]) -> None:
    """Write (path, bytes, expected SHA-256) into ``folder``; a ValueError when a file is not what was kept."""
    for name, chunks, sha in files:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"stored files of version {version_id} hold an unsafe path {name!r}.")
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        check = hashlib.sha256()
        with open(target, "wb") as out:
            for chunk in chunks:
                check.update(chunk)
                out.write(chunk)
        if sha is not None and check.hexdigest() != sha:
            raise ValueError(f"stored files of version {version_id} are incomplete or damaged: {name} does not "
                             "match its SHA-256.")


def restore(engine: Engine, version_id: int, entry_name: str, parent: Path) -> Entry | None:
    """Write a stored version's files into ``parent/entry_name`` and describe it; None when its files were not kept.

    Files are written a chunk at a time and checked against their SHA-256 (a ValueError when one does not match)."""
    with Session(engine) as session:
        row = session.get(VersionFiles, version_id)
        if row is None:
            return None
        folder = parent / entry_name
        folder.mkdir(parents=True, exist_ok=False)
        if row.manifest is None:  # kept before revision 0004: one zip
            with zipfile.ZipFile(io.BytesIO(row.archive)) as zf:
                _write(version_id, folder, ((name, iter([zf.read(name)]), None) for name in zf.namelist()))
        else:
            manifest = dict(row.manifest)
            there = set(session.scalars(select(FileBlob.sha256).where(FileBlob.sha256.in_(set(manifest.values())))))
            missing = set(manifest.values()) - there
            if missing:
                raise ValueError(f"stored files of version {version_id} are incomplete: {len(missing)} file(s) missing.")
            _write(version_id, folder, ((name, _chunks(session, sha), sha) for name, sha in manifest.items()))
    return load_entry(folder)
