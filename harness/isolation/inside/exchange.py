"""The files exchanged with an entry's process, sandboxed or not: its images, handed over only at ``go``, its
progress (its phase, loading or warming up, then images done so far: only ever used to show progress and to stop
early, never ranked), and its log, read
back cut to its start and end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

READY_FILE, GO_FILE = "ready", "go"  # the entry says ready in its output folder; the host says go beside the images
PROGRESS_FILE = "progress"  # images done so far, written by the entry's process in its output folder
LOADING, WARMING_UP = "loading", "warming up"  # what the progress file says before the first image is done
PHASES = (LOADING, WARMING_UP)
PROGRESS_WIDTH = 20  # the count is rewritten in place, padded to this many characters
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


def write_progress(fd: int, done: int) -> None:
    """Rewrite the count of images done at the start of the open progress file (inside the entry's process)."""
    os.pwrite(fd, f"{done:>{PROGRESS_WIDTH}}\n".encode(), 0)


def write_phase(fd: int, phase: str) -> None:
    """Say the phase (one of PHASES) at the start of the open progress file, until the first count replaces it."""
    os.pwrite(fd, f"{phase:>{PROGRESS_WIDTH}}\n".encode(), 0)


def _read_line(out_dir: Path) -> str:
    """The progress file's line ("" when absent or unreadable); never follows a link nor reads more than one line."""
    try:
        fd = os.open(out_dir / PROGRESS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        return os.read(fd, PROGRESS_WIDTH + 1).decode("ascii", errors="replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


def read_progress(out_dir: Path) -> int:
    """The entry's own count of images done (0 when absent, unreadable or still a phase). It is the entry's claim:
    good only for showing progress and for stopping early."""
    try:
        return max(int(_read_line(out_dir) or 0), 0)
    except ValueError:
        return 0


def read_phase(out_dir: Path) -> str | None:
    """What the entry's process says it is doing before its first image is done: one of PHASES, else None. Its
    claim, good only for showing progress."""
    line = _read_line(out_dir)
    return line if line in PHASES else None


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
