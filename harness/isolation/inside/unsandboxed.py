"""An unsandboxed entry's process, forked by multiprocessing's fork server (the host side is
``harness.isolation.process``): it joins its cgroup, takes a private TMPDIR next to its output folder, sends what it
prints to its log, applies its limits (``rlimits``), drops to a user of its own under a root harness, and runs the
``worker``. The fork server imported ``reaper`` first, so it adopts whatever the entry leaves running.
"""

from __future__ import annotations

import os

from harness.contract import EntryMetadata
from harness.isolation.inside import rlimits

LOG_FILE = "entry.log"
SCRATCH_SUFFIX = ".tmp"  # next to an unsandboxed entry's output folder: its private TMPDIR


def main(folder: str, metadata: EntryMetadata, inputs: dict[str, str], out_dir: str, device: str,
         batch_size: int | None, memory_limit: int, cpu_seconds: int, tasks: int, file_size: int,
         uid: int | None, gpu_memory: int | None, cgroup: list[str] | None = None) -> None:
    """Become the entry's process (in its cgroup's ``cgroup.procs`` files ``cgroup``, as ``uid`` when not None,
    under its limits) and run the worker; never returns."""
    for procs in cgroup or []:  # first of all: every page it touches from now on is charged to its cgroup
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    for name in ("TMPDIR", "TMP", "TEMP"):  # a scratch folder of its own, removed at its end (as the sandbox's /tmp)
        os.environ[name] = os.path.join(os.path.dirname(out_dir), os.path.basename(out_dir) + SCRATCH_SUFFIX)
    import tempfile
    tempfile.tempdir = None
    os.setsid()  # own session and process group: nothing the entry starts keeps the harness's terminal
    log = os.open(os.path.join(out_dir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    rlimits.limit_process(memory_limit, device, cpu_seconds, tasks, file_size)
    if uid is not None:
        rlimits.become_user(uid, keep_reading=True)
    rlimits.die_with_parent()  # a harness killed with -9 takes its fork server along, and the entry with it
    from harness.isolation.inside import worker
    worker.main(folder, metadata, inputs, out_dir, device, batch_size, gpu_memory)
    os._exit(0)  # skip atexit hooks an entry may have registered
