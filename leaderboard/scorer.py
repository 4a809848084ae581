"""The dashboard scores uploads itself: each server process runs one ``python -m harness.evaluate --watch`` beside it
(started by ``cache.scorer``, so once per process), with the dashboard's database, submissions and guest folders.

The watcher is started from a thread of its own that lives as long as the server and waits on it: Linux's
parent-death signal (``--parent``, ``PR_SET_PDEATHSIG``) is sent when that thread ends, so the watcher stops with the
server however the server ends (SIGTERM, Ctrl-C, SIGKILL), and the thread starts it again if it stops on its own
(after ``RESTART_SECONDS``, longer each time it dies quickly). Several dashboards, manual runs or watchers elsewhere
may score the same database: runs claim each version first (``harness.store.claims``), so none is scored twice.

``$LEADERBOARD_EVALUATE=off`` turns it off, for deployments that score elsewhere (a Dask cluster, another machine);
``$LEADERBOARD_EVALUATE_ARGS`` adds flags to the watcher's command (``--interval 5 --device cuda``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.common.competition import FOLDER_ENV
from leaderboard.config import REPO, Settings

ENV = "LEADERBOARD_EVALUATE"            # off / 0 / no / false: this dashboard scores nothing (default: on)
ARGS_ENV = "LEADERBOARD_EVALUATE_ARGS"  # more flags for the watcher, e.g. "--interval 5 --device cuda"
OFF = frozenset({"off", "0", "no", "false"})
LOG_NAME = "watcher.log"                # in $LEADERBOARD_JOBS (default .leaderboard-jobs/)
LOG_KEEP_BYTES = 10 ** 7                # a longer log is started afresh when the watcher starts
RESTART_SECONDS = 10.0                  # after a stop; doubled while it keeps stopping within a minute
RESTART_MAX_SECONDS = 600.0
QUICK_SECONDS = 60.0


def enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return (env.get(ENV) or "on").strip().lower() not in OFF


def command(settings: Settings, parent: int, env: Mapping[str, str] | None = None) -> list[str]:
    """The watcher's command line: the dashboard's folders, ``--parent``, and $LEADERBOARD_EVALUATE_ARGS (a
    ValueError naming the variable when it cannot be split). The database URL goes by $LEADERBOARD_DB, not the
    command line, where a password would show in ``ps``."""
    env = os.environ if env is None else env
    try:
        extra = shlex.split(env.get(ARGS_ENV) or "")
    except ValueError as exc:
        raise ValueError(f"${ARGS_ENV} cannot be read as flags ({exc}); fix its quotes and restart the "
                         "dashboard.") from None
    rules = ["--config", str(settings.folder / "competition.toml")] if settings.folder is not None else []
    return [sys.executable, "-m", "harness.evaluate", "--watch", "--submissions", str(settings.submissions),
            "--mystery", str(settings.mystery), *rules, "--parent", str(parent), *extra]


def child_env(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The dashboard's environment with its database and this checkout first on the import path (the watcher runs
    the same harness as the dashboard, installed or not)."""
    env = dict(os.environ if env is None else env)
    env["LEADERBOARD_DB"] = settings.db_url
    env.pop(FOLDER_ENV, None)  # the watcher is given its competition's paths; the variable could name another
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("NO_COLOR", "1")
    return env


@dataclass
class Scorer:
    """One watcher process kept running beside this server process (see the module's docstring)."""
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    pid: int | None = None
    started_at: datetime | None = None
    starts: int = 0
    last_exit: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _process: subprocess.Popen | None = None

    def start(self) -> Scorer:
        self._thread = threading.Thread(target=self._keep_running, name="leaderboard-scorer", daemon=True)
        self._thread.start()
        return self

    def _keep_running(self) -> None:
        delay = RESTART_SECONDS
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._run_once()
            except Exception as exc:  # noqa: BLE001 - a start that fails (no such file, no memory) is tried again
                self._log(f"could not start the watcher: {type(exc).__name__}: {exc}")
            ran = time.monotonic() - began
            delay = min(2 * delay, RESTART_MAX_SECONDS) if ran < QUICK_SECONDS else RESTART_SECONDS
            if not self._stop.is_set():
                self._log(f"the watcher stopped (exit code {self.last_exit}); starting it again in {delay:g} s")
            self._stop.wait(delay)

    def _run_once(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_KEEP_BYTES:
            self.log_path.unlink()
        with open(self.log_path, "ab") as log:
            log.write(f"--- {now():%Y-%m-%d %H:%M:%S} UTC: {shlex.join(self.argv)}\n".encode())
            log.flush()
            # Started from this thread, which lives as long as the server: the parent-death signal follows it.
            self._process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            self.pid, self.started_at, self.starts = self._process.pid, now(), self.starts + 1
            self.last_exit = self._process.wait()
            self.pid = None

    def _log(self, line: str) -> None:
        try:
            with open(self.log_path, "a") as log:
                log.write(f"--- {now():%Y-%m-%d %H:%M:%S} UTC: {line}\n")
        except OSError:
            pass

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the watcher (SIGTERM: the version it is scoring is left for the next run) and keep it stopped."""
        self._stop.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> str:
        """One sentence for the organiser."""
        if self.running():
            return (f"This dashboard scores uploads: python -m harness.evaluate --watch runs beside it (pid "
                    f"{self.pid}, started {self.started_at:%Y-%m-%d %H:%M} UTC{self._restarts()}; log "
                    f"{self.log_path}).")
        return (f"This dashboard's watcher is not running now{self._restarts()}; it is started again within "
                f"{RESTART_MAX_SECONDS / 60:g} minutes. Its log: {self.log_path}.")

    def _restarts(self) -> str:
        return f", {self.starts - 1} restart(s)" if self.starts > 1 else ""


def start(settings: Settings, env: Mapping[str, str] | None = None) -> Scorer | None:
    """A running Scorer for this server process, or None when $LEADERBOARD_EVALUATE turns it off."""
    if not enabled(env):
        return None
    return Scorer(command(settings, os.getpid(), env), child_env(settings, env), settings.jobs / LOG_NAME).start()


def off_sentence() -> str:
    return (f"This dashboard does not score uploads (${ENV}=off): run python -m harness.evaluate --watch with the "
            "same --db and --submissions elsewhere, or they stay pending.")


def now() -> datetime:
    return datetime.now(UTC)
