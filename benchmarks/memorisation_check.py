"""What the memorisation check sees: MNIST's test set memorised two ways, against honest entries.

Each entry is scored by ``harness.runner.evaluate_one`` on MNIST's 10,000 test digits, as a run scores it (1,000
changed copies mixed in), ``--rounds`` times; printed: accuracy as given, discordant pairs (right only as given /
right only as the copy), the check's p and whether it flags the entry.

- ``hash-table``: each test image's exact pixels hashed to its label, a template matcher elsewhere (the issue's
  attack, as in ``tests/harness/isolation/test_sealed.py``);
- ``nearest-neighbour``: the 10,000 test images kept in the weights, each input read as its nearest one's label;
- the committed entries in ``submissions/`` (``--submissions``), honest.

Usage: ``python benchmarks/memorisation_check.py [--mnist-dir DIR] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import runner
from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.isolation import Limits
from harness.scoring.metrics import memorisation_p, memorised
from tests.entries import class_means, write_entry
from tests.test_sealed import MEMORISER_CODE, memoriser_weights

NEAREST_CODE = '''
import torch
from torch import nn


class Net(nn.Module):
    """The public test set kept whole: every input is read as its nearest test image's label."""

    def __init__(self):
        super().__init__()
        self.register_buffer("images", torch.zeros(10000, 784, dtype=torch.uint8))
        self.register_buffer("labels", torch.zeros(10000, dtype=torch.int64))

    def forward(self, x):
        known = self.images.float() / 255
        flat = x.flatten(1)
        distance = (flat * flat).sum(1, keepdim=True) - 2 * flat @ known.T + (known * known).sum(1)
        return torch.nn.functional.one_hot(self.labels[distance.argmin(1)], 10).float()
'''


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--submissions", default=str(REPO / "submissions"))
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    folder = mnist.resolve_dir(args.mnist_dir)
    test = mnist.load_split(folder, "test", allow_download=False)
    train = mnist.load_split(folder, "train", allow_download=False)
    means = class_means(train.images[:20000], train.labels[:20000])
    spec = DatasetSpec("mnist", test.content_hash, test.labels, test.images, "MNIST test")
    work = Path(tempfile.mkdtemp(prefix="memo-"))
    try:
        cheats = work / "cheats"
        write_entry(cheats, "hash-table", code=MEMORISER_CODE,
                    weights=memoriser_weights(means, test.images, test.labels))
        write_entry(cheats, "nearest-neighbour", code=NEAREST_CODE,
                    weights={"images": torch.from_numpy(test.images.reshape(10000, -1).copy()),
                             "labels": torch.from_numpy(test.labels.astype(np.int64))})
        entries = list(discover(cheats).values()) + list(discover(Path(args.submissions)).values())
        print(f"{'entry':<20} {'accuracy':>9} {'pairs':>6} {'only given':>10} {'only copy':>9} {'p':>9} flagged")
        for entry in entries:
            for _ in range(args.rounds):
                record = runner.evaluate_one(entry, [spec], {"mnist": 1}, Limits(timeout=1800, device="cpu"))
                if record.status != "ok":
                    print(f"{entry.name:<20} failed: {record.error}")
                    continue
                memo = record.memorisation
                p_value = memorisation_p(memo.only_original, memo.only_copy)
                print(f"{entry.name:<20} {record.metrics[1].accuracy:>9.4f} {memo.pairs:>6} {memo.only_original:>10} "
                      f"{memo.only_copy:>9} {p_value:>9.1e} {memorised(memo.only_original, memo.only_copy)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
