"""The fork server that runs inside the bubblewrap sandbox: ``python -m harness.isolation.inside.sandbox_server``.

It imports torch once, then answers jobs from stdin one at a time: fork, drop to an unprivileged user (when
started as root), apply the limits, run the worker, and report the child's pid and exit code on the protocol
stream. The host side is ``harness.isolation.sandbox``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import sys

from harness.common import trees
from harness.isolation.inside.rlimits import limit_process

NOBODY = 65534              # the user an entry runs as when the harness runs as root
FILE_LIMIT = 1024 ** 3      # largest file an entry may write
ENTRIES, INPUTS, OUT = "/entries", "/in", "/out"  # where the entry's folder, images and outputs are inside
SCRATCH = ("/tmp", "/dev/shm")  # writable by every entry in turn: emptied before each one


def become_entry_user() -> None:
    """Drop to the unprivileged user entries run as, when the server runs as root (else it already is that user)."""
    if os.getuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)


def entry_child(job: dict, protocol: int, gate: int) -> None:
    """The forked entry process: wait until the host has put it in its cgroup (``gate`` closes), drop privileges,
    apply limits, run the worker, never return."""
    code = 1
    try:
        os.read(gate, 1)
        os.close(gate)
        os.setsid()
        os.close(protocol)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        become_entry_user()
        limit_process(job["memory_limit"], job["device"], job["cpu_seconds"], job["tasks"], FILE_LIMIT)
        log = os.open(f"{OUT}/entry.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        from harness.isolation.inside import worker
        worker.main(job["folder"], job["metadata"], job["inputs"], OUT, job["device"], job["batch_size"],
                    job.get("gpu_memory"))
        code = 0
    except BaseException:  # noqa: BLE001 - whatever ended the job goes to its log
        import traceback
        traceback.print_exc()  # into the entry's log once it is open, else the server's log
    finally:
        os._exit(code)  # skip atexit hooks an entry may have registered


def scratch_contents() -> dict[str, frozenset[str]]:
    """What the scratch folders hold before any entry ran (a checkout under /tmp is bound there by bwrap): kept."""
    return {folder: frozenset(os.listdir(folder)) for folder in SCRATCH
            if os.path.isdir(folder) and not os.path.islink(folder)}


def wipe_scratch(keep: dict[str, frozenset[str]]) -> bool:
    """Empty the shared scratch folders as the entries' user (who owns what they left there), so that no entry
    finds a file another one wrote, however deep, locked or oddly named; False if something is left. Called before
    each entry, once the host has killed the previous one's processes."""
    if all(set(os.listdir(folder)) <= names for folder, names in keep.items()):
        return True  # the usual case: nothing left, no fork needed
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            become_entry_user()
            code = 0 if all([trees.empty(folder, names) for folder, names in keep.items()]) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0 and all(set(os.listdir(f)) <= n for f, n in keep.items())


def serve(preload: list[str]) -> None:
    """Answer jobs from stdin, one at a time: fork, report the child's pid, then its exit code."""
    protocol = os.dup(1)
    os.dup2(2, 1)  # anything printed by imports goes to stderr, never into the protocol
    import importlib
    for module in ["harness.isolation.inside.worker"] + preload:
        importlib.import_module(module)

    def send(message: dict) -> None:
        os.write(protocol, (json.dumps(message) + "\n").encode())

    keep = scratch_contents()
    send({"ready": True})
    while line := sys.stdin.buffer.readline():
        job = pickle.loads(base64.b64decode(line))
        for module in job["preload"]:
            if module in sys.modules:
                continue
            before = {folder: set(os.listdir(folder)) for folder in keep}
            with contextlib.suppress(Exception):  # the entry's own import will report it
                importlib.import_module(module)
            # What the server's own import wrote there (no entry runs now) is the server's: kept like the rest.
            keep = {folder: names | frozenset(set(os.listdir(folder)) - before[folder])
                    for folder, names in keep.items()}
        if not wipe_scratch(keep):
            send({"error": "what the previous entry left in the sandbox's /tmp could not be removed"})
            continue
        gate, opened = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(opened)
            entry_child(job, protocol, gate)
        os.close(gate)
        send({"pid": pid})
        sys.stdin.buffer.readline()  # the host has put the process in the entry's cgroup (or has none): let it run
        os.close(opened)
        _, status = os.waitpid(pid, 0)
        send({"exit": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve(sys.argv[1:])
