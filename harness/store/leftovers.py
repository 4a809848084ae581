"""What a harness process killed with ``kill -9`` leaves behind, and its removal at the next start.

Each run records its host, pid and the process's start time (the pair survives pid reuse). At the next start on
the same host, a "running" run whose process is gone is marked "interrupted" and its claims are released at once,
instead of after the claim lease; a run on another host keeps the lease rule, as this host cannot see its
processes. Temporary folders carry their owner's pid in their name (``harness-<pid>-<kind>-...``) and those of a
process that is gone are removed.
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
from sqlalchemy import Engine, delete, select, update

from harness.store import trees
from harness.store.schema import Claim, Run

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


def interrupt_dead_runs(engine: Engine) -> list[int]:
    """Mark this host's "running" runs whose process is gone as "interrupted" and release their claims at once."""
    host = socket.gethostname()
    with engine.connect() as connection:
        rows = connection.execute(select(Run.id, Run.pid, Run.process_started_at)
                                  .where(Run.status == "running", Run.host == host, Run.pid.is_not(None))).all()
    dead = [row.id for row in rows if gone(row.pid, row.process_started_at)]
    if dead:
        with engine.begin() as connection:
            connection.execute(update(Run).where(Run.id.in_(dead), Run.status == "running")
                               .values(status="interrupted"))
            connection.execute(delete(Claim).where(Claim.run_id.in_(dead)))
    return dead


def clean(engine: Engine) -> None:
    """At the start of a run: what killed harness processes on this host left in the store and on disk."""
    interrupt_dead_runs(engine)
    remove_dead_folders()
