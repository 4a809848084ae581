"""A realistic results database for the dashboard tests, built through the real harness code path.

Five template-matcher entries (see tests/entries.py) are evaluated by ``harness.runner.run`` on 500 MNIST test
digits and on 100 "guest" digits (MNIST training digits written to a mystery folder as dark ink on paper):
one entry has two versions, one reads exactly like another (a tie), one fails to load.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness import runner
from harness.data.task import DatasetSpec, guest_source
from harness.entries.discovery import discover
from harness.store import flags
from harness.store.engine import make_engine
from tests.entries import class_means, template_weights, write_entry

GUEST_TOKEN = "mysteryink"   # in every guest file name: must never appear on a page before the reveal
N_MNIST, N_GUEST = 500, 100


@dataclass
class Fixture:
    db: Path                # sealed
    revealed_db: Path       # the same results, revealed
    submissions: Path
    mystery: Path
    guest_labels: np.ndarray
    guest_files: list[str]
    mnist_labels: np.ndarray


def _copy_db(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def build(root: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
          test_labels: np.ndarray) -> Fixture:
    subs, mystery = root / "submissions", root / "mystery"
    strong = class_means(train_images[:20000], train_labels[:20000])
    weak = class_means(train_images[:40], train_labels[:40])
    mid = strong + np.random.default_rng(0).normal(0, 0.25, strong.shape)  # a clearly weaker entry
    write_entry(subs, "ada", weights=template_weights(weak), toml='''
        display_name = "Ada's template"
        author = "Ada Lovelace"
        description = "Class means of the training digits."
        [hyperparameters]
        lr = 0.01
        epochs = 3
        optimizer = "sgd"
    ''')
    write_entry(subs, "bob", weights=template_weights(mid), toml='''
        display_name = "Bob's quick one"
        author = "Bob"
        [hyperparameters]
        lr = 0.1
        epochs = 1
    ''')
    write_entry(subs, "dee", weights=template_weights(strong), toml='''
        display_name = "Dee's copy"
        author = "Dee"
        [constructor]
        scale = 0.2
    ''')
    write_entry(subs, "eve", weights=template_weights(class_means(train_images[:100], train_labels[:100])),
                toml='author = "Eve"\n')
    write_entry(subs, "broken", weights={}, toml='display_name = "Broken entry"\nauthor = "Fay"\n')

    guest_images = train_images[50000:50000 + N_GUEST]
    guest_labels = train_labels[50000:50000 + N_GUEST].astype(np.int64)
    files = []
    for i, (image, label) in enumerate(zip(guest_images, guest_labels, strict=True)):
        rel = f"{label}/{GUEST_TOKEN}_{i:03d}.png"
        (mystery / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - image).resize((112, 112), Image.BICUBIC).save(mystery / rel)
        files.append(rel)
    datasets = [
        DatasetSpec(kind="mnist", content_hash="dash-mnist-500", labels=test_labels[:N_MNIST].astype(np.int64),
                    images=test_images[:N_MNIST], source="MNIST test (first 500)"),
        DatasetSpec(kind="guest", content_hash="dash-guest-100", labels=guest_labels, images=guest_images,
                    source=guest_source("folder", mystery), preprocess_version="test", files=tuple(files)),
    ]
    db = root / "sealed.db"
    engine = make_engine(str(db))
    options = runner.Options(device="cpu", timeout=120)
    runner.run(engine, list(discover(subs).values()), datasets, options, argv=["fixture", "1"])
    # Ada improves her entry: a second version, evaluated in a second run.
    write_entry(subs, "ada", weights=template_weights(strong))
    runner.run(engine, list(discover(subs).values()), datasets, options, argv=["fixture", "2"])
    engine.dispose()
    revealed = root / "revealed.db"
    _copy_db(db, revealed)
    engine = make_engine(str(revealed))
    flags.set_flag(engine, flags.GUEST_REVEALED, "true")
    engine.dispose()
    return Fixture(db=db, revealed_db=revealed, submissions=subs, mystery=mystery, guest_labels=guest_labels,
                   guest_files=files, mnist_labels=test_labels[:N_MNIST].astype(np.int64))
