"""The competition's rules from ``competition.toml``: title, deadline, reveal, ranking metrics, entries per member.

The harness and the dashboard read the same file: ``--config``, else $COMPETITION_CONFIG, else
``competition.toml`` in the working directory. Without that default file the built-in defaults apply
(no deadline, reveal by the organiser, guest accuracy then MNIST accuracy, several entries per member).
An invalid file raises one :class:`CompetitionConfigError` sentence naming the key and how to fix it.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
KEYS = {"title", "deadline", "timezone", "reveal", "entries_per_member", "max_entry_gb", "ranking", "limits",
        "dashboard", "storage"}
GB = 1_000_000_000
RANKING_KEYS = {"primary", "tie_break"}
LIMITS_KEYS = {"timeout", "seconds_per_1000_images"}
DASHBOARD_KEYS = {"warm_memory"}
DEFAULT_WARM_MEMORY = 2 * 1024 ** 3  # bytes the dashboard's warm entries may hold together: room on an 8 GiB server
BYTE_UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
STORAGE_KEYS = {"keep_versions"}
DEFAULT_TIMEOUT = 300.0  # seconds per entry when neither the command line nor the rules set one
UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hour": 3600, "hours": 3600}


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
    timeout: float | None = None              # [limits] seconds per entry (loading, warm-up, all its images)
    seconds_per_1000_images: float | None = None  # [limits] or this many seconds per 1,000 images handed over
    warm_memory: int = DEFAULT_WARM_MEMORY    # [dashboard] bytes Draw-a-digit's warm entries may hold together
    # [storage] keep_versions: None ("all") keeps every version's files; N keeps the files of each entry's last N
    # versions besides the one ranked (``harness.scoring.retention``); results are never dropped
    keep_versions: int | None = None
    source: str = "built-in defaults"

    def time_limit(self, images: int) -> float:
        """The seconds each entry may take to predict ``images`` images (all sets together), by the rules."""
        if self.seconds_per_1000_images is not None:
            return self.seconds_per_1000_images * images / 1000
        return self.timeout if self.timeout is not None else DEFAULT_TIMEOUT

    @property
    def max_entry_bytes(self) -> int:
        return int(self.max_entry_gb * GB)

    @property
    def deadline_utc(self) -> datetime | None:
        """The deadline as a naive UTC datetime, comparable with the store's timestamps."""
        return None if self.deadline is None else self.deadline.astimezone(UTC).replace(tzinfo=None)

    def is_late(self, submitted_at_utc: datetime) -> bool:
        return self.deadline_utc is not None and submitted_at_utc > self.deadline_utc

    def deadline_passed(self, now_utc: datetime | None = None) -> bool:
        now = now_utc or datetime.now(UTC).replace(tzinfo=None)
        return self.deadline_utc is not None and now > self.deadline_utc

    def as_dict(self) -> dict:
        """The rules as plain values, for JSON output and the signed-off export."""
        return {"title": self.title, "deadline": self.deadline.isoformat() if self.deadline else None,
                "timezone": self.timezone, "reveal": self.reveal, "primary": self.primary,
                "tie_break": list(self.tie_break), "entries_per_member": self.entries_per_member,
                "max_entry_gb": self.max_entry_gb, "timeout": self.timeout,
                "seconds_per_1000_images": self.seconds_per_1000_images, "warm_memory": self.warm_memory,
                "keep_versions": "all" if self.keep_versions is None else self.keep_versions, "source": self.source}

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
        return utc_naive.replace(tzinfo=UTC).astimezone(ZoneInfo(self.timezone))


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
        raise CompetitionConfigError(f"cannot read the competition config {path} ({exc}); check its "
                                     "permissions.") from exc
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
        raise fail(f"'timezone' = {data.get('timezone')!r} is not a time zone name; use e.g. \"Europe/Paris\" or "
                   "\"UTC\".")
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
    timeout, per_1000 = _limits(data.get("limits", {}), fail)
    warm_memory = _dashboard(data.get("dashboard", {}), fail)
    keep_versions = _storage(data.get("storage", {}), fail)
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
                       timeout=timeout, seconds_per_1000_images=per_1000, warm_memory=warm_memory,
                       keep_versions=keep_versions, source=source)


def _storage(storage, fail) -> int | None:
    """[storage] keep_versions: "all" (None) or how many of each entry's newest versions keep their files."""
    if not isinstance(storage, dict):
        raise fail("'storage' must be a table ([storage] with keep_versions = \"all\" or a number such as 2).")
    unknown = sorted(set(storage) - STORAGE_KEYS)
    if unknown:
        raise fail(f"unknown key storage.{unknown[0]}; the only key is keep_versions.")
    keep = storage.get("keep_versions", "all")
    if keep == "all":
        return None
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise fail(f"storage.keep_versions = {keep!r} must be \"all\" (keep every version's files) or a whole "
                   "number of versions, such as 2 (each entry's ranked version and its last 2 keep their files).")
    return keep


def _limits(limits, fail) -> tuple[float | None, float | None]:
    """[limits]: a time per entry (``timeout``: seconds, or a string such as "20 min") or per 1,000 images."""
    if not isinstance(limits, dict):
        raise fail("'limits' must be a table ([limits] with timeout = \"20 min\" or seconds_per_1000_images = 240).")
    unknown = sorted(set(limits) - LIMITS_KEYS)
    if unknown:
        raise fail(f"unknown key limits.{unknown[0]}; the keys are timeout and seconds_per_1000_images.")
    if len(limits) > 1:
        raise fail("limits.timeout and limits.seconds_per_1000_images both set the time limit; keep one of them.")
    timeout = limits.get("timeout")
    if timeout is not None:
        seconds = _seconds(timeout)
        if seconds is None:
            raise fail(f"limits.timeout = {timeout!r} is not a duration; write seconds (600) or a string such as "
                       "\"20 min\", \"90 s\" or \"1.5 h\".")
        timeout = seconds
    per_1000 = limits.get("seconds_per_1000_images")
    if per_1000 is not None:
        if isinstance(per_1000, bool) or not isinstance(per_1000, (int, float)) or not 0 < per_1000 < float("inf"):
            raise fail(f"limits.seconds_per_1000_images = {per_1000!r} must be a positive number of seconds, "
                       "such as 240.")
        per_1000 = float(per_1000)
    return timeout, per_1000


def _dashboard(table, fail) -> int:
    """[dashboard]: ``warm_memory``, the most the entries kept warm for Draw-a-digit may hold together."""
    if not isinstance(table, dict):
        raise fail("'dashboard' must be a table ([dashboard] with warm_memory = \"2 GiB\").")
    unknown = sorted(set(table) - DASHBOARD_KEYS)
    if unknown:
        raise fail(f"unknown key dashboard.{unknown[0]}; the key is warm_memory.")
    value = table.get("warm_memory", DEFAULT_WARM_MEMORY)
    size = byte_size(value)
    if size is None:
        raise fail(f"dashboard.warm_memory = {value!r} is not a size; write bytes (2147483648) or a string such as "
                   "\"2 GiB\" or \"800 MB\".")
    return size


def byte_size(value) -> int | None:
    """A positive size in bytes from a number of bytes or a string "<number> <unit>" (B, kB, MB, GB, KiB, MiB,
    GiB), else None."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", value.lower())
        if not match or match.group(2) not in BYTE_UNITS:
            return None
        value = float(match.group(1)) * BYTE_UNITS[match.group(2)]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < float("inf"):
        return None
    return int(value)


def _seconds(value) -> float | None:
    """A positive duration in seconds from a number of seconds or a string "<number> <unit>", else None."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", value.lower())
        if not match or match.group(2) not in UNITS:
            return None
        value = float(match.group(1)) * UNITS[match.group(2)]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        return None
    return float(value)


def _deadline(value, zone: str | None, fail) -> datetime | None:
    """An aware deadline: its own UTC offset, else the config's explicit ``timezone``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise fail(f"'deadline' = {value!r} is not a date and time; write e.g. "
                       "2027-01-10T23:59:00+01:00.") from None
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
