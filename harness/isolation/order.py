"""The order in which an entry's process sees each set's images: a secret one, drawn afresh each time an entry
runs (every call of ``harness.isolation.prediction.predict``): each entry of each run gets its own.

Stored sets are in a meaningful order (the guest's files sorted by path are grouped by label folder), so an
entry that read its position in the set, or smoothed its predictions over neighbouring images, could learn
the labels from the order alone. Each set is therefore written in a uniformly random order taken from the
operating system's entropy (never from file names, labels or hashes), and the entry's outputs are put back
in the dataset's order before anything is scored or stored: stored per-sample predictions do not depend on it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def permutation(n: int) -> np.ndarray:
    """A uniformly random order of ``n`` items, seeded from the OS's entropy (128 bits), unknown to any entry."""
    return np.random.default_rng(secrets.randbits(128)).permutation(n)


@dataclass(frozen=True, eq=False)
class Shuffled(Mapping):
    """{set: images file} as the entry's process receives them, with each set's secret order.

    ``orders[kind][i]`` is the dataset index of the image at position ``i`` of the file.
    """
    paths: dict[str, Path]
    orders: dict[str, np.ndarray]

    def __getitem__(self, kind: str) -> Path:
        return self.paths[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def unshuffle(self, kind: str, outputs: np.ndarray) -> np.ndarray:
        """The entry's outputs for ``kind`` (in file order) back in the dataset's order."""
        order = self.orders[kind]
        if outputs.ndim == 0 or len(outputs) != len(order):
            raise ValueError(f"the entry's process returned {outputs.shape} outputs for the {len(order)} images of "
                             f"the {kind} set; expected one row per image.")
        canonical = np.empty_like(outputs)
        canonical[order] = outputs
        return canonical


def draw(images: dict[str, np.ndarray], folder: Path) -> Shuffled:
    """A fresh secret order for each set of ``images`` and the file it goes to, ``images_<set>.npy`` in ``folder``;
    nothing is written yet (:func:`save`)."""
    return Shuffled({kind: Path(folder) / f"images_{kind}.npy" for kind in images},
                    {kind: permutation(len(array)) for kind, array in images.items()})


def save(images: dict[str, np.ndarray], shuffled: Shuffled) -> None:
    """Write each set's images (uint8 [N,H,W], or [N,C,H,W]) to its file as uint8 [N,C,H,W], in its secret order;
    labels and file names are never written."""
    for kind, array in images.items():
        ordered = array.astype(np.uint8)[shuffled.orders[kind]]
        np.save(shuffled.paths[kind], np.ascontiguousarray(ordered[:, None] if ordered.ndim == 3 else ordered),
                allow_pickle=False)

