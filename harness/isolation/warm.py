"""Entries kept warm: each one loaded once in its own long-lived process, answering repeated small requests (the
dashboard's drawings) in a fraction of a one-off run's time.

A warm entry runs ``harness.isolation.inside.warm_server`` in a bubblewrap sandbox of its own where bubblewrap works (it
sees its folder, its own requests' images and nothing else: never another entry's images), else as a plain
process, under the same limits as :func:`harness.isolation.predict`: the same user (nobody under a root host),
address space, file size and process count, and for each request the same wall-clock time limit and
resident-memory watch. The first request's time limit covers loading the model too. CPU time: the process's cap is
``CPU_REQUESTS`` one-off runs' worth, and it is started afresh (its model loaded again) before a request that would
find less than one run's worth left; within a request, its time limit with every core busy is that much anyway. A
process that dies, breaks a limit or stops answering is killed, its failure is that request's one sentence, and the
next request starts it afresh. :class:`WarmPool` keeps at most ``cap`` entries warm and, with a ``memory_budget``, at
most that many bytes of them (each entry's memory as its cgroup counts it, else the unique memory of its processes,
measured after each load and request; the least recently used goes first, and an entry that alone needs more than the
budget answers and is shut down), shuts down those idle for ``idle_seconds`` and all of them when the host process
exits.

Nothing here is ranked: there is no secret order, and what an entry answers is only its reading of the images.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import pickle
import select
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil

from harness.common import trees
from harness.common.tempfolders import temp_folder
from harness.entries.discovery import EntryFolder
from harness.isolation import cgroups, process, sandbox, sandbox_command, users
from harness.isolation.inside.sandbox_server import ENTRIES, INPUTS, NOBODY, OUT
from harness.isolation.prediction import Limits, Prediction, check_images, check_rows, resolve_device

CAP = 8                # entries kept warm at once
IDLE_SECONDS = 600.0   # a warm entry unused this long is shut down
OUTPUT_BYTES = 1024 ** 2  # largest outputs file read back (a drawing's is 168 bytes)
MODULE = "harness.isolation.inside.warm_server"
CPU_REQUESTS = 10  # a warm process's CPU-time cap, in whole requests' worth (a one-off run's cap each)


class _Stopped(Exception):
    """The warm process broke a limit, died or said something that is not the protocol: its one sentence."""


def sandbox_works() -> bool:
    """Whether warm entries get a bubblewrap sandbox of their own (as one-off runs would)."""
    if os.environ.get("HARNESS_SANDBOX", "").lower() in ("0", "off", "no", "false"):
        return False
    return shutil.which("bwrap") is not None


STOPPED = (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def _state(process: psutil.Process) -> str:
    try:
        return process.status()
    except psutil.Error:
        return psutil.STATUS_DEAD


def _running(process: psutil.Process) -> bool:
    """Whether the process still runs (a zombie has ended: only its exit status is left to collect)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class WarmEntry:
    """One entry's long-lived process; :meth:`ask` starts it when needed. One request at a time."""

    def __init__(self, entry: EntryFolder, limits: Limits, sandboxed: bool | None = None,
                 starting: threading.Semaphore | None = None):
        """``starting``: shared by entries that should not load at the same time (see :class:`WarmPool`)."""
        self.entry, self.limits = entry, limits
        self._starting = starting or threading.Semaphore()
        self.sandboxed = sandbox_works() if sandboxed is None else sandboxed
        if self.sandboxed and not sandbox_works():
            raise RuntimeError("a sandboxed warm entry needs bubblewrap (bwrap), and it cannot run here.")
        self.lock = threading.Lock()
        self.starts = 0            # processes started so far (the model was loaded this many times)
        self.last_used = time.monotonic()
        self.device = ""
        self._proc: subprocess.Popen | None = None
        self._root: Path | None = None
        self._buffer = b""
        self._asked = 0
        self._cpu_limit = 0
        self._load_error: str | None = None  # the files failed to load: they would fail the same way again
        self._user: users.EntryUser | None = None   # unsandboxed under a root host: its uid of its own
        self._last_uid: int | None = None
        self._cgroup: cgroups.Cgroup | None = None
        self._no_cgroup: str | None = None          # why it has no cgroup (said in its results)
        self._keep: set[int] = set()                # bwrap's own processes, never the entry's
        self._stopped = False                       # stopped with SIGSTOP between requests (no freezer here)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of the process that runs the entry's code (inside bwrap's, when sandboxed)."""
        procs = self._entry_processes()
        return procs[0].pid if procs else None

    def ask(self, images: np.ndarray) -> Prediction:
        """The entry's outputs for ``images`` (uint8 [N, H, W], or [N, C, H, W]: the task's input shape) under the
        limits, or its failure in one sentence."""
        check_images({"": images}, self.entry.metadata.interface, "a warm entry takes")
        if self.entry.metadata_error or self._load_error:
            return Prediction("failed", self.entry.metadata_error or self._load_error, device=self.limits.device)
        with self.lock:
            self.last_used = started = time.monotonic()
            peak = 0
            try:
                if not self.alive or not self._room_for_cpu():  # a fresh process has the whole CPU-time cap
                    with self._starting:
                        started = time.monotonic()  # the time limit covers the entry's loading, not the queue
                        peak = self._start()
                self._asked += 1
                n = self._asked
                staged = self._root / "in" / f"draw-{n}.npy"
                np.save(staged, images[:, None] if images.ndim == 3 else images, allow_pickle=False)
                os.chmod(staged, 0o644)
                self._resume()
                self._proc.stdin.write(f"{n}\n".encode())
                self._proc.stdin.flush()
                went = time.monotonic()
                reply, peak = self._receive(started, peak)
                if reply.get("done") != n:
                    raise _Stopped("the entry's process answered out of turn and was stopped; see its log.")
                if reply.get("status") != "ok":
                    return self._failed(str(reply.get("error") or "the entry failed without saying why."), started,
                                        peak, keep=True)
                outputs = self._outputs(n, len(images))
            except _Stopped as stopped:
                return self._failed(str(stopped), started, peak, keep=False)
            except (OSError, BrokenPipeError) as exc:
                return self._failed(f"the entry's process could not be reached ({exc}).", started, peak, keep=False)
            except ValueError as exc:
                return self._failed(str(exc), started, peak, keep=True)
            finally:
                self._pause()  # no CPU until the next request
                if self._root is not None:
                    for folder in ("in", "out"):
                        for path in (self._root / folder).glob("*-*.npy"):
                            path.unlink(missing_ok=True)
                self.last_used = time.monotonic()
            ended = time.monotonic()
            return Prediction("ok", None, outputs={"draw": outputs}, device=self.device, seconds=ended - started,
                              timed_seconds=ended - went, peak_memory=peak, sandboxed=self.sandboxed,
                              protections=process.missing_protections(self.sandboxed, self._uid(), self._no_cgroup))

    def memory(self) -> int:
        """The bytes the warm process holds now: its cgroup's count (every page charged to it), else the unique
        memory (USS) of the entry's processes, which leaves out what they share with others (0: not running)."""
        if not self.alive:
            return 0
        if self._cgroup is not None:
            used = self._cgroup.usage()
            if used:
                return used
        total = 0
        for p in self._entry_processes():
            try:
                total += p.memory_full_info().uss
            except psutil.Error:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss  # no access to its smaps: resident memory, an upper bound
        return total

    def prepare(self) -> None:
        """Start the process and load the model now, if it is not running, so that a later request finds it warm
        (a failure to load is kept for that request to report)."""
        if self.entry.metadata_error or self._load_error:
            return
        with self.lock:
            if self.alive:
                return
            with self._starting:
                try:
                    self._start()
                    self._pause()
                except (_Stopped, OSError):
                    self.close()
                self.last_used = time.monotonic()

    def close(self) -> None:
        """Kill the process (everything it started with it) and remove its folders."""
        if self._proc is not None:
            self._stopped = False  # SIGKILL ends a stopped (or v2-frozen) process as it is
            procs = self._all_processes()
            sandbox.kill_all(lambda: [p for p in procs if _running(p)])  # the entry's own first: all are listed
            sandbox.kill_all(self._all_processes)  # anything started meanwhile
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            self._proc = None
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._user is not None:  # its processes are all gone: the uid may go to another entry
            self._user.release()
            self._user = None
        if self._root is not None:
            trees.remove(self._root)
            self._root = None
        self._buffer = b""
        self._keep, self._stopped = set(), False

    # --- the process ------------------------------------------------------------------------------------------

    def _uid(self) -> int | None:
        """The uid of the unsandboxed entry's process under a root host (None: sandboxed, or the host's user)."""
        return None if self.sandboxed else self._last_uid

    def _start(self) -> int:
        """Start the process and wait until the model is loaded; the peak memory seen (else _Stopped)."""
        self._launch()
        return self._wait_ready(time.monotonic())

    def _launch(self) -> None:
        self.close()
        limits = self.limits
        root = self._root = temp_folder("warm")
        for name in ("entries", "in", "out"):
            (root / name).mkdir()
        os.chmod(root / "in", 0o755)
        os.chmod(root / "out", 0o755)
        as_root = os.getuid() == 0
        if as_root and not self.sandboxed:  # a uid of its own: it can signal no other process
            self._user = process.entry_user()
            self._last_uid = self._user.uid
        uid = self._user.uid if self._user else NOBODY if as_root else os.getuid()
        if as_root:
            os.chown(root / "out", uid, uid)
        self._cgroup, self._no_cgroup = process.entry_cgroup(limits.memory, "warm")
        job = {"sandboxed": self.sandboxed, "metadata": self.entry.metadata, "device": limits.device,
               "batch_size": limits.batch_size, "gpu_memory": limits.gpu_memory or limits.memory,
               "memory_limit": limits.memory, "cpu_seconds": limits.cpu_seconds * CPU_REQUESTS,
               "tasks": sandbox.tasks_of(uid) + sandbox.TASK_HEADROOM}
        env = None
        if self.sandboxed:
            staged = root / "entries" / self.entry.folder.name
            shutil.copytree(self.entry.folder, staged, symlinks=True)
            sandbox._make_readable(staged)
            job.update(folder=f"{ENTRIES}/{self.entry.folder.name}", uid=None, **{"in": INPUTS, "out": OUT})
            command = sandbox_command.command(root, as_root, limits.device, MODULE)
        else:
            job.update(folder=str(self.entry.folder.resolve()), uid=self._last_uid, **{"in": str(root / "in"),
                                                                          "out": str(root / "out")})
            command = [sys.executable, "-P", "-m", MODULE]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(sandbox_command.HARNESS_DIR.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        encoded = base64.b64encode(pickle.dumps(job)).decode()
        with open(root / "server.log", "wb") as log:  # what the process says before the entry's log opens
            self._proc = subprocess.Popen(command + [encoded], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, cwd=root / "out", env=env,
                                          start_new_session=not self.sandboxed)
        self._cpu_limit = limits.cpu_seconds * CPU_REQUESTS
        self._buffer = b""
        self.starts += 1
        self._gate()

    def _gate(self) -> None:
        """Let the new process run its Python once it is in the entry's cgroup: it waits for one line on stdin.

        Until then the tree holds bwrap's processes and at most the Python waiting at the gate; they are noted (bwrap's
        own are never the entry's), moved into the cgroup until a listing finds none outside (a process forked later
        has a parent inside), and told to go."""
        deadline = time.monotonic() + sandbox.START_SECONDS
        while time.monotonic() < deadline and self._proc.poll() is None:
            procs = self._all_processes()
            waiting = [p for p in procs if _name(p) not in ("bwrap", "")]
            inside = set(self._cgroup.pids()) if self._cgroup is not None else None
            outside = [p for p in procs if inside is not None and p.pid not in inside]
            for p in outside:
                with contextlib.suppress(OSError):  # gone meanwhile: the next listing says
                    self._cgroup.add(p.pid)
            if waiting and not outside:
                self._keep = {p.pid for p in procs if p not in waiting}
                break
            time.sleep(0.005)
        self._proc.stdin.write(b"go\n")
        self._proc.stdin.flush()

    def _pause(self) -> None:
        """Stop every process of the entry until the next request: the cgroup's freezer, else SIGSTOP to each (until
        a listing finds none running: a fork meanwhile is stopped too)."""
        if not self.alive or self._stopped:
            return
        if self._cgroup is not None and self._cgroup.freeze():
            return
        self._stopped = True
        for _ in range(100):
            running = [p for p in self._entry_processes() if _state(p) not in STOPPED]
            if not running:
                break
            for p in running:
                with contextlib.suppress(psutil.Error):
                    p.suspend()

    def _resume(self) -> None:
        if self._cgroup is not None:
            self._cgroup.thaw()
        for p in self._entry_processes() if self._stopped else []:
            with contextlib.suppress(psutil.Error):
                p.resume()
        self._stopped = False

    def _wait_ready(self, started: float) -> int:
        ready, peak = self._receive(started, 0)
        if not ready.get("ready"):
            if ready.get("status") == "failed" and ready.get("error"):
                self._load_error = sandbox.host_paths(str(ready["error"]), self.entry.folder)
            raise _Stopped(str(ready.get("error") or "the entry's process did not say it was ready."))
        self.device = str(ready.get("device", ""))[:40]
        return peak

    def _all_processes(self) -> list[psutil.Process]:
        if self._proc is None:
            return []
        try:
            top = psutil.Process(self._proc.pid)
            return [top] + top.children(recursive=True)
        except psutil.Error:
            return []

    def _entry_processes(self) -> list[psutil.Process]:
        """The processes that run the entry's code: its tree but bwrap's own processes, and whatever else is in its
        cgroup (a daemon that left the tree)."""
        procs = [p for p in self._all_processes() if p.pid not in self._keep]
        return procs + process._cgroup_processes(self._cgroup, {p.pid for p in procs} | self._keep)

    def _room_for_cpu(self) -> bool:
        """Whether the process has one whole request's CPU time left under its cap (else a fresh one is started)."""
        used = 0.0
        for p in self._entry_processes():
            with contextlib.suppress(psutil.Error):  # gone already: the request will say so
                used = max(used, sum(p.cpu_times()[:2]))  # the limit holds per process
        return used + self.limits.cpu_seconds <= self._cpu_limit

    def _receive(self, started: float, peak: int) -> tuple[dict, int]:
        """The process's next reply, watching its memory and the time limit meanwhile (else _Stopped)."""
        fd = self._proc.stdout.fileno()
        procs, listed_at = [], float("-inf")
        while b"\n" not in self._buffer:
            now = time.monotonic()
            if now - listed_at >= process.LIST_SECONDS:
                procs, listed_at = self._entry_processes(), now
            peak = max(peak, process._memory(procs))
            if self._cgroup is not None:  # every page its processes hold, memfd and tmpfs included
                peak = max(peak, self._cgroup.peak())
            if self.limits.memory and (peak > self.limits.memory or (self._cgroup and self._cgroup.over_limit())):
                raise _Stopped(process.memory_limit_reason(self.limits.memory))
            if now - started > self.limits.timeout:
                raise _Stopped(f"took longer than its time limit of {self.limits.timeout:g} s and was stopped; make "
                               "the model faster or raise the time limit.")
            if select.select([fd], [], [], process.POLL_SECONDS)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise _Stopped(self._exit_reason())
                self._buffer += chunk
                if len(self._buffer) > 65536:
                    raise _Stopped("the entry's process wrote too much on its reply channel and was stopped.")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise _Stopped("the entry's process answered something that is not a reply and was stopped; see its log.")
        return message, peak

    def _exit_reason(self) -> str:
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            return "the entry's process closed its reply channel and was stopped."
        if self.sandboxed and code > 128:  # bwrap passes on a signal's death as 128 + the signal
            code = 128 - code
        if self.limits.memory and self._cgroup is not None and self._cgroup.over_limit():
            return process.memory_limit_reason(self.limits.memory)
        return process._exit_reason(code, self.limits.cpu_seconds)

    def _outputs(self, n: int, count: int) -> np.ndarray:
        """The request's outputs, read without following a link or reading a huge file, and checked."""
        classes = self.entry.metadata.interface.num_classes
        path = self._root / "out" / f"outputs-{n}.npy"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise ValueError(f"the entry's process returned no readable outputs for the drawing ({exc}).") from exc
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > OUTPUT_BYTES:
                raise ValueError("the entry's process returned no readable outputs for the drawing.")
            try:
                outputs = np.load(fh, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ValueError(f"the entry's process returned no readable outputs for the drawing ({exc}).") \
                    from exc
        if outputs.dtype != np.float32 or len(outputs) != count:
            raise ValueError(f"the entry's process returned {outputs.dtype} outputs of shape {list(outputs.shape)} "
                             f"for {count} images; expected float32 [{count}, {classes}].")
        return check_rows(outputs, "drawing", classes)

    def _failed(self, error: str, started: float, peak: int, keep: bool) -> Prediction:
        if not keep:
            self.close()
        if self.sandboxed:
            error = sandbox.host_paths(error, self.entry.folder)
        return Prediction("failed", error, device=self.device or self.limits.device,
                          seconds=time.monotonic() - started, peak_memory=peak, sandboxed=self.sandboxed,
                          protections=process.missing_protections(self.sandboxed, self._uid(), self._no_cgroup))


class WarmPool:
    """Entries kept warm for repeated requests: at most ``cap`` at once, each shut down after ``idle_seconds``
    unused, all of them when this process exits. Requests to different entries run at the same time.

    Every process is started from one of the pool's own long-lived threads: a sandbox or a plain entry process
    dies with the thread that started it, and a caller's thread (a Streamlit script run) may end at any time.
    """

    def __init__(self, limits: Limits, cap: int = CAP, idle_seconds: float = IDLE_SECONDS,
                 sandboxed: bool | None = None, memory_budget: int | None = None):
        """``memory_budget``: the most bytes the warm entries may hold together (None: no budget, only ``cap``)."""
        if cap < 1:
            raise ValueError(f"a warm pool needs a cap of at least 1 entry, not {cap}.")
        if memory_budget is not None and memory_budget <= 0:
            raise ValueError(f"a warm pool's memory budget must be a positive number of bytes, not {memory_budget}.")
        self.limits = replace(limits, device=resolve_device(limits.device))
        self.cap, self.idle_seconds, self.sandboxed = cap, idle_seconds, sandboxed
        self.memory_budget = memory_budget
        self._memory: dict[str, int] = {}  # by entry name: its bytes when last measured (after a load or request)
        self._entries: OrderedDict[str, WarmEntry] = OrderedDict()  # by entry name, least recently used first
        self._lock = threading.Lock()
        self._fitting = threading.Lock()  # see _fit
        self._threads = ThreadPoolExecutor(max_workers=cap, thread_name_prefix="warm-entry")
        # Loading is mostly importing torch, CPU-bound: as many at once as there are cores, so that the first
        # entries are warm (and answer) soonest instead of all of them loading slowly together.
        self._starting = threading.Semaphore(max(1, os.cpu_count() or 1))
        self._closed = threading.Event()
        threading.Thread(target=self._reap, name="warm-reaper", daemon=True).start()
        atexit.register(self.close)

    def ask(self, entry: EntryFolder, images: np.ndarray) -> Prediction:
        """One entry's outputs for ``images`` (uint8 [N, 28, 28]), warm after the first request."""
        self._check_open()
        return self._threads.submit(self._ask, entry, images).result()

    def ask_all(self, entries: Sequence[EntryFolder], images: np.ndarray) -> Iterator[tuple[EntryFolder, Prediction]]:
        """Every entry's outputs for the same images, yielded as each one answers (the fastest first)."""
        self._check_open()
        futures = {self._threads.submit(self._ask, entry, images): entry for entry in entries}
        for future in as_completed(futures):
            yield futures[future], future.result()

    @property
    def width(self) -> int:
        """How many entries answer at once (a :class:`harness.isolation.prediction.Predictor`)."""
        return self.cap

    def resolve_device(self, requested: str) -> str:
        return resolve_device(requested)

    def predict(self, entry: EntryFolder, images: dict[str, np.ndarray], limits: Limits, *,
                preload_torchvision: bool = False, on_progress: Callable[[process.Progress], None] | None = None,
                secret: bool = False, while_loading: Callable[[], None] | None = None) -> Prediction:
        """The front door's call answered by the warm entry: every set in one request, in the order given (there is
        no secret order: nothing a warm entry answers is ranked). ``limits`` must be the pool's own, set when its
        processes start; a secret set never goes to a process that answers public requests. ``on_progress`` hears
        nothing and ``preload_torchvision`` changes nothing (the entry's process imports what it needs);
        ``while_loading`` is done first."""
        if secret:
            raise ValueError("a warm pool never runs a secret set: its processes answer public requests too.")
        if replace(limits, device=resolve_device(limits.device)) != self.limits:
            raise ValueError(f"this warm pool runs its entries under {self.limits}, not {limits}; make a pool with "
                             "those limits.")
        if while_loading is not None:
            while_loading()
        answer = self.ask(entry, np.concatenate(list(images.values())))
        if answer.status != "ok":
            return answer
        outputs, start = answer.outputs["draw"], 0
        answer.outputs = {}
        for kind in images:
            answer.outputs[kind], start = outputs[start:start + len(images[kind])], start + len(images[kind])
        return answer

    def prepare(self, entries: Sequence[EntryFolder]) -> None:
        """Start loading every entry that is not warm, without waiting (a page that will ask soon calls it)."""
        self._check_open()
        for entry in entries:
            self._threads.submit(self._prepare, entry)

    def starts(self, name: str) -> int:
        """How many times the entry's process has been started (its model loaded) while it was kept here."""
        with self._lock:
            warm = self._entries.get(name)
            return warm.starts if warm else 0

    def warm(self) -> list[str]:
        """The entries whose process is running now, least recently used first."""
        with self._lock:
            return [name for name, warm in self._entries.items() if warm.alive]

    def memory(self) -> dict[str, int]:
        """{entry: bytes} for the warm entries, as last measured after their last load or request (measured only
        under a memory budget)."""
        with self._lock:
            return {name: self._memory[name] for name, warm in self._entries.items()
                    if warm.alive and name in self._memory}

    def close(self) -> None:
        """Shut every warm entry down (the pool cannot be used afterwards)."""
        self._closed.set()
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for warm in entries:
            with warm.lock:
                warm.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise RuntimeError("this warm pool has been closed; make a new one.")

    def _ask(self, entry: EntryFolder, images: np.ndarray) -> Prediction:
        warm = self._get(entry)
        answer = warm.ask(images)
        self._fit(warm)
        return answer

    def _prepare(self, entry: EntryFolder) -> None:
        """Load the entry ahead of a request, unless it would not fit the memory budget (by the mean size of the
        entries measured so far): preparing more than fits would only shut down others that were loaded for it."""
        if self.memory_budget is not None:
            with self._lock:
                warm = self._entries.get(entry.name)
                if warm is not None and warm.alive and warm.entry.content_hash == entry.content_hash:
                    return
                sizes = [self._memory[n] for n, w in self._entries.items() if w.alive and n in self._memory]
            if sizes and sum(sizes) + sum(sizes) / len(sizes) > self.memory_budget:
                return
        warm = self._get(entry)
        warm.prepare()
        self._fit(warm)

    def _fit(self, latest: WarmEntry) -> None:
        """Measure ``latest`` and shut down the least recently used entries until the warm ones fit the memory
        budget; ``latest`` itself goes only when it alone needs more than the budget. An entry that is answering
        (its lock held) is measured later, never stopped mid-request.

        One fitting at a time, each on the entries alive when it starts: two answers that end together would
        otherwise both shut an entry down for the same excess (or one skip the entry the other is shutting down,
        as busy, and shut down the next), leaving fewer entries warm than the budget holds."""
        if self.memory_budget is None:
            return
        with latest.lock:
            used = latest.memory()
        with self._fitting:
            with self._lock:
                if self._entries.get(latest.entry.name) is latest:
                    self._memory[latest.entry.name] = used
                order = [w for w in self._entries.values() if w.alive]  # least recently used first
                sizes = {id(w): self._memory.get(w.entry.name, 0) for w in order}
            total = sum(sizes.values())
            for warm in [w for w in order if w is not latest] + [latest]:
                if total <= self.memory_budget:
                    break
                if warm is latest and len([w for w in order if w.alive]) > 1:
                    continue  # the others go first; it is the one just asked for
                if not warm.lock.acquire(blocking=False):
                    continue
                try:
                    warm.close()
                finally:
                    warm.lock.release()
                total -= sizes.get(id(warm), 0)  # nothing counted for a latest that had already ended
                with self._lock:
                    if self._entries.get(warm.entry.name) is warm:
                        self._memory.pop(warm.entry.name, None)

    def _get(self, entry: EntryFolder) -> WarmEntry:
        """The entry's warm process holder (a new one when its files changed), making room under the cap."""
        evicted = []
        with self._lock:
            self._check_open()
            warm = self._entries.get(entry.name)
            if warm is not None and warm.entry.content_hash != entry.content_hash:
                evicted.append(self._entries.pop(entry.name))
                warm = None
            if warm is None:
                warm = self._entries[entry.name] = WarmEntry(entry, self.limits, self.sandboxed, self._starting)
            self._entries.move_to_end(entry.name)
            while len(self._entries) > self.cap:
                evicted.append(self._entries.popitem(last=False)[1])
        for old in evicted:
            with old.lock:
                old.close()
            with self._lock:
                if self._entries.get(old.entry.name) is not warm:
                    self._memory.pop(old.entry.name, None)
        return warm

    def _reap(self) -> None:
        """Shut down the entries idle for longer than ``idle_seconds``."""
        while not self._closed.wait(min(max(self.idle_seconds / 4, 0.05), 30.0)):
            now = time.monotonic()
            with self._lock:
                idle = [w for w in self._entries.values() if w.alive and now - w.last_used > self.idle_seconds]
            for warm in idle:
                if warm.lock.acquire(blocking=False):  # one that is answering is not idle
                    try:
                        if time.monotonic() - warm.last_used > self.idle_seconds:
                            warm.close()
                    finally:
                        warm.lock.release()
