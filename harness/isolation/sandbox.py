"""Evaluate entries inside a bubblewrap sandbox: one sandboxed fork server per harness process.

This module is the host side; ``harness.isolation.sandbox_command`` builds the bwrap command line and
``harness.isolation.inside.sandbox_server`` is what runs inside it. After each entry the host kills every process in
the sandbox but the server and empties the shared folders, and the server empties ``/tmp`` and ``/dev/shm`` before
the next one. Under a non-root harness the sandbox's own root and the folders bwrap creates are read-only.

Inside, an entry sees the Python environment and the harness read-only, its folder at ``/entries/<name>`` and its
images at ``/in`` read-only, a private ``/out`` and a small ``/tmp``, and no network; what that keeps it from doing:
docs/scoring.md, "Isolation and sandbox".
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
import tempfile
import threading
import time
from pathlib import Path

import psutil

from harness.common import trees
from harness.common.limits import cpu_seconds
from harness.isolation.inside.exchange import READY_FILE, copy_log, hand_over, read_phase, read_progress
from harness.isolation.inside.sandbox_server import ENTRIES, INPUTS, NOBODY
from harness.isolation.sandbox_command import command

TASK_HEADROOM = 256         # processes + threads an entry may add to its user's count
COPY_LIMIT = 512 * 1024 ** 2  # largest file taken back out of /out
START_SECONDS = 120.0


class SandboxError(RuntimeError):
    """The sandbox could not start or stopped answering."""


def entry_uid(as_root: bool) -> int:
    """The uid an entry's processes have on the host: nobody under a root harness, else the caller's own."""
    return NOBODY if as_root else os.getuid()


def tasks_of(uid: int) -> int:
    """Processes + threads the user already has (RLIMIT_NPROC counts them all)."""
    total = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        uids, threads = p.info["uids"], p.info["num_threads"]
        if uids is not None and uids.real == uid:
            total += threads or 1
    return total


def host_paths(text: str | None, folder: Path) -> str | None:
    """``text`` with the entry's folder inside the sandbox replaced by its real folder."""
    return text.replace(f"{ENTRIES}/{folder.name}", str(folder)) if text else text


def _empty(folder: Path) -> None:
    """Empty one of the folders shared with the sandbox, whatever an entry left there; SandboxError if it cannot."""
    if not trees.empty(folder):
        raise SandboxError(f"what the previous entry left in the sandbox's /{folder.name} could not be removed")


def _make_readable(folder: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


def kill_all(listing) -> None:
    """SIGKILL the processes ``listing()`` returns, again and again until it returns none (a fork bomb forks on)."""
    for _ in range(200):
        procs = listing()
        if not procs:
            return
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=0.05)


def copy_regular(src: Path, dst: Path, limit: int = COPY_LIMIT) -> bool:
    """Copy a file the entry wrote, refusing symlinks, special files and huge files (never follows links)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        return False
    with os.fdopen(fd, "rb") as fh, open(dst, "wb") as out:
        shutil.copyfileobj(fh, out)
    return True


class SandboxJob:
    """One entry running in the sandbox; the watcher in ``harness.isolation.process`` polls it."""

    def __init__(self, box: Sandbox, inputs: dict[str, Path], staged: dict[str, Path], cgroup=None):
        self.box, self.cgroup = box, cgroup  # cgroup: harness.isolation.cgroups.Cgroup of its processes, or None
        self.exitcode: int | None = None
        self.inputs, self.staged = inputs, staged
        self.log_bytes = 0
        self._gate: threading.Thread | None = None
        self._gate_error: BaseException | None = None

    def let_through(self) -> None:
        """In the background: put the entry's process, waiting at its gate, into its cgroup, then let it run.

        Moving a process into a cgroup waits for the kernel (about 8 ms here, an RCU grace period, not CPU), which
        the host spends writing the entry's images instead; :meth:`started` waits for it."""
        def open_gate() -> None:
            try:
                if self.cgroup is not None:  # nothing has run in the entry's process yet
                    for p in self.box.entry_processes():
                        self.cgroup.add(p.pid)
                self.box.proc.stdin.write(b"go\n")
                self.box.proc.stdin.flush()
            except BaseException as exc:  # noqa: BLE001 - raised by started(), in the caller's thread
                self._gate_error = exc

        self._gate = threading.Thread(target=open_gate, name="sandbox-gate", daemon=True)
        self._gate.start()

    def started(self) -> None:
        """Wait until the entry's process has been let through (in its cgroup); raise what kept it from that."""
        if self._gate is not None:
            self._gate.join()
            self._gate = None
        if self._gate_error is not None:
            error, self._gate_error = self._gate_error, None
            raise error

    def ready(self) -> bool:
        """Whether the entry has loaded its model and waits for its images."""
        return (self.box.root / "out" / READY_FILE).exists()

    def go(self) -> None:
        hand_over(self.inputs, self.staged)

    def progress(self) -> int:
        """The entry's own count of images done (shown, never ranked)."""
        return read_progress(self.box.root / "out")

    def phase(self) -> str | None:
        """What the entry's process says it is doing before its images: loading, warming up (shown, never ranked)."""
        return read_phase(self.box.root / "out")

    def wait(self, seconds: float) -> bool:
        """True once the server reports that the entry's process has exited."""
        if self.exitcode is None:
            message = self.box.receive(seconds)
            if message is not None:
                self.exitcode = int(message["exit"])
        return self.exitcode is not None

    def processes(self):
        return self.box.entry_processes()

    def kill(self) -> None:
        """SIGKILL every process the entry started. Once its process has exited with its cgroup empty, none is left
        (each one it started is in the cgroup, which nothing in the sandbox can leave): then no process list is read
        (a scan of /proc, about 2.5 ms here, twice after every entry)."""
        if self.exitcode is not None and self.cgroup is not None and self.cgroup.empty():
            return
        self.box.kill_entry_processes()

    def finish(self, out_dir: Path) -> None:
        """Collect the entry's outputs (regular files only) and leave the shared folders empty."""
        if self.exitcode is None and not self.wait(10.0):
            raise SandboxError("the sandbox's server did not report the entry's end")
        out = self.box.root / "out"
        for path in out.iterdir():
            if path.name == "entry.log":
                self.log_bytes = copy_log(path, out_dir / path.name)
            elif path.name == "result.json" or (path.name.startswith("outputs_") and path.suffix == ".npy"):
                copy_regular(path, out_dir / path.name)
        self.box.clear()


class Sandbox:
    """A running bwrap sandbox with the fork server inside it."""

    def __init__(self, preload: list[str], wait: bool = True, as_root: bool | None = None, device: str = "cpu"):
        """``as_root`` (default: whether this process is root) picks the layout: entries drop to nobody, or they
        keep the caller's identity in a user namespace. Root can ask for the second one to test it. ``device``
        ("cpu" or "cuda"): where its entries run; only "cuda" lets them reach the GPU."""
        self.device = device
        self.as_root = os.getuid() == 0 if as_root is None else as_root
        self.root = Path(tempfile.mkdtemp(prefix=f"harness-{os.getpid()}-sandbox-"))  # see harness.common.tempfolders
        self.uid = entry_uid(self.as_root)
        for name in ("entries", "in", "out"):
            (self.root / name).mkdir()
        os.chmod(self.root / "out", 0o755)  # the server (root without CAP_DAC_OVERRIDE) must enter it
        if self.as_root:
            os.chown(self.root / "out", NOBODY, NOBODY)
        self.preloaded = set(preload)
        with open(self.root / "server.log", "wb") as log:  # the server's own messages (never the entries')
            self.proc = subprocess.Popen(command(self.root, self.as_root, device) + preload, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log)
        self._buffer = b""
        self.closed = False
        self.ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait for the server's "ready" (it imports torch first); SandboxError, with the sandbox closed, if it
        does not come."""
        if self.ready:
            return
        try:
            ready = self.receive(START_SECONDS)
            if not ready or not ready.get("ready"):
                raise SandboxError("the sandbox's server did not start in time")
        except SandboxError as exc:
            detail = self._stderr()
            self.close()
            raise SandboxError(f"{exc}: {detail}") from None
        # Before any entry runs, the sandbox holds only bwrap's processes and the server: everything that
        # appears later belongs to an entry.
        bwrap = psutil.Process(self.proc.pid)
        self.keep = {bwrap.pid} | {p.pid for p in bwrap.children(recursive=True)}
        self.bwrap = bwrap
        self.ready = True

    def _stderr(self) -> str:
        try:
            self.proc.wait(timeout=5)
            lines = (self.root / "server.log").read_text(errors="replace").strip().splitlines()
        except (subprocess.TimeoutExpired, OSError):
            return ""
        return lines[-1] if lines else f"exit code {self.proc.returncode}"

    def receive(self, seconds: float) -> dict | None:
        """The server's next message, or None if none came within ``seconds``."""
        deadline = time.monotonic() + seconds
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise SandboxError("the sandbox's server stopped")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def start(self, folder: Path, metadata, inputs: dict[str, Path], device: str, batch_size: int | None,
              memory_limit: int, timeout: float, preload: list[str], gpu_memory: int | None = None,
              cgroup=None) -> SandboxJob:
        """Stage one entry's folder and images, then fork its process inside the sandbox; it runs only once it is in
        ``cgroup`` (a ``harness.isolation.cgroups.Cgroup``), when there is one."""
        self.clear()  # nothing of an earlier entry may remain, even after an interrupted run
        names = {kind: f"{INPUTS}/{path.name}" for kind, path in inputs.items()}  # handed over at go (SandboxJob.go)
        job = {"folder": f"{ENTRIES}/{folder.name}", "metadata": metadata, "inputs": names, "device": device,
               "batch_size": batch_size, "gpu_memory": gpu_memory, "memory_limit": memory_limit,
               "cpu_seconds": cpu_seconds(timeout),
               "tasks": tasks_of(self.uid) + TASK_HEADROOM, "preload": [m for m in preload if m not in self.preloaded]}
        self.preloaded.update(preload)
        self.proc.stdin.write(base64.b64encode(pickle.dumps(job)) + b"\n")
        self.proc.stdin.flush()
        # the folder is staged while the server forks the entry's process, which reads it only once let through
        staged = self.root / "entries" / folder.name
        shutil.copytree(folder, staged, symlinks=True)
        _make_readable(staged)
        started = self.receive(START_SECONDS)
        if started and started.get("error"):
            raise SandboxError(str(started["error"])[:200])
        if not started or "pid" not in started:
            raise SandboxError("the sandbox's server did not start the entry")
        job = SandboxJob(self, inputs, {kind: self.root / "in" / path.name for kind, path in inputs.items()}, cgroup)
        job.let_through()  # the caller waits for it with job.started() before it watches the entry
        return job

    def entry_processes(self) -> list[psutil.Process]:
        try:
            return [p for p in self.bwrap.children(recursive=True) if p.pid not in self.keep]
        except (psutil.Error, AttributeError):  # AttributeError: never got ready
            return []

    def kill_entry_processes(self) -> None:
        """SIGKILL every process in the sandbox but the server, until none is left (fork bombs included)."""
        kill_all(self.entry_processes)

    def clear(self) -> None:
        for name in ("entries", "in", "out"):
            _empty(self.root / name)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(BrokenPipeError):  # a job line still buffered for a server that is gone
            self.proc.stdin.close()
        self.proc.stdout.close()
        trees.remove(self.root)


_box: Sandbox | None = None         # the public phase's sandbox: it never holds a secret set
_secret_box: Sandbox | None = None  # the secret phase's own sandbox (see ``shared``)
_unavailable: str | None = None


def unavailable_reason() -> str | None:
    """Why entries cannot be sandboxed here (None when they can); starts the sandbox to find out."""
    shared([], _box.device if _box is not None else "cpu")
    return _unavailable


def _alive(box: Sandbox | None, device: str) -> bool:
    return box is not None and not box.closed and not (box.ready and box.proc.poll() is not None) \
        and box.device == device


def shared(preload: list[str], device: str = "cpu", secret: bool = False) -> Sandbox | None:
    """This process's sandbox for entries on ``device``, started on first use (again when the device differs);
    None (with one warning) where bubblewrap cannot run.

    ``secret``: the sandbox for the phase that holds the secret set, a second one, in the same layout as the first.
    Whatever an entry leaves behind while it holds secret data (files in ``/dev/shm``, System V shared memory, a
    scratch folder the wipe missed) stays in that sandbox, which never runs a public phase, so nothing of it can
    reach the outputs, log or timing of a later public phase."""
    global _box, _secret_box
    if _unavailable is not None:  # both phases run in the same mode
        return None
    current = _secret_box if secret else _box
    if current is not None and not _alive(current, device):
        current.close()
        current = None
    if current is None:
        layout = _box.as_root if secret and _box is not None and not _box.closed else None
        current = _spawn(preload, device, layout)
    if current is not None and not current.ready:
        try:
            current.wait_ready()
        except SandboxError as exc:
            current = None
            _mark_unavailable(f"bubblewrap failed to start ({exc})")
    if secret:
        _secret_box = current
    else:
        _box = current
    return current


def prestart(preload: list[str], device: str = "cpu") -> None:
    """Start this process's sandboxes (the public and the secret phase's) without waiting for them: their servers
    import torch while the caller works.

    It must be called from the thread that will use the sandbox (bwrap's --die-with-parent follows the thread).
    """
    global _box, _secret_box
    if _box is None:
        _box = _spawn(preload, device)
    if _secret_box is None and _box is not None:
        _secret_box = _spawn(preload, device, _box.as_root)


def _spawn(preload: list[str], device: str = "cpu", as_root: bool | None = None) -> Sandbox | None:
    if _unavailable is not None:
        return None
    if os.environ.get("HARNESS_SANDBOX", "").lower() in ("0", "off", "no", "false"):
        _mark_unavailable("HARNESS_SANDBOX is off")
    elif shutil.which("bwrap") is None:
        _mark_unavailable("bubblewrap (bwrap) is not installed")
    else:
        try:
            box = Sandbox(preload, wait=False, as_root=as_root, device=device)
            atexit.register(box.close)
            return box
        except (SandboxError, OSError) as exc:
            _mark_unavailable(f"bubblewrap failed to start ({exc})")
    return None


def _mark_unavailable(reason: str) -> None:
    global _unavailable
    _unavailable = reason
    print(f"warning: entries run without a sandbox ({reason}): an entry's code can read any file this user can (the "
          "guest's labels and the database included) and use the network; time, memory, CPU, process and file-size "
          "limits still apply (under root, as uid 65534). Results are marked not sandboxed.", file=sys.stderr)


def close_shared() -> None:
    global _box, _secret_box
    for box in (_box, _secret_box):
        if box is not None:
            box.close()
    _box = _secret_box = None
