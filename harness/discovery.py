"""Find the entries in ``submissions/``, read their metadata and hash their content."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from harness.contract import (CODE_FILE, ENTRY_NAME, EXPORT_FILE, METADATA_FILE, WEIGHT_FILES, EntryMetadata,
                              entry_files)
from harness.errors import HarnessError


@dataclass(frozen=True)
class Entry:
    name: str
    folder: Path
    metadata: EntryMetadata
    content_hash: str   # all files: a new version whenever anything changes
    code_hash: str      # model.py (or "" for a code-free export)
    weights_hash: str   # the weights or the .pt2 archive
    weights_bytes: int
    metadata_error: str | None = None  # entry.toml could not be read; the entry is still listed

    @property
    def display_name(self) -> str:
        return self.metadata.display_name or self.name


def _sha256(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def read_metadata(folder: Path) -> EntryMetadata:
    """Parse ``entry.toml``; an absent file gives empty metadata, a malformed one a HarnessError."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return EntryMetadata()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path} is not valid TOML ({exc}); fix the syntax (see submissions/README.md).") from exc
    known = {f.name for f in fields(EntryMetadata)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HarnessError(f"{path} has unknown key(s) {', '.join(unknown)}; the known keys are {', '.join(sorted(known))}.")
    for key in ("constructor", "hyperparameters"):
        if key in data and not isinstance(data[key], dict):
            raise HarnessError(f"{path}: '{key}' must be a table ([{key}]), not {type(data[key]).__name__}.")
    for key in ("display_name", "author", "description", "model_class", "weights"):
        if key in data and not isinstance(data[key], str):
            raise HarnessError(f"{path}: '{key}' must be a string.")
    return EntryMetadata(**data)


def weights_file(folder: Path, metadata: EntryMetadata) -> Path | None:
    if metadata.weights:
        return folder / metadata.weights
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def load_entry(folder: Path) -> Entry:
    """Describe one entry folder (nothing is imported or executed)."""
    folder = Path(folder)
    files = entry_files(folder)
    metadata_error = None
    try:
        metadata = read_metadata(folder)
    except HarnessError as exc:
        metadata, metadata_error = EntryMetadata(), str(exc)
    code = folder / CODE_FILE
    weights = folder / EXPORT_FILE if (folder / EXPORT_FILE).is_file() and not code.is_file() else weights_file(folder, metadata)
    has_weights = weights is not None and weights.is_file()
    return Entry(
        name=folder.name,
        folder=folder,
        metadata=metadata,
        content_hash=_sha256(files, folder),
        code_hash=_sha256([code], folder) if code.is_file() else "",
        weights_hash=_sha256([weights], folder) if has_weights else "",
        weights_bytes=weights.stat().st_size if has_weights else 0,
        metadata_error=metadata_error,
    )


def discover(submissions: Path) -> dict[str, Entry]:
    """All entry folders under ``submissions``, by name (folders starting with '.' or '_' are ignored)."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise HarnessError(f"the submissions folder {submissions} does not exist; create it and add one folder per entry "
                           "(see submissions/README.md), or point --submissions at it.")
    entries: dict[str, Entry] = {}
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")) or folder.name == "__pycache__":
            continue
        if not ENTRY_NAME.match(folder.name):
            raise HarnessError(f"entry folder name {folder.name!r} is not allowed; rename it using letters, digits, '-', '_' and '.'.")
        key = folder.name.lower()
        if key in entries:
            raise HarnessError(f"two entries are named {entries[key].name!r} and {folder.name!r} (names are case-insensitive); rename one.")
        entries[key] = load_entry(folder)
    return {e.name: e for e in entries.values()}


def select(entries: dict[str, Entry], only: list[str] | None) -> list[Entry]:
    """The entries named by ``--only`` (all when None); an unknown name lists the available ones."""
    if not only:
        return list(entries.values())
    unknown = [name for name in only if name not in entries]
    if unknown:
        available = ", ".join(entries) or "none"
        raise HarnessError(f"no entry named {', '.join(map(repr, unknown))}; available entries: {available}.")
    return [entries[name] for name in dict.fromkeys(only)]
