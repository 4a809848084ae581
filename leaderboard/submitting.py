"""The Submit page's and the organiser's code section's logic outside Streamlit: the upload limits from the
environment, and one call into ``harness.submit.upload`` (the check runs in the entry's own sandboxed process,
never in the dashboard's)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from sqlalchemy import Engine

from harness.common.competition import Competition
from harness.submit.upload import MB, UploadLimits, UploadOutcome, submit

UPLOAD_MB_ENV = "LEADERBOARD_UPLOAD_MB"                 # default 200: MB per upload, all files together
UPLOADS_PER_HOUR_ENV = "LEADERBOARD_UPLOADS_PER_HOUR"   # default 6: checked uploads per member per hour


def limits(env: Mapping[str, str] | None = None) -> UploadLimits:
    """The upload limits: $LEADERBOARD_UPLOAD_MB and $LEADERBOARD_UPLOADS_PER_HOUR, else UploadLimits' defaults."""
    env = os.environ if env is None else env
    default = UploadLimits()
    try:
        max_mb = float(env.get(UPLOAD_MB_ENV) or default.max_bytes / MB)
        per_hour = int(env.get(UPLOADS_PER_HOUR_ENV) or default.per_hour)
    except ValueError:
        raise ValueError(f"${UPLOAD_MB_ENV} must be a number of MB and ${UPLOADS_PER_HOUR_ENV} a whole number; "
                         "fix them and restart the dashboard.") from None
    return UploadLimits(max_bytes=int(max_mb * MB), per_hour=per_hour, check_timeout=default.check_timeout)


def upload(engine: Engine, submissions, rules: Competition, code: str, entry_name: str, files: list,
           address: str | None = None) -> UploadOutcome:
    """Streamlit's uploaded files (``.name``, ``.getvalue()``) submitted as ``entry_name`` with ``code`` from the
    visitor's ``address`` (``st.context.ip_address``: None on localhost)."""
    return submit(engine, submissions, entry_name, code, [(f.name, f.getvalue()) for f in files or []], rules,
                  limits(), address=address)
