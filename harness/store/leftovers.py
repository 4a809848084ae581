"""What a harness process killed with ``kill -9`` leaves behind, and its removal at the next start.

Each run records its host, pid and the process's start time (``harness.common.tempfolders.this_process``; the pair
survives pid reuse). At the next start on the same host, a "running" run whose process is gone is marked
"interrupted" and its claims are released at once, instead of after the claim lease; a run on another host keeps the
lease rule, as this host cannot see its processes. The temporary folders of processes that are gone are removed
(``harness.common.tempfolders``).
"""

from __future__ import annotations

import socket

from sqlalchemy import Engine, delete, select, update

from harness.common.tempfolders import gone, remove_dead_folders
from harness.store.schema import Claim, Run


def interrupt_dead_runs(engine: Engine) -> list[int]:
    """Mark this host's "running" runs whose process is gone as "interrupted" and release their claims at once."""
    host = socket.gethostname()
    with engine.connect() as connection:
        rows = connection.execute(select(Run.id, Run.pid, Run.process_started_at)
                                  .where(Run.status == "running", Run.host == host, Run.pid.is_not(None))).all()
    dead = [row.id for row in rows if gone(row.pid, row.process_started_at)]
    if dead:
        with engine.begin() as connection:
            connection.execute(update(Run).where(Run.id.in_(dead), Run.status == "running")
                               .values(status="interrupted"))
            connection.execute(delete(Claim).where(Claim.run_id.in_(dead)))
    return dead


def clean(engine: Engine) -> None:
    """At the start of a run: what killed harness processes on this host left in the store and on disk."""
    interrupt_dead_runs(engine)
    remove_dead_folders()
