"""Where the dashboard finds things, from environment variables (no Streamlit here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.common.competition import Competition
from harness.store.engine import resolve_url
from leaderboard.competitions import Served

REPO = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "LEADERBOARD_ADMIN_PASSWORD"
PASSWORD_SECRET = "admin_password"


@dataclass(frozen=True)
class Settings:
    db_url: str          # LEADERBOARD_DB (default leaderboard.db), as the harness reads it
    submissions: Path    # LEADERBOARD_SUBMISSIONS (default submissions/): entries for draw-a-digit and re-runs
    mystery: Path        # LEADERBOARD_MYSTERY (default mystery_digits/): the guest's original pictures
    jobs: Path           # LEADERBOARD_JOBS (default .leaderboard-jobs/): logs of re-runs started here
    folder: Path | None = None  # the competition folder the harness commands started here are pointed at


def settings(env: Mapping[str, str] | None = None, served: Served | None = None,
             rules: Competition | None = None) -> Settings:
    """The paths of the dashboard's competition: today's variables without a competition folder; with one, its
    database (``served.database``), its ``submissions/``, its secret set's folder (its ``mystery_digits/`` for the
    MNIST warm-up) and its own ``.leaderboard-jobs/``."""
    env = os.environ if env is None else env
    if served is None or served.folder is None:
        return Settings(db_url=resolve_url(env.get("LEADERBOARD_DB")),
                        submissions=Path(env.get("LEADERBOARD_SUBMISSIONS", "submissions")),
                        mystery=Path(env.get("LEADERBOARD_MYSTERY", "mystery_digits")),
                        jobs=Path(env.get("LEADERBOARD_JOBS", ".leaderboard-jobs")))
    folder = served.folder
    task = rules.task if rules is not None else None
    return Settings(db_url=resolve_url(served.database), submissions=folder / "submissions",
                    mystery=task.secret.folder if task is not None else folder / "mystery_digits",
                    jobs=folder / ".leaderboard-jobs", folder=folder)


def configured_password(env: Mapping[str, str], secrets: Mapping | None) -> str | None:
    """The organiser password: $LEADERBOARD_ADMIN_PASSWORD, else ``admin_password`` in Streamlit secrets.

    There is no default: with neither set (or set empty) the organiser controls are off. A secrets file Streamlit
    cannot read raises ValueError, one sentence saying which file and what is wrong: not controls off as if no
    password were set.
    """
    value = env.get(PASSWORD_ENV) or None
    if value is None and secrets is not None:
        try:
            value = secrets.get(PASSWORD_SECRET) or None
        except FileNotFoundError as exc:  # Streamlit raises a subclass on access: no secrets file, or one it can't read
            if getattr(exc, "error_id", None) not in (None, "no-secrets-found"):
                raise ValueError(f"Organiser controls are off: Streamlit could not read its secrets ({exc}). Fix the "
                                 f"file, or set {PASSWORD_ENV} instead, then restart.") from exc
            value = None
    return str(value) if value else None
