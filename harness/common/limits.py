"""What an entry's process may use: one :class:`Limits` value, from the file to the process.

A command builds it once: from ``[limits]`` in competition.toml (``Competition.limits``), each value overridden by
its command-line flag when given, else the defaults below; the run loop and every backend pass it down unchanged to
the entry's process, and each evaluation stores the time and memory limits it ran under (``harness.verify`` re-runs
it under those). Each default is written here, once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from harness.contract import DEVICES

GIB = 1024 ** 3
DEFAULT_TIMEOUT = 300.0      # seconds per entry when neither the command line nor the rules set one
DEFAULT_MEMORY = 8 * GIB     # bytes per entry when the command line does not set it


def cpu_seconds(timeout: float) -> int:
    """The CPU-time cap that goes with a wall-clock timeout: every core busy for the whole timeout."""
    return math.ceil(timeout * (os.cpu_count() or 1)) + 1


@dataclass(frozen=True)
class Limits:
    """What an entry's process may use, set once by the command that runs it."""
    timeout: float = DEFAULT_TIMEOUT  # seconds of wall time for the whole process: loading, warm-up, predictions
    memory: int = DEFAULT_MEMORY      # bytes of resident memory, all the entry's processes together
    device: str = "auto"              # "auto" (a CUDA GPU where PyTorch sees one), "cpu" or "cuda"
    batch_size: int | None = None     # images per forward pass; None: the worker's default for the device
    gpu_memory: int | None = None     # bytes of GPU memory the entry may allocate on CUDA; None: as ``memory``

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}.")

    @property
    def cpu_seconds(self) -> int:
        """The CPU-time limit that goes with the time limit: every core busy for the whole of it."""
        return cpu_seconds(self.timeout)
