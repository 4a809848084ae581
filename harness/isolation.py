"""Run each entry in its own process, with a time limit and a memory limit.

Processes are forked from a fork server that has already imported torch, so isolation costs
milliseconds per entry instead of a fresh interpreter's seconds. A crash, hang, memory blow-up or
``sys.exit`` in an entry ends only that entry's process; the harness records why.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.contract import EntryMetadata

GIB = 1024 ** 3
POLL_SECONDS = 0.02
LOG_FILE = "entry.log"
LOG_LIMIT = 20_000  # characters of an entry's own output kept with its evaluation


@dataclass
class Outcome:
    result: dict          # the worker's result.json (status ok/failed, error, timings...)
    seconds: float        # wall time of the whole child process
    peak_rss: int         # bytes
    log: str              # what the entry printed, truncated


_context: mp.context.ForkServerContext | None = None


def context(preload_torchvision: bool = False) -> mp.context.BaseContext:
    """The fork-server context, with torch (and torchvision when entries use it) imported once."""
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(["harness.worker"] + (["torchvision"] if preload_torchvision else []))
    return _context


def _child(folder: str, metadata: EntryMetadata, inputs: dict[str, str], out_dir: str, device: str,
           batch_size: int | None, memory_limit: int) -> None:
    os.setpgrp()  # own process group: a timeout kills everything the entry started
    log = os.open(os.path.join(out_dir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if device != "cuda" and memory_limit:
        # CUDA maps huge virtual ranges, so the address-space cap only applies to CPU runs; the parent
        # also watches resident memory in both cases.
        vms = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vms + memory_limit, vms + memory_limit))
    from harness import worker
    worker.main(folder, metadata, inputs, out_dir, device, batch_size)
    os._exit(0)  # skip atexit hooks an entry may have registered


@contextlib.contextmanager
def _main_module_hidden():
    """Start children without re-running the caller's ``__main__`` (a script, pytest, streamlit) in them.

    multiprocessing re-imports the main module in every fork-server child; the child only needs
    ``harness.isolation._child``, so the main module's name and path are hidden while the child starts.
    """
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_result(out_dir: Path) -> dict | None:
    path = out_dir / "result.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("status") not in ("ok", "failed"):
        return None
    return data


def _read_log(out_dir: Path) -> str:
    try:
        text = (out_dir / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    return text if len(text) <= LOG_LIMIT else text[:LOG_LIMIT // 2] + "\n[… log truncated …]\n" + text[-LOG_LIMIT // 2:]


def run_isolated(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, *,
                 device: str = "auto", timeout: float = 300.0, memory_limit: int = 8 * GIB,
                 batch_size: int | None = None, preload_torchvision: bool = False) -> Outcome:
    """Evaluate one entry in a fresh child process and say how it ended."""
    ctx = context(preload_torchvision)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = ctx.Process(target=_child, args=(str(folder), metadata, {k: str(v) for k, v in inputs.items()},
                                            str(out_dir), device, batch_size, memory_limit), daemon=True)
    started = time.perf_counter()
    with _main_module_hidden():
        proc.start()
    watched = psutil.Process(proc.pid)
    peak, reason = 0, None
    while proc.is_alive():
        proc.join(POLL_SECONDS)
        elapsed = time.perf_counter() - started
        try:
            peak = max(peak, _tree_rss(watched))
        except psutil.Error:
            pass
        if memory_limit and peak > memory_limit:
            reason = (f"used more than {memory_limit / GIB:.1f} GiB of memory and was stopped; make the model or its "
                      "batch smaller, or raise --memory-limit.")
        elif elapsed > timeout:
            reason = f"took longer than {timeout:g} s and was stopped; make the model faster or raise --timeout."
        if reason:
            _kill_group(proc.pid)
            proc.join(5)
            break
    seconds = time.perf_counter() - started
    _kill_group(proc.pid)  # anything the entry left running in its group
    result = None if reason else _read_result(out_dir)
    if result is None:
        if reason is None:
            code = proc.exitcode
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                hint = " (likely out of memory)" if -code == signal.SIGKILL else ""
                reason = f"the entry's process was killed by {name}{hint} before it finished."
            else:
                reason = f"the entry's process exited with code {code} before it finished (does the model call os._exit?)."
        result = {"status": "failed", "error": reason}
    return Outcome(result=result, seconds=seconds, peak_rss=peak, log=_read_log(out_dir))
