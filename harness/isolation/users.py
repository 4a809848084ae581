"""A uid of its own for each unsandboxed entry under a root harness, so that it can signal no process but its own.

Entries once all ran as nobody (65534), which they shared with every warm entry of the Draw page, other runs' entries
and whatever else runs as nobody on the machine: any of them could kill the others. Each entry's process now gets a
uid drawn from a range no account uses (``FIRST_UID`` upwards, never listed in /etc/passwd), checked unused by any
process, and reserved with a lock file in a folder only root can write, held until the entry's processes are all
gone, so that two harness processes never hand out the same uid. The uid is drawn at random from 16 million, so a
later entry is most unlikely to get the uid of an earlier one (whose files in /tmp it could then read).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import random
import stat
import tempfile
from pathlib import Path

import psutil

FIRST_UID = 2 ** 20
COUNT = 2 ** 24
TRIES = 64


def lock_folders() -> list[Path]:
    """Where the reservations live, in order of preference: both writable by root alone."""
    return [Path("/run/harness-uids"), Path(tempfile.gettempdir()) / "harness-uids-0"]


class EntryUser:
    """A reserved uid; :meth:`release` once every process that ran as it is gone."""

    def __init__(self, uid: int, lock: Path | None, fd: int | None):
        self.uid, self._lock, self._fd = uid, lock, fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self._lock is not None:
                self._lock.unlink(missing_ok=True)  # before closing: a waiter that locks it then sees it is stale
        finally:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"EntryUser({self.uid})"


def _lock_folder() -> Path | None:
    """A folder for the reservations that belongs to root and that nobody else may write (None: none can be had)."""
    for folder in lock_folders():
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            info = os.lstat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022:
            return folder
    return None


def uids_in_use() -> set[int]:
    """Every real, effective and saved uid of a process on this machine."""
    used = set()
    for p in psutil.process_iter(["uids"]):
        uids = p.info["uids"]
        if uids is not None:
            used.update(uids)
    return used


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _reserve(folder: Path, uid: int) -> int | None:
    """The open, locked reservation file of ``uid``, or None if another harness holds it."""
    path = folder / f"{uid}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.lstat(path).st_ino:  # released (unlinked) meanwhile: not a reservation
            raise BlockingIOError
    except OSError:
        os.close(fd)
        return None
    return fd


def allocate() -> EntryUser:
    """A uid of its own for one entry (its processes and nothing else run as it); OSError if none can be found."""
    folder = _lock_folder()
    used = uids_in_use()
    rng = random.SystemRandom()
    for _ in range(TRIES):
        uid = FIRST_UID + rng.randrange(COUNT)
        if uid in used or _has_account(uid):
            continue
        if folder is None:  # no safe place for reservations: 1 in 16 million that another harness draws it too
            return EntryUser(uid, None, None)
        fd = _reserve(folder, uid)
        if fd is None:
            continue
        user = EntryUser(uid, folder / f"{uid}.lock", fd)
        if uid in uids_in_use():  # a process started as it between the two looks
            user.release()
            continue
        return user
    raise OSError(f"no unused uid was found for the entry in {TRIES} tries")
