"""The task the competition is about, as one value every subsystem reads: what an entry receives and answers, the
classes and their names, and the two sets it is scored on (the public one and the secret one) with their loaders.

The club's first exercise is :data:`MNIST_DIGITS`: 1×28×28 images in [0, 1], ten digits, MNIST's test set in public
and the guest's handwriting in secret; it is the task of a ``competition.toml`` without a ``[task]`` table. A
competition with one gets :func:`task_of`: its classes, input shape and value range, and two folders of labelled
pictures read like the guest's digits (``harness.data.guest``) through its ``preprocess`` step (``digits``: the
guest pipeline; ``resize``: ``harness.data.resize``). The worker checks inputs and outputs against the task, metrics
count its classes and the dashboard names them from it. See docs/organiser.md, "A competition of your own".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from harness.common.competition import SECRET_KINDS, Competition, TaskRules, is_secret  # noqa: F401
from harness.contract import INPUT_SHAPE, NUM_CLASSES, Interface


@dataclass(frozen=True)
class DatasetSpec:
    """An evaluation set as the harness holds it in memory: images exactly as every entry receives them."""
    kind: str                 # the set's name in the task: "mnist" or "guest"
    content_hash: str
    labels: np.ndarray        # int64 [N]
    images: np.ndarray        # uint8 [N, H, W], or [N, C, H, W] for C > 1 (Task.stored_shape; scaled in the entry's
                              # process to the task's value range)
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
    preprocess: str = "digits"              # how raw pictures become inputs: digits | resize

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """One image as sets hold it (uint8): ``(H, W)`` for one channel, ``(C, H, W)`` for more."""
        return self.interface.stored_shape

    @property
    def interface(self) -> Interface:
        """What the entry's process checks its inputs and outputs against."""
        return Interface(self.input_shape, self.num_classes, self.input_range)

    @property
    def drawable(self) -> bool:
        """Whether one can draw an input by hand on the dashboard (one channel)."""
        return self.input_shape[0] == 1

    @property
    def is_digits(self) -> bool:
        """Handwriting on paper (the guest pipeline): the printable sheet and contact sheets apply."""
        return self.preprocess == "digits"

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
TASK = MNIST_DIGITS  # the warm-up's task: a competition.toml without [task]


def reader_of(rules: TaskRules):
    """How the task's pictures are read (``harness.data.guest.Reader``): its classes, through its preprocess."""
    from harness.data.guest import Reader
    from harness.data.preprocess import PREPROCESS_VERSION, normalize_image, open_picture
    from harness.data.resize import RESIZE_VERSION, resizer
    if rules.preprocess == "digits":
        return Reader(rules.classes, normalize_image, PREPROCESS_VERSION, (28, 28), "picture")
    shape = "x".join(map(str, rules.input_shape))
    return Reader(rules.classes, resizer(*rules.input_shape), f"{RESIZE_VERSION}-{shape}", rules.input_shape, "picture",
                  open_picture)


def load_folder_set(rules: TaskRules, which: str, folder: str | Path | None) -> tuple[DatasetSpec | None, list[str]]:
    """The task's ``which`` set ("public" or "secret") from ``folder`` (default: the one [task.<which>] names),
    read with the task's reader; None when it holds no picture."""
    from harness.data.guest import GuestSetError, load_guest_set
    from harness.data.preprocess import to_uint8
    named = getattr(rules, which)
    folder = Path(folder) if folder else named.folder
    if not folder.is_dir():
        raise GuestSetError(f"the {which} set's folder {folder} does not exist; create it with a folder per class "
                            f"(or point task.{which}.folder in competition.toml at it).")
    reader = reader_of(rules)
    read = load_guest_set(folder, reader)
    notes = [f"skipped {named.title} image {file}: {reason}" for file, reason in read.skipped]
    if len(read.labels) == 0:
        notes.append(f"no labelled pictures in {folder} ({named.title}).")
        return None, notes
    images = read.images[:, 0] if rules.channels == 1 else read.images
    return DatasetSpec(kind=which, content_hash=read.content_hash, labels=read.labels, images=to_uint8(images),
                       source=f"folder:{folder.resolve().name}"[:200], preprocess_version=reader.version,
                       files=tuple(read.files)), notes


@cache
def _task_of_rules(rules: TaskRules) -> Task:
    from functools import partial
    def evalset(which: str, secret: bool) -> EvalSet:
        return EvalSet(which, getattr(rules, which).title, secret=secret, load=partial(load_folder_set, rules, which))
    return Task(name=rules.title, input_shape=rules.input_shape, input_range=rules.value_range, classes=rules.classes,
                public=evalset("public", False), secret=evalset("secret", True), preprocess=rules.preprocess)


def task_of(rules: Competition | None) -> Task:
    """The task ``rules`` (a competition.toml) describes: its [task] table's, else the MNIST warm-up's."""
    if rules is None or rules.task is None:
        return MNIST_DIGITS
    return _task_of_rules(rules.task)
