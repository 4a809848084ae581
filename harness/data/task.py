"""The task the competition is about, as one value every subsystem reads: what an entry receives and answers, the
classes and their names, and the two sets it is scored on (the public one and the secret one) with their loaders.

The club's first exercise is :data:`MNIST_DIGITS`: 1×28×28 images in [0, 1], ten digits, MNIST's test set in public
and the guest's handwriting in secret. A later competition (the club's own data) is a new :class:`Task` with its
own loaders, not a rewrite: the worker checks inputs and outputs against ``TASK``, metrics count ``TASK.classes``
and the dashboard names them from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.contract import INPUT_SHAPE, NUM_CLASSES


@dataclass(frozen=True)
class DatasetSpec:
    """An evaluation set as the harness holds it in memory: images exactly as every entry receives them."""
    kind: str                 # the set's name in the task: "mnist" or "guest"
    content_hash: str
    labels: np.ndarray        # int64 [N]
    images: np.ndarray        # uint8 [N, H, W] (the task's input shape; scaled to [0, 1] in the entry's process)
    source: str
    preprocess_version: str | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalSet:
    kind: str                 # its name in the store ("mnist", "guest")
    title: str                # as people say it
    secret: bool              # its results are sealed until the reveal
    # (where to look) -> (the set, or None when there is nothing there yet; notes on what was used or skipped)
    load: Callable[[str | Path | None], tuple[DatasetSpec | None, list[str]]]


@dataclass(frozen=True)
class Task:
    name: str
    input_shape: tuple[int, int, int]       # channels, height, width of what ``forward`` receives
    input_range: tuple[float, float]        # the values it receives
    classes: tuple[str, ...]                # label i is called classes[i]
    public: EvalSet
    secret: EvalSet

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def sets(self) -> tuple[EvalSet, EvalSet]:
        return self.public, self.secret


def load_mnist_test(folder: str | Path | None) -> tuple[DatasetSpec, list[str]]:
    """MNIST's official test set (downloaded into ``folder`` on first use, md5-checked)."""
    from harness.data import mnist
    split = mnist.load_split(mnist.resolve_dir(folder), "test")
    return DatasetSpec(kind="mnist", content_hash=split.content_hash, labels=split.labels, images=split.images,
                       source="MNIST test (official, md5-verified)"), []


def load_guest(folder: str | Path | None) -> tuple[DatasetSpec | None, list[str]]:
    """The guest's digits in ``folder`` through the preprocessing pipeline (the shipped sample until real ones
    arrive); None when there are none at all."""
    from harness.data.guest import resolve_guest_set
    from harness.data.preprocess import PREPROCESS_VERSION, to_uint8
    folder = Path(folder or "mystery_digits")
    guest = resolve_guest_set(folder)
    notes = [f"skipped guest image {file}: {reason}" for file, reason in guest.skipped]
    if len(guest.labels) == 0:
        notes.append(f"no guest digits in {folder}: evaluated on MNIST alone (see {folder}/README.md).")
        return None, notes
    if guest.source == "sample":
        notes.append(f"no real guest digits in {folder}: using the shipped SAMPLE guest set "
                     f"({len(guest.labels)} digits; see {folder}/README.md to add the real ones).")
    return DatasetSpec(kind="guest", content_hash=guest.content_hash, labels=guest.labels,
                       images=to_uint8(guest.images[:, 0]), source=guest_source(guest.source, folder),
                       preprocess_version=PREPROCESS_VERSION,
                       files=tuple(guest.files)), notes


def guest_source(source: str, folder: Path) -> str:
    """What the store keeps as the guest set's source: ``sample``, or ``folder:NAME`` with the name (not the path) of
    the folder it was read from, so that pages can say where the digits came from."""
    return source if source == "sample" else f"folder:{folder.resolve().name}"[:200]  # the column holds 200


MNIST_DIGITS = Task(
    name="handwritten digits",
    input_shape=INPUT_SHAPE,
    input_range=(0.0, 1.0),
    classes=tuple(str(d) for d in range(NUM_CLASSES)),
    public=EvalSet("mnist", "MNIST test", secret=False, load=load_mnist_test),
    secret=EvalSet("guest", "the guest's digits", secret=True, load=load_guest),
)
TASK = MNIST_DIGITS  # the competition this harness runs
