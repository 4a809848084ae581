"""A cgroup of its own for each entry's processes, where the host lets the harness make one.

Its memory limit counts every page the entry's processes are charged for, including what no per-process figure
shows: ``memfd_create`` files, tmpfs and ``/dev/shm`` files, the page cache of what they read. The kernel holds the
limit (v1 ``memory.limit_in_bytes`` and, where there is one, ``memory.memsw.limit_in_bytes``; v2 ``memory.max`` and
``memory.swap.max`` 0); when it must kill for it, the cgroup counts an ``oom_kill`` and the harness says that the
entry used more than its memory limit. The peak is read from the cgroup (v1 ``memory.max_usage_in_bytes``, v2
``memory.peak``, else the largest ``memory.current`` seen). On v2 its freezer (``cgroup.freeze``) stops every process
in it at once, forks included; warm entries are frozen between requests. v1's freezer is not used: a task frozen there
ignores SIGKILL until thawed, so a harness killed with -9 would leave its entries frozen for ever (bwrap's
--die-with-parent and PR_SET_PDEATHSIG cannot end them); there, warm entries get SIGSTOP instead.

Where no cgroup can be made (a user's harness on v1, a v2 cgroup with processes of its own, a read-only
``/sys/fs/cgroup``) :func:`create` raises :class:`Unavailable` with the reason, and callers fall back to watching
the processes' resident memory, saying so in the result's protections.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
FREEZE_SECONDS = 2.0  # how long a freeze may take to settle before the caller falls back to SIGSTOP
_names = itertools.count()
_swept = False


class Unavailable(OSError):
    """No cgroup can be made here; the message says why."""


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller (and "" for the v2 hierarchy), from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_int(path: Path, key: str | None = None) -> int:
    """A number from a cgroup file: the whole file, or the line ``key N`` of a flat-keyed one (0 if absent)."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    if key is None:
        return int(text.split()[0]) if text.split() and text.split()[0].isdigit() else 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


class Cgroup:
    """One entry's cgroup, below the harness's own: its folder, and on v2 the same folder as its freezer."""

    def __init__(self, memory: Path, freezer: Path | None, v2: bool, limit: int):
        self.memory, self.freezer, self.v2, self.limit = memory, freezer, v2, limit
        self._peak_seen = 0

    @property
    def folders(self) -> list[Path]:
        return [self.memory] + ([self.freezer] if self.freezer and self.freezer != self.memory else [])

    def add(self, pid: int) -> None:
        """Move process ``pid`` (0: the calling process) into the cgroup (every hierarchy it has)."""
        for folder in self.folders:
            _write(folder / "cgroup.procs", str(pid))

    def _procs(self) -> list[int]:
        return [int(p) for p in (self.memory / "cgroup.procs").read_text().split()]

    def pids(self) -> list[int]:
        """The processes in the cgroup ([] when that cannot be read)."""
        try:
            return self._procs()
        except (OSError, ValueError):
            return []

    def empty(self) -> bool:
        """Whether no process is in the cgroup (False when that cannot be read)."""
        try:
            return not self._procs()
        except (OSError, ValueError):
            return False

    def usage(self) -> int:
        return _read_int(self.memory / ("memory.current" if self.v2 else "memory.usage_in_bytes"))

    @property
    def keeps_peak(self) -> bool:
        """Whether the kernel keeps the peak itself (v1 always; v2 from Linux 5.19, ``memory.peak``), so that nobody
        needs to watch the memory to know it."""
        return not self.v2 or (self.memory / "memory.peak").exists()

    def peak(self) -> int:
        """The most memory the cgroup has held, in bytes (every page charged to it)."""
        if self.v2:
            kernel = _read_int(self.memory / "memory.peak")
            self._peak_seen = max(self._peak_seen, kernel or self.usage())
        else:
            self._peak_seen = max(self._peak_seen, _read_int(self.memory / "memory.max_usage_in_bytes"))
        return self._peak_seen

    def over_limit(self) -> bool:
        """Whether the kernel had to kill one of its processes to keep the memory limit."""
        if self.v2:
            return _read_int(self.memory / "memory.events", "oom_kill") > 0
        control = self.memory / "memory.oom_control"
        return _read_int(control, "oom_kill") > 0 or _read_int(control, "under_oom") > 0

    def freeze(self) -> bool:
        """Stop every process in the cgroup; True once the kernel says they all are (False: no freezer here)."""
        return self._set_frozen(True)

    def thaw(self) -> bool:
        return self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> bool:
        if self.freezer is None:
            return False
        try:
            _write(self.freezer / "cgroup.freeze", "1" if frozen else "0")
        except OSError:
            return False
        deadline = time.monotonic() + FREEZE_SECONDS
        while time.monotonic() < deadline:
            if _read_int(self.freezer / "cgroup.events", "frozen") == int(frozen):
                return True
            time.sleep(0.005)
        return False

    def remove(self) -> None:
        """Remove the cgroup's folders once its processes are gone."""
        self.thaw()
        for folder in self.folders:
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the last processes are being reaped


def create(memory_limit: int, kind: str = "entry") -> Cgroup:
    """A new cgroup ``harness-<pid>-<kind>-<n>`` below this process's own, with ``memory_limit`` bytes (0: none);
    :class:`Unavailable` with the reason where the host does not allow it."""
    global _swept
    if not _swept:  # once per process: what a harness killed with -9 left (its entries died with it)
        _swept = True
        remove_dead(_alive)
    name = f"harness-{os.getpid()}-{kind}-{next(_names)}"
    try:
        own = _own_paths()
    except (OSError, ValueError) as exc:
        raise Unavailable(f"/proc/self/cgroup cannot be read ({exc})") from None
    made: list[Path] = []
    try:
        if (ROOT / "memory").is_dir() and "memory" in own:  # v1 (alone, or hybrid with an empty unified tree)
            memory = ROOT / "memory" / own["memory"].lstrip("/") / name
            memory.mkdir()
            made.append(memory)
            if memory_limit:
                _write(memory / "memory.limit_in_bytes", str(memory_limit))
                if (memory / "memory.memsw.limit_in_bytes").exists():  # swap counts too: nothing escapes to it
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_limit))
            return Cgroup(memory, None, False, memory_limit)
        if (ROOT / "cgroup.controllers").exists() and "" in own:  # v2, the unified hierarchy
            parent = ROOT / own[""].lstrip("/")
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                _write(parent / "cgroup.subtree_control", "+memory")  # EBUSY where the parent holds processes
            group = parent / name
            group.mkdir()
            made.append(group)
            if memory_limit:
                _write(group / "memory.max", str(memory_limit))
                if (group / "memory.swap.max").exists():
                    _write(group / "memory.swap.max", "0")
            return Cgroup(group, group if (group / "cgroup.freeze").exists() else None, True, memory_limit)
        raise Unavailable("no cgroup memory controller is mounted under /sys/fs/cgroup")
    except OSError as exc:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, Unavailable):
            raise
        raise Unavailable(f"no cgroup can be made here ({exc.strerror or exc})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_dead(alive) -> list[Path]:
    """Remove the empty ``harness-<pid>-...`` cgroups of harness processes that are gone (``alive(pid)`` False),
    below this process's own cgroup in each hierarchy; what was removed."""
    removed = []
    try:
        own = _own_paths()
    except (OSError, ValueError):
        return removed
    parents = [ROOT / c / p.lstrip("/") for c, p in own.items() if c == "memory"]
    if (ROOT / "cgroup.controllers").exists() and "" in own:
        parents.append(ROOT / own[""].lstrip("/"))
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            parts = name.split("-")
            if len(parts) < 3 or parts[0] != "harness" or not parts[1].isdigit() or int(parts[1]) == os.getpid():
                continue
            if alive(int(parts[1])):
                continue
            try:
                (parent / name).rmdir()  # only empty ones: a cgroup with processes refuses
                removed.append(parent / name)
            except OSError:
                pass
    return removed
