"""Temporary folders named after their owner process, and whether a process is gone.

Temporary folders carry their owner's pid in their name (``harness-<pid>-<kind>-...``), so that those of a process
killed with ``kill -9`` can be found and removed at the next start (``remove_dead_folders``). A process is known by
its pid and its start time (the pair survives pid reuse): ``this_process`` says what a run records, ``gone`` whether
that process has ended. What a killed run left in the store is ``harness.store.leftovers``'s.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psutil

from harness.common import trees

PID_FOLDER = re.compile(r"^harness-(\d+)-")
CLOCK_SLACK = 1.0  # seconds: a process's start time as computed at two moments can differ by the boot-time rounding


def this_process() -> tuple[str, int, datetime]:
    """(host, pid, start time as naive UTC) of this process, as a run records them."""
    return socket.gethostname(), os.getpid(), _started(psutil.Process())


def _started(process: psutil.Process) -> datetime:
    return datetime.fromtimestamp(process.create_time(), UTC).replace(tzinfo=None)


def gone(pid: int, started: datetime | None = None) -> bool:
    """Whether the process ``pid`` (started at ``started``, when known) has ended on this host."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        return started is not None and abs((_started(process) - started).total_seconds()) > CLOCK_SLACK
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to look at: it exists
        return False


def temp_folder(kind: str) -> Path:
    """A new private folder ``harness-<pid>-<kind>-...`` in the temporary directory, removable once we are gone."""
    return Path(tempfile.mkdtemp(prefix=f"harness-{os.getpid()}-{kind}-"))


def remove_dead_folders(parent: Path | None = None) -> list[Path]:
    """Remove the ``harness-<pid>-...`` folders of processes that are gone; returns what was removed.

    Only real folders owned by this user are touched (an unsandboxed entry could leave a link or a folder with a
    made-up pid), and only those modified before a live process with that pid started are treated as its
    predecessor's."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = PID_FOLDER.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        path = parent / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or not _owner_gone(int(match.group(1)), info):
            continue
        if trees.remove(path):  # whatever an entry left in it: deep, locked, oddly named
            removed.append(path)
    return removed


def _owner_gone(pid: int, info: os.stat_result) -> bool:
    """The folder's owner has ended: no such process, or the pid's process started after the folder last changed."""
    if gone(pid):
        return True
    try:
        return psutil.Process(pid).create_time() > info.st_mtime + CLOCK_SLACK
    except psutil.Error:
        return False
