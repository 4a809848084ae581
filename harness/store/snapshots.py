"""Each entry version's files, kept in the store, so that a version can be scored after its folder changed.

This is what lets the harness rank the version submitted before the deadline even when the member has
since replaced it, and re-score it when the guest digits arrive after the deadline.

A version is a manifest (path -> SHA-256) and every file's bytes are stored once (``file_blobs``): a member
who changes one line of ``model.py`` adds a few kilobytes, not another copy of the weights. A file larger than
``CHUNK_BYTES`` is kept as ordered chunks (``file_chunks``, schema revision 0005), since one database value holds at
most 1 GB; files are read, stored and restored a chunk at a time, so a large file is never held in memory whole.
Versions kept before revision 0004 are one zip each and are still read.

:func:`drop_files` removes the files of versions the organiser chose not to keep (``[storage] keep_versions``, applied
by ``harness.scoring.retention``): the row and its manifest stay, marked ``pruned_at``, and a file's bytes go only
when no kept version holds it any more.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harness.entries.discovery import EntryFolder, digest, entry_files, load_entry, read_chunks
from harness.store.schema import FileBlob, FileChunk, VersionFiles, utcnow

ATTEMPTS = 5  # a concurrent run may add the same file between our look and our insert: look again
CHUNK_BYTES = 64 * 1024 ** 2  # larger files are kept in pieces of this size


PRUNED = "its files were removed to save space ([storage] keep_versions in competition.toml)"


class _Changed(Exception):
    """A file changed while it was being stored: the version on disk is no longer the one described."""


class _Gone(Exception):
    """A file this version shares with another was removed (pruned) while the version was being stored."""


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _kept(session: Session, version_id: int) -> bool:
    """Whether the version's files are stored (without loading them); a pruned version's are not."""
    return session.scalar(select(VersionFiles.version_id).where(VersionFiles.version_id == version_id,
                                                                VersionFiles.pruned_at.is_(None))) is not None


def keep(engine: Engine, version_id: int, entry: EntryFolder) -> bool:
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
                pruned = session.get(VersionFiles, version_id)
                if pruned is not None:  # its files were removed to save space and the same content came back
                    pruned.manifest, pruned.archive, pruned.pruned_at, pruned.stored_at = manifest, None, None, utcnow()
                else:
                    session.add(VersionFiles(version_id=version_id, manifest=manifest))
                session.flush()
                # drop_files may have removed a shared file after we looked: it locks version_files first, so once
                # our row is in, what we count here stays
                if session.scalar(select(func.count()).select_from(FileBlob)
                                  .where(FileBlob.sha256.in_(list(by_sha)))) != len(by_sha):
                    raise _Gone
            return True
        except (IntegrityError, _Gone):  # the same file or version inserted (or a file pruned) meanwhile: look again
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


def pruned(engine: Engine, version_id: int) -> bool:
    """Whether the version's files were removed to save space (``drop_files``)."""
    with Session(engine) as session:
        return session.scalar(select(VersionFiles.pruned_at).where(VersionFiles.version_id == version_id)) is not None


def restore(engine: Engine, version_id: int, entry_name: str, parent: Path) -> EntryFolder | None:
    """Write a stored version's files into ``parent/entry_name`` and describe it; None when its files were not kept.

    Files are written a chunk at a time and checked against their SHA-256 (a ValueError when one does not match, or
    when they were removed to save space)."""
    with Session(engine) as session:
        row = session.get(VersionFiles, version_id)
        if row is None:
            return None
        if row.pruned_at is not None:
            raise ValueError(PRUNED)
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
                raise ValueError(f"stored files of version {version_id} are incomplete: {len(missing)} file(s) "
                                 "missing.")
            _write(version_id, folder, ((name, _chunks(session, sha), sha) for name, sha in manifest.items()))
    return load_entry(folder)


@dataclass(frozen=True)
class Freed:
    """What dropping versions' files frees: how many versions lose their files, and the bytes of the files that no
    kept version holds (a file shared with a kept version stays, and is not counted)."""
    versions: int
    bytes: int


def drop_files(engine: Engine, version_ids: Iterable[int], dry_run: bool = False) -> Freed:
    """Remove the stored files of ``version_ids`` (those still kept); with ``dry_run``, only count what would go.

    The versions' rows and manifests stay (marked ``pruned_at``), and so does everything else about them: their
    evaluations, results and predictions."""
    wanted = set(version_ids)
    kept = (select(VersionFiles.version_id, VersionFiles.manifest,
                   func.coalesce(func.length(VersionFiles.archive), 0).label("zip"))
            .where(VersionFiles.pruned_at.is_(None)))
    with Session(engine) as session, session.begin():
        if not any(r.version_id in wanted for r in session.execute(kept)):
            return Freed(0, 0)  # the common case on every run: no lock taken
        if not dry_run and engine.dialect.name == "postgresql":
            # keep() of a concurrent run waits until we are done (or we wait for it), so no file it shares goes
            session.execute(text("LOCK TABLE version_files IN SHARE ROW EXCLUSIVE MODE"))
        going = [r for r in session.execute(kept).all() if r.version_id in wanted]
        if not going:
            return Freed(0, 0)
        if not dry_run:  # first: on SQLite this write takes the lock, so what is read below stays true
            session.execute(update(VersionFiles).where(VersionFiles.version_id.in_([r.version_id for r in going]))
                            .values(pruned_at=utcnow(), archive=None))
        rows = session.execute(kept).all()  # after the update: the versions that keep their files
        held = {sha for r in rows if r.version_id not in wanted for sha in (r.manifest or {}).values()}
        shas = {sha for r in going for sha in (r.manifest or {}).values()} - held
        freed = sum(r.zip for r in going)
        for batch in _batches(sorted(shas)):
            freed += session.scalar(select(func.coalesce(func.sum(FileBlob.size), 0))
                                    .where(FileBlob.sha256.in_(batch))) or 0
            if not dry_run:
                session.execute(delete(FileChunk).where(FileChunk.sha256.in_(batch)))
                session.execute(delete(FileBlob).where(FileBlob.sha256.in_(batch)))
    return Freed(len(going), int(freed))


def _batches(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def version_counts(engine: Engine) -> tuple[int, int]:
    """How many versions keep their files, and how many had them removed to save space."""
    with Session(engine) as session:
        rows = dict(session.execute(select(VersionFiles.pruned_at.is_(None), func.count())
                                    .group_by(VersionFiles.pruned_at.is_(None))).all())
    return int(rows.get(True, 0)), int(rows.get(False, 0))


def stored_bytes(engine: Engine) -> int:
    """The bytes of every kept file (each once) and of the zips kept before revision 0004."""
    with Session(engine) as session:
        blobs = session.scalar(select(func.coalesce(func.sum(FileBlob.size), 0))) or 0
        zips = session.scalar(select(func.coalesce(func.sum(func.length(VersionFiles.archive)), 0))) or 0
    return int(blobs) + int(zips)
