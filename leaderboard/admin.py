"""Organiser actions: password check, reveal, background re-runs, moderation. Each action is logged."""

from __future__ import annotations

import hmac
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from harness.common.competition import FOLDER_ENV
from harness.store import audit, flags, moderation
from harness.store.schema import utcnow
from leaderboard.config import REPO, Settings


def password_ok(given: str, configured: str | None) -> bool:
    """Constant-time comparison; always False when no password is configured."""
    if not configured or not given:
        return False
    return hmac.compare_digest(given.encode(), configured.encode())


def set_revealed(engine: Engine, revealed: bool) -> None:
    flags.set_flag(engine, flags.GUEST_REVEALED, "true" if revealed else "false")
    audit.log_action(engine, "reveal" if revealed else "seal",
                     "guest results revealed" if revealed else "guest results sealed again")


def moderate(engine: Engine, entry_name: str, state: str, reason: str = "") -> bool:
    """Hide, disqualify or restore an entry (logged) unless that is already its state with that reason; True when
    something changed. An "Apply" that changes nothing writes no audit line."""
    current_state, current_reason = moderation.decisions(engine).get(entry_name, ("visible", ""))
    if state == current_state and (state == "visible" or reason.strip() == current_reason):
        return False
    moderation.set_moderation(engine, entry_name, state, reason)
    return True


def evaluation_command(settings: Settings, force: bool = False, only: list[str] | None = None) -> list[str]:
    """``python -m harness.evaluate`` on the dashboard's submissions (CPU, no rich colours). The database URL
    goes in the environment ($LEADERBOARD_DB, see start_job), not on a command line that ``ps`` shows."""
    argv = [sys.executable, "-m", "harness.evaluate", "--submissions",
            str(settings.submissions.resolve()), "--mystery", str(settings.mystery.resolve())]
    if settings.folder is not None:  # a competition folder's rules (its database still goes by $LEADERBOARD_DB)
        argv += ["--config", str((settings.folder / "competition.toml").resolve())]
    for name in only or []:
        argv += ["--only", name]
    return argv + (["--force"] if force else [])


@dataclass
class BackgroundRun:
    """A background process started from the dashboard, with its log file."""
    argv: list[str]
    log_path: Path
    started_at: datetime
    process: subprocess.Popen = field(repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_job(argv: list[str], log_dir: Path, db_url: str | None = None) -> BackgroundRun:
    """Start ``argv`` in the background (own session, output to a log file, ``db_url`` as $LEADERBOARD_DB) and
    return at once."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = utcnow()
    log_path = log_dir / f"evaluate-{started:%Y%m%d-%H%M%S-%f}.log"
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", PYTHONUNBUFFERED="1")
    if db_url:
        env["LEADERBOARD_DB"] = db_url
    env.pop(FOLDER_ENV, None)  # the command is given its competition's paths; the variable could name another
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                   env=env, start_new_session=True)
    return BackgroundRun(argv=argv, log_path=log_path, started_at=started, process=process)


def start_evaluation(engine: Engine, settings: Settings, force: bool, only: list[str] | None = None) -> BackgroundRun:
    job = start_job(evaluation_command(settings, force, only), settings.jobs, settings.db_url)
    audit.log_action(engine, "re-run", f"{'forced ' if force else ''}evaluation"
                     f"{' of ' + ', '.join(only) if only else ' of every entry'} started (pid {job.process.pid}, "
                     f"log {job.log_path})")
    return job


def entry_progress(noted: dict) -> str:
    """The entry being evaluated, as the run noted it: "resnet18: warming up", "resnet18: 1,280 of 10,100 images,
    about 29 min left"."""
    from harness.isolation.process import PREDICTING, Progress, describe
    return describe(noted["entry"], Progress(noted["done"], noted["total"], noted.get("seconds_left"),
                                             str(noted.get("phase") or PREDICTING)))


def run_progress(run: dict | None, job: BackgroundRun, entries: int) -> tuple[float, str]:
    """(fraction done, one line) for a job from the newest run in the database and the job's state."""
    if job.running:
        if run is None or run["started_at"] < job.started_at.replace(microsecond=0):
            return 0.0, "starting: loading the sets…"
        done = run["evaluations"]
        now = run.get("progress")
        fraction = min(done / entries, 0.99) if entries else 0.0
        if now and now.get("total"):  # the entry being evaluated counts for the part of its images done
            fraction = min((done + now["done"] / now["total"]) / entries, 0.99) if entries else 0.0
        return fraction, (f"run #{run['id']} on {run.get('device') or '?'}: {done:,} of {entries:,} entries evaluated "
                          f"so far (unchanged entries are skipped)" + (f"; now {entry_progress(now)}" if now else ""))
    code = job.returncode
    if code == 0:
        return 1.0, "finished"
    return 1.0, f"ended with exit code {code}: see the log below"
