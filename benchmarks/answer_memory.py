"""What answering a set costs the entry's process in memory, in two measures:

(1) the rise of a fresh process's peak resident memory (``VmHWM``, reset just before) while ``worker.answer`` runs
    each committed entry on 11,000 MNIST-shaped digits (random pixels: memory does not depend on them);
(2) whether 10,000 colour pictures of 96×96 (276 MB as uint8, 1.1 GB as floats) are evaluated under a 1 GiB memory
    limit through the front door (``harness.isolation.predict``), a few times.

Run it in two checkouts (a worktree of the older commit beside this one) to compare workers:

    python benchmarks/answer_memory.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from torch import nn

from harness.contract import Interface
from harness.entries.discovery import discover
from harness.isolation import Limits, predict

RISE = '''
import json, sys
from pathlib import Path
from harness.entries.discovery import discover
from harness.isolation.inside import worker
entry = discover(Path(sys.argv[1]))[sys.argv[2]]
loaded = worker.load(entry.folder, entry.metadata, "cpu")
def kib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])
before = kib("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from what is resident now
worker.answer(loaded, Path(sys.argv[3]), "the test images")
print(json.dumps((kib("VmHWM:") - before) / 1024))
'''

COLOUR = '''
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))
'''


def rise_per_entry(work: Path) -> dict[str, float]:
    path = work / "digits.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (11_000, 1, 28, 28), dtype=np.uint8))
    submissions = ROOT / "submissions"
    rises = {}
    for name in sorted(discover(submissions)):
        done = subprocess.run([sys.executable, "-c", RISE, str(submissions), name, str(path)], capture_output=True,
                              text=True, cwd=ROOT, check=True)
        rises[name] = round(json.loads(done.stdout.strip().splitlines()[-1]), 1)
    return rises


def large_pictures(work: Path, runs: int) -> list[str]:
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 10)
    folder = work / "entries" / "colour"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(COLOUR)
    torch.save({"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach(), "fc.weight": fc.weight.detach(),
                "fc.bias": fc.bias.detach()}, folder / "weights.pt")
    entry = discover(work / "entries", interface=Interface((3, 96, 96), 10, (0.0, 1.0)))["colour"]
    images = {"test": np.random.default_rng(0).integers(0, 256, (10_000, 3, 96, 96), dtype=np.uint8)}
    outcomes = []
    for _ in range(runs):
        got = predict(entry, images, Limits(timeout=600, memory=2 ** 30, device="cpu"))
        outcomes.append(got.status if got.status == "ok" else f"{got.status}: {got.error}")
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of the large pictures under 1 GiB (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(json.dumps({"peak_rise_MiB_answering_11000_digits": rise_per_entry(work),
                          "10000_colour_96px_under_1GiB": large_pictures(work, args.runs)}, indent=2))


if __name__ == "__main__":
    main()
