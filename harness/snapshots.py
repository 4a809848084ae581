"""Each entry version's files, kept in the store as a zip, so that a version can be scored after its folder changed.

This is what lets the harness rank the version submitted before the deadline even when the member has
since replaced it, and re-score it when the guest digits arrive after the deadline.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harness.contract import entry_files
from harness.db import VersionFiles
from harness.discovery import Entry, load_entry


def archive(folder: Path) -> bytes:
    """The entry's files (those its content hash covers) as an uncompressed zip with fixed timestamps
    (weights barely compress: deflate saved 9% of a CNN's archive and cost 0.18 s per entry)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in entry_files(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def keep(engine: Engine, version_id: int, entry: Entry) -> bool:
    """Store the files of ``entry`` for ``version_id`` unless already stored; True when stored now."""
    with Session(engine) as session:
        if session.scalar(select(VersionFiles.version_id).where(VersionFiles.version_id == version_id)) is not None:
            return False
    data = archive(entry.folder)
    try:
        with Session(engine) as session, session.begin():
            session.add(VersionFiles(version_id=version_id, archive=data))
    except IntegrityError:  # a concurrent run stored the same version first
        return False
    return True


def restore(engine: Engine, version_id: int, entry_name: str, parent: Path) -> Entry | None:
    """Unpack a stored version into ``parent/entry_name`` and describe it; None when its files were not kept."""
    with Session(engine) as session:
        data = session.scalar(select(VersionFiles.archive).where(VersionFiles.version_id == version_id))
    if data is None:
        return None
    folder = parent / entry_name
    folder.mkdir(parents=True, exist_ok=False)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"stored files of version {version_id} hold an unsafe path {name!r}.")
            target = folder.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    return load_entry(folder)
