"""The competition's rules from ``competition.toml``: title, deadline, reveal, ranking metrics, entries per member.

The harness and the dashboard read the same file: ``--config``, else $COMPETITION_CONFIG, else
``competition.toml`` in the working directory. Without that default file the built-in defaults apply
(no deadline, reveal by the organiser, guest accuracy then MNIST accuracy, several entries per member).
An invalid file raises one :class:`CompetitionConfigError` sentence naming the key and how to fix it: pydantic models
(``_Rules`` and its tables) check each key by its type, and ``MESSAGES`` holds the sentence for each key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.common.limits import DEFAULT_MEMORY, DEFAULT_TIMEOUT, Limits
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
GB = 1_000_000_000
DEFAULT_WARM_MEMORY = 2 * 1024 ** 3  # bytes the dashboard's warm entries may hold together: room on an 8 GiB server
BYTE_UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
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

    def limits(self, images: int, *, timeout: float | None = None, memory: int | None = None, device: str = "auto",
               batch_size: int | None = None) -> Limits:
        """What each entry's process may use to predict ``images`` images (all sets together): the time limit by
        ``[limits]`` and the default memory, each replaced by the value given (a command-line flag; None: not
        given)."""
        return Limits(timeout=self.time_limit(images) if timeout is None else timeout,
                      memory=DEFAULT_MEMORY if memory is None else memory, device=device, batch_size=batch_size)

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
    """The rules in ``data`` (competition.toml's tables), else CompetitionConfigError: one sentence naming the first
    problem (the keys are checked in the order of the file's documentation: top-level keys and [ranking]'s first)."""
    try:
        rules = _Rules.model_validate(data)
    except ValidationError as exc:
        raise CompetitionConfigError(f"{source}: {_sentence(exc.errors()[0])}") from None
    return rules.competition(source)


SAID = "competition_rule"  # the error type of a sentence a validator wrote itself


def _said(sentence: str) -> PydanticCustomError:
    """A validator's own sentence, reported as it is."""
    return PydanticCustomError(SAID, "{sentence}", {"sentence": sentence})


# The sentence for a value of the wrong type, by its key (``input``: the value as written).
MESSAGES = {
    ("title",): "'title' must be a non-empty string.",
    ("timezone",): "'timezone' = {input!r} is not a time zone name; use e.g. \"Europe/Paris\" or \"UTC\".",
    ("reveal",): "'reveal' = {input!r} is not one of " + ", ".join(REVEALS) + ".",
    ("entries_per_member",): "'entries_per_member' = {input!r} must be \"one\" or \"several\".",
    ("max_entry_gb",): "'max_entry_gb' = {input!r} must be a positive number of gigabytes, such as 2 or 0.5.",
    ("limits", "timeout"): "limits.timeout = {input!r} is not a duration; write seconds (600) or a string such as "
                           "\"20 min\", \"90 s\" or \"1.5 h\".",
    ("limits", "seconds_per_1000_images"): "limits.seconds_per_1000_images = {input!r} must be a positive number of "
                                           "seconds, such as 240.",
    ("dashboard", "warm_memory"): "dashboard.warm_memory = {input!r} is not a size; write bytes (2147483648) or a "
                                  "string such as \"2 GiB\" or \"800 MB\".",
    ("storage", "keep_versions"): "storage.keep_versions = {input!r} must be \"all\" (keep every version's files) or a "
                                  "whole number of versions, such as 2 (each entry's ranked version and its last 2 "
                                  "keep their files).",
    ("ranking", "primary"): "ranking.primary = {input!r} must be one of " + ", ".join(PRIMARY_METRICS) + ".",
    ("ranking", "tie_break"): "ranking.tie_break has {input!r}; use a list of " + ", ".join(METRICS) + ".",
}


def _sentence(error) -> str:
    """The one sentence for pydantic's ``error``: a validator's own, else the one for its key."""
    if error["type"] == SAID:
        return error["msg"]
    loc = tuple(error["loc"])
    key = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in MESSAGES), None)
    if key is None:  # not expected: every key has its sentence
        return f"{'.'.join(map(str, loc))}: {error['msg']}."
    return MESSAGES[key].format(input=error["input"])


def _duration(value) -> float:
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError("not a duration")
    return seconds


def _size(value) -> int:
    size = byte_size(value)
    if size is None:
        raise ValueError("not a size")
    return size


def _non_blank(title: str) -> str:
    if not title.strip():
        raise ValueError("blank")
    return title.strip()


def _listed(value):
    """A single tie-break metric as a list of one."""
    return [value] if isinstance(value, str) else value


Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]  # an int or a float, never a bool or text
Duration = Annotated[float, BeforeValidator(_duration)]  # seconds, or a string such as "20 min"
Size = Annotated[int, BeforeValidator(_size)]            # bytes, or a string such as "2 GiB"


class _Table(BaseModel):
    """A table of competition.toml: a table, of known keys only; each value checked by its type."""
    model_config = ConfigDict(frozen=True)
    NAME: ClassVar[str]
    EXAMPLE: ClassVar[str]     # what the table looks like, for a value that is not one
    KEYS_SAID: ClassVar[str]   # its keys, in words

    @model_validator(mode="before")
    @classmethod
    def _table_of_known_keys(cls, data):
        cls.check_table(data)
        return data

    @classmethod
    def check_table(cls, data) -> None:
        if not isinstance(data, dict):
            raise _said(f"'{cls.NAME}' must be a table ({cls.EXAMPLE}).")
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise _said(f"unknown key {cls.NAME}.{unknown[0]}; {cls.KEYS_SAID}.")


class _Ranking(_Table):
    NAME, EXAMPLE, KEYS_SAID = "ranking", "[ranking] with primary = ... and tie_break = [...]", \
        "the keys are primary and tie_break"
    primary: Literal[PRIMARY_METRICS] = "guest_accuracy"
    # given or not (``model_fields_set``): without it, the other accuracy
    tie_break: Annotated[list[Literal[tuple(METRICS)]], BeforeValidator(_listed)] = []

    @field_validator("tie_break")
    @classmethod
    def _not_the_primary(cls, tie_break: list[str], info: ValidationInfo) -> list[str]:
        primary = info.data.get("primary")
        if primary in tie_break:
            raise _said(f"ranking.tie_break repeats the primary metric {primary!r}; remove it.")
        return tie_break

    @property
    def tie_breaks(self) -> tuple[str, ...]:
        if "tie_break" in self.model_fields_set:
            return tuple(self.tie_break)
        return ("mnist_accuracy",) if self.primary == "guest_accuracy" else ("guest_accuracy",)


class _Limits(_Table):
    NAME, EXAMPLE, KEYS_SAID = "limits", "[limits] with timeout = \"20 min\" or seconds_per_1000_images = 240", \
        "the keys are timeout and seconds_per_1000_images"
    timeout: Duration | None = None
    seconds_per_1000_images: Positive | None = None

    @classmethod
    def check_table(cls, data) -> None:
        super().check_table(data)
        if len(data) > 1:
            raise _said("limits.timeout and limits.seconds_per_1000_images both set the time limit; keep one of them.")


class _Dashboard(_Table):
    NAME, EXAMPLE, KEYS_SAID = "dashboard", "[dashboard] with warm_memory = \"2 GiB\"", "the key is warm_memory"
    warm_memory: Size = DEFAULT_WARM_MEMORY


class _Storage(_Table):
    NAME, EXAMPLE, KEYS_SAID = "storage", "[storage] with keep_versions = \"all\" or a number such as 2", \
        "the only key is keep_versions"
    keep_versions: Literal["all"] | Annotated[int, Field(strict=True, ge=0)] = "all"


class _Rules(BaseModel):
    """competition.toml as written: each key checked in this order (a problem in an earlier one is the one said)."""
    model_config = ConfigDict(frozen=True)
    title: Annotated[str, AfterValidator(_non_blank)] = Competition.title
    timezone: str | None = None  # None: not given (then "UTC", and a deadline needs its own offset)
    deadline: datetime | None = None
    reveal: Literal[REVEALS] = "organiser"
    entries_per_member: Literal[ENTRIES_PER_MEMBER] = "several"
    max_entry_gb: Positive = Competition.max_entry_gb
    limits: _Limits = _Limits()
    dashboard: _Dashboard = _Dashboard()
    storage: _Storage = _Storage()
    ranking: _Ranking = _Ranking()

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data):
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise _said(f"unknown key {unknown[0]!r}; the keys are {', '.join(sorted(cls.model_fields))}.")
        _Ranking.check_table(data.get("ranking", {}))  # its shape is said first, its values last
        return data

    @field_validator("timezone", mode="before")
    @classmethod
    def _zone(cls, zone):
        if isinstance(zone, str):
            try:
                ZoneInfo(zone)
                return zone
            except (ZoneInfoNotFoundError, ValueError):
                pass
        raise ValueError("not a time zone")

    @field_validator("deadline", mode="before")
    @classmethod
    def _aware(cls, value, info: ValidationInfo) -> datetime | None:
        return _deadline(value, info.data.get("timezone"))

    @field_validator("reveal")
    @classmethod
    def _reveal_needs_deadline(cls, reveal: str, info: ValidationInfo) -> str:
        if reveal == "after-deadline" and "deadline" in info.data and info.data["deadline"] is None:
            raise _said("'reveal' = \"after-deadline\" needs a 'deadline'; add one or choose another reveal.")
        return reveal

    def competition(self, source: str) -> Competition:
        keep = self.storage.keep_versions
        return Competition(title=self.title, deadline=self.deadline, timezone=self.timezone or "UTC",
                           reveal=self.reveal, primary=self.ranking.primary, tie_break=self.ranking.tie_breaks,
                           entries_per_member=self.entries_per_member, max_entry_gb=float(self.max_entry_gb),
                           timeout=self.limits.timeout, seconds_per_1000_images=self.limits.seconds_per_1000_images,
                           warm_memory=self.dashboard.warm_memory, keep_versions=None if keep == "all" else keep,
                           source=source)


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


def _deadline(value, zone: str | None) -> datetime | None:
    """An aware deadline: its own UTC offset, else the config's explicit ``timezone``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _said(f"'deadline' = {value!r} is not a date and time; write e.g. "
                        "2027-01-10T23:59:00+01:00.") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        raise _said(f"'deadline' = {value} has no time of day; write e.g. {value}T23:59:00 with a time zone.")
    if not isinstance(value, datetime):
        raise _said(f"'deadline' = {value!r} is not a date and time; write e.g. 2027-01-10T23:59:00+01:00.")
    if value.tzinfo is None:
        if zone is None:
            raise _said(f"'deadline' = {value.isoformat()} has no time zone; add an offset (e.g. "
                        f"{value.isoformat()}+01:00) or a 'timezone' key such as \"Europe/Paris\".")
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value
