"""One warm entry's process: ``python -m harness.isolation.inside.warm_server <job>``, inside its own bubblewrap sandbox
where it works, else a plain process. The host side is ``harness.isolation.warm``.

It imports torch, drops to the entry's user and applies the same limits as a one-off run
(``harness.isolation.inside.sandbox_server`` and ``harness.isolation.process``), then hands over to
``harness.isolation.inside.worker.serve``: requests come on stdin, replies go out on what was stdout; the entry's
printing goes to its log.
"""

from __future__ import annotations

import base64
import os
import pickle
import sys


def main(encoded: str) -> None:
    while os.read(0, 1) not in (b"\n", b""):  # the host has put this process in its cgroup (or has none)
        pass
    protocol = os.dup(1)
    os.dup2(2, 1)  # anything printed by imports goes to stderr, never into the protocol
    job = pickle.loads(base64.b64decode(encoded))
    from harness.isolation.inside import rlimits, sandbox_server, worker  # torch, before the address-space limit
    if job["sandboxed"]:
        sandbox_server.become_entry_user()
        rlimits.limit_process(job["memory_limit"], job["device"], job["cpu_seconds"], job["tasks"],
                             sandbox_server.FILE_LIMIT)
    else:  # as unsandboxed.main: limits first, then the user (kept able to read Python wherever it is installed)
        rlimits.limit_process(job["memory_limit"], job["device"], job["cpu_seconds"], job["tasks"],
                             sandbox_server.FILE_LIMIT)
        if job["uid"] is not None:
            rlimits.become_user(job["uid"], keep_reading=True)
        rlimits.die_with_parent()
    log = os.open(os.path.join(job["out"], "entry.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    worker.serve(job["folder"], job["metadata"], 0, protocol, job["in"], job["out"], job["device"],
                 job["batch_size"], job["gpu_memory"])
    os._exit(0)  # skip atexit hooks an entry may have registered


if __name__ == "__main__":
    main(sys.argv[1])
