"""Each entry version's files, kept in the store, so that a version can be scored after its folder changed.

This is what lets the harness rank the version submitted before the deadline even when the member has
since replaced it, and re-score it when the guest digits arrive after the deadline.

A version is a manifest (path -> SHA-256) and every file's bytes are stored once (``file_blobs``): a member
who changes one line of ``model.py`` adds a few kilobytes, not another copy of the weights. Versions kept
before that (schema revision 0004) are one zip each and are still read.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harness.contract import entry_files
from harness.db import FileBlob, VersionFiles
from harness.discovery import Entry, load_entry

ATTEMPTS = 5  # a concurrent run may add the same file between our look and our insert: look again


def read_files(folder: Path) -> dict[str, bytes]:
    """The entry's files (those its content hash covers) by their path inside the folder."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in entry_files(folder)}


def _kept(session: Session, version_id: int) -> bool:
    """Whether the version's files are stored (without loading them)."""
    return session.scalar(select(VersionFiles.version_id).where(VersionFiles.version_id == version_id)) is not None


def keep(engine: Engine, version_id: int, entry: Entry) -> bool:
    """Store the files of ``entry`` for ``version_id`` unless already stored; True when stored now."""
    with Session(engine) as session:
        if _kept(session, version_id):
            return False
    files = read_files(entry.folder)
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    blobs = {manifest[name]: data for name, data in files.items()}
    for _ in range(ATTEMPTS):
        try:
            with Session(engine) as session, session.begin():
                if _kept(session, version_id):
                    return False  # a concurrent run stored this version first
                there = set(session.scalars(select(FileBlob.sha256).where(FileBlob.sha256.in_(list(blobs)))))
                session.add_all(FileBlob(sha256=sha, size=len(data), data=data)
                                for sha, data in blobs.items() if sha not in there)
                session.add(VersionFiles(version_id=version_id, manifest=manifest))
            return True
        except IntegrityError:  # the same file or version inserted by another run meanwhile: look again
            continue
    return False


def stored_files(engine: Engine, version_id: int) -> dict[str, bytes] | None:
    """A kept version's files by path; None when the version's files were not kept."""
    with Session(engine) as session:
        row = session.get(VersionFiles, version_id)
        if row is None:
            return None
        if row.manifest is None:  # kept before revision 0004: one zip
            with zipfile.ZipFile(io.BytesIO(row.archive)) as zf:
                return {name: zf.read(name) for name in zf.namelist()}
        manifest = dict(row.manifest)
        wanted = set(manifest.values())
        blobs = {b.sha256: b.data for b in session.scalars(select(FileBlob).where(FileBlob.sha256.in_(list(wanted))))}
    missing = wanted - set(blobs)
    if missing:
        raise ValueError(f"stored files of version {version_id} are incomplete: {len(missing)} file(s) missing.")
    return {name: blobs[sha] for name, sha in manifest.items()}


def restore(engine: Engine, version_id: int, entry_name: str, parent: Path) -> Entry | None:
    """Write a stored version's files into ``parent/entry_name`` and describe it; None when its files were not kept."""
    files = stored_files(engine, version_id)
    if files is None:
        return None
    folder = parent / entry_name
    folder.mkdir(parents=True, exist_ok=False)
    for name, data in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"stored files of version {version_id} hold an unsafe path {name!r}.")
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return load_entry(folder)
