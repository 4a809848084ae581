"""Run each entry in its own process, with limits on time, memory, CPU time and (sandboxed) processes.

Processes are forked from a fork server that has already imported torch, so isolation costs
milliseconds per entry instead of a fresh interpreter's seconds. Where bubblewrap works the fork server
runs inside its sandbox (``harness.isolation.sandbox``); elsewhere it is multiprocessing's fork server and the
outcome says ``sandboxed=False``. A crash, hang, memory blow-up or ``sys.exit`` in an entry ends only
that entry's process; the harness records why.

Without the sandbox, under a root harness, the entry's process still drops to an unprivileged user (it
keeps only the right to read files) before the model is imported, so the process, file-size and CPU
limits apply, and the fork server adopts whatever the entry leaves running, so all of it is killed at
the entry's end (``harness.isolation.reaper``). What it cannot give: a private view of the files.

The entry's speed is timed here, from outside its process: from the moment the images are handed over
(after the entry said it is loaded and warm) until its process exits (see ``harness.isolation.worker``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.isolation import limits
from harness.isolation import sandbox
from harness.isolation import sandbox_server
from harness.contract import EntryMetadata
from harness.isolation.exchange import READY_FILE, hand_over, head_and_tail

GIB = 1024 ** 3
POLL_SECONDS = 0.02  # memory and time checks of the running entry
LIST_SECONDS = 0.5   # how often the entry's process tree is listed again (it may fork)
LOG_FILE = "entry.log"


@dataclass
class Outcome:
    result: dict          # the worker's result.json (status ok/failed, error; nothing in it is ranked)
    seconds: float        # wall time of the whole child process
    peak_rss: int         # bytes
    log: str              # what the entry printed, truncated
    sandboxed: bool = False  # ran inside the bubblewrap sandbox (False: a plain child process)
    timed_seconds: float | None = None  # measured here: from handing over the images until the process exited
    protections: tuple[str, ...] = ()   # what isolation was missing (empty when sandboxed)


_context: mp.context.ForkServerContext | None = None
_job_lock = threading.Lock()  # the sandbox runs one entry at a time (the dashboard may call from threads)


def context(preload_torchvision: bool = False) -> mp.context.BaseContext:
    """The fork-server context, with torch (and torchvision when entries use it) imported once; the fork server
    adopts the processes entries leave behind (``harness.isolation.reaper``)."""
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(["harness.isolation.reaper", "harness.isolation.worker"] +
                                        (["torchvision"] if preload_torchvision else []))
    return _context


def entry_user() -> int | None:
    """The uid an unsandboxed entry runs as: nobody under a root harness (so that limits apply), else None (it
    keeps the harness user's identity)."""
    return sandbox_server.NOBODY if os.getuid() == 0 else None


def missing_protections(sandboxed: bool, uid: int | None) -> tuple[str, ...]:
    """What an entry's process could do that the sandbox would have stopped, in a few words each."""
    if sandboxed:
        return ()
    missing = ["read any file this user can (including the guest's labels and the database)", "use the network"]
    if uid is None:
        missing.append("write files and signal processes as the harness's own user")
    return tuple(missing)


def _child(folder: str, metadata: EntryMetadata, inputs: dict[str, str], out_dir: str, device: str,
           batch_size: int | None, memory_limit: int, cpu_seconds: int, tasks: int, file_size: int,
           uid: int | None) -> None:
    os.setsid()  # own session and process group: nothing the entry starts keeps the harness's terminal
    log = os.open(os.path.join(out_dir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    limits.limit_process(memory_limit, device, cpu_seconds, tasks, file_size)
    if uid is not None:
        limits.become_user(uid, keep_reading=True)
    limits.die_with_parent()  # a harness killed with -9 takes its fork server along, and the entry with it
    from harness.isolation import worker
    worker.main(folder, metadata, inputs, out_dir, device, batch_size)
    os._exit(0)  # skip atexit hooks an entry may have registered


@contextlib.contextmanager
def _main_module_hidden():
    """Start children without re-running the caller's ``__main__`` (a script, pytest, streamlit) in them.

    multiprocessing re-imports the main module in every fork-server child; the child only needs
    ``harness.isolation.process._child``, so the main module's name and path are hidden while the child starts.
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


def _forkserver() -> psutil.Process | None:
    """multiprocessing's fork server of this process (the adopter of what entries leave running), if it runs."""
    from multiprocessing import forkserver
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    try:
        return psutil.Process(pid) if pid else None
    except psutil.Error:
        return None


class _ForkedJob:
    """An entry's process forked by multiprocessing's fork server (no sandbox)."""

    def __init__(self, proc: mp.Process, out_dir: Path, inputs: dict[str, Path], staged: dict[str, Path]):
        self.proc, self.out_dir, self.inputs, self.staged = proc, out_dir, inputs, staged
        self.server = _forkserver()
        self.log_bytes = 0

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode

    def wait(self, seconds: float) -> bool:
        self.proc.join(seconds)
        return not self.proc.is_alive()

    def ready(self) -> bool:
        return (self.out_dir / READY_FILE).exists()

    def go(self) -> None:
        hand_over(self.inputs, self.staged)

    def processes(self) -> list[psutil.Process]:
        """The entry's process and everything it started, orphans included (the fork server adopts them)."""
        try:
            if self.server is not None:
                return self.server.children(recursive=True)
            return [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def kill(self) -> None:
        """SIGKILL the entry's process group and every process it left, until none is left (daemons included)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        sandbox.kill_all(self.processes)

    def finish(self, out_dir: Path) -> None:
        """The child wrote straight into out_dir; note how much it printed."""
        try:
            self.log_bytes = (out_dir / LOG_FILE).lstat().st_size
        except OSError:
            self.log_bytes = 0


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
    """What the entry printed, cut to its start and end."""
    return head_and_tail(out_dir / LOG_FILE)[0].decode("utf-8", errors="replace")


def _exit_reason(code: int | None, cpu_seconds: int, log_bytes: int = 0) -> str:
    if code is not None and code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGXCPU:
            return (f"used more than its CPU-time limit of {cpu_seconds} s (all cores busy for the whole time limit) "
                    "and was stopped; make the model faster or raise the time limit.")
        if sig == signal.SIGXFSZ:
            return f"wrote a file larger than {sandbox_server.FILE_LIMIT / GIB:.0f} GiB and was stopped."
        hint = " (likely out of memory)" if sig == signal.SIGKILL else ""
        return f"the entry's process was killed by {sig.name}{hint} before it finished."
    if log_bytes >= sandbox_server.FILE_LIMIT:
        return (f"the entry's process printed more than {sandbox_server.FILE_LIMIT / GIB:.0f} GiB of output (the "
                f"limit of one file) and then exited with code {code}; print less.")
    return (f"the entry's process exited with code {code} before it reported a result (os._exit or sys.exit from a "
            "thread, or a crash in native code); see its log.")


@dataclass
class _Watched:
    seconds: float               # wall time of the whole process
    peak: int                    # bytes
    reason: str | None           # why it was stopped, if it was
    timed: float | None          # from go to the process's exit, if it got that far


def _watch(job, timeout: float, memory_limit: int) -> _Watched:
    """Poll the entry until it ends or breaks a limit; hand over its images once it says it is ready and time it
    from then until its process exits (the exit wakes the wait at once, so the clock stops without polling)."""
    started = time.perf_counter()
    peak, reason, went = 0, None, None
    procs, listed_at = [], float("-inf")
    while True:
        if job.wait(POLL_SECONDS):
            ended = time.perf_counter()
            break
        elapsed = time.perf_counter() - started
        if went is None and job.ready():
            job.go()
            went = time.perf_counter()
        if not procs or elapsed - listed_at >= LIST_SECONDS:
            # listing the process tree scans all of /proc: on 2 cores, doing it every poll slowed the model
            procs, listed_at = job.processes(), elapsed
        try:
            peak = max(peak, _memory(procs))
        except psutil.Error:
            pass
        if memory_limit and peak > memory_limit:
            reason = (f"used more than its memory limit of {memory_limit / GIB:.1f} GiB and was stopped; make the "
                      "model or its batch smaller, or raise the memory limit.")
        elif elapsed > timeout:
            reason = (f"took longer than its time limit of {timeout:g} s and was stopped; make the model faster or "
                      "raise the time limit.")
        if reason:
            job.kill()
            job.wait(5)
            ended = time.perf_counter()
            break
    job.kill()  # anything the entry left running
    return _Watched(ended - started, peak, reason, None if went is None or reason else ended - went)


def _start_forked(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, device: str,
                  batch_size: int | None, memory_limit: int, cpu_seconds: int, preload_torchvision: bool,
                  uid: int | None) -> _ForkedJob:
    """Fork the entry from multiprocessing's fork server; its images are staged in a folder of their own only at
    go. Under a root harness its output folder belongs to the user it runs as."""
    ctx = context(preload_torchvision)
    staging = out_dir.with_name(out_dir.name + ".in")
    shutil.rmtree(staging, ignore_errors=True)  # a go left by an earlier call would start the clock too early
    staging.mkdir(parents=True)
    staged = {kind: staging / path.name for kind, path in inputs.items()}
    if uid is not None:
        os.chown(out_dir, uid, uid)
    tasks = sandbox.tasks_of(os.getuid() if uid is None else uid) + sandbox.TASK_HEADROOM
    proc = ctx.Process(target=_child, args=(str(folder), metadata, {k: str(v) for k, v in staged.items()},
                                            str(out_dir), device, batch_size, memory_limit, cpu_seconds, tasks,
                                            sandbox_server.FILE_LIMIT, uid),
                       daemon=True)
    with _main_module_hidden():
        proc.start()
    return _ForkedJob(proc, out_dir, inputs, staged)


def needs_torchvision(entries) -> bool:
    """Whether any entry's model.py mentions torchvision (then the fork server imports it once for all)."""
    return any("torchvision" in (e.folder / "model.py").read_text(errors="ignore")
               for e in entries if (e.folder / "model.py").is_file())


def prestart(preload_torchvision: bool = False) -> None:
    """Start the shared sandbox without waiting (its server imports torch: seconds) while the caller loads the
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
    shutil.rmtree(out_dir, ignore_errors=True)  # nothing an earlier call left may pass for this one's result
    out_dir.mkdir(parents=True)
    preload = ["torchvision"] if preload_torchvision else []
    cpu = limits.cpu_seconds(timeout)
    uid = entry_user()
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
            try:
                job = _start_forked(folder, metadata, inputs, out_dir, device, batch_size, memory_limit, cpu,
                                    preload_torchvision, uid)
            except (OSError, psutil.Error) as exc:
                return Outcome(result={"status": "failed", "error": f"the entry's process could not start ({exc})."},
                               seconds=0.0, peak_rss=0, log="", protections=missing_protections(False, uid))
        try:
            watched = _watch(job, timeout, memory_limit)
            job.finish(out_dir)
        except sandbox.SandboxError as exc:
            box.close()
            watched = _Watched(0.0, 0, f"the sandbox stopped while the entry ran ({exc}).", None)
    result = None if watched.reason else _read_result(out_dir)
    log = _read_log(out_dir)
    if result is None:
        result = {"status": "failed", "error": watched.reason or _exit_reason(job.exitcode, cpu, job.log_bytes)}
    if box is not None:  # messages name the entry's folder as the member knows it, not the sandbox's path
        if result.get("error"):
            result["error"] = sandbox.host_paths(result["error"], folder)
        log = sandbox.host_paths(log, folder)
    return Outcome(result=result, seconds=watched.seconds, peak_rss=watched.peak, log=log, sandboxed=box is not None,
                   timed_seconds=watched.timed if result.get("status") == "ok" else None,
                   protections=missing_protections(box is not None, uid))
