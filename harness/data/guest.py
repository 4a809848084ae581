"""The guest's digits: finds the labelled images in ``mystery_digits/`` and normalises them.

Three layouts, mixable::

    mystery_digits/7/anything.jpg        a folder per label (0–9)
    mystery_digits/7_003.png             the label as the file-name prefix (7_..., 7-..., 7.png)
    mystery_digits/labels.csv            rows ``file,label`` (relative paths; takes precedence)

Files and folders whose names start with ``_`` or ``.`` are ignored (``_sample/`` is the shipped
sample, ``_contact_sheet.png`` a preview), as are ``README.md`` and ``labels.csv``.

An image that cannot be used (unreadable, no ink, no label) is skipped and reported with one
sentence; a problem with the set itself (a folder that is not a digit, the same picture under two
labels, a bad ``labels.csv``) raises :class:`GuestSetError`. Models only ever get ``images``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.preprocess import PREPROCESS_VERSION, ImageProblem, normalize_image, open_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif", ".pgm", ".ppm", ".pbm"}
IGNORED_NAMES = {"readme.md", "readme.txt", "labels.csv", "thumbs.db", "desktop.ini"}
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "mystery_digits" / "_sample"
LABEL_PREFIX = re.compile(r"^([0-9])(?:[_\-. ]|$)")


class GuestSetError(ValueError):
    """The guest folder is laid out wrongly; the message names the files and says what to do."""


@dataclass
class GuestSet:
    """The normalised guest digits. Submissions get ``images`` only, never labels or paths."""

    images: np.ndarray                      # float32 [N, 1, 28, 28] in [0, 1], white ink on black
    labels: np.ndarray                      # int64 [N]
    files: list[str]                        # paths relative to the folder, same order
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, one-sentence reason)
    content_hash: str = ""                  # sha256 of images + labels + PREPROCESS_VERSION
    source: str = "folder"                  # "folder" or "sample"

    def __len__(self) -> int:
        return len(self.labels)


def is_ignored(rel: Path) -> bool:
    """Hidden or ``_``-prefixed parts, and the README/labels files, are not guest digits."""
    return any(p.startswith((".", "_")) for p in rel.parts) or rel.name.lower() in IGNORED_NAMES


def candidate_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` that could be a guest digit (relative paths, sorted)."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and not is_ignored(p.relative_to(folder)))


def folder_state(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What ``folder`` holds, cheaply: each candidate file's path, size and modification time, ``labels.csv``
    included. It changes whenever a digit is added, removed, replaced or relabelled (no file is read)."""
    folder = Path(folder)
    state = []
    for rel in [*candidate_files(folder), Path("labels.csv")]:
        try:
            st = (folder / rel).stat()
        except OSError:
            continue
        state.append((rel.as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(state)


def read_labels_csv(path: Path) -> dict[str, int]:
    """``labels.csv`` as {relative file: label}; a header row ``file,label`` is optional."""
    labels: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                continue
            if n == 1 and row[0].strip().lower() in ("file", "filename", "path"):
                continue
            if len(row) < 2 or row[1].strip() not in tuple("0123456789"):
                raise GuestSetError(f"{path.name} line {n} should be 'file,label' with a label 0–9, not "
                                    f"{','.join(row)!r}.")
            name = row[0].strip().replace("\\", "/")
            if name in labels and labels[name] != int(row[1]):
                raise GuestSetError(f"{path.name} gives {name} two labels ({labels[name]} and {row[1].strip()}): keep "
                                    "one.")
            labels[name] = int(row[1])
    return labels


def label_of(rel: Path, csv_labels: dict[str, int]) -> int | None:
    """The label of one file: labels.csv, else its folder (0–9), else its name's prefix."""
    from_csv = csv_labels.get(rel.as_posix())
    from_folder = int(rel.parts[0]) if len(rel.parts) > 1 else None
    if from_csv is not None and from_folder is not None and from_csv != from_folder:
        raise GuestSetError(f"{rel.as_posix()} is in folder {from_folder} but labels.csv says {from_csv}: fix one of "
                            "them.")
    if from_csv is not None:
        return from_csv
    if from_folder is not None:
        return from_folder
    m = LABEL_PREFIX.match(rel.name)
    return int(m.group(1)) if m else None


def check_label_folders(files: list[Path]) -> None:
    """Only folders named 0–9 may hold digits."""
    bad = sorted({rel.parts[0] for rel in files if len(rel.parts) > 1 and rel.parts[0] not in tuple("0123456789")})
    if bad:
        raise GuestSetError(f"label folder {', '.join(repr(b) for b in bad)} is not a digit 0–9: rename it, "
                            "or start its name with '_' to have it ignored.")
    deep = [rel for rel in files if len(rel.parts) > 2]
    if deep:
        raise GuestSetError(f"{deep[0].as_posix()} is nested too deep: put images directly in a label folder 0–9.")


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:  # streamed: a large file is never held whole
        return hashlib.file_digest(fh, "sha256").hexdigest()


def set_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the normalised images, the labels and the preprocessing version."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    h.update(PREPROCESS_VERSION.encode())
    return h.hexdigest()


def cache_dir() -> Path:
    """Where normalised digits are cached ($HARNESS_CACHE, default data/cache; git-ignored)."""
    return Path(os.environ.get("HARNESS_CACHE") or Path("data") / "cache") / "guest" / PREPROCESS_VERSION


def normalized(path: Path, digest: str) -> np.ndarray:
    """normalize_image(open_image(path)), cached by file content and preprocessing version."""
    cached = cache_dir() / f"{digest}.npy"
    try:
        return np.load(cached, allow_pickle=False)
    except (OSError, ValueError):
        pass
    image = normalize_image(open_image(path))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, image, allow_pickle=False)
        tmp.replace(cached)
    except OSError:
        pass  # a read-only working directory only costs speed
    return image


def load_guest_set(folder: Path) -> GuestSet:
    """Reads and normalises every labelled digit in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    files = candidate_files(folder)
    check_label_folders(files)
    csv_path = folder / "labels.csv"
    csv_labels = read_labels_csv(csv_path) if csv_path.is_file() else {}
    present = {rel.as_posix() for rel in files}
    skipped = [(name, "listed in labels.csv but there is no such file.")
               for name in sorted(csv_labels) if name not in present]

    labelled: list[tuple[Path, int]] = []
    for rel in files:
        if rel.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((rel.as_posix(), "not an image file (expected PNG, JPEG, BMP, TIFF or WebP)."))
            continue
        label = label_of(rel, csv_labels)
        if label is None:
            skipped.append((rel.as_posix(),
                            "no label: put it in a folder 0–9, name it like 7_001.png, or list it in labels.csv."))
            continue
        labelled.append((rel, label))

    seen: dict[str, tuple[Path, int]] = {}
    unique: list[tuple[Path, int, str]] = []
    for rel, label in labelled:
        digest = file_digest(folder / rel)
        if digest in seen:
            first, first_label = seen[digest]
            if first_label != label:
                raise GuestSetError(f"the same image is labelled twice: {first.as_posix()} as {first_label} and "
                                    f"{rel.as_posix()} as {label}; delete the wrong one.")
            skipped.append((rel.as_posix(), f"duplicate of {first.as_posix()} (same file content)."))
            continue
        seen[digest] = (rel, label)
        unique.append((rel, label, digest))

    images, labels, names = [], [], []
    for rel, label, digest in unique:
        try:
            images.append(normalized(folder / rel, digest))
        except ImageProblem as e:
            skipped.append((rel.as_posix(), str(e)))
            continue
        labels.append(label)
        names.append(rel.as_posix())
    x = np.stack(images)[:, None].astype(np.float32) if images else np.zeros((0, 1, 28, 28), np.float32)
    y = np.array(labels, dtype=np.int64)
    return GuestSet(images=x, labels=y, files=names, skipped=skipped, content_hash=set_hash(x, y), source="folder")


def sample_guest_dir() -> Path:
    """The shipped sample guest set (scikit-learn's handwritten digits photographed on paper)."""
    return SAMPLE_DIR


def has_guest_files(folder: Path) -> bool:
    """Whether the organiser has put anything in ``folder`` (the sample and README don't count)."""
    return bool(candidate_files(Path(folder))) or (Path(folder) / "labels.csv").is_file()


def resolve_guest_set(folder: Path) -> GuestSet:
    """The real guest set in ``folder`` if there is one, else the shipped sample (source="sample")."""
    if has_guest_files(folder):
        return load_guest_set(folder)
    sample = load_guest_set(sample_guest_dir())
    sample.source = "sample"
    return sample
