"""Resource limits applied inside an entry's own process, sandboxed or not (called in the forked child)."""

from __future__ import annotations

import math
import os
import resource

import psutil


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
