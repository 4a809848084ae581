"""What the ``python -m harness.<command>`` commands share: the ``--db`` and ``--device`` flags, and how a
problem the user can fix ends a command: ``error: <one sentence>`` and an exit status, never a traceback; Ctrl-C
ends one with ``interrupted: <what was kept, how to resume>`` and status 130."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from harness.contract import DEVICES
from harness.errors import HarnessError

INTERRUPTED = 130  # a command's exit status after Ctrl-C, as the shell gives one killed by SIGINT (128 + 2)
BROKEN_PIPE = 141  # ... when the reader of its output went away, as the shell gives one killed by SIGPIPE (128 + 13)


def prog(command: str) -> str:
    """The command as it was typed, for its usage line: ``harness <command>`` through the ``harness`` command (or
    ``python -m harness <command>``), else ``python -m harness.<command>``."""
    launcher = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    through_harness = launcher.stem == "harness" or (launcher.name, launcher.parent.name) == ("__main__.py", "harness")
    return f"harness {command}" if through_harness else f"python -m harness.{command}"


def ended(main: Callable[[], int]) -> int:
    """``main()``'s exit status, its output flushed; when the output's reader went away (``... --help | head``), the
    command ends quietly with BROKEN_PIPE instead of a traceback."""
    try:
        try:
            return main()
        finally:
            sys.stdout.flush()  # here, where a closed pipe can be caught, not at the interpreter's exit
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe or socket broke: that is an error to show
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more goes into the pipe
        return BROKEN_PIPE


def _stdout_closed() -> bool:
    """Whether nobody reads standard output any more (the pipe's reading end is closed)."""
    import select
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLAlchemy URL or SQLite path (default: $LEADERBOARD_DB or leaderboard.db)")


def add_device_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--device", choices=DEVICES, default=default,
                        help=f"where models run: cpu, cuda, or auto (cuda when there is one) (default: {default})")


def add_cluster_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", default=os.environ.get("LEADERBOARD_CLUSTER") or None, metavar="ADDRESS",
                        help="run the entries on a Dask cluster: local:N (N worker processes here), tcp://HOST:8786 "
                             "or tls://HOST:8786 (certificates in $LEADERBOARD_CLUSTER_TLS_DIR) "
                             "(default: $LEADERBOARD_CLUSTER, else this machine; see docs/cluster.md)")


def say_error(exc: BaseException, stream: TextIO | None = None) -> None:
    """``error: <exc>`` on ``stream`` (stderr by default), red on a terminal; the sentence is printed as it is."""
    from rich.console import Console
    from rich.text import Text
    console = Console(file=stream or sys.stderr, soft_wrap=True, highlight=False)
    console.print(Text.assemble(("error:", "red"), " ", str(exc)))  # Text: brackets in the sentence are not markup


def say_interrupted(sentence: str, stream: TextIO | None = None) -> int:
    """``interrupted: <sentence>`` on ``stream`` (stderr by default); returns INTERRUPTED. A second Ctrl-C while it
    is said is ignored (the command is already ending)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"\ninterrupted: {sentence}", file=stream or sys.stderr, flush=True)
    return INTERRUPTED


def run(body: Callable[[], int], *, status: int = 2, stream: TextIO | None = None,
        errors: tuple[type[Exception], ...] = (HarnessError,),
        interrupted: str | Callable[[], str] | None = None) -> int:
    """``body()``'s exit status; one of ``errors`` (a HarnessError by default) instead prints ``error: <sentence>``
    on ``stream`` (stderr by default) and gives ``status`` (2 by default). Ctrl-C prints ``interrupted: <sentence>``
    (``interrupted``, or what it returns: what was kept and how to resume) on stderr and gives INTERRUPTED (130)."""
    try:
        return body()
    except errors as exc:
        say_error(exc, stream)
        return status
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        return say_interrupted(interrupted() if callable(interrupted) else interrupted)
