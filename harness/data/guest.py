"""The guest's digits: finds the labelled images in ``mystery_digits/`` and normalises them. Any competition's
set of labelled pictures is read the same way (:class:`Reader`: its class names, its normalisation), with the
class names in place of the digits 0–9 below.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.preprocess import PREPROCESS_VERSION, ImageProblem, normalize_image, open_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif", ".pgm", ".ppm", ".pbm"}
IGNORED_NAMES = {"readme.md", "readme.txt", "labels.csv", "thumbs.db", "desktop.ini"}
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "mystery_digits" / "_sample"


class GuestSetError(ValueError):
    """The guest folder is laid out wrongly; the message names the files and says what to do."""


@dataclass(frozen=True)
class Reader:
    """How a folder of labelled pictures is read: the class names (a label folder's name, a ``labels.csv`` label
    or a file-name prefix is one of them), and the picture -> float32 array step with its version (a new version
    re-reads every picture: the cache and the set's hash are keyed on it)."""
    classes: tuple[str, ...]
    normalise: Callable[[Image.Image], np.ndarray]   # one picture -> float32 [H, W] or [C, H, W] in [0, 1]
    version: str
    shape: tuple[int, ...]                           # one normalised picture's shape
    what: str = "digit"                              # one picture, in words
    opener: Callable[[Path], Image.Image] = open_image  # reads a file (budget-checked); the digits' in 8-bit grey

    @property
    def classes_said(self) -> str:
        if self.classes == DIGIT_CLASSES:
            return "a digit 0–9"
        shown = ", ".join(self.classes[:8]) + (", ..." if len(self.classes) > 8 else "")
        return f"one of the class names ({shown})"

    def prefix_label(self, name: str) -> int | None:
        """The label a file name starts with (``7_003.png``, ``circle-2.png``), else None: the longest class name
        followed by ``_``, ``-``, ``.``, a space, or nothing."""
        for index in sorted(range(len(self.classes)), key=lambda i: -len(self.classes[i])):
            label = self.classes[index]
            if name.startswith(label) and (len(name) == len(label) or name[len(label)] in "_-. "):
                return index
        return None


DIGIT_CLASSES = tuple("0123456789")


@dataclass
class GuestSet:
    """The normalised guest digits. Submissions get ``images`` only, never labels or paths."""

    images: np.ndarray                      # float32 [N, C, H, W] in [0, 1] (digits: [N, 1, 28, 28], white on black)
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


def read_labels_csv(path: Path, reader: Reader | None = None) -> dict[str, int]:
    """``labels.csv`` as {relative file: label}; a header row ``file,label`` is optional."""
    reader = reader or digits_reader()
    labels: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                continue
            if n == 1 and row[0].strip().lower() in ("file", "filename", "path"):
                continue
            if len(row) < 2 or row[1].strip() not in reader.classes:
                raise GuestSetError(f"{path.name} line {n} should be 'file,label' with a label that is "
                                    f"{reader.classes_said}, not {','.join(row)!r}.")
            name = row[0].strip().replace("\\", "/")
            label = reader.classes.index(row[1].strip())
            if name in labels and labels[name] != label:
                raise GuestSetError(f"{path.name} gives {name} two labels ({reader.classes[labels[name]]} and "
                                    f"{row[1].strip()}): keep one.")
            labels[name] = label
    return labels


def label_of(rel: Path, csv_labels: dict[str, int], reader: Reader | None = None) -> int | None:
    """The label of one file: labels.csv, else its folder (a class name), else its name's prefix."""
    reader = reader or digits_reader()
    from_csv = csv_labels.get(rel.as_posix())
    from_folder = reader.classes.index(rel.parts[0]) if len(rel.parts) > 1 else None
    if from_csv is not None and from_folder is not None and from_csv != from_folder:
        raise GuestSetError(f"{rel.as_posix()} is in folder {reader.classes[from_folder]} but labels.csv says "
                            f"{reader.classes[from_csv]}: fix one of them.")
    if from_csv is not None:
        return from_csv
    if from_folder is not None:
        return from_folder
    return reader.prefix_label(rel.name)


def check_label_folders(files: list[Path], reader: Reader | None = None) -> None:
    """Only folders named after a class (0–9 for digits) may hold pictures."""
    reader = reader or digits_reader()
    bad = sorted({rel.parts[0] for rel in files if len(rel.parts) > 1 and rel.parts[0] not in reader.classes})
    if bad:
        raise GuestSetError(f"label folder {', '.join(repr(b) for b in bad)} is not {reader.classes_said}: rename "
                            "it, or start its name with '_' to have it ignored.")
    deep = [rel for rel in files if len(rel.parts) > 2]
    if deep:
        raise GuestSetError(f"{deep[0].as_posix()} is nested too deep: put images directly in a label folder "
                            f"({reader.classes_said}).")


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:  # streamed: a large file is never held whole
        return hashlib.file_digest(fh, "sha256").hexdigest()


def set_hash(images: np.ndarray, labels: np.ndarray, version: str = PREPROCESS_VERSION) -> str:
    """sha256 over the normalised images, the labels and the preprocessing version."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    h.update(version.encode())
    return h.hexdigest()


def cache_dir(version: str = PREPROCESS_VERSION) -> Path:
    """Where normalised pictures are cached ($HARNESS_CACHE, default data/cache; git-ignored)."""
    return Path(os.environ.get("HARNESS_CACHE") or Path("data") / "cache") / "guest" / version


def normalized(path: Path, digest: str, reader: Reader | None = None) -> np.ndarray:
    """reader.normalise(open_image(path)) (the digits' by default), cached by file content and the reader's
    version."""
    reader = reader or digits_reader()
    cached = cache_dir(reader.version) / f"{digest}.npy"
    try:
        return np.load(cached, allow_pickle=False)
    except (OSError, ValueError):
        pass
    image = reader.normalise(reader.opener(path))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, image, allow_pickle=False)
        tmp.replace(cached)
    except OSError:
        pass  # a read-only working directory only costs speed
    return image


def load_guest_set(folder: Path, reader: Reader | None = None) -> GuestSet:
    """Reads and normalises every labelled picture in ``folder`` (see the module docstring): digits by default."""
    reader = reader or digits_reader()
    folder = Path(folder)
    files = candidate_files(folder)
    check_label_folders(files, reader)
    csv_path = folder / "labels.csv"
    csv_labels = read_labels_csv(csv_path, reader) if csv_path.is_file() else {}
    present = {rel.as_posix() for rel in files}
    skipped = [(name, "listed in labels.csv but there is no such file.")
               for name in sorted(csv_labels) if name not in present]

    labelled: list[tuple[Path, int]] = []
    for rel in files:
        if rel.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((rel.as_posix(), "not an image file (expected PNG, JPEG, BMP, TIFF or WebP)."))
            continue
        label = label_of(rel, csv_labels, reader)
        if label is None:
            example = f"{reader.classes[-1]}_001.png"
            skipped.append((rel.as_posix(), f"no label: put it in a folder named {reader.classes_said}, name it like "
                                            f"{example}, or list it in labels.csv."))
            continue
        labelled.append((rel, label))

    seen: dict[str, tuple[Path, int]] = {}
    unique: list[tuple[Path, int, str]] = []
    for rel, label in labelled:
        digest = file_digest(folder / rel)
        if digest in seen:
            first, first_label = seen[digest]
            if first_label != label:
                raise GuestSetError(f"the same image is labelled twice: {first.as_posix()} as "
                                    f"{reader.classes[first_label]} and {rel.as_posix()} as {reader.classes[label]}; "
                                    "delete the wrong one.")
            skipped.append((rel.as_posix(), f"duplicate of {first.as_posix()} (same file content)."))
            continue
        seen[digest] = (rel, label)
        unique.append((rel, label, digest))

    images, labels, names = [], [], []
    for rel, label, digest in unique:
        try:
            images.append(normalized(folder / rel, digest, reader))
        except ImageProblem as e:
            skipped.append((rel.as_posix(), str(e)))
            continue
        labels.append(label)
        names.append(rel.as_posix())
    x = np.stack(images).astype(np.float32) if images else np.zeros((0, *reader.shape), np.float32)
    if x.ndim == 3:
        x = x[:, None]  # one channel: [N, 1, H, W]
    y = np.array(labels, dtype=np.int64)
    return GuestSet(images=x, labels=y, files=names, skipped=skipped, content_hash=set_hash(x, y, reader.version),
                    source="folder")


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


def digits_reader() -> Reader:
    """The guest's digits: 0–9, through :func:`harness.data.preprocess.normalize_image` (MNIST's conventions)."""
    return Reader(DIGIT_CLASSES, normalize_image, PREPROCESS_VERSION, (28, 28))
