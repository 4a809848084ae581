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
from collections.abc import Mapping
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
FOLDER_ENV = "LEADERBOARD_COMPETITION"
DEFAULT_PATH = Path("competition.toml")
FOLDER_DB = "leaderboard.db"  # a competition folder's own results database
REVEALS = ("organiser", "hidden", "revealed", "after-deadline")


def metrics_for(public: str, secret: str) -> dict[str, tuple[str | None, str, bool]]:
    """metric name -> (dataset kind, attribute, higher is better), for sets stored under these kinds."""
    return {f"{secret}_accuracy": (secret, "accuracy", True), f"{public}_accuracy": (public, "accuracy", True),
            f"{secret}_log_loss": (secret, "log_loss", False), f"{public}_log_loss": (public, "log_loss", False),
            "params": (None, "params", False), "images_per_second": (None, "images_per_second", True)}


METRICS = metrics_for("mnist", "guest")          # the warm-up's (no [task] table)
TASK_METRICS = metrics_for("public", "secret")   # a competition with a [task] table
PRIMARY_METRICS = ("guest_accuracy", "mnist_accuracy")
TASK_PRIMARY_METRICS = ("secret_accuracy", "public_accuracy")
ENTRIES_PER_MEMBER = ("one", "several")
GB = 1_000_000_000
DEFAULT_WARM_MEMORY = 2 * 1024 ** 3  # bytes the dashboard's warm entries may hold together: room on an 8 GiB server
BYTE_UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hour": 3600, "hours": 3600}


class CompetitionConfigError(HarnessError):
    """competition.toml is missing (when named explicitly), unreadable or has an invalid value."""


SECRET_KINDS = ("guest", "secret")  # the secret set's kind in the store: the warm-up's, and every other task's


def is_secret(kind: str) -> bool:
    """Whether results on the set of this kind are sealed until the reveal."""
    return kind in SECRET_KINDS


PREPROCESSES = ("digits", "resize")  # how a raw picture becomes an input: see harness.data.task


@dataclass(frozen=True)
class SetRules:
    """One of the task's two sets as ``[task.public]`` / ``[task.secret]`` says: its title and where it is."""
    title: str
    folder: Path                                # class folders, or images with a labels.csv


@dataclass(frozen=True)
class TaskRules:
    """The ``[task]`` table: what the competition is about (``harness.data.task.task_of`` builds the Task)."""
    title: str
    classes: tuple[str, ...]
    channels: int = 1
    height: int = 28
    width: int = 28
    value_range: tuple[float, float] = (0.0, 1.0)
    preprocess: str = "resize"                  # digits | resize
    public: SetRules = SetRules("public set", Path("public"))
    secret: SetRules = SetRules("secret set", Path("secret"))
    train: Path | None = None                   # the training kit's folder (same layout)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


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
    # [task]: None is the club's warm-up (MNIST test in public, the guest's digits in secret); paths in it are
    # resolved against the folder of the config file
    task: TaskRules | None = None

    @property
    def set_kinds(self) -> tuple[str, str]:
        """The names the store gives the public and the secret set's results: MNIST's ("mnist", "guest"), else
        ("public", "secret")."""
        return ("mnist", "guest") if self.task is None else ("public", "secret")

    @property
    def metrics(self) -> dict[str, tuple[str | None, str, bool]]:
        """This competition's metric names -> (set kind, attribute, higher is better)."""
        return metrics_for(*self.set_kinds)

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
                "keep_versions": "all" if self.keep_versions is None else self.keep_versions, "source": self.source,
                "task": None if self.task is None else {
                    "title": self.task.title, "classes": list(self.task.classes),
                    "input_shape": list(self.task.input_shape),
                    "value_range": list(self.task.value_range), "preprocess": self.task.preprocess,
                    "public": self.task.public.title, "secret": self.task.secret.title}}

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
    """The ``--config`` and ``--competition`` options every command that reads the rules takes (then call
    :func:`settle`)."""
    parser.add_argument("--config", help=f"competition rules file (default: ${ENV_VAR} or ./{DEFAULT_PATH})")
    parser.add_argument("--competition", metavar="DIR",
                        help="the competition's folder: its competition.toml, submissions/ and its own "
                             f"{FOLDER_DB} (default: ${FOLDER_ENV}, else the working directory's files)")


DB_ENV = "LEADERBOARD_DB"
SERVER_SCHEMES = ("postgresql", "postgres")  # database URLs of a server several competitions may share


def schema_of(folder: Path) -> str:
    """The PostgreSQL schema a competition's results go to in a shared server database: ``competition_`` and its
    folder's name in lower-case letters, digits and ``_`` (at most 63 characters)."""
    slug = re.sub(r"[^a-z0-9_]+", "_", folder.resolve().name.lower()).strip("_") or "default"
    return f"competition_{slug}"[:63]


def in_schema(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema`` (psycopg's ``options``), so that the store's
    tables of one competition never meet another's; ``harness.store.engine`` creates the schema."""
    if "search_path" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def database_of(folder: Path, given: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The results database of the competition in ``folder``, for every command and the dashboard alike: a server's
    URL (``given``, else $LEADERBOARD_DB) with the competition's own schema; else ``given`` (--db); else
    ``DIR/leaderboard.db`` (an SQLite $LEADERBOARD_DB is another competition's, never this one's)."""
    server = given or (os.environ if env is None else env).get(DB_ENV) or ""
    if server.startswith(SERVER_SCHEMES):  # one server database: the competition in a schema of its own
        return in_schema(server, schema_of(folder))
    return given or str(folder / FOLDER_DB)


def competition_folder(arg: str | os.PathLike | None = None) -> Path | None:
    """The competition folder named by ``--competition`` or $LEADERBOARD_COMPETITION, or None."""
    named = arg or os.environ.get(FOLDER_ENV)
    return Path(named) if named else None


def settle(args, **defaults: Path) -> Path | None:
    """Point the command's paths into the competition folder (``--competition DIR`` or $LEADERBOARD_COMPETITION):
    ``--config`` to DIR/competition.toml, ``--db`` to DIR/leaderboard.db, and each attribute in ``defaults`` (e.g.
    ``submissions=DEFAULT_SUBMISSIONS``) still holding that very default object to the same name inside DIR; a value
    given on the command line stays. Returns the folder, or None when no competition folder is named."""
    folder = competition_folder(getattr(args, "competition", None))
    if folder is None:
        return None
    if not (folder / DEFAULT_PATH.name).is_file():
        said = "does not exist" if not folder.is_dir() else f"has no {DEFAULT_PATH.name}"
        raise CompetitionConfigError(f"the competition folder {folder} {said}; create it with a {DEFAULT_PATH.name} "
                                     f"(see docs/organiser.md) or point --competition/${FOLDER_ENV} elsewhere.")
    if getattr(args, "config", None) is None:
        args.config = str(folder / DEFAULT_PATH.name)
    if hasattr(args, "db"):
        args.db = database_of(folder, args.db)
    for name, default in defaults.items():
        if getattr(args, name, None) is default:
            setattr(args, name, folder / default)
    return folder


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
    return parse(data, str(path), path.parent)


def parse(data: dict, source: str = "competition.toml", base: Path | None = None) -> Competition:
    """The rules in ``data`` (competition.toml's tables), else CompetitionConfigError: one sentence naming the first
    problem (the keys are checked in the order of the file's documentation: top-level keys and [ranking]'s first)."""
    try:
        rules = _Rules.model_validate(data)
    except ValidationError as exc:
        raise CompetitionConfigError(f"{source}: {_sentence(exc.errors()[0])}") from None
    return rules.competition(source, base)


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
    ("ranking", "primary"): "ranking.primary = {input!r} must be one of " + ", ".join(PRIMARY_METRICS) + " (or, "
                            "with a [task] table, " + ", ".join(TASK_PRIMARY_METRICS) + ").",
    ("ranking", "tie_break"): "ranking.tie_break has {input!r}; use a list of " + ", ".join(METRICS) + " (or, with "
                              "a [task] table, " + ", ".join(TASK_METRICS) + ").",
    ("task", "title"): "task.title must be a non-empty string, such as \"Five shapes\".",
    ("task", "classes"): "task.classes must be a list of at least two different, non-empty class names, such as "
                         "[\"circle\", \"square\"].",
    ("task", "channels"): "task.channels = {input!r} must be 1 (grey) or 3 (colour).",
    ("task", "height"): "task.height = {input!r} must be a whole number of pixels from 8 to 1024.",
    ("task", "width"): "task.width = {input!r} must be a whole number of pixels from 8 to 1024.",
    ("task", "value_range"): "task.value_range = {input!r} must be two numbers, low then high, such as [0, 1].",
    ("task", "preprocess"): "task.preprocess = {input!r} must be \"digits\" (handwriting on paper, MNIST's "
                            "conventions) or \"resize\" (colour conversion, then resize and pad to the input size).",
    ("task", "train"): "task.train = {input!r} must be a folder path, relative to the config's folder.",
    ("task", "public"): "[task.public] must be a table with title and folder keys.",
    ("task", "secret"): "[task.secret] must be a table with title and folder keys.",
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
    primary: Literal[PRIMARY_METRICS + TASK_PRIMARY_METRICS] = "guest_accuracy"
    # given or not (``model_fields_set``): without it, the other accuracy
    tie_break: Annotated[list[Literal[tuple(METRICS) + tuple(TASK_METRICS)]], BeforeValidator(_listed)] = []

    @field_validator("tie_break")
    @classmethod
    def _not_the_primary(cls, tie_break: list[str], info: ValidationInfo) -> list[str]:
        primary = info.data.get("primary")
        if primary in tie_break:
            raise _said(f"ranking.tie_break repeats the primary metric {primary!r}; remove it.")
        return tie_break

    def chosen(self, task: bool) -> tuple[str, tuple[str, ...]]:
        """The primary metric and the tie-breaks, for a competition with a [task] table (``task``) or the
        warm-up; without a tie_break, the other accuracy."""
        names = TASK_METRICS if task else METRICS
        primary = self.primary
        if "primary" not in self.model_fields_set and task:
            primary = "secret_accuracy"
        for name in [primary, *self.tie_break]:
            if name not in names:
                raise _said(f"ranking has {name!r}, a metric of " + ("the MNIST warm-up" if task else "a competition "
                            "with a [task] table") + "; use one of " + ", ".join(names) + ".")
        if "tie_break" in self.model_fields_set:
            return primary, tuple(self.tie_break)
        accuracies = TASK_PRIMARY_METRICS if task else PRIMARY_METRICS
        return primary, tuple(m for m in accuracies if m != primary)


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


class _Set(_Table):
    NAME, EXAMPLE, KEYS_SAID = "task.<set>", "title = ... and folder = ...", "the keys are title and folder"
    title: Annotated[str, AfterValidator(_non_blank)]
    folder: Annotated[str, AfterValidator(_non_blank)]


def _set_table(which: str):
    def check(data):
        if not isinstance(data, dict):
            raise _said(f"[task.{which}] must be a table with title and folder keys (title = \"...\", folder = "
                        f"\"{which}\").")
        unknown = sorted(set(data) - {"title", "folder"})
        if unknown:
            raise _said(f"unknown key task.{which}.{unknown[0]}; the keys are title and folder.")
        for key in ("title", "folder"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise _said(f"task.{which}.{key} must be a non-empty string, such as "
                            + (f"\"the {which} shapes\"" if key == "title" else f"\"{which}\"") + ".")
        return data
    return check


def _classes(value):
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c.strip() for c in value):
        raise ValueError("not class names")
    names = [c.strip() for c in value]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise _said(f"task.classes names {repeated[0]!r} twice; every class needs its own name.")
    bad = [c for c in names if c.startswith((".", "_")) or "/" in c or "\\" in c or len(c) > 60]
    if bad:
        raise _said(f"task.classes has {bad[0]!r}; a class name is also its folder's name: at most 60 characters, "
                    "no '/' or '\\', not starting with '.' or '_'.")
    return names


Side = Annotated[int, Field(strict=True, ge=8, le=1024)]


class _Task(_Table):
    NAME, EXAMPLE = "task", "[task] with title, classes, channels, height, width and preprocess"
    KEYS_SAID = "the keys are title, classes, channels, height, width, value_range, preprocess, train, and the " \
                "tables [task.public] and [task.secret]"
    title: Annotated[str, AfterValidator(_non_blank)]
    classes: Annotated[list[str], BeforeValidator(_classes)]
    channels: Literal[1, 3] = 1
    height: Side = 28
    width: Side = 28
    value_range: tuple[Annotated[float, Field(strict=True, allow_inf_nan=False)],
                       Annotated[float, Field(strict=True, allow_inf_nan=False)]] = (0.0, 1.0)
    preprocess: Literal[PREPROCESSES] = "resize"
    train: Annotated[str, AfterValidator(_non_blank)] | None = None
    public: Annotated[_Set, BeforeValidator(_set_table("public"))]
    secret: Annotated[_Set, BeforeValidator(_set_table("secret"))]

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data):
        cls.check_table(data)
        for key, example in (("title", "title = \"Five shapes\""), ("classes", "classes = [\"circle\", \"square\"]"),
                             ("public", "[task.public] with title and folder"),
                             ("secret", "[task.secret] with title and folder")):
            if key not in data:
                raise _said(f"[task] has no {key}; add {example}.")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        low, high = self.value_range
        if not low < high:
            raise _said(f"task.value_range = [{low:g}, {high:g}] must go from low to high, such as [0, 1].")
        if self.preprocess == "digits" and (self.channels, self.height, self.width) != (1, 28, 28):
            raise _said(f"task.preprocess = \"digits\" makes 1×28×28 inputs (MNIST's conventions), not "
                        f"{self.channels}×{self.height}×{self.width}; set channels = 1, height = 28, width = 28, or "
                        "choose preprocess = \"resize\".")
        if self.public.folder.strip() == self.secret.folder.strip():
            raise _said(f"task.public.folder and task.secret.folder are both {self.public.folder!r}; the secret set "
                        "needs a folder of its own.")
        return self

    def rules(self, base: Path) -> TaskRules:
        def at(folder: str) -> Path:
            return (base / folder.strip()).resolve()
        return TaskRules(title=self.title, classes=tuple(self.classes), channels=self.channels, height=self.height,
                         width=self.width, value_range=(float(self.value_range[0]), float(self.value_range[1])),
                         preprocess=self.preprocess, public=SetRules(self.public.title, at(self.public.folder)),
                         secret=SetRules(self.secret.title, at(self.secret.folder)),
                         train=at(self.train) if self.train else None)


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
    task: _Task | None = None

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

    @model_validator(mode="after")
    def _metrics_of_the_task(self):
        self.ranking.chosen(self.task is not None)
        return self

    def competition(self, source: str, base: Path | None = None) -> Competition:
        keep = self.storage.keep_versions
        primary, tie_break = self.ranking.chosen(self.task is not None)
        task = self.task.rules(base or Path(".")) if self.task is not None else None
        return Competition(title=self.title, deadline=self.deadline, timezone=self.timezone or "UTC",
                           reveal=self.reveal, primary=primary, tie_break=tie_break, task=task,
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
