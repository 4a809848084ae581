"""Make the example competition's pictures: five shapes in colour, 32×32, drawn by two different "hands".

``python scripts/make_shapes.py [--out competitions/shapes] [--train 3000] [--public 500] [--secret 250]``
writes ``train/``, ``public/`` and ``secret/`` under ``--out``, a folder per class (circle, square, triangle, star,
cross), PNG files named ``<class>_<n>.png``. The same arguments always give the same files (fixed seeds).

The training and public pictures share one hand: flat colours on a plain background, mild jitter. The secret set
is a stranger's hand, as the guest's digits are for MNIST: outlines as often as filled shapes, stronger rotation and
squash, textured backgrounds, noise and blur, so a model that learnt the first hand's habits loses points there.
Everything comes from Pillow's drawing calls: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star", "cross")
SIDE = 32
SCALE = 4  # drawn at 4× and reduced: anti-aliased edges


def polygon(kind: str, cx: float, cy: float, r: float, angle: float, squash: float) -> list[tuple[float, float]]:
    """The shape's outline as points (a circle as a 48-gon), rotated by ``angle`` and squashed vertically."""
    if kind == "circle":
        points = [(math.cos(2 * math.pi * k / 48), math.sin(2 * math.pi * k / 48)) for k in range(48)]
    elif kind == "square":
        points = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif kind == "triangle":
        points = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif kind == "star":
        points = [((1.0 if k % 2 == 0 else 0.42) * math.cos(-math.pi / 2 + k * math.pi / 5),
                   (1.0 if k % 2 == 0 else 0.42) * math.sin(-math.pi / 2 + k * math.pi / 5)) for k in range(10)]
    else:  # cross
        a, b = 0.3, 0.9
        points = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
                  (-a, -a)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * squash * (x * s + y * c)) for x, y in points]


def colour(rng: np.random.Generator, dark: bool) -> tuple[int, int, int]:
    base = rng.integers(0, 90, 3) if dark else rng.integers(140, 256, 3)
    return tuple(int(v) for v in base)


def picture(kind: str, rng: np.random.Generator, stranger: bool) -> Image.Image:
    """One 32×32 RGB picture of ``kind`` in the first hand's style, or the stranger's."""
    size = SIDE * SCALE
    dark_shape = bool(rng.random() < 0.5)
    background = colour(rng, not dark_shape)
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    if stranger and rng.random() < 0.6:  # stripes or dots behind the shape
        tone = tuple(int(np.clip(v + rng.integers(-40, 41), 0, 255)) for v in background)
        step = int(rng.integers(10, 24))
        for x in range(-size, size, step):
            draw.line([(x, 0), (x + size, size)], fill=tone, width=int(rng.integers(2, 6)))
    r = size * rng.uniform(0.26, 0.42)
    cx, cy = size / 2 + rng.uniform(-0.12, 0.12) * size, size / 2 + rng.uniform(-0.12, 0.12) * size
    angle = rng.uniform(-0.9, 0.9) if stranger else rng.uniform(-0.25, 0.25)
    squash = rng.uniform(0.65, 1.1) if stranger else rng.uniform(0.9, 1.05)
    points = polygon(kind, cx, cy, r, angle, squash)
    fill = colour(rng, dark_shape)
    if stranger and rng.random() < 0.45:
        draw.line(points + [points[0]], fill=fill, width=int(rng.integers(6, 12)), joint="curve")
    else:
        draw.polygon(points, fill=fill)
    img = img.resize((SIDE, SIDE), Image.Resampling.BOX)
    if stranger:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.9)))
        a = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(2, 14), (SIDE, SIDE, 3))
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return img


def write_set(folder: Path, per_class: int, seed: int, stranger: bool) -> int:
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (folder / label).mkdir(parents=True)
        for n in range(per_class):
            picture(label, rng, stranger).save(folder / label / f"{label}_{n:04d}.png", optimize=True)
    return per_class * len(CLASSES)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("competitions/shapes"))
    p.add_argument("--train", type=int, default=3000, help="training pictures in all (default 3000)")
    p.add_argument("--public", type=int, default=500, help="public test pictures in all (default 500)")
    p.add_argument("--secret", type=int, default=250, help="secret pictures in all (default 250)")
    args = p.parse_args(argv)
    counts = {}
    for name, total, seed, stranger in (("train", args.train, 1, False), ("public", args.public, 2, False),
                                        ("secret", args.secret, 3, True)):
        counts[name] = write_set(args.out / name, max(1, total // len(CLASSES)), seed, stranger)
    print(", ".join(f"{name}: {n} pictures" for name, n in counts.items()) + f" in {args.out}")


if __name__ == "__main__":
    main()
