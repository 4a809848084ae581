"""Members who submit from the dashboard: their personal codes, which entry belongs to whom, and their uploads.

A code reads ``<id>-<secret>``: the id finds its row, the secret is checked against a salted scrypt hash (the
plain code is never stored; the organiser sees it once, when it is issued). An entry belongs to the member who
first submitted it from the dashboard, or to whom the organiser gave it (``give_entry``); entry names are compared
in lower case, as discovery compares folders.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harness.errors import HarnessError
from harness.store.audit import log_action
from harness.store.schema import CodeAttempt, EntryOwner, MemberCode, Upload, utcnow

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}  # about 16 MiB and tens of milliseconds per check
MEMBER_LIMIT = 200  # characters in a member's name (the column's size)
# The outcomes of uploads that ran (or are running) the check: these count towards the hourly limit.
CHECKED = ("accepted", "failed", "checking")
WRONG_CODES_PER_MINUTE = 10  # per member (whose code the typed id names) and per address
WRONG_CODE_WINDOW = timedelta(minutes=1)
LOCAL = "local"  # the address of a visitor Streamlit gives none for (localhost)
NOT_VALID = "That code is not valid (mistyped, or revoked); check it, or ask the organiser for a new one."


@dataclass(frozen=True)
class CodeInfo:
    id: int
    member: str
    issued_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, **SCRYPT).hex()


def member_problem(member: str) -> str | None:
    """One sentence when ``member`` cannot be a member's name, else None."""
    if not member.strip():
        return "give the member's name (e.g. their first name or club handle)."
    if len(member.strip()) > MEMBER_LIMIT:
        return f"a member's name may have at most {MEMBER_LIMIT} characters."
    return None


def issue_code(engine: Engine, member: str) -> str:
    """A new personal code for ``member``, returned once in plain text (only its salted hash is kept)."""
    problem = member_problem(member)
    if problem:
        raise HarnessError(problem)
    secret, salt = secrets.token_urlsafe(15), secrets.token_bytes(16)
    with Session(engine) as session, session.begin():
        row = MemberCode(member=member.strip(), salt=salt.hex(), code_hash=_hash(secret, salt))
        session.add(row)
        session.flush()
        return f"{row.id}-{secret}"


def verify_code(engine: Engine, code: str) -> str | None:
    """The member whose valid (issued, not revoked) code this is, else None; notes when it was last used."""
    ident, _, secret = code.strip().partition("-")
    if not ident.isdigit() or not secret or len(ident) > 12:
        return None
    with Session(engine) as session, session.begin():
        row = session.get(MemberCode, int(ident))
        if row is None or row.revoked_at is not None:
            _hash(secret, b"\0" * 16)  # the same work as a real check, so that timing tells nothing
            return None
        if not hmac.compare_digest(_hash(secret, bytes.fromhex(row.salt)), row.code_hash):
            return None
        row.last_used_at = utcnow()
        return row.member


@dataclass(frozen=True)
class CodeCheck:
    """A typed code's verdict: the member it names, or the one sentence the visitor reads."""
    member: str | None
    problem: str | None = None


def _code_id(code: str) -> int | None:
    ident = code.strip().partition("-")[0]
    return int(ident) if ident.isdigit() and len(ident) <= 12 else None


def check_code(engine: Engine, code: str, address: str | None, limit: int = WRONG_CODES_PER_MINUTE,
               now: datetime | None = None) -> CodeCheck:
    """``verify_code`` behind a limit on guessing: after ``limit`` wrong codes in a minute from one address, or for
    one member's code (the id before the dash names it), every code is refused, right or wrong, until the oldest of
    them is a minute old; the sentence says when. Wrong codes, and the first refusal of each minute, are kept in the
    store (``code_attempts``, so every dashboard process counts them) and written to the organiser's audit log."""
    now, address = now or utcnow(), (address if isinstance(address, str) and address else LOCAL)[:64]
    code_id = _code_id(code)
    since = now - WRONG_CODE_WINDOW
    with Session(engine) as session:
        claimed = session.scalar(select(MemberCode.member).where(MemberCode.id == code_id)) \
            if code_id is not None else None
        keys = [("address", CodeAttempt.address == address, "from your address")]
        if claimed is not None:
            keys.append(("member", CodeAttempt.member == claimed, "for this code's member"))
        full = []
        for _, where, whom in keys:
            wrong = list(session.scalars(select(CodeAttempt.at).where(where, CodeAttempt.at > since,
                                                                        CodeAttempt.outcome == "wrong")
                                         .order_by(CodeAttempt.at)))
            if len(wrong) >= limit:
                full.append((wrong[-limit] + WRONG_CODE_WINDOW, whom,
                             session.scalar(select(CodeAttempt.id).where(where, CodeAttempt.at > since,
                                                                          CodeAttempt.outcome == "limited").limit(1))))
    who = f"code {code_id} ({claimed})" if claimed is not None else "no member's code"
    code_id = code_id if claimed is not None else None  # only a real code's id is kept
    if full:
        again, whom = max(a for a, _, _ in full), " and ".join(w for _, w, _ in full)
        if any(first is None for _, _, first in full):  # the first refusal of this minute: noted once
            _note_attempt(engine, now, address, claimed, code_id, "limited")
            log_action(engine, "code-limited", f"wrong codes {whom} over {limit} a minute: {who}, from {address}; "
                                               f"codes refused until {again:%H:%M:%S} UTC")
        return CodeCheck(None, f"Too many wrong codes {whom} in the last minute; try again after "
                               f"{again:%H:%M:%S} UTC.")
    member = verify_code(engine, code)
    if member is None:
        _note_attempt(engine, now, address, claimed, code_id, "wrong")
        log_action(engine, "code-wrong", f"wrong code typed for {who}, from {address}")
        return CodeCheck(None, NOT_VALID)
    return CodeCheck(member)


def _note_attempt(engine: Engine, at: datetime, address: str, member: str | None, code_id: int | None,
                  outcome: str) -> None:
    with Session(engine) as session, session.begin():
        session.add(CodeAttempt(at=at, address=address, member=member, code_id=code_id, outcome=outcome))


def revoke_code(engine: Engine, code_id: int) -> CodeInfo:
    """Revoke a code by its id (the number before the dash); a HarnessError for an unknown one."""
    with Session(engine) as session, session.begin():
        row = session.get(MemberCode, code_id)
        if row is None:
            raise HarnessError(f"no code with id {code_id}; the codes are listed on the Organiser page.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return CodeInfo(row.id, row.member, row.issued_at, row.revoked_at, row.last_used_at)


def codes(engine: Engine) -> list[CodeInfo]:
    """Every code issued, newest first (never the codes themselves)."""
    with Session(engine) as session:
        return [CodeInfo(r.id, r.member, r.issued_at, r.revoked_at, r.last_used_at)
                for r in session.scalars(select(MemberCode).order_by(MemberCode.id.desc()))]


def owner(engine: Engine, entry_name: str) -> str | None:
    """The member the entry belongs to, or None when no member owns it yet."""
    with Session(engine) as session:
        return session.scalar(select(EntryOwner.member).where(EntryOwner.entry_key == entry_name.lower()))


def owners(engine: Engine) -> dict[str, str]:
    """Entry name -> the member it belongs to."""
    with Session(engine) as session:
        rows = session.execute(select(EntryOwner.entry_name, EntryOwner.member).order_by(EntryOwner.entry_name))
        return {name: member for name, member in rows}


def claim_entry(engine: Engine, entry_name: str, member: str) -> bool:
    """Make the entry ``member``'s if nobody owns it yet; True when it is theirs now (already or just claimed)."""
    try:
        with Session(engine) as session, session.begin():
            if session.get(EntryOwner, entry_name.lower()) is None:
                session.add(EntryOwner(entry_key=entry_name.lower(), entry_name=entry_name, member=member))
    except IntegrityError:  # another upload claimed it at the same moment
        pass
    return owner(engine, entry_name) == member


def give_entry(engine: Engine, entry_name: str, member: str) -> None:
    """The organiser's decision: the entry belongs to ``member`` from now on (e.g. an entry committed with git)."""
    problem = member_problem(member)
    if problem:
        raise HarnessError(problem)
    with Session(engine) as session, session.begin():
        row = session.get(EntryOwner, entry_name.lower())
        if row is None:
            session.add(EntryOwner(entry_key=entry_name.lower(), entry_name=entry_name, member=member.strip()))
        else:
            row.entry_name, row.member, row.since = entry_name, member.strip(), utcnow()


def log_upload(engine: Engine, member: str, entry_name: str, size: int, outcome: str, detail: str = "",
               content_hash: str | None = None) -> None:
    with Session(engine) as session, session.begin():
        session.add(Upload(member=member, entry_name=entry_name, size=size, outcome=outcome, detail=detail,
                           content_hash=content_hash))


def begin_upload(engine: Engine, member: str, entry_name: str, size: int) -> int:
    """Record an upload whose check is about to run (it counts towards the hour at once); its id for end_upload."""
    with Session(engine) as session, session.begin():
        row = Upload(member=member, entry_name=entry_name, size=size, outcome="checking", detail="")
        session.add(row)
        session.flush()
        return row.id


def end_upload(engine: Engine, upload_id: int, outcome: str, detail: str = "", content_hash: str | None = None) -> None:
    """The check's outcome for an upload recorded by begin_upload."""
    with Session(engine) as session, session.begin():
        row = session.get(Upload, upload_id)
        row.outcome, row.detail, row.content_hash = outcome, detail, content_hash


def checked_since(engine: Engine, member: str, since: datetime) -> list[datetime]:
    """When ``member``'s uploads that ran the check since ``since`` (naive UTC) were made, oldest first."""
    with Session(engine) as session:
        return list(session.scalars(select(Upload.at).where(Upload.member == member, Upload.at >= since,
                                                            Upload.outcome.in_(CHECKED)).order_by(Upload.at)))


def uploads(engine: Engine, limit: int = 200) -> list[dict]:
    """The latest uploads, newest first, for the organiser."""
    with Session(engine) as session:
        rows = session.scalars(select(Upload).order_by(Upload.id.desc()).limit(limit))
        return [{"at": r.at, "member": r.member, "entry": r.entry_name, "bytes": r.size, "outcome": r.outcome,
                 "detail": r.detail} for r in rows]

