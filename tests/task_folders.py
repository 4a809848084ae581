"""A competition folder of another task than MNIST, made on the spot: 3×40×24 colour pictures of seven classes, each
a colour (the class names are the colours), drawn larger than the input (80×48) so the resize step works, with a
public set in class folders, a secret set listed in ``labels.csv`` and a training folder; and an entry that reads
them by their mean colour (``COLOUR_CODE``), whose predictions tests compute again with numpy.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ("red", "orange", "yellow", "green", "cyan", "blue", "violet")
COLOURS = np.array([[220, 30, 30], [240, 140, 20], [230, 220, 40], [40, 180, 60], [40, 200, 210], [40, 60, 220],
                    [150, 50, 200]], dtype=np.float64)
SHAPE = (3, 40, 24)  # channels, height, width

TOML = """\
title = "Colours"

[task]
title = "Seven colours"
classes = {classes}
channels = 3
height = 40
width = 24
preprocess = "resize"
train = "train"

[task.public]
title = "Colours test"
folder = "public"

[task.secret]
title = "the stranger's colours"
folder = "secret"
"""

# Reads a picture by its mean colour: the nearest of the seven reference colours (its weights) wins.
COLOUR_CODE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.colours = nn.Parameter(torch.zeros(7, 3))

    def forward(self, x):
        mean = x.mean(dim=(2, 3))                               # [N, 3] in [0, 1]
        return -torch.cdist(mean, self.colours / 255.0)         # nearer: higher
'''


def colour_weights() -> dict:
    return {"colours": torch.tensor(COLOURS, dtype=torch.float32)}


def picture(label: int, rng: np.random.Generator, noise: float) -> Image.Image:
    """An 80×48 picture of class ``label``: its colour, jittered by ``noise``, with a dark bar and pixel noise."""
    a = np.empty((80, 48, 3))
    a[:] = COLOURS[label] + rng.normal(0, noise, 3)
    a[36:44] *= 0.8
    a += rng.normal(0, 12, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def make_competition(root: Path, per_class: tuple[int, int, int] = (6, 5, 3), seed: int = 0) -> Path:
    """The competition folder ``root`` (train, public, secret per class counts), with its competition.toml and an
    empty submissions/."""
    rng = np.random.default_rng(seed)
    (root / "submissions").mkdir(parents=True, exist_ok=True)
    (root / "competition.toml").write_text(TOML.format(classes="[" + ", ".join(f'"{c}"' for c in CLASSES) + "]"))
    for name, count, noise in (("train", per_class[0], 25), ("public", per_class[1], 25)):
        for label, cls in enumerate(CLASSES):
            (root / name / cls).mkdir(parents=True, exist_ok=True)
            for n in range(count):
                picture(label, rng, noise).save(root / name / cls / f"{cls}_{n}.png")
    secret = root / "secret"
    secret.mkdir()
    rows = ["file,label"]
    for label, cls in enumerate(CLASSES):  # the stranger's hand: stronger jitter, so some are misread
        for n in range(per_class[2]):
            name = f"s{label}{n}.png"
            picture(label, rng, 70).save(secret / name)
            rows.append(f"{name},{cls}")
    (secret / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def write_colour_entry(submissions: Path, name: str = "colours", code: str = COLOUR_CODE) -> Path:
    folder = submissions / name
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(code))
    torch.save(colour_weights(), folder / "weights.pt")
    return folder


def colour_predictions(images: np.ndarray) -> np.ndarray:
    """The colour entry's predictions computed with numpy from the uint8 images [N, 3, H, W] the harness holds."""
    mean = images.astype(np.float64).mean(axis=(2, 3)) / 255.0
    distance = np.linalg.norm(mean[:, None, :] - COLOURS[None] / 255.0, axis=2)
    return distance.argmin(axis=1)
