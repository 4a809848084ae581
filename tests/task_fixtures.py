"""A small competition with a ``[task]`` table and a scored database, built through the real harness code path.

The example competition's pictures (competitions/shapes: 3×32×32 colour, five shapes) are copied, a little cut down,
into a competition folder of its own; three colour template matchers (a linear layer whose rows are class means of
the training pictures, from many, few and noisy ones) are evaluated on its public and secret sets by
``harness.runner.run`` into the folder's own ``leaderboard.db``, then the secret results are revealed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness import runner
from harness.common import competition
from harness.data.guest import load_guest_set
from harness.data.task import reader_of, task_of
from harness.entries.discovery import discover
from harness.store import flags
from harness.store.engine import make_engine
from tests.conftest import REPO
from tests.entries import write_entry

SHAPES = REPO / "competitions" / "shapes"
PICTURES = {"public": 60, "secret": 40}  # per class; the training kit's first 200 per class make the templates

COLOUR_TEMPLATE = '''
import torch
from torch import nn


class Net(nn.Module):
    """Colour template matcher: logits = scale * <x - 0.5, class mean - 0.5>."""

    def __init__(self, scale: float = 0.05, classes: int = 5, size: int = 3 * 32 * 32):
        super().__init__()
        self.scale = scale
        self.fc = nn.Linear(size, classes, bias=False)

    def forward(self, x):
        return self.scale * self.fc(x.flatten(1) - 0.5)
'''


@dataclass
class TaskFixture:
    folder: Path            # the competition folder: competition.toml, public/, secret/, submissions/, leaderboard.db
    rules: competition.Competition
    db: Path


def _copy_sets(folder: Path) -> None:
    for which, per_class in PICTURES.items():
        for class_dir in sorted((SHAPES / which).iterdir()):
            if not class_dir.is_dir():
                continue
            target = folder / which / class_dir.name
            target.mkdir(parents=True)
            for picture in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy(picture, target / picture.name)


def build(folder: Path, deadline: str | None = None) -> TaskFixture:
    """The competition folder with its scored database (``deadline``: an ISO time written into competition.toml)."""
    folder.mkdir(parents=True, exist_ok=True)
    toml = (SHAPES / "competition.toml").read_text().replace('train = "train"', f'train = "{SHAPES / "train"}"')
    if deadline is not None:
        toml = toml.replace('reveal = "organiser"', f'reveal = "organiser"\ndeadline = "{deadline}"')
    (folder / "competition.toml").write_text(toml)
    _copy_sets(folder)
    rules = competition.load(folder / "competition.toml")
    task = task_of(rules)
    train = load_guest_set(SHAPES / "train", reader_of(rules.task))
    flat = train.images.reshape(len(train.labels), -1).astype(np.float64)
    flat = flat / 255.0 if flat.max() > 1.5 else flat
    labels = np.asarray(train.labels)

    def means(per_class: int, noise: float = 0.0) -> dict:
        rows = np.stack([flat[np.flatnonzero(labels == c)[:per_class]].mean(0) for c in range(task.num_classes)])
        rows = rows - 0.5 + np.random.default_rng(per_class).normal(0, noise, rows.shape)
        return {"fc.weight": torch.tensor(rows, dtype=torch.float32)}

    subs = folder / "submissions"
    write_entry(subs, "circle-first", COLOUR_TEMPLATE, means(200), 'display_name = "Circles first"\nauthor = "Ada"\n')
    write_entry(subs, "few-shapes", COLOUR_TEMPLATE, means(3), 'display_name = "Three of each"\nauthor = "Bob"\n')
    write_entry(subs, "noisy", COLOUR_TEMPLATE, means(200, 0.4), 'display_name = "Noisy means"\nauthor = "Cy"\n')
    datasets = []
    for evalset in task.sets:
        spec, _ = evalset.load(None)
        datasets.append(spec)
    db = folder / competition.FOLDER_DB
    engine = make_engine(str(db))
    options = runner.Options(runner.Limits(device="cpu", timeout=120))
    runner.run(engine, list(discover(subs).values()), datasets, options, argv=["task-fixture"], competition=rules)
    flags.set_flag(engine, flags.GUEST_REVEALED, "true")
    engine.dispose()
    return TaskFixture(folder, rules, db)
