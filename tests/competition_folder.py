"""A competition folder of another shape than MNIST's, made on the spot: 3×40×24 colour pictures (40 high, 24 wide) of
seven classes, each class a shape of its own colour at a jittered place and size on a dark background, with the
inputs in [-1, 1] (so that the value range is exercised too). Pictures are drawn with Pillow; nothing is
downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("red-disc", "green-bar", "blue-box", "yellow-cross", "cyan-ring", "magenta-wedge", "white-dot")
HEIGHT, WIDTH = 40, 24
COLOURS = ((230, 40, 40), (40, 220, 60), (50, 80, 240), (240, 230, 50), (40, 220, 230), (230, 50, 220),
           (245, 245, 245))


def picture(label: int, rng: np.random.Generator) -> Image.Image:
    """One WIDTH×HEIGHT picture of class ``label``: its shape in its colour (slightly varied), jittered."""
    background = tuple(int(v) for v in rng.integers(0, 50, 3))
    img = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(img)
    fill = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in COLOURS[label])
    cx, cy = WIDTH / 2 + rng.uniform(-3, 3), HEIGHT / 2 + rng.uniform(-5, 5)
    r = rng.uniform(6, 9)
    box = (cx - r, cy - r, cx + r, cy + r)
    [lambda: draw.ellipse(box, fill=fill),
     lambda: draw.rectangle((cx - 2, cy - 1.6 * r, cx + 2, cy + 1.6 * r), fill=fill),
     lambda: draw.rectangle(box, fill=fill),
     lambda: (draw.rectangle((cx - r, cy - 2, cx + r, cy + 2), fill=fill),
              draw.rectangle((cx - 2, cy - r, cx + 2, cy + r), fill=fill)),
     lambda: draw.ellipse(box, outline=fill, width=3),
     lambda: draw.polygon([(cx - r, cy + r), (cx + r, cy + r), (cx, cy - r)], fill=fill),
     lambda: draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=fill)][label]()
    return img


def write_pictures(folder: Path, per_class: int, seed: int) -> None:
    """``per_class`` pictures of every class under ``folder/<class>/``."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            picture(label, rng).save(folder / name / f"{name}_{n:03d}.png")


def make_competition(root: Path, train: int | None = 30, public: int = 6, secret: int = 4,
                     extra_toml: str = "") -> Path:
    """A competition folder under ``root`` (its competition.toml, train/ with ``train`` pictures per class unless
    None, public/ and secret/, an empty submissions/); returns it."""
    root.mkdir(parents=True, exist_ok=True)
    names = ", ".join(f'"{c}"' for c in CLASSES)
    lines = ['title = "Seven tall colour patterns"', "", "[task]", 'title = "Seven patterns"', f"classes = [{names}]",
             "channels = 3", f"height = {HEIGHT}", f"width = {WIDTH}", "value_range = [-1, 1]",
             'preprocess = "resize"', *(['train = "train"'] if train is not None else []), extra_toml, "",
             "[task.public]", 'title = "Patterns test"', 'folder = "public"', "",
             "[task.secret]", 'title = "the stranger\'s patterns"', 'folder = "secret"', ""]
    (root / "competition.toml").write_text("\n".join(lines), encoding="utf-8")
    if train is not None:
        write_pictures(root / "train", train, seed=1)
    write_pictures(root / "public", public, seed=2)
    write_pictures(root / "secret", secret, seed=3)
    (root / "submissions").mkdir(exist_ok=True)
    return root
