"""Run each entry in its own process, with limits on time, memory, CPU time and (sandboxed) processes.

Processes are forked from a fork server that has already imported torch, so isolation costs
milliseconds per entry instead of a fresh interpreter's seconds. Where bubblewrap works the fork server
runs inside its sandbox (``harness.sandbox``); elsewhere it is multiprocessing's fork server and the
outcome says ``sandboxed=False``. A crash, hang, memory blow-up or ``sys.exit`` in an entry ends only
that entry's process; the harness records why.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness import limits, sandbox, sandbox_server
from harness.contract import EntryMetadata

GIB = 1024 ** 3
POLL_SECONDS = 0.02  # memory and time checks of the running entry
LIST_SECONDS = 0.5   # how often the entry's process tree is listed again (it may fork)
LOG_FILE = "entry.log"
LOG_LIMIT = 20_000  # characters of an entry's own output kept with its evaluation


@dataclass
class Outcome:
    result: dict          # the worker's result.json (status ok/failed, error, timings...)
    seconds: float        # wall time of the whole child process
    peak_rss: int         # bytes
    log: str              # what the entry printed, truncated
    sandboxed: bool = False  # ran inside the bubblewrap sandbox (False: a plain child process)


_context: mp.context.ForkServerContext | None = None
_job_lock = threading.Lock()  # the sandbox runs one entry at a time (the dashboard may call from threads)


def context(preload_torchvision: bool = False) -> mp.context.BaseContext:
    """The fork-server context, with torch (and torchvision when entries use it) imported once."""
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(["harness.worker"] + (["torchvision"] if preload_torchvision else []))
    return _context


def _child(folder: str, metadata: EntryMetadata, inputs: dict[str, str], out_dir: str, device: str,
           batch_size: int | None, memory_limit: int, cpu_seconds: int) -> None:
    os.setpgrp()  # own process group: a timeout kills everything the entry started
    log = os.open(os.path.join(out_dir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    limits.limit_process(memory_limit, device, cpu_seconds)
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


class _ForkedJob:
    """An entry's process forked by multiprocessing's fork server (no sandbox)."""

    def __init__(self, proc: mp.Process):
        self.proc = proc
        self.watched = psutil.Process(proc.pid)

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode

    def wait(self, seconds: float) -> bool:
        self.proc.join(seconds)
        return not self.proc.is_alive()

    def processes(self) -> list[psutil.Process]:
        return [self.watched] + self.watched.children(recursive=True)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, out_dir: Path) -> None:
        pass  # the child wrote straight into out_dir


def _memory(procs: list[psutil.Process]) -> int:
    """Resident memory of the entry's processes; proportional (PSS) once there are several, so that forked
    copies sharing the same pages are not counted many times over."""
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss if len(procs) > 1 else p.memory_info().rss
        except psutil.Error:
            pass
    return total


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


def _exit_reason(code: int | None, cpu_seconds: int) -> str:
    if code is not None and code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGXCPU:
            return f"used more than {cpu_seconds} s of CPU time and was stopped; make the model faster."
        if sig == signal.SIGXFSZ:
            return f"wrote a file larger than {sandbox_server.FILE_LIMIT / GIB:.0f} GiB and was stopped."
        hint = " (likely out of memory)" if sig == signal.SIGKILL else ""
        return f"the entry's process was killed by {sig.name}{hint} before it finished."
    return f"the entry's process exited with code {code} before it finished (does the model call os._exit?)."


def _watch(job, timeout: float, memory_limit: int) -> tuple[float, int, str | None]:
    """Poll the entry until it ends or breaks a limit: (seconds, peak memory, reason it was stopped)."""
    started = time.perf_counter()
    peak, reason = 0, None
    procs, listed_at = [], float("-inf")
    while not job.wait(POLL_SECONDS):
        elapsed = time.perf_counter() - started
        if not procs or elapsed - listed_at >= LIST_SECONDS:
            # listing the process tree scans all of /proc: on 2 cores, doing it every poll slowed the model
            procs, listed_at = job.processes(), elapsed
        try:
            peak = max(peak, _memory(procs))
        except psutil.Error:
            pass
        if memory_limit and peak > memory_limit:
            reason = (f"used more than {memory_limit / GIB:.1f} GiB of memory and was stopped; make the model or its "
                      "batch smaller, or raise --memory-limit.")
        elif elapsed > timeout:
            reason = f"took longer than {timeout:g} s and was stopped; make the model faster or raise --timeout."
        if reason:
            job.kill()
            job.wait(5)
            break
    seconds = time.perf_counter() - started
    job.kill()  # anything the entry left running
    return seconds, peak, reason


def _start_forked(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, device: str,
                  batch_size: int | None, memory_limit: int, cpu_seconds: int, preload_torchvision: bool) -> _ForkedJob:
    ctx = context(preload_torchvision)
    proc = ctx.Process(target=_child, args=(str(folder), metadata, {k: str(v) for k, v in inputs.items()},
                                            str(out_dir), device, batch_size, memory_limit, cpu_seconds), daemon=True)
    with _main_module_hidden():
        proc.start()
    return _ForkedJob(proc)


def needs_torchvision(entries) -> bool:
    """Whether any entry's model.py mentions torchvision (then the fork server imports it once for all)."""
    return any("torchvision" in (e.folder / "model.py").read_text(errors="ignore")
               for e in entries if (e.folder / "model.py").is_file())


def prestart(preload_torchvision: bool = False) -> None:
    """Start the shared sandbox without waiting (its server imports torch, about 2 s) while the caller loads the
    datasets; the first entry then finds it ready. Call it from the thread that runs the entries."""
    with _job_lock:
        sandbox.prestart(["torchvision"] if preload_torchvision else [])


def run_isolated(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, *,
                 device: str = "auto", timeout: float = 300.0, memory_limit: int = 8 * GIB,
                 batch_size: int | None = None, preload_torchvision: bool = False,
                 sandboxed: bool | None = None) -> Outcome:
    """Evaluate one entry in a fresh child process and say how it ended.

    ``sandboxed``: None uses the bubblewrap sandbox where it works (else a plain process, with one
    warning); False never uses it; True requires it (RuntimeError where it cannot run).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    preload = ["torchvision"] if preload_torchvision else []
    cpu = limits.cpu_seconds(timeout)
    with _job_lock:
        box = None if sandboxed is False else sandbox.shared(preload)
        if sandboxed and box is None:
            raise RuntimeError(f"the sandbox cannot run here: {sandbox.unavailable_reason()}")
        if box is not None:
            try:
                job = box.start(folder, metadata, inputs, device, batch_size, memory_limit, timeout, preload)
            except (sandbox.SandboxError, OSError) as exc:
                box.close()
                return Outcome(result={"status": "failed", "error": f"the sandbox could not start the entry ({exc})."},
                               seconds=0.0, peak_rss=0, log="", sandboxed=True)
        else:
            job = _start_forked(folder, metadata, inputs, out_dir, device, batch_size, memory_limit, cpu,
                                preload_torchvision)
        try:
            seconds, peak, reason = _watch(job, timeout, memory_limit)
            job.finish(out_dir)
        except sandbox.SandboxError as exc:
            box.close()
            seconds, peak, reason = 0.0, 0, f"the sandbox stopped while the entry ran ({exc})."
    result = None if reason else _read_result(out_dir)
    if result is None:
        result = {"status": "failed", "error": reason or _exit_reason(job.exitcode, cpu)}
    log = _read_log(out_dir)
    if box is not None:  # messages name the entry's folder as the member knows it, not the sandbox's path
        if result.get("error"):
            result["error"] = sandbox.host_paths(result["error"], folder)
        log = sandbox.host_paths(log, folder)
    return Outcome(result=result, seconds=seconds, peak_rss=peak, log=log, sandboxed=box is not None)
