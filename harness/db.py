"""The results store: SQLAlchemy 2.0 ORM tables and the one engine factory."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np
from sqlalchemy import (JSON, Engine, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, create_engine,
                        event)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from harness.errors import HarnessError

DEFAULT_URL = "sqlite:///leaderboard.db"
ENV_VAR = "LEADERBOARD_DB"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    versions: Mapped[list["EntryVersion"]] = relationship(back_populates="entry", order_by="EntryVersion.id")


class EntryVersion(Base):
    """One content of an entry folder; a change to any file is a new version."""
    __tablename__ = "entry_versions"
    __table_args__ = (UniqueConstraint("entry_id", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    weights_hash: Mapped[str] = mapped_column(String(64))
    weights_bytes: Mapped[int]
    display_name: Mapped[str] = mapped_column(String(200))
    author: Mapped[Optional[str]] = mapped_column(String(200))
    description: Mapped[Optional[str]] = mapped_column(Text)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    constructor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    entry: Mapped[Entry] = relationship(back_populates="versions")


class Dataset(Base):
    """An evaluation set as it was scored: MNIST test, or the guest digits after preprocessing."""
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("kind", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "mnist" or "guest"
    content_hash: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    source: Mapped[str] = mapped_column(String(200))  # where it came from ("folder", "sample", a path)
    preprocess_version: Mapped[Optional[str]] = mapped_column(String(40))
    labels: Mapped[bytes] = mapped_column(LargeBinary)  # npy int64 [N]
    files: Mapped[list[Any]] = mapped_column(default=list)  # guest file names, secret until the reveal
    images: Mapped[Optional[bytes]] = mapped_column(LargeBinary)  # guest: npy uint8 [N,28,28] as the models saw them
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One invocation of ``python -m harness.evaluate``."""
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]
    harness_version: Mapped[str] = mapped_column(String(40))
    torch_version: Mapped[str] = mapped_column(String(40))
    python_version: Mapped[str] = mapped_column(String(40))
    device: Mapped[str] = mapped_column(String(40))
    argv: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running, finished, failed


class Evaluation(Base):
    """One entry version scored against one pair of datasets; committed whole or not at all."""
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_key", "eval_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("entry_versions.id"))
    eval_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # ok, failed
    error: Mapped[Optional[str]] = mapped_column(Text)
    device: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds: Mapped[float]
    params: Mapped[Optional[int]]
    images_per_second: Mapped[Optional[float]]
    peak_memory_bytes: Mapped[Optional[int]]
    output_kind: Mapped[Optional[str]] = mapped_column(String(20))
    log: Mapped[Optional[str]] = mapped_column(Text)
    sandboxed: Mapped[Optional[bool]]  # ran inside the bubblewrap sandbox; False: a plain child process
    version: Mapped[EntryVersion] = relationship()
    run: Mapped[Run] = relationship()
    results: Mapped[list["Result"]] = relationship(back_populates="evaluation", cascade="all, delete-orphan")


class Result(Base):
    """Metrics and per-sample predictions of one evaluation on one dataset."""
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("evaluation_id", "dataset_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    correct: Mapped[int]
    total: Mapped[int]
    accuracy: Mapped[float]
    ci_low: Mapped[float]
    ci_high: Mapped[float]
    log_loss: Mapped[Optional[float]]
    confusion: Mapped[list[Any]]
    precision: Mapped[list[Any]]
    recall: Mapped[list[Any]]
    predicted: Mapped[bytes] = mapped_column(LargeBinary)      # npy uint8 [N]
    confidence: Mapped[bytes] = mapped_column(LargeBinary)     # npy float32 [N]
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)  # npy float16 [N, 10]
    evaluation: Mapped[Evaluation] = relationship(back_populates="results")
    dataset: Mapped[Dataset] = relationship()


class Flag(Base):
    """Competition state, e.g. ``guest_revealed``."""
    __tablename__ = "flags"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def pack(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def unpack(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def resolve_url(arg: str | None = None) -> str:
    """``--db``, else $LEADERBOARD_DB, else ./leaderboard.db; a plain path means an SQLite file."""
    url = arg or os.environ.get(ENV_VAR) or DEFAULT_URL
    return url if "://" in url else f"sqlite:///{url}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # a dashboard can read while the harness writes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | None = None, create: bool = True) -> Engine:
    """The engine for a database URL, with its tables created; bad URLs give one clear HarnessError."""
    url = resolve_url(url)
    hint = "use e.g. --db sqlite:///leaderboard.db or postgresql+psycopg://user:pass@host/dbname"
    try:
        parsed = make_url(url)
        engine = create_engine(parsed)
    except NoSuchModuleError as exc:
        raise HarnessError(f"--db {url!r} names a database driver that is not installed ({exc}); {hint}.") from exc
    except (ArgumentError, ValueError) as exc:
        raise HarnessError(f"--db {url!r} is not a database URL; {hint}.") from exc
    except ImportError as exc:
        raise HarnessError(f"--db {url!r} needs the Python package {exc.name!r}; install it or {hint}.") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            folder = os.path.dirname(os.path.abspath(parsed.database))
            if not os.path.isdir(folder):
                raise HarnessError(f"--db {url!r}: the folder {folder} does not exist; create it or choose another path.")
    if create:
        try:
            Base.metadata.create_all(engine)
        except DBAPIError as exc:
            raise HarnessError(f"cannot open the database {url!r} ({str(exc.orig).strip()}); check the path, its "
                               f"permissions or the server, or {hint}.") from exc
    return engine


# --- Dashboard: organiser decisions and their audit trail (leaderboard/) ---------------------------------

class Moderation(Base):
    """An organiser's decision about an entry: ``hidden`` (off every public page) or ``disqualified``
    (shown unranked, with the reason); ``visible`` undoes either."""
    __tablename__ = "moderation"
    entry_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # visible, hidden, disqualified
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditLog(Base):
    """One organiser action (reveal, re-run, hide, disqualify, ...) with its time."""
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(40))
    entry_name: Mapped[Optional[str]] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")
