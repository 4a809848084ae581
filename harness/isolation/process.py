"""Run each entry in its own process, with limits on time, memory, CPU time and (sandboxed) processes.

Processes are forked from a fork server that has already imported torch, so isolation costs milliseconds per entry
instead of a fresh interpreter's seconds. The fork server runs inside the bubblewrap sandbox where it works
(``harness.isolation.sandbox``); elsewhere it is multiprocessing's and the outcome says ``sandboxed=False``, and under
a root harness the entry's process drops to a uid of its own before the model is imported
(``harness.isolation.users``) while the fork server adopts and kills whatever it leaves running
(``harness.isolation.inside.reaper``). Memory is held by a cgroup of the entry's own where the host allows it
(``harness.isolation.cgroups``), else by a watch of resident memory. A crash, hang, memory blow-up or ``sys.exit``
ends only that entry's process; the harness records why.

The entry is timed here, on the host's clock, from handing over the images until its process exits (see
``harness.isolation.inside.worker``). Its progress file (phase, then images done) is only its claim: it is used to
show progress and to stop at once an entry whose speed says it cannot finish within its time limit.

What each mode lets an entry do, and why: docs/scoring.md, "Isolation and sandbox".
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.common import trees
from harness.common.limits import DEFAULT_MEMORY, DEFAULT_TIMEOUT, GIB, cpu_seconds
from harness.contract import EntryMetadata
from harness.isolation import cgroups, sandbox, sandbox_command, users
from harness.isolation.inside import sandbox_server, unsandboxed
from harness.isolation.inside.exchange import LOADING, READY_FILE, hand_over, head_and_tail, read_phase, read_progress
from harness.isolation.inside.unsandboxed import LOG_FILE, SCRATCH_SUFFIX

POLL_SECONDS = 0.02  # memory and time checks of the running entry
READY_POLL_SECONDS = 0.002  # how often a loading entry is asked whether it is ready (a file's existence: cheap)
LIST_SECONDS = 0.5   # how often the entry's process tree is listed again (it may fork)
PROGRESS_SECONDS = 0.1      # how often the entry's count of images done is read
ESTIMATE_AFTER_SECONDS = 2.0  # the speed must have been seen for this long since go before it can stop an entry
ESTIMATE_MARGIN = 1.2       # ... and the estimate must exceed the time limit by this factor


PREDICTING = "predicting"  # the phase once the images are handed over (before it: exchange.LOADING, WARMING_UP)


@dataclass(frozen=True)
class Progress:
    """How far an entry has got: its phase (loading, warming up, then predicting), images done (the entry's own
    count, capped at the total) of the total, and the seconds left at the speed timed on the host's clock since go
    (None until a first batch is done)."""
    done: int
    total: int
    seconds_left: float | None = None
    phase: str = PREDICTING


def describe(name: str, progress: Progress) -> str:
    """One entry's progress in a few words: "resnet18: loading", "resnet18: warming up", "resnet18: 1,280 of 10,100
    images, about 29 min left"."""
    if progress.phase != PREDICTING:
        return f"{name}: {progress.phase}"
    left = progress.seconds_left
    soon = f", about {duration(left)} left" if left and progress.done < progress.total else ""
    return f"{name}: {progress.done:,} of {progress.total:,} images{soon}"


def duration(seconds: float) -> str:
    """A duration in the words a person reads at a glance: 45 s, 12 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def over_time(needed: float, rate: float, total: int, timeout: float, device: str) -> str:
    """The sentence that stops an entry that cannot finish in time: the estimate and the ways out."""
    where = "GPU" if device == "cuda" else "CPU"
    return (f"needs about {duration(needed)} on this {where} ({rate:,.1f} images/s for {total:,} images), over its "
            f"time limit of {duration(timeout)}, and was stopped early; make the model faster, raise the time limit, "
            "run it on a GPU, or on a cluster.")


@dataclass
class RunOutcome:
    """How one run of an entry's process ended, measured here on the host (what ``run_isolated`` returns)."""
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
    adopts the processes entries leave behind (``harness.isolation.inside.reaper``)."""
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(["harness.isolation.inside.reaper", "harness.isolation.inside.worker",
                                         "harness.isolation.inside.unsandboxed"] +
                                        (["torchvision"] if preload_torchvision else []))
    return _context


def entry_user() -> users.EntryUser | None:
    """The user an unsandboxed entry runs as: under a root harness a uid of its own, reserved until it ends (so that
    limits apply and it can signal no other process: ``harness.isolation.users``), else None (it keeps the harness
    user's identity)."""
    return users.allocate() if os.getuid() == 0 else None


_cgroup_warned = False


def entry_cgroup(memory_limit: int, kind: str = "entry") -> tuple[cgroups.Cgroup | None, str | None]:
    """A cgroup of its own for the entry's processes, with ``memory_limit``; else None and why (said once)."""
    global _cgroup_warned
    try:
        return cgroups.create(memory_limit, kind), None
    except cgroups.Unavailable as exc:
        if not _cgroup_warned:
            _cgroup_warned = True
            print(f"warning: {cgroup_fallback(str(exc))}", file=sys.stderr)
        return None, str(exc)


def cgroup_fallback(reason: str) -> str:
    """The sentence that says what the memory limit cannot see without a cgroup."""
    return (f"the memory limit counts only the resident memory of the entry's processes ({reason}): memfd and tmpfs "
            "files escape it")


def missing_protections(sandboxed: bool, uid: int | None, cgroup_missing: str | None = None) -> tuple[str, ...]:
    """What an entry's process could do that the sandbox (or a cgroup) would have stopped, in a few words each."""
    missing = [] if sandboxed else ["read any file this user can (including the guest's labels and the database)",
                                    "use the network"]
    if not sandboxed and uid is None:
        missing.append("write files and signal processes as the harness's own user")
    if cgroup_missing:
        missing.append(f"hold memory beyond its limit in memfd or tmpfs files (no cgroup: {cgroup_missing})")
    return tuple(missing)


@contextlib.contextmanager
def _main_module_hidden():
    """Start children without re-running the caller's ``__main__`` (a script, pytest, streamlit) in them.

    multiprocessing re-imports the main module in every fork-server child; the child only needs
    ``harness.isolation.inside.unsandboxed.main``, so the main module's name and path are hidden while the child
    starts.
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

    def __init__(self, proc: mp.Process, out_dir: Path, inputs: dict[str, Path], staged: dict[str, Path],
                 cgroup: cgroups.Cgroup | None = None):
        self.proc, self.out_dir, self.inputs, self.staged, self.cgroup = proc, out_dir, inputs, staged, cgroup
        self.server = _forkserver()
        self.log_bytes = 0

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode

    def wait(self, seconds: float) -> bool:
        self.proc.join(seconds)
        return not self.proc.is_alive()

    def started(self) -> None:
        """Nothing to wait for: the process put itself into its cgroup."""

    def ready(self) -> bool:
        return (self.out_dir / READY_FILE).exists()

    def go(self) -> None:
        hand_over(self.inputs, self.staged)

    def progress(self) -> int:
        """The entry's own count of images done (shown, never ranked)."""
        return read_progress(self.out_dir)

    def phase(self) -> str | None:
        """What the entry's process says it is doing before its images: loading, warming up (shown, never ranked)."""
        return read_phase(self.out_dir)

    def processes(self) -> list[psutil.Process]:
        """The entry's process and everything it started, orphans included (the fork server adopts them, and its
        cgroup holds them all)."""
        try:
            if self.server is not None:
                procs = self.server.children(recursive=True)
            else:
                procs = [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            procs = []
        return procs + _cgroup_processes(self.cgroup, {p.pid for p in procs})

    def kill(self) -> None:
        """SIGKILL the entry's process group and every process it left, until none is left (daemons included);
        then remove its scratch folder, whatever it left there."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        sandbox.kill_all(self.processes)
        trees.remove(scratch_folder(self.out_dir))

    def finish(self, out_dir: Path) -> None:
        """The child wrote straight into out_dir; note how much it printed."""
        try:
            self.log_bytes = (out_dir / LOG_FILE).lstat().st_size
        except OSError:
            self.log_bytes = 0


def _cgroup_processes(cgroup: cgroups.Cgroup | None, known: set[int]) -> list[psutil.Process]:
    """The processes in ``cgroup`` not among ``known``."""
    procs = []
    for pid in cgroup.pids() if cgroup is not None else []:
        if pid not in known:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
    return procs


def memory_limit_reason(memory_limit: int) -> str:
    return (f"used more than its memory limit of {memory_limit / GIB:.1f} GiB and was stopped; make the model or its "
            "batch smaller, or raise the memory limit.")


def _memory(procs: list[psutil.Process]) -> int:
    """Resident memory of the entry's processes; proportional (PSS) once there are several, so that forked
    copies sharing the same pages are not counted many times over."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().pss if len(procs) > 1 else p.memory_info().rss
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


class _Estimate:
    """Progress from the entry's count of images done, at a speed timed on the host's clock since go; says when
    the whole run would take longer than the time limit."""

    def __init__(self, total: int, timeout: float, device: str, on_progress: Callable[[Progress], None] | None):
        self.total, self.timeout, self.device, self.on_progress = total, timeout, device, on_progress
        self.done, self.read_at = 0, float("-inf")

    def update(self, job, now: float, started: float, went: float, final: bool = False) -> str | None:
        """Read the count (every PROGRESS_SECONDS, or now when ``final``); report it when it grew, and return the
        sentence that stops the entry when it cannot finish in time."""
        if not final and now - self.read_at < PROGRESS_SECONDS:
            return None
        self.read_at = now
        done = min(job.progress(), self.total)
        if done <= self.done or now <= went:
            return None
        self.done = done
        rate = done / (now - went)  # images per second since go, on this clock
        left = (self.total - done) / rate
        if self.on_progress:
            self.on_progress(Progress(done, self.total, 0.0 if final else left))
        needed = now - started + left
        if (not final and done < self.total and now - went >= ESTIMATE_AFTER_SECONDS
                and needed > self.timeout * ESTIMATE_MARGIN):
            return over_time(needed, rate, self.total, self.timeout, self.device)
        return None


def _limit_broken(job, peak: int, memory_limit: int, elapsed: float, timeout: float) -> str | None:
    """Why the running entry must be stopped now (its memory, then its time), or None."""
    cgroup = getattr(job, "cgroup", None)
    if memory_limit and (peak > memory_limit or (cgroup is not None and cgroup.over_limit())):
        return memory_limit_reason(memory_limit)
    if elapsed > timeout:
        return (f"took longer than its time limit of {timeout:g} s and was stopped; make the model faster or "
                "raise the time limit.")
    return None


class _Watch:
    """What :func:`_watch` keeps while it polls one entry: when it started and went, the processes it lists and their
    peak, the phase it last said, and when each was last read."""

    def __init__(self, job, timeout: float, memory_limit: int, total: int, device: str,
                 on_progress: Callable[[Progress], None] | None):
        self.job, self.timeout, self.memory_limit, self.total = job, timeout, memory_limit, total
        self.on_progress = on_progress
        self.started = time.perf_counter()
        self.went: float | None = None
        self.peak = 0
        self.procs, self.listed_at = [], float("-inf")
        self.estimate = _Estimate(total, timeout, device, on_progress)
        # With a cgroup that keeps its own peak, the host reads nothing per process while the entry runs, and wakes
        # only to read its progress: on 2 cores every poll is time taken from the entry's threads (about 30 ms of CPU
        # in a 1.3 s timed run polled every POLL_SECONDS, measured)
        self.cgroup = getattr(job, "cgroup", None)
        self.kernel = self.cgroup is not None and memory_limit > 0 and self.cgroup.keeps_peak
        self.phase, self.phase_read, self.checked = LOADING, 0.0, float("-inf")
        if on_progress:
            on_progress(Progress(0, total, phase=self.phase))

    def pause(self) -> float:
        """How long to wait for the process's exit before the next look."""
        if self.went is None:
            return READY_POLL_SECONDS
        # never past the time limit; with the kernel holding the memory limit, as often as progress is read
        return max(min(PROGRESS_SECONDS if self.kernel else POLL_SECONDS,
                       self.timeout - (time.perf_counter() - self.started)), 0.001)

    def loading(self, elapsed: float) -> bool:
        """Before go: hand over the images once the entry is ready, else say its phase now and then. False while
        only its readiness is asked (its limits keep their own pace)."""
        if self.job.ready():
            self.job.go()
            self.went = time.perf_counter()
            if self.on_progress:
                self.on_progress(Progress(0, self.total))
            return True
        if elapsed - self.checked < POLL_SECONDS:
            return False
        if self.on_progress and elapsed - self.phase_read >= PROGRESS_SECONDS:
            self.phase_read, said = elapsed, self.job.phase()
            if said is not None and said != self.phase:
                self.phase = said
                self.on_progress(Progress(0, self.total, phase=said))
        return True

    def broken(self, elapsed: float) -> str | None:
        """Why the entry must be stopped now (a limit, or the estimate that it cannot finish in time), or None."""
        self.checked = elapsed
        if self.kernel:  # the kernel holds the memory limit and keeps the peak: a kill it made is looked for at times
            look = elapsed - self.listed_at >= LIST_SECONDS
            self.listed_at = elapsed if look else self.listed_at
            reason = _limit_broken(self.job, 0, self.memory_limit if look else 0, elapsed, self.timeout)
        else:
            if not self.procs or elapsed - self.listed_at >= LIST_SECONDS:
                # listing the process tree scans all of /proc: on 2 cores, doing it every poll slowed the model
                self.procs, self.listed_at = self.job.processes(), elapsed
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, _memory(self.procs))
            reason = _limit_broken(self.job, self.peak, self.memory_limit, elapsed, self.timeout)
        if reason is None and self.went is not None and self.total:
            reason = self.estimate.update(self.job, time.perf_counter(), self.started, self.went)
        return reason

    def ended(self, ended: float, reason: str | None) -> _Watched:
        """Kill what the entry left running, then read its peak (and a kill the kernel made for it) from its cgroup."""
        self.job.kill()
        peak = self.peak
        if self.cgroup is not None:  # every page its processes held, memfd and tmpfs included
            peak = self.cgroup.peak()
            if self.memory_limit and not reason and self.cgroup.over_limit():
                reason = memory_limit_reason(self.memory_limit)
        went = self.went
        return _Watched(ended - self.started, peak, reason, None if went is None or reason else ended - went)


def _watch(job, timeout: float, memory_limit: int, total: int = 0, device: str = "cpu",
           on_progress: Callable[[Progress], None] | None = None) -> _Watched:
    """Poll the entry until it ends or breaks a limit; hand over its images once it says it is ready and time it
    from then until its process exits (the exit wakes the wait at once, so the clock stops without polling).

    Before that, ``on_progress`` hears its phase (loading, then warming up, as its process says); once it has the
    images, its count of images done (of ``total``), which also stops it early when, at its speed so far, it would
    need more than its time limit."""
    watch = _Watch(job, timeout, memory_limit, total, device, on_progress)
    reason = None
    while True:
        if job.wait(watch.pause()):
            ended = time.perf_counter()
            if watch.went is not None:
                watch.estimate.update(job, ended, watch.started, watch.went, final=True)
            break
        elapsed = time.perf_counter() - watch.started
        if watch.went is None and not watch.loading(elapsed):
            continue
        reason = watch.broken(elapsed)
        if reason:
            job.kill()
            job.wait(5)
            ended = time.perf_counter()
            break
    return watch.ended(ended, reason)


def scratch_folder(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + SCRATCH_SUFFIX)


def _start_forked(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, device: str,
                  batch_size: int | None, memory_limit: int, cpu_seconds: int, preload_torchvision: bool,
                  uid: int | None, gpu_memory: int | None = None, cgroup: cgroups.Cgroup | None = None) -> _ForkedJob:
    """Fork the entry from multiprocessing's fork server; its images are staged in a folder of their own only at
    go. Under a root harness its output folder belongs to the user it runs as."""
    ctx = context(preload_torchvision)
    staging = out_dir.with_name(out_dir.name + ".in")
    trees.remove(staging)  # a go left by an earlier call would start the clock too early
    staging.mkdir(parents=True)
    staged = {kind: staging / path.name for kind, path in inputs.items()}
    scratch = scratch_folder(out_dir)
    trees.remove(scratch)
    scratch.mkdir(mode=0o700)
    if uid is not None:
        os.chown(out_dir, uid, uid)
        os.chown(scratch, uid, uid)
    tasks = sandbox.tasks_of(os.getuid() if uid is None else uid) + sandbox.TASK_HEADROOM
    proc = ctx.Process(target=unsandboxed.main, args=(str(folder), metadata, {k: str(v) for k, v in staged.items()},
                                            str(out_dir), device, batch_size, memory_limit, cpu_seconds, tasks,
                                            sandbox_server.FILE_LIMIT, uid, gpu_memory,
                                            [str(f / "cgroup.procs") for f in cgroup.folders] if cgroup else None),
                       daemon=True)
    with _main_module_hidden():
        proc.start()
    return _ForkedJob(proc, out_dir, inputs, staged, cgroup)


def needs_torchvision(entries) -> bool:
    """Whether any entry's model.py mentions torchvision (then the fork server imports it once for all)."""
    return any("torchvision" in (e.folder / "model.py").read_text(errors="ignore")
               for e in entries if (e.folder / "model.py").is_file())


def likely_device(requested: str) -> str:
    """Where entries will run, guessed without importing torch (for starting the sandbox early): "cuda" when asked
    for, or for "auto" when an NVIDIA GPU's device file exists; the run resolves it for certain later
    (``harness.isolation.prediction.resolve_device``), and the sandbox restarts if the guess was wrong."""
    if requested == "auto":
        return "cuda" if any(d[len("/dev/nvidia"):].isdigit() for d in sandbox_command.gpu_devices()) else "cpu"
    return requested


def prestart(preload_torchvision: bool = False, device: str = "cpu") -> None:
    """Start the shared sandbox without waiting (its server imports torch: seconds) while the caller loads the
    datasets; the first entry then finds it ready. Call it from the thread that runs the entries."""
    with _job_lock:
        sandbox.prestart(["torchvision"] if preload_torchvision else [], likely_device(device))


def run_isolated(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, *,
                 device: str = "cpu", timeout: float = DEFAULT_TIMEOUT, memory_limit: int = DEFAULT_MEMORY,
                 batch_size: int | None = None, preload_torchvision: bool = False,
                 sandboxed: bool | None = None, gpu_memory: int | None = None, total: int = 0,
                 on_progress: Callable[[Progress], None] | None = None, secret: bool = False,
                 prepare: Callable[[], None] | None = None) -> RunOutcome:
    """Evaluate one entry in a fresh child process and say how it ended.

    ``device`` is "cpu" or "cuda", resolved before any limit applies. ``sandboxed``: None uses the bubblewrap
    sandbox where it works (else a plain process, with one warning); False never uses it; True requires it
    (RuntimeError where it cannot run). ``total`` images are handed over; ``on_progress`` hears how many are done.
    ``secret``: the inputs include a secret set, so the entry runs in the sandbox kept for that phase, never the
    one that runs public phases (``harness.isolation.sandbox.shared``). ``prepare``, when given, writes the
    ``inputs`` files: it is called once the entry's process has started, so that the host writes them while the
    entry loads its model (they are handed over only when it is ready: the entry never sees them earlier).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"run_isolated needs a resolved device, cpu or cuda, not {device!r}.")
    trees.remove(out_dir)  # nothing an earlier call left may pass for this one's result
    out_dir.mkdir(parents=True)
    preload = ["torchvision"] if preload_torchvision else []
    cpu = cpu_seconds(timeout)
    with _job_lock:
        box = None if sandboxed is False else sandbox.shared(preload, device, secret)
        if sandboxed and box is None:
            raise RuntimeError(f"the sandbox cannot run here: {sandbox.unavailable_reason()}")
        cgroup, no_cgroup = entry_cgroup(memory_limit)
        user = job = None
        try:
            job, user, failed = _start_job(box, folder, metadata, inputs, out_dir, device, batch_size, memory_limit,
                                           timeout, preload, gpu_memory, cgroup, no_cgroup)
            if failed is not None:
                return failed
            if prepare is not None:
                _prepare_while_loading(job, box, prepare)
            try:
                job.started()
            except (sandbox.SandboxError, OSError) as exc:
                box.close()
                return _not_started(f"the sandbox could not start the entry ({exc}).", True,
                                    missing_protections(True, None, no_cgroup))
            try:
                watched = _watch(job, timeout, memory_limit, total, device, on_progress)
                job.finish(out_dir)
            except sandbox.SandboxError as exc:
                box.close()
                watched = _Watched(0.0, 0, f"the sandbox stopped while the entry ran ({exc}).", None)
        finally:
            if job is not None:
                job.kill()
            if cgroup is not None:
                cgroup.remove()
            if user is not None:  # its processes are all gone: the uid may go to another entry
                user.release()
    return _ended(watched, job, folder, out_dir, cpu, box is not None,
                  missing_protections(box is not None, user.uid if user else None, no_cgroup))


def _start_job(box, folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path, device: str,
               batch_size: int | None, memory_limit: int, timeout: float, preload: list[str],
               gpu_memory: int | None, cgroup, no_cgroup: str | None):
    """Start the entry's process, in the sandbox ``box`` or (None) forked here under a user of its own: the job, that
    user (None in the sandbox, or when the harness is not root), and None; or, when it could not start, the outcome
    that says why (and the user taken, for the caller to release)."""
    if box is not None:
        try:
            return box.start(folder, metadata, inputs, device, batch_size, memory_limit, timeout, preload,
                             gpu_memory, cgroup), None, None
        except (sandbox.SandboxError, OSError) as exc:
            box.close()
            return None, None, _not_started(f"the sandbox could not start the entry ({exc}).", True,
                                            missing_protections(True, None, no_cgroup))
    user = None
    try:
        user = entry_user()
        return _start_forked(folder, metadata, inputs, out_dir, device, batch_size, memory_limit,
                             cpu_seconds(timeout), "torchvision" in preload, user.uid if user else None, gpu_memory,
                             cgroup), user, None
    except (OSError, psutil.Error) as exc:
        return None, user, _not_started(f"the entry's process could not start ({exc}).", False,
                                        missing_protections(False, user and user.uid, no_cgroup))


def _prepare_while_loading(job, box, prepare: Callable[[], None]) -> None:
    """Call ``prepare`` while the entry loads. When it raises (Ctrl-C included), stop the entry and read its end, so
    that the next entry's start is not read in its place, then raise what it raised."""
    try:
        prepare()
    except BaseException:
        with contextlib.suppress(Exception):
            job.started()  # nothing else may write to the sandbox's server meanwhile
        job.kill()
        try:
            ended = job.wait(5.0)
        except sandbox.SandboxError:  # the server went too (Ctrl-C reaches its process group): what was
            ended = False             # raised here still is what the caller hears
        if not ended and box is not None:
            box.close()
        raise


def _not_started(error: str, sandboxed: bool, protections: tuple[str, ...]) -> RunOutcome:
    """The outcome of an entry whose process could not be started."""
    return RunOutcome(result={"status": "failed", "error": error}, seconds=0.0, peak_rss=0, log="",
                      sandboxed=sandboxed, protections=protections)


def _ended(watched: _Watched, job, folder: Path, out_dir: Path, cpu: int, sandboxed: bool,
           protections: tuple[str, ...]) -> RunOutcome:
    """How the entry's run ended: its result.json unless it was stopped (else why its process ended early), what it
    printed, and its time from go when it succeeded."""
    result = None if watched.reason else _read_result(out_dir)
    log = _read_log(out_dir)
    if result is None:
        result = {"status": "failed", "error": watched.reason or _exit_reason(job.exitcode, cpu, job.log_bytes)}
    if sandboxed:  # messages name the entry's folder as the member knows it, not the sandbox's path
        if result.get("error"):
            result["error"] = sandbox.host_paths(result["error"], folder)
        log = sandbox.host_paths(log, folder)
    return RunOutcome(result=result, seconds=watched.seconds, peak_rss=watched.peak, log=log, sandboxed=sandboxed,
                      timed_seconds=watched.timed if result.get("status") == "ok" else None, protections=protections)
