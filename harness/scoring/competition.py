"""The competition's rules from ``competition.toml``: title, deadline, reveal, ranking metrics, entries per member.

The harness and the dashboard read the same file: ``--config``, else $COMPETITION_CONFIG, else
``competition.toml`` in the working directory. Without that default file the built-in defaults apply
(no deadline, reveal by the organiser, guest accuracy then MNIST accuracy, several entries per member).
An invalid file raises one :class:`CompetitionConfigError` sentence naming the key and how to fix it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harness.errors import HarnessError

ENV_VAR = "COMPETITION_CONFIG"
DEFAULT_PATH = Path("competition.toml")
REVEALS = ("organiser", "hidden", "revealed", "after-deadline")
# metric name -> (dataset kind, attribute, higher is better)
METRICS = {"guest_accuracy": ("guest", "accuracy", True), "mnist_accuracy": ("mnist", "accuracy", True),
           "guest_log_loss": ("guest", "log_loss", False), "mnist_log_loss": ("mnist", "log_loss", False),
           "params": (None, "params", False), "images_per_second": (None, "images_per_second", True)}
PRIMARY_METRICS = ("guest_accuracy", "mnist_accuracy")
ENTRIES_PER_MEMBER = ("one", "several")
KEYS = {"title", "deadline", "timezone", "reveal", "entries_per_member", "max_entry_gb", "ranking"}
GB = 1_000_000_000
RANKING_KEYS = {"primary", "tie_break"}


class CompetitionConfigError(HarnessError):
    """competition.toml is missing (when named explicitly), unreadable or has an invalid value."""


@dataclass(frozen=True)
class Competition:
    title: str = "MNIST club competition"
    deadline: datetime | None = None          # aware; None: no deadline, every version counts
    timezone: str = "UTC"                     # how times are shown
    reveal: str = "organiser"                 # organiser | hidden | revealed | after-deadline
    primary: str = "guest_accuracy"
    tie_break: tuple[str, ...] = ("mnist_accuracy",)
    entries_per_member: str = "several"       # one | several
    max_entry_gb: float = 2.0                 # an entry whose files take more fails unread (GB = 10^9 bytes)
    source: str = "built-in defaults"

    @property
    def max_entry_bytes(self) -> int:
        return int(self.max_entry_gb * GB)

    @property
    def deadline_utc(self) -> datetime | None:
        """The deadline as a naive UTC datetime, comparable with the store's timestamps."""
        return None if self.deadline is None else self.deadline.astimezone(timezone.utc).replace(tzinfo=None)

    def is_late(self, submitted_at_utc: datetime) -> bool:
        return self.deadline_utc is not None and submitted_at_utc > self.deadline_utc

    def deadline_passed(self, now_utc: datetime | None = None) -> bool:
        now = now_utc or datetime.now(timezone.utc).replace(tzinfo=None)
        return self.deadline_utc is not None and now > self.deadline_utc

    def as_dict(self) -> dict:
        """The rules as plain values, for JSON output and the signed-off export."""
        return {"title": self.title, "deadline": self.deadline.isoformat() if self.deadline else None,
                "timezone": self.timezone, "reveal": self.reveal, "primary": self.primary,
                "tie_break": list(self.tie_break), "entries_per_member": self.entries_per_member,
                "max_entry_gb": self.max_entry_gb, "source": self.source}

    def guest_revealed(self, organiser_flag: bool, now_utc: datetime | None = None) -> bool:
        """Whether guest results may be shown, given the organiser's reveal button state."""
        if self.reveal == "hidden":
            return False
        if self.reveal == "revealed":
            return True
        if self.reveal == "after-deadline":
            return self.deadline_passed(now_utc)
        return organiser_flag

    def local(self, utc_naive: datetime) -> datetime:
        """A store timestamp (naive UTC) in the competition's time zone."""
        return utc_naive.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(self.timezone))


def add_argument(parser) -> None:
    """The ``--config`` option every command that reads the rules takes."""
    parser.add_argument("--config", help=f"competition rules file (default: ${ENV_VAR} or ./{DEFAULT_PATH})")


def resolve_path(arg: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The config path and whether it was named explicitly (then it must exist)."""
    if arg:
        return Path(arg), True
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]), True
    return DEFAULT_PATH, False


def load(arg: str | os.PathLike | None = None) -> Competition:
    path, explicit = resolve_path(arg)
    if not path.is_file():
        if explicit:
            raise CompetitionConfigError(f"the competition config {path} does not exist; create it (see "
                                         f"competition.toml in the repository) or point --config/{ENV_VAR} elsewhere.")
        return Competition()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CompetitionConfigError(f"cannot read the competition config {path} ({exc}); check its permissions.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CompetitionConfigError(f"{path} is not valid TOML ({exc}); fix the line it names.") from exc
    return parse(data, str(path))


def parse(data: dict, source: str = "competition.toml") -> Competition:
    def fail(message: str) -> CompetitionConfigError:
        return CompetitionConfigError(f"{source}: {message}")

    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; the keys are {', '.join(sorted(KEYS))}.")
    ranking = data.get("ranking", {})
    if not isinstance(ranking, dict):
        raise fail("'ranking' must be a table ([ranking] with primary = ... and tie_break = [...]).")
    unknown = sorted(set(ranking) - RANKING_KEYS)
    if unknown:
        raise fail(f"unknown key ranking.{unknown[0]}; the keys are primary and tie_break.")

    title = data.get("title", Competition.title)
    if not isinstance(title, str) or not title.strip():
        raise fail("'title' must be a non-empty string.")
    zone = data.get("timezone", "UTC")
    try:
        ZoneInfo(zone) if isinstance(zone, str) else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if not isinstance(zone, str):
        raise fail(f"'timezone' = {data.get('timezone')!r} is not a time zone name; use e.g. \"Europe/Paris\" or \"UTC\".")
    deadline = _deadline(data.get("deadline"), zone if "timezone" in data else None, fail)
    reveal = data.get("reveal", "organiser")
    if reveal not in REVEALS:
        raise fail(f"'reveal' = {reveal!r} is not one of {', '.join(REVEALS)}.")
    if reveal == "after-deadline" and deadline is None:
        raise fail("'reveal' = \"after-deadline\" needs a 'deadline'; add one or choose another reveal.")
    per_member = data.get("entries_per_member", "several")
    if per_member not in ENTRIES_PER_MEMBER:
        raise fail(f"'entries_per_member' = {per_member!r} must be \"one\" or \"several\".")
    max_gb = data.get("max_entry_gb", Competition.max_entry_gb)
    if isinstance(max_gb, bool) or not isinstance(max_gb, (int, float)) or not 0 < max_gb < float("inf"):
        raise fail(f"'max_entry_gb' = {max_gb!r} must be a positive number of gigabytes, such as 2 or 0.5.")
    primary = ranking.get("primary", "guest_accuracy")
    if primary not in PRIMARY_METRICS:
        raise fail(f"ranking.primary = {primary!r} must be one of {', '.join(PRIMARY_METRICS)}.")
    tie_break = ranking.get("tie_break", ["mnist_accuracy"] if primary == "guest_accuracy" else ["guest_accuracy"])
    if isinstance(tie_break, str):
        tie_break = [tie_break]
    if not isinstance(tie_break, list) or any(m not in METRICS for m in tie_break):
        bad = tie_break if not isinstance(tie_break, list) else [m for m in tie_break if m not in METRICS][0]
        raise fail(f"ranking.tie_break has {bad!r}; use a list of {', '.join(METRICS)}.")
    if primary in tie_break:
        raise fail(f"ranking.tie_break repeats the primary metric {primary!r}; remove it.")
    return Competition(title=title.strip(), deadline=deadline, timezone=zone, reveal=reveal, primary=primary,
                       tie_break=tuple(tie_break), entries_per_member=per_member, max_entry_gb=float(max_gb),
                       source=source)


def _deadline(value, zone: str | None, fail) -> datetime | None:
    """An aware deadline: its own UTC offset, else the config's explicit ``timezone``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise fail(f"'deadline' = {value!r} is not a date and time; write e.g. 2027-01-10T23:59:00+01:00.") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        raise fail(f"'deadline' = {value} has no time of day; write e.g. {value}T23:59:00 with a time zone.")
    if not isinstance(value, datetime):
        raise fail(f"'deadline' = {value!r} is not a date and time; write e.g. 2027-01-10T23:59:00+01:00.")
    if value.tzinfo is None:
        if zone is None:
            raise fail(f"'deadline' = {value.isoformat()} has no time zone; add an offset (e.g. "
                       f"{value.isoformat()}+01:00) or a 'timezone' key such as \"Europe/Paris\".")
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value
