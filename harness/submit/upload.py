"""One upload from the dashboard's Submit page: the member's code, the entry's name and its files in, one typed
``UploadOutcome`` out (accepted or refused, with the sentences the member reads).

In order: the code names the member; the entry must be theirs (or nobody's yet); only the entry's own file names,
as plain UTF-8 names (the known extra files a folder holds, ``EXTRA_NAMES`` and ``EXTRA_SUFFIXES``, are left out
with a note, never stored); at most ``max_bytes`` in all (and never more than competition.toml's max_entry_gb); files
the entry's folder already holds, as its stored version, cost nothing (nothing is checked; logged as "unchanged");
otherwise at most ``per_hour`` checked uploads per member in any hour (counted from the store, so a restart resets
nothing). The files are written into a folder beside the entry's (``submissions/.upload-*``, which discovery
ignores) and checked there by ``checking.check``, in the entry's own sandboxed process. When the check passes, the
previous version is kept in the store (if it was not yet), the new folder takes the old one's place in one rename, and
the new version is recorded at once, so that its time is the upload's (the deadline applies to it as to any version).
The evaluation watcher (``python -m harness.evaluate --watch``, which the dashboard runs beside itself) then scores it.
"""

from __future__ import annotations

import ctypes
import fcntl
import io
import os
import shutil
import stat
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harness.common.competition import Competition
from harness.contract import CODE_FILE, EXPORT_FILE, METADATA_FILE, WEIGHT_FILES, name_problem
from harness.data.task import task_of
from harness.entries.discovery import files_digest, load_entry
from harness.errors import HarnessError
from harness.store import members, snapshots, versions
from harness.store.schema import Entry, EntryOwner, utcnow
from harness.submit import checking

MB = 10 ** 6
STAGING_PREFIX = ".upload-"  # a folder discovery ignores (its name starts with '.')
LOCK_FILE = ".submit.lock"
LEFT_FOR_SECONDS = 24 * 3600  # a staging folder this old belongs to an upload whose process died
# Files an entry's folder often holds beside the entry (the training kit's curve, plots, logs, notes): an upload may
# include them; they are left out with a note and never stored. Compared in lower case; any other name is refused.
EXTRA_NAMES = frozenset({"curve.csv", "readme", "readme.md", "readme.txt", "notes.md", "notes.txt"})
EXTRA_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".pdf", ".log")


@dataclass(frozen=True)
class UploadLimits:
    """What one member may upload: bytes per upload (all files together) and checked uploads per rolling hour."""
    max_bytes: int = 200 * MB
    per_hour: int = 6
    check_timeout: float = checking.CHECK_TIMEOUT  # seconds for the check's run of the entry (loading included)
    wrong_codes_per_minute: int = members.WRONG_CODES_PER_MINUTE  # per member and per address (guessing)


@dataclass(frozen=True)
class UploadOutcome:
    """What became of an upload: ``sentences`` is what the member reads, in order."""
    accepted: bool
    sentences: list[str]
    member: str | None = None
    report: dict | None = None        # the check's findings, when it ran and passed
    version: int | None = None        # the entry's version number (1, 2, ...) when accepted
    late: bool = False                # accepted after the deadline: shown as late, not ranked
    files: list[str] = field(default_factory=list)


def refused(sentence: str, member: str | None = None) -> UploadOutcome:
    return UploadOutcome(False, [sentence], member)


def size_text(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 * 10 else f"{n / MB:.1f} MB" if n >= MB else f"{n:,} bytes"


def allowed_names(files: dict[str, bytes]) -> set[str]:
    """The file names an upload may hold: the entry's code, weights, export and metadata, plus the weights file
    entry.toml names (a plain name)."""
    names = {CODE_FILE, EXPORT_FILE, METADATA_FILE, *WEIGHT_FILES}
    try:
        named = tomllib.loads(files[METADATA_FILE].decode("utf-8")).get("weights") if METADATA_FILE in files else None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        named = None  # the check says what is wrong with entry.toml
    if isinstance(named, str) and plain_name(named):
        names.add(named)
    return names


def plain_name(name: str) -> bool:
    """A file name with no folder, no '..', no hidden dot, no control characters, encodable as UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return (bool(name) and name not in (".", "..") and not name.startswith(".") and "/" not in name
            and "\\" not in name and not any(ord(c) < 32 for c in name) and len(name) <= 100)


def too_big(size: int, cap: int, what: str = "Your files take") -> str:
    return (f"{what} {size_text(size)}, more than the {size_text(cap)} an upload may take; make the weights "
            "smaller (e.g. save them in float16) or ask the organiser.")


def unpacked(files: list[tuple[str, bytes]], cap: int) -> tuple[list[tuple[str, bytes]], str | None]:
    """A single ``.zip`` upload as the files it holds (at its top, or in one folder), else ``files`` as they are;
    with one sentence when the archive holds a link, a name that is not UTF-8, a path outside itself, or more than
    ``cap`` bytes once unpacked (read no further than that). Finder's ``__MACOSX/`` and dot files are left out."""
    if len(files) != 1 or not files[0][0].lower().endswith(".zip"):
        return files, None
    name, data = files[0]
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                 and not PurePosixPath(i.filename).name.startswith(".")]
    except (zipfile.BadZipFile, OSError):
        return files, f"{name!r} is not a zip archive that can be read; make it again, or upload the files themselves."
    for info in infos:
        path = PurePosixPath(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            return files, (f"{name!r} holds a symbolic link ({info.filename}); an entry holds real files only, so "
                           "zip the files themselves.")
        if not info.flag_bits & 0x800 and not info.filename.isascii():
            return files, (f"{name!r} holds a file name that is not UTF-8 ({info.filename!r}); rename it using "
                           "letters, digits, '-', '_' and '.'.")
        if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
            return files, f"{name!r} holds a path outside itself ({info.filename}); zip the entry's files only."
    total = sum(i.file_size for i in infos)
    if total > cap:
        return files, too_big(total, cap, f"The files in {name!r} take")
    tops = {PurePosixPath(i.filename).parts[0] for i in infos}
    strip = len(tops) == 1 and all(len(PurePosixPath(i.filename).parts) == 2 for i in infos)
    try:  # reading stops at each file's declared size, and its CRC is checked
        return [("/".join(PurePosixPath(i.filename).parts[1:]) if strip else i.filename, archive.read(i))
                for i in infos], None
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
        return files, f"{name!r} cannot be unpacked ({exc}); make it again, or upload the files themselves."


def extra_file(name: str) -> bool:
    """A plain file name that is a known extra (see EXTRA_NAMES), not part of an entry."""
    lower = name.lower()
    return plain_name(name) and (lower in EXTRA_NAMES or lower.endswith(EXTRA_SUFFIXES))


def without_extras(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The upload's files with the known extras left out (unless the entry's own files, e.g. a weights file
    entry.toml names), and the names left out, in order."""
    allowed = allowed_names(dict(files))
    extras = [name for name, _ in files if extra_file(name) and name not in allowed]
    return [(name, data) for name, data in files if name not in extras], extras


def left_out_note(extras: list[str]) -> str:
    return (f"Left out, as not part of an entry (not stored): {', '.join(sorted(set(extras)))}; only the model, "
            "its weights and entry.toml are kept.")


def files_problem(files: list[tuple[str, bytes]]) -> str | None:
    """One sentence about what is wrong with the uploaded files' names or set, else None."""
    wanted = (f"upload {CODE_FILE} and its weights ({' or '.join(WEIGHT_FILES)}), or {EXPORT_FILE}, optionally "
              f"with {METADATA_FILE}")
    if not files:
        return f"No file was chosen: {wanted}."
    seen: dict[str, bytes] = {}
    for name, data in files:
        if name in seen:
            return f"The file {name!r} was chosen twice; choose each file once."
        seen[name] = data
    allowed = allowed_names(seen)
    for name in seen:
        if not plain_name(name) or name not in allowed:
            shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
            return (f"The file name {shown!r} is not one an entry uses: {wanted}, each under exactly that name "
                    "(no folders).")
    weights = [n for n in seen if n not in (CODE_FILE, EXPORT_FILE, METADATA_FILE)]
    if not (CODE_FILE in seen and weights) and EXPORT_FILE not in seen:
        return f"An entry needs its model and weights: {wanted}; you chose {', '.join(sorted(seen))}."
    return None


def owner_problem(engine: Engine, submissions: Path, entry_name: str, member: str) -> str | None:
    """One sentence when ``member`` may not submit ``entry_name``: another member's, or one that exists without an
    owner (committed with git), or the case of an owned name differs."""
    with Session(engine) as session:
        owned = session.execute(select(EntryOwner.entry_name, EntryOwner.member)
                                .where(EntryOwner.entry_key == entry_name.lower())).first()
        in_store = session.scalar(select(Entry.name).where(func.lower(Entry.name) == entry_name.lower()))
    if owned is not None:
        name, who = owned
        if who != member:
            return f"The entry {name!r} belongs to another member; choose another name for yours."
        if name != entry_name:
            return f"Your entry is called {name!r}; submit it under exactly that name."
        return None
    on_disk = [p.name for p in submissions.iterdir() if p.name.lower() == entry_name.lower()] \
        if submissions.is_dir() else []
    if on_disk or in_store:
        return (f"The entry {(on_disk or [in_store])[0]!r} was submitted without the dashboard; choose another "
                "name, or ask the organiser to give it to you on the Organiser page.")
    return None


def rate_problem(engine: Engine, member: str, limits: UploadLimits, now: datetime) -> str | None:
    """One sentence when ``member`` has used up the hour's checked uploads, saying when the next one is allowed."""
    recent = members.checked_since(engine, member, now - timedelta(hours=1))
    if len(recent) < limits.per_hour:
        return None
    again = recent[-limits.per_hour] + timedelta(hours=1)
    return (f"You have submitted {len(recent)} times in the last hour, the most allowed; try again after "
            f"{again:%H:%M} UTC.")


def unchanged(engine: Engine, submissions: Path, entry_name: str,
              files: list[tuple[str, bytes]]) -> versions.VersionInfo | None:
    """The stored version these files are, when the entry's folder already holds exactly them (a re-upload)."""
    dest = submissions / entry_name
    if not dest.is_dir() or dest.is_symlink():
        return None
    digest = files_digest(dict(files))
    try:
        if load_entry(dest).content_hash != digest:
            return None
        return next((v for v in versions.history(engine, entry_name) if v.content_hash == digest), None)
    except HarnessError:  # a folder or entry that cannot be read: the upload goes the usual way
        return None


@contextmanager
def locked(submissions: Path) -> Iterator[None]:
    """One upload at a time takes its place in ``submissions`` (two tabs, two members racing for a name)."""
    with open(submissions / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux's renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_folder(staged: Path, dest: Path, trash: Path) -> None:
    """Put ``staged`` where ``dest`` is: the old folder ends in ``trash``; a reader never sees half a folder (with
    renameat2 it never sees none either)."""
    if dest.exists():
        if exchange(staged, dest):
            staged.rename(trash)  # ``staged`` now holds the old folder
            return
        dest.rename(trash)
    staged.rename(dest)


def write_files(folder: Path, files: list[tuple[str, bytes]]) -> None:
    folder.mkdir()
    for name, data in files:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def keep_version(engine: Engine, folder: Path, rules: Competition) -> int:
    """Record the folder's content as a version of its entry and keep its files in the store (as a run's plan
    does; an entry over the size limit is recorded, not kept); its version id."""
    entry = load_entry(folder)
    version_id = versions.ensure_version(engine, entry)
    if entry.total_bytes <= rules.max_entry_bytes:
        snapshots.keep(engine, version_id, entry)
    return version_id


def submit(engine: Engine, submissions: Path, entry_name: str, code: str, files: list[tuple[str, bytes]],
           rules: Competition, limits: UploadLimits = UploadLimits(), mnist_dir: str | None = None,
           now: datetime | None = None, address: str | None = None) -> UploadOutcome:
    """Check an upload in the sandbox and, when it passes, make it the entry's new version (see the module).
    ``address`` is the visitor's IP address (None: local): wrong codes are limited per address and per member."""
    submissions, now = Path(submissions), now or utcnow()
    if not code.strip():
        return refused("Type your personal code; the organiser gives you one.")
    checked = members.check_code(engine, code, address, limits.wrong_codes_per_minute, now)
    if checked.member is None:
        return refused(checked.problem)
    member, entry_name = checked.member, entry_name.strip()
    problem = name_problem(entry_name)
    if problem:
        return refused(problem.replace("entry folder name", "The entry name", 1) + ".", member)
    size = sum(len(data) for _, data in files)
    files, extras, problem = screen_files(engine, submissions, entry_name, member, files, size,
                                          min(limits.max_bytes, rules.max_entry_bytes))
    if problem is None and submissions.is_dir():
        same = unchanged(engine, submissions, entry_name, files)
        if same is not None:  # nothing to check, store or evaluate: it costs nothing
            return unchanged_upload(engine, member, entry_name, size, files, extras, same)
    problem = problem or rate_problem(engine, member, limits, now)
    if problem:
        members.log_upload(engine, member, entry_name, size, "refused", problem)
        return refused(problem, member)
    if not submissions.is_dir():
        return refused(f"The submissions folder {submissions} does not exist; ask the organiser to create it.", member)
    upload_id, problem = reserve(engine, submissions, member, entry_name, size, limits, now)
    if problem:
        members.log_upload(engine, member, entry_name, size, "refused", problem)
        return refused(problem, member)
    return check_and_place(engine, submissions, entry_name, member, files, extras, rules, limits, mnist_dir,
                           upload_id)


def screen_files(engine: Engine, submissions: Path, entry_name: str, member: str, files: list[tuple[str, bytes]],
                 size: int, cap: int) -> tuple[list[tuple[str, bytes]], list[str], str | None]:
    """The upload's files as an entry's (a zip unpacked, the known extras left out) with the names left out, and the
    one sentence refusing it, if any: the entry is another's, the files take more than ``cap`` bytes or are not an
    entry's."""
    problem = owner_problem(engine, submissions, entry_name, member)
    if problem is None and size > cap:
        problem = too_big(size, cap)
    extras: list[str] = []
    if problem is None:
        files, problem = unpacked(files, cap)
    if problem is None:
        files, extras = without_extras(files)
    return files, extras, problem or files_problem(files)


def unchanged_upload(engine: Engine, member: str, entry_name: str, size: int, files: list[tuple[str, bytes]],
                     extras: list[str], same: versions.VersionInfo) -> UploadOutcome:
    """A re-upload of the version the entry's folder holds: logged as "unchanged", nothing checked or stored."""
    sentences = [f"Nothing changed: these files are exactly {entry_name}'s version {same.number}, already "
                 "stored and in its folder; nothing was checked, and this upload does not count towards your "
                 "hourly limit."] + ([left_out_note(extras)] if extras else [])
    members.log_upload(engine, member, entry_name, size, "unchanged", sentences[0], same.content_hash)
    return UploadOutcome(True, sentences, member, None, same.number, False, [name for name, _ in files])


def reserve(engine: Engine, submissions: Path, member: str, entry_name: str, size: int, limits: UploadLimits,
            now: datetime) -> tuple[int | None, str | None]:
    """Remove the staging folders of uploads whose process died, then count this upload towards the member's hour:
    its upload id, or the sentence saying the hour's uploads were used up meanwhile (two uploads at once by one
    member: the second sees the first's reservation)."""
    for left in submissions.glob(f"{STAGING_PREFIX}*"):  # an upload whose process died a day ago or more
        if left.is_dir() and not left.is_symlink() and left.stat().st_mtime < time.time() - LEFT_FOR_SECONDS:
            shutil.rmtree(left, ignore_errors=True)
    with locked(submissions):
        problem = rate_problem(engine, member, limits, now)
        return (None, problem) if problem else (members.begin_upload(engine, member, entry_name, size), None)


def check_and_place(engine: Engine, submissions: Path, entry_name: str, member: str, files: list[tuple[str, bytes]],
                    extras: list[str], rules: Competition, limits: UploadLimits, mnist_dir: str | None,
                    upload_id: int) -> UploadOutcome:
    """Check the files in a staging folder beside the entry's and, when they pass, put them in its place and record
    the new version (the previous one stays in the store). The reservation ``upload_id`` ends with what happened,
    whatever happens."""
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=submissions))
    ended = False
    try:
        staged = stage / entry_name
        write_files(staged, files)
        try:
            report = checking.check(staged, mnist_dir, replace(checking.LIMITS, timeout=limits.check_timeout),
                                    task=task_of(rules))
        except HarnessError as exc:
            hint = getattr(exc, "hint", None)
            sentences = [f"The check failed, so nothing was stored: {exc}"] + ([f"Diagnosis: {hint}"] if hint else [])
            members.end_upload(engine, upload_id, "failed", " ".join(sentences))
            ended = True
            return UploadOutcome(False, sentences, member)
        with locked(submissions):
            if not members.claim_entry(engine, entry_name, member):
                problem = f"The entry {entry_name!r} was just taken by another member; choose another name."
                members.end_upload(engine, upload_id, "refused", problem)
                ended = True
                return refused(problem, member)
            dest = submissions / entry_name
            if dest.is_dir() and not dest.is_symlink():
                keep_version(engine, dest, rules)  # the previous version stays in the store
            replace_folder(staged, dest, stage / "previous")
            version_id = keep_version(engine, dest, rules)
        history = versions.history(engine, entry_name)
        info = next(v for v in history if v.version_id == version_id)
        members.end_upload(engine, upload_id, "accepted", "", info.content_hash)
        ended = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ended:  # an unexpected error: the reservation still counts, with what happened
            members.end_upload(engine, upload_id, "failed", "the upload stopped with an unexpected error")
    late = rules.is_late(info.submitted_at)
    return UploadOutcome(True, accepted_sentences(entry_name, info, len(history), extras, late, rules, report),
                         member, report, info.number, late, [name for name, _ in files])


def accepted_sentences(entry_name: str, info: versions.VersionInfo, version_count: int, extras: list[str], late: bool,
                       rules: Competition, report: dict) -> list[str]:
    """What the member reads when the upload is accepted as version ``info`` of ``version_count``."""
    sentences = [f"Accepted: {entry_name} version {info.number} is stored and will be scored in a few minutes; "
                 "it appears on the Leaderboard as pending until then, then with its score."]
    if info.number != version_count:
        sentences[0] = (f"Accepted: these files are {entry_name}'s version {info.number}, already stored; the "
                        "folder holds them again.")
    if extras:
        sentences.append(left_out_note(extras))
    if late:
        sentences.append(f"It came after the deadline ({rules.deadline.isoformat()}), so it is shown as late and "
                         "not ranked; your on-time version still counts.")
    if report.get("diagnosis"):
        sentences.append(f"Diagnosis: {report['diagnosis']}")
    elif report.get("accuracy") is not None and report["accuracy"] < checking.DIAGNOSE_BELOW:
        sentences.append(f"Warning: it reads {100 * report['accuracy']:.1f}% of the check's images, and none of the "
                         "usual input conventions does better; see 'Input' in submissions/README.md.")
    return sentences
