"""The files exchanged with an entry's process, sandboxed or not: its images, handed over only at ``go``, and its
log, read back cut to its start and end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

READY_FILE, GO_FILE = "ready", "go"  # the entry says ready in its output folder; the host says go beside the images
LOG_LIMIT = 20_000  # bytes of an entry's own output kept with its evaluation (its start and its end)


def hand_over(inputs: dict[str, Path], staged: dict[str, Path]) -> None:
    """Put the images where the entry will read them, then write ``go`` beside them (the entry waits for it)."""
    for kind, path in inputs.items():
        try:
            os.link(path, staged[kind])
        except OSError:
            shutil.copyfile(path, staged[kind])
        os.chmod(staged[kind], 0o644)
    if staged:
        go = next(iter(staged.values())).parent / GO_FILE
        go.touch()
        os.chmod(go, 0o644)


def head_and_tail(path: Path, limit: int = LOG_LIMIT) -> tuple[bytes, int]:
    """The first and last ``limit // 2`` bytes of a file, with a line saying how much was cut between them, and
    the file's size; never reads more than ``limit`` bytes (an entry's log can be a gigabyte) nor follows a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b"", 0
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fd).st_size
        if size <= limit:
            return fh.read(limit), size
        head = fh.read(limit // 2)
        fh.seek(size - limit // 2)
        return head + f"\n[… {size - limit // 2 * 2:,} bytes of output cut …]\n".encode() + fh.read(limit // 2), size


def copy_log(src: Path, dst: Path) -> int:
    """Copy the start and end of the entry's log to ``dst``; returns the log's full size in bytes."""
    data, size = head_and_tail(src)
    dst.write_bytes(data)
    return size
