"""Resource limits applied inside an entry's own process, sandboxed or not (called in the forked child)."""

from __future__ import annotations

import ctypes
import math
import os
import resource

import psutil

PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def die_with_parent(signum: int = 9) -> None:
    """Send this process ``signum`` (SIGKILL) when its parent ends (set after any change of user, which clears it).
    Linux sends it when the parent *thread* that started this process ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def become_user(uid: int, keep_reading: bool = False) -> None:
    """Drop from root to ``uid`` for good (no setuid programs can bring root back).

    ``keep_reading`` keeps one capability, reading and listing any file (CAP_DAC_READ_SEARCH): an unsandboxed entry
    must still import Python from wherever it is installed (often under /root), and it could read those files as
    root anyway. Everything else root could do is gone: writing others' files, signalling their processes, and
    the exemption from the process limit (RLIMIT_NPROC does not apply to root).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if keep_reading and libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS) failed")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if keep_reading:
        caps = (_CapData * 2)()
        caps[0].effective = caps[0].permitted = 1 << CAP_DAC_READ_SEARCH
        if libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), caps) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def limit_process(memory_limit: int, device: str, cpu_seconds: int | None = None, tasks: int | None = None,
                  file_size: int | None = None) -> None:
    """Apply the entry's resource limits to the current process (called in the forked child)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if device != "cuda" and memory_limit:
        # CUDA maps huge virtual ranges, so the address-space cap only applies to CPU runs; the parent
        # also watches resident memory in both cases.
        vms = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vms + memory_limit, vms + memory_limit))
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    if tasks:
        resource.setrlimit(resource.RLIMIT_NPROC, (tasks, tasks))
    if file_size:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))


def cpu_seconds(timeout: float) -> int:
    """The CPU-time cap that goes with a wall-clock timeout: every core busy for the whole timeout."""
    return math.ceil(timeout * (os.cpu_count() or 1)) + 1
