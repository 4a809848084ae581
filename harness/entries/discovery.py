"""Find the entries in ``submissions/``, read their metadata and hash their content."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePath

from harness.contract import (
    CODE_FILE,
    DIGITS,
    EXPORT_FILE,
    HOST_FIELDS,
    METADATA_FILE,
    WEIGHT_FILES,
    EntryMetadata,
    Interface,
    name_problem,
)
from harness.errors import HarnessError

SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}


def _counted(path: Path, folder: Path) -> bool:
    return not path.name.startswith(".") and path.suffix != ".pyc" and \
        not any(part in SKIP_DIRS or part.startswith(".") for part in path.relative_to(folder).parts[:-1])


def entry_files(folder: Path) -> list[Path]:
    """The files that make up an entry's content (hashed for versioning), sorted.

    Symbolic links are never followed: the harness reads these files on the host, outside the sandbox, and keeps
    them in the store, so a link to a file elsewhere (the database, the guest's labels) must not be read.
    """
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and _counted(p, folder))


def symlinks(folder: Path) -> list[Path]:
    """The symbolic links among an entry's files and folders (an entry with one is refused, see ``links_problem``)."""
    return sorted(p for p in folder.rglob("*") if p.is_symlink() and _counted(p, folder))


def links_problem(folder: Path) -> str | None:
    """One sentence when the entry holds a symbolic link, which it may not: its target could be anything on the host."""
    links = symlinks(folder)
    if not links:
        return None
    shown = ", ".join(str(p.relative_to(folder)) for p in links[:3]) + (" …" if len(links) > 3 else "")
    return (f"the entry holds symbolic links ({shown}); an entry must hold real files only, so replace each link "
            "with a copy of what it points to.")


def file_name_problem(folder: Path) -> str | None:
    """Half a sentence when one of the entry's files has a name that is not UTF-8 (the store keeps names as text)."""
    for path in entry_files(folder) + symlinks(folder):
        relative = path.relative_to(folder)
        try:
            str(relative).encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(relative).decode("utf-8", "backslashreplace")
            return (f"its file '{shown}' has a name that is not valid UTF-8; rename it using letters, digits, '-', "
                    "'_' and '.'.")
    return None


@dataclass(frozen=True)
class EntryFolder:
    """One entry's folder as found on disk (in ``submissions/``, or a stored version restored into a work folder):
    its files' hashes, size and metadata at that moment. The entry as the store knows it, across its versions, is
    the ORM row ``harness.store.schema.Entry``."""
    name: str
    folder: Path
    metadata: EntryMetadata
    content_hash: str   # all files: a new version whenever anything changes
    code_hash: str      # model.py (or "" for a code-free export)
    weights_hash: str   # the weights or the .pt2 archive
    weights_bytes: int
    metadata_error: str | None = None  # entry.toml could not be read; the entry is still listed
    total_bytes: int = 0               # all files the content hash covers

    @property
    def display_name(self) -> str:
        return self.metadata.display_name or self.name


def digest(paths: list[Path], root: Path, each: dict[str, str] | None = None) -> str:
    """SHA-256 of the files' relative paths and bytes, read in chunks; ``each`` gets every file's own SHA-256."""
    return _digest(((path.relative_to(root), read_chunks(path)) for path in paths), each)


def files_digest(files: dict[str, bytes]) -> str:
    """The content hash ``load_entry`` gives a folder that holds exactly these files (plain names, at its top)."""
    return _digest((PurePath(name), [data]) for name, data in sorted(files.items(), key=lambda f: PurePath(f[0])))


def _digest(files, each: dict[str, str] | None = None, alone: dict[PurePath, str] | None = None) -> str:
    """The digest of (relative name, chunks) pairs, each file read once; ``each`` (when given) gets every file's own
    SHA-256, and ``alone`` the digest ``digest([path], root)`` would give for each file named among its keys."""
    whole = hashlib.sha256()
    for name, chunks in files:
        head = os.fsencode(name) + b"\0"
        whole.update(head)
        hashes = [whole]
        one = single = None
        if each is not None:
            one = hashlib.sha256()
            hashes.append(one)
        if alone is not None and name in alone:
            single = hashlib.sha256(head)
            hashes.append(single)
        for chunk in chunks:
            for h in hashes:
                h.update(chunk)
        whole.update(b"\0")
        if one is not None:
            each[name.as_posix()] = one.hexdigest()
        if single is not None:
            single.update(b"\0")
            alone[name] = single.hexdigest()
    return whole.hexdigest()


def read_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes, ``size`` at a time, never through a symbolic link (one swapped in since it was listed)."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def read_metadata(folder: Path) -> EntryMetadata:
    """Parse ``entry.toml``; an absent file gives empty metadata, a malformed one a HarnessError."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return EntryMetadata()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path} is not valid TOML ({exc}); fix the syntax (see submissions/README.md).") from exc
    known = {f.name for f in fields(EntryMetadata)} - set(HOST_FIELDS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise HarnessError(f"{path} has unknown key(s) {', '.join(unknown)}; the known keys are "
                           f"{', '.join(sorted(known))}.")
    for key in ("constructor", "hyperparameters"):
        if key in data and not isinstance(data[key], dict):
            raise HarnessError(f"{path}: '{key}' must be a table ([{key}]), not {type(data[key]).__name__}.")
    for key in ("display_name", "author", "description", "model_class", "weights"):
        if key in data and not isinstance(data[key], str):
            raise HarnessError(f"{path}: '{key}' must be a string.")
    if "weights" in data and (PurePath(data["weights"]).is_absolute() or ".." in PurePath(data["weights"]).parts):
        raise HarnessError(f"{path}: 'weights' must name a file inside the entry folder, such as \"weights.pt\", "
                           f"not {data['weights']!r}.")
    return EntryMetadata(**data)


@dataclass(frozen=True)
class TrialMetadata(EntryMetadata):
    """An entry's metadata plus an input convention to try in front of its model: ``load_model`` then returns
    ``nn.Sequential(InputAdapter(**adapter), model)``. Only ``harness.check`` builds one, to diagnose a model that
    expects another input; entry.toml cannot set ``adapter`` (``read_metadata`` knows EntryMetadata's keys only),
    so ranked evaluations always run the entry as it is."""

    adapter: dict | None = None  # InputAdapter's keyword arguments


def real_file(folder: Path, name: str) -> Path | None:
    """``folder / name`` when it is a regular file inside ``folder`` reached through no symbolic link, else None.

    The one rule for the files the harness reads by name (model code, weights): a link, or a file behind a linked
    folder, could point anywhere on the host.
    """
    path = folder / name
    if not path.is_file() or path.is_symlink():
        return None
    inside = os.path.join(os.path.realpath(folder), *PurePath(name).parts)
    return path if os.path.realpath(path) == inside else None


def weights_file(folder: Path, metadata: EntryMetadata) -> Path | None:
    """The file holding the entry's weights, by ``real_file``'s rule; None when there is none.

    ``model.pt2`` for an entry without ``model.py``; otherwise ``weights`` from entry.toml, else the first of
    ``WEIGHT_FILES`` that exists.
    """
    if real_file(folder, CODE_FILE) is None:
        return real_file(folder, EXPORT_FILE)
    if metadata.weights:
        return real_file(folder, metadata.weights)
    return next(filter(None, (real_file(folder, name) for name in WEIGHT_FILES)), None)


def load_entry(folder: Path, interface: Interface = DIGITS) -> EntryFolder:
    """Describe one entry folder (nothing is imported or executed); a HarnessError when a file name is not UTF-8.
    ``interface``: the competition task's inputs and outputs, handed to the entry's process with its metadata."""
    folder = Path(folder)
    problem = file_name_problem(folder)
    if problem:
        raise HarnessError(f"entry folder {folder.name!r}: {problem}")
    files = entry_files(folder)
    metadata, metadata_error = EntryMetadata(), links_problem(folder)
    if metadata_error is None:  # entry.toml itself may be one of the links: not read then
        try:
            metadata = read_metadata(folder)
        except HarnessError as exc:
            metadata_error = str(exc)
    metadata = replace(metadata, interface=interface)
    code, weights = real_file(folder, CODE_FILE), weights_file(folder, metadata)
    # the code's and the weights' own digests come from the same read as the content's (a weights file is read once)
    listed = set(files)
    alone = {path.relative_to(folder): "" for path in (code, weights) if path is not None and path in listed}
    content_hash = _hashed(folder, files, alone)

    def own(path: Path | None) -> str:
        if path is None:
            return ""
        return alone.get(path.relative_to(folder)) or digest([path], folder)

    return EntryFolder(
        name=folder.name,
        folder=folder,
        metadata=metadata,
        content_hash=content_hash,
        code_hash=own(code),
        weights_hash=own(weights),
        weights_bytes=weights.stat().st_size if weights else 0,
        metadata_error=metadata_error,
        total_bytes=sum(path.stat().st_size for path in files),
    )


RACY_SECONDS = 2.0  # a file changed this close to its hashing may change again unseen by its times: never cached


def hash_cache_dir() -> Path:
    """Where the entries' hashes are remembered between runs ($HARNESS_CACHE, default data/cache; git-ignored)."""
    return Path(os.environ.get("HARNESS_CACHE") or Path("data") / "cache") / "entry-hashes"


def _signature(folder: Path, files: list[Path], alone: dict[PurePath, str]) -> str:
    """What identifies the files' bytes without reading them, as git's index does: each one's name, size, device,
    inode, and modification and change times in nanoseconds (the change time cannot be set back)."""
    parts = [os.fsencode(os.path.abspath(folder)).hex(), *sorted(p.as_posix() for p in alone)]
    for path in files:
        st = os.stat(path, follow_symlinks=False)
        parts.append(f"{os.fsencode(path.relative_to(folder)).hex()}:{st.st_size}:{st.st_dev}:{st.st_ino}:"
                     f"{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_mode}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _hashed(folder: Path, files: list[Path], alone: dict[PurePath, str]) -> str:
    """``_digest`` of the entry's files (``alone`` filled in), remembered under the files' ``_signature``: a re-run
    where nothing changed reads no entry's bytes. Files changed within RACY_SECONDS of the hashing are not
    remembered, and a cache that cannot be read or written is only a cache (the files are read)."""
    started = time.time_ns()
    try:
        key = _signature(folder, files, alone)
    except OSError:  # a file gone since it was listed: reading it says so
        key = None
    known = _remembered(key, alone) if key is not None else None
    if known is not None:
        return known
    content = _digest(((path.relative_to(folder), read_chunks(path)) for path in files), alone=alone)
    with contextlib.suppress(OSError, ValueError):
        newest = max((max(st.st_mtime_ns, st.st_ctime_ns) for st in (os.stat(p, follow_symlinks=False)
                                                                       for p in files)), default=0)
        if key is not None and newest < started - RACY_SECONDS * 1e9 and key == _signature(folder, files, alone):
            cache = hash_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            part = cache / f"{key}.{os.getpid()}.part"
            part.write_text(json.dumps({"content": content, "alone": {p.as_posix(): v for p, v in alone.items()}}))
            os.replace(part, cache / f"{key}.json")
    return content


def _remembered(key: str, alone: dict[PurePath, str]) -> str | None:
    """The content hash remembered under ``key`` (``alone`` filled in from it), or None."""
    try:
        known = json.loads((hash_cache_dir() / f"{key}.json").read_text())
        names = {p.as_posix(): p for p in alone}
        if set(known["alone"]) != set(names) or not all(isinstance(v, str) for v in (known["content"],
                                                                                     *known["alone"].values())):
            return None
        alone.update({names[name]: value for name, value in known["alone"].items()})
        return known["content"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def discover(submissions: Path, skipped: list[str] | None = None,
             left_out: dict[str, str] | None = None, interface: Interface = DIGITS) -> dict[str, EntryFolder]:
    """All entry folders under ``submissions``, by name (folders starting with '.' or '_' are ignored).

    A folder that cannot be an entry (a name that is not allowed, two names that differ only in case, a file that
    cannot be read or whose name is not UTF-8) is left out with one sentence in ``skipped``, so that the other
    entries are still evaluated; ``left_out`` gets {folder name: a short reason} for the boards' rows.
    Without a ``skipped`` list the first such folder stops discovery with that sentence.
    """
    leave_out = _collector(skipped, left_out)
    entries: dict[str, EntryFolder] = {}
    for folder in _folders(Path(submissions), leave_out):
        try:
            entry = load_entry(folder, interface)
        except OSError as exc:
            leave_out(f"entry folder {folder.name!r} is left out: {exc.filename} could not be read ({exc.strerror}); "
                      "make its files readable.", {folder.name: "a file cannot be read"})
            continue
        entries[entry.name] = entry
    return entries


def left_out_folders(submissions: Path) -> dict[str, str]:
    """{folder name: the short reason} for each folder that discovery leaves out for its name, a link, a clash or
    its files' names; nothing is read or hashed, so the dashboard can ask at each view (unreadable files are not
    found here). Empty when the folder does not exist."""
    out: dict[str, str] = {}
    if Path(submissions).is_dir():
        _folders(Path(submissions), _collector([], out))
    return out


def _collector(skipped: list[str] | None, left_out: dict[str, str] | None):
    def leave_out(sentence: str, reasons: dict[str, str]) -> None:
        if skipped is None:
            raise HarnessError(sentence)
        skipped.append(sentence)
        if left_out is not None:  # a name that is not UTF-8 is shown with escapes, as in the sentence
            left_out.update({os.fsencode(k).decode("utf-8", "backslashreplace"): v for k, v in reasons.items()})
    return leave_out


def _folders(submissions: Path, leave_out) -> list[Path]:
    """The folders that may be entries, each left out with ``leave_out`` when its name or its files' names say not."""
    if not submissions.is_dir():
        raise HarnessError(f"the submissions folder {submissions} does not exist; create it and add one folder per "
                           "entry (see submissions/README.md), or point --submissions at it.")
    by_key: dict[str, list[Path]] = {}
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")) or folder.name == "__pycache__":
            continue
        problem = name_problem(folder.name)
        if problem:
            leave_out(f"{problem}; it is left out until then.",
                      {folder.name: "its folder name is not allowed: rename it using letters, digits, '-', '_', '.'"})
            continue
        if folder.is_symlink():
            leave_out(f"entry folder {folder.name!r} is left out: it is a symbolic link; move the real folder into "
                      f"{submissions} instead.", {folder.name: "it is a symbolic link: move the real folder in"})
            continue
        by_key.setdefault(folder.name.lower(), []).append(folder)
    out = []
    for group in by_key.values():
        if len(group) > 1:
            names = " and ".join(repr(f.name) for f in group)
            leave_out(f"entry folders {names} are left out: entry names are case-insensitive, so they clash; "
                      "rename one.",
                      {f.name: f"its name clashes with {names} (case-insensitive): rename one" for f in group})
            continue
        problem = file_name_problem(group[0])
        if problem:
            leave_out(f"entry folder {group[0].name!r} is left out: {problem}",
                      {group[0].name: "a file's name is not valid UTF-8: rename the file"})
            continue
        out.append(group[0])
    return out


def select(entries: dict[str, EntryFolder], only: list[str] | None) -> list[EntryFolder]:
    """The entries named by ``--only`` (all when None); an unknown name lists the available ones."""
    if not only:
        return list(entries.values())
    unknown = [name for name in only if name not in entries]
    if unknown:
        available = ", ".join(entries) or "none"
        raise HarnessError(f"no entry named {', '.join(map(repr, unknown))}; available entries: {available}.")
    return [entries[name] for name in dict.fromkeys(only)]
