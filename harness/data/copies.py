"""Imperceptibly changed copies of public images, for the memorisation check (``harness.runner``).

A model that reads handwriting reads a copy as it reads the original; a table of the public set's exact images (a
hash of each image to its label) does not recognise the copy. Each copy differs from its original by at most
``EDGE_NOISE`` of 255 on the ink's anti-aliased edge (pixels strictly between paper and full ink, which stay
strictly between) and by ``SPECKS`` paper pixels set to 1 or 2 of 255, away from the ink: nothing a person sees.
The harness draws which images are copied and how from the OS's entropy, for every run. Colour pictures
(``[N, C, H, W]``, a task that is not handwriting) have no paper and ink: each copy changes every level strictly
between 0 and 255 by at most ``EDGE_NOISE``, which no one sees either.
"""

from __future__ import annotations

import numpy as np

EDGE_NOISE = 3  # at most this many levels of 255 on each edge pixel
SPECKS = 4      # paper pixels per copy given a faint speck (1 or 2 of 255)


def changed_copies(images: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct images of ``images`` (uint8 [N, H, W], or colour [N, C, H, W]), chosen by ``rng``, and a
    changed copy of each: (their indices, the copies)."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"changed_copies takes uint8 images [N, H, W] or [N, C, H, W], not {images.dtype} "
                         f"{list(images.shape)}.")
    count = min(count, len(images))
    chosen = np.sort(rng.choice(len(images), size=count, replace=False))
    copies = images[chosen].astype(np.int16)
    # colour: every level strictly inside (0, 255) moves a little; handwriting: the ink's anti-aliased edge
    edge = (copies > 0) & (copies < 255)
    noise = rng.integers(-EDGE_NOISE, EDGE_NOISE + 1, size=int(edge.sum()), dtype=np.int16)
    copies[edge] = np.clip(copies[edge] + noise, 1, 254)
    if images.ndim == 3:
        _speck(copies, _far_from_ink(copies > 0), rng)
    return chosen, copies.astype(np.uint8)


def _speck(copies: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> None:
    """Give each copy SPECKS faint specks (1 or 2 of 255) on distinct pixels drawn uniformly among its ``free`` ones
    (all of them where it has fewer), every copy at once: the SPECKS smallest of random keys over its free pixels."""
    if len(copies) == 0:  # a set too small to copy any image
        return
    flat_free = free.reshape(len(copies), -1)
    keys = np.where(flat_free, rng.random(flat_free.shape, dtype=np.float32), np.float32(np.inf))
    take = min(SPECKS, keys.shape[1])
    spots = np.argpartition(keys, take - 1, axis=1)[:, :take] if take else np.zeros((len(copies), 0), dtype=int)
    rows = np.repeat(np.arange(len(copies)), take).reshape(-1, take)
    valid = np.isfinite(keys[rows, spots])  # a copy with fewer free pixels than SPECKS gets what it has
    flat = copies.reshape(len(copies), -1)
    flat[rows[valid], spots[valid]] = rng.integers(1, 3, size=int(valid.sum()))


def _far_from_ink(ink: np.ndarray, margin: int = 2) -> np.ndarray:
    """Paper pixels at least ``margin`` pixels from any ink, for a stack of ink masks [K, H, W] (so a speck never
    touches a stroke): the ink grown by ``margin`` along the rows, then the columns (wrapping at the borders)."""
    rows = ink.copy()
    for dy in range(-margin, margin + 1):
        rows |= np.roll(ink, dy, axis=1)
    near = rows.copy()
    for dx in range(-margin, margin + 1):
        near |= np.roll(rows, dx, axis=2)
    return ~near
