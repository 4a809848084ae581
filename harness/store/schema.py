"""The results store: SQLAlchemy 2.0 ORM tables and the one engine factory."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# 64-bit on PostgreSQL, whose INTEGER stops at 2 GiB; SQLite's INTEGER is 64-bit already
ByteCount = BigInteger().with_variant(Integer(), "sqlite")


class EntryText(TypeDecorator):
    """Text an entry controls (its entry.toml, what it printed), stored as PostgreSQL can: NUL characters become
    U+FFFD and text longer than the column is cut, where PostgreSQL would refuse the row (SQLite kept it)."""
    impl = Text
    cache_ok = True

    def __init__(self, length: int | None = None):
        super().__init__()
        self.length = length
        self.impl = String(length) if length else Text()

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        value = value.replace("\x00", "\ufffd")
        return value[:self.length] if self.length else value


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (TOML allows them; PostgreSQL's JSON does not) as the strings
    "nan", "inf" and "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_dumps(value: Any) -> str:
    return json.dumps(_finite(value))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    versions: Mapped[list[EntryVersion]] = relationship(back_populates="entry", order_by="EntryVersion.id")


class EntryVersion(Base):
    """One content of an entry folder; a change to any file is a new version."""
    __tablename__ = "entry_versions"
    __table_args__ = (UniqueConstraint("entry_id", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    weights_hash: Mapped[str] = mapped_column(String(64))
    weights_bytes: Mapped[int] = mapped_column(ByteCount)
    display_name: Mapped[str] = mapped_column(EntryText(200))
    author: Mapped[str | None] = mapped_column(EntryText(200))
    description: Mapped[str | None] = mapped_column(EntryText())
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    constructor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the organiser's correction of when this version counts as submitted (UTC), with the reason
    submitted_at_override: Mapped[datetime | None]
    override_reason: Mapped[str | None] = mapped_column(Text)
    entry: Mapped[Entry] = relationship(back_populates="versions")

    @hybrid_property
    def submitted_at(self) -> datetime:
        """When the version counts as submitted: the organiser's override, else when the harness first saw it."""
        return self.submitted_at_override or self.first_seen_at

    @submitted_at.inplace.expression
    @classmethod
    def _submitted_at_expression(cls):
        return func.coalesce(cls.submitted_at_override, cls.first_seen_at)


class VersionFiles(Base):
    """Which files an entry version holds, so a version can be re-scored after its folder changed."""
    __tablename__ = "version_files"
    version_id: Mapped[int] = mapped_column(ForeignKey("entry_versions.id"), primary_key=True)
    manifest: Mapped[dict[str, Any] | None]  # {path in the entry folder: sha256 of its bytes in file_blobs}
    archive: Mapped[bytes | None] = mapped_column(LargeBinary)  # before revision 0004: all files as one zip
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    # when the files were removed to save space (harness.scoring.retention); the manifest stays, the bytes go
    pruned_at: Mapped[datetime | None]


class FileBlob(Base):
    """One file's bytes, kept once however many versions hold it (a new version usually changes one file)."""
    __tablename__ = "file_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(ByteCount)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # None: the file is kept in chunks (file_chunks)


class FileChunk(Base):
    """One piece of a file too large for one value (SQLite stops at 1 GB by default, PostgreSQL's bytea at 1 GB)."""
    __tablename__ = "file_chunks"
    sha256: Mapped[str] = mapped_column(ForeignKey("file_blobs.sha256"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)  # 0, 1, 2, ... in file order
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Claim(Base):
    """A run's claim on one evaluation key while it evaluates it, so that concurrent runs never do it twice."""
    __tablename__ = "claims"
    eval_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """An evaluation set as it was scored: MNIST test, or the guest digits after preprocessing."""
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("kind", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "mnist" or "guest"
    content_hash: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    source: Mapped[str] = mapped_column(String(200))  # where it came from ("folder", "sample", a path)
    preprocess_version: Mapped[str | None] = mapped_column(String(40))
    labels: Mapped[bytes] = mapped_column(LargeBinary)  # npy int64 [N]
    files: Mapped[list[Any]] = mapped_column(default=list)  # guest file names, secret until the reveal
    images: Mapped[bytes | None] = mapped_column(LargeBinary)  # guest: npy uint8 [N,28,28] as the models saw them
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One invocation of ``python -m harness.evaluate``."""
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    harness_version: Mapped[str] = mapped_column(String(40))
    torch_version: Mapped[str] = mapped_column(String(40))
    python_version: Mapped[str] = mapped_column(String(40))
    device: Mapped[str] = mapped_column(String(40))
    argv: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running, finished, failed, interrupted
    # the harness process, to tell a run killed on this host from a live one (harness.store.leftovers)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    process_started_at: Mapped[datetime | None]
    # the entry being evaluated now: {"entry", "done", "total", "seconds_left", "at"} (shown, never ranked)
    progress: Mapped[dict[str, Any] | None]


class Evaluation(Base):
    """One entry version scored against one pair of datasets; committed whole or not at all."""
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_key", "eval_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("entry_versions.id"))
    eval_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # ok, failed
    error: Mapped[str | None] = mapped_column(EntryText())
    device: Mapped[str] = mapped_column(EntryText(40))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds: Mapped[float]
    params: Mapped[int | None]
    images_per_second: Mapped[float | None]
    peak_memory_bytes: Mapped[int | None] = mapped_column(ByteCount)
    output_kind: Mapped[str | None] = mapped_column(String(20))
    log: Mapped[str | None] = mapped_column(EntryText())
    sandboxed: Mapped[bool | None]  # ran inside the bubblewrap sandbox; False: a plain child process
    # The limits it ran under, so that a failure on a limit is evaluated again once that limit is raised (None:
    # stored before migration 0010).
    timeout: Mapped[float | None]
    memory_limit: Mapped[int | None] = mapped_column(ByteCount)
    # The secret phase (the entry's second process, the only one that held the secret set): everything it produced
    # besides its outputs, never shown before the reveal (harness.store.evaluations.sealed). None: no secret phase ran.
    sealed_error: Mapped[str | None] = mapped_column(EntryText())
    sealed_log: Mapped[str | None] = mapped_column(EntryText())
    sealed_seconds: Mapped[float | None]
    sealed_peak_memory_bytes: Mapped[int | None] = mapped_column(ByteCount)
    # The memorisation check (harness.scoring.metrics.memorisation): public images and imperceptibly changed copies
    # of them, scored apart. None: not checked.
    memo_pairs: Mapped[int | None]
    memo_only_original: Mapped[int | None]  # pairs read right as given and wrong as the copy
    memo_only_copy: Mapped[int | None]      # ... and the other way round
    version: Mapped[EntryVersion] = relationship()
    run: Mapped[Run] = relationship()
    results: Mapped[list[Result]] = relationship(back_populates="evaluation", cascade="all, delete-orphan")


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
    log_loss: Mapped[float | None]
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
    entry_name: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")


# --- Submitting from the dashboard: members' personal codes, who owns which entry, the upload log ---------------

class MemberCode(Base):
    """A personal code the organiser issued to a member: only its salted scrypt hash is kept (the code is shown
    once, when issued); a revoked code no longer lets anyone submit."""
    __tablename__ = "member_codes"
    id: Mapped[int] = mapped_column(primary_key=True)  # the code's first part, "<id>-<secret>"
    member: Mapped[str] = mapped_column(String(200), index=True)
    salt: Mapped[str] = mapped_column(String(64))       # hex
    code_hash: Mapped[str] = mapped_column(String(128))  # hex of scrypt(secret, salt)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class EntryOwner(Base):
    """Which member an entry belongs to: the one who first submitted it from the dashboard (or whom the organiser
    gave it to); only they may replace it there."""
    __tablename__ = "entry_owners"
    entry_key: Mapped[str] = mapped_column(String(200), primary_key=True)  # the name in lower case (names clash so)
    entry_name: Mapped[str] = mapped_column(String(200))
    member: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(default=utcnow)


class CodeAttempt(Base):
    """A wrong personal code typed on the Submit page ("wrong"), or the first attempt refused in a minute because of
    them ("limited"): from which address, and for which member's code when its id names one. The limit on wrong
    codes counts these rows, so it holds across dashboard processes and restarts."""
    __tablename__ = "code_attempts"
    __table_args__ = (Index("ix_code_attempts_address_at", "address", "at"),
                      Index("ix_code_attempts_member_at", "member", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    address: Mapped[str] = mapped_column(String(64))    # the client's IP address, or "local" (Streamlit gives none)
    member: Mapped[str | None] = mapped_column(String(200))  # whose code the typed id names, if any
    code_id: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(20))   # wrong, limited


class Upload(Base):
    """One upload from the Submit page by a member whose code was right: the check's outcome (accepted, failed or
    refused before checking) and the version it made. Kept, so that the hourly limit survives a restart."""
    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_member_at", "member", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    member: Mapped[str] = mapped_column(String(200))
    entry_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    size: Mapped[int] = mapped_column(ByteCount)
    outcome: Mapped[str] = mapped_column(String(20))  # accepted, failed, refused
    detail: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str | None] = mapped_column(String(64))  # the new version, when accepted
