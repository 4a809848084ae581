"""What the bubblewrap sandbox costs: seconds per entry with and without it, on the same entries in one run.

Each entry (a linear model by default, or the PyTorch example's 2-conv CNN; random weights) is evaluated
through ``harness.isolation.process.run_isolated`` on 10,000 images, alternating plain child processes and the
sandbox, so both see the same machine state. The linear model keeps the compute small, so that the
difference is the sandbox's own cost rather than noise in the model's run time. The one-time start
(multiprocessing's fork server, or bwrap with the sandboxed fork server) is reported apart from the per-entry figures.

    python benchmarks/sandbox_overhead.py                 # about 10 s on 2 cores
    python benchmarks/sandbox_overhead.py --model cnn --entries 4 --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.entries import LINEAR, write_entry
from harness.contract import EntryMetadata
from harness.isolation import sandbox
from harness.isolation.process import run_isolated

CNN = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))
'''


def timed(folder: Path, images: Path, out: Path, device: str, sandboxed: bool) -> tuple[float, float]:
    """(wall seconds of the whole call, seconds the model itself ran) for one entry."""
    started = time.perf_counter()
    outcome = run_isolated(folder, EntryMetadata(), {"mnist": images}, out, device=device, timeout=300,
                           sandboxed=sandboxed)
    seconds = time.perf_counter() - started
    if outcome.result["status"] != "ok" or outcome.sandboxed != sandboxed:
        raise SystemExit(f"{folder.name} (sandboxed={sandboxed}) failed: {outcome.result.get('error')}\n{outcome.log}")
    return seconds, outcome.timed_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10)
    parser.add_argument("--model", choices=("linear", "cnn"), default="linear")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    reason = sandbox.unavailable_reason()
    if reason:
        raise SystemExit(f"the sandbox cannot run here: {reason}")
    work = Path(tempfile.mkdtemp(prefix="sandbox-overhead-"))
    code = CNN if args.model == "cnn" else LINEAR
    folders = [write_entry(work / "subs", f"entry-{i:02d}", code, seed=i) for i in range(args.entries)]
    images = work / "images_mnist.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (args.images, 1, 28, 28), dtype=np.uint8))
    sandbox.close_shared()  # measure the sandbox's start below, like the fork server's
    start = {mode: timed(folders[0], images, work / f"warm-{mode}", args.device, mode)[0] for mode in (False, True)}
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i, folder in enumerate(folders):
        for mode in ((False, True) if i % 2 else (True, False)):  # alternate which goes first
            times[mode].append(timed(folder, images, work / f"out-{i}-{mode}", args.device, mode))
    print(f"{args.entries} {args.model} entries x {args.images} images on {args.device}, "
          f"{len(os.sched_getaffinity(0))} cores; medians per entry")
    print(f"{'':11}{'first call':>11}{'wall':>9}{'model':>9}{'wall - model (isolation cost)':>31}")
    cost = {}
    for mode, label in ((False, "plain"), (True, "sandboxed")):
        wall = statistics.median(w for w, _ in times[mode])
        model = statistics.median(m for _, m in times[mode])
        cost[mode] = statistics.median(w - m for w, m in times[mode])
        print(f"{label:11}{start[mode]:>10.3f}s{wall:>8.3f}s{model:>8.3f}s{cost[mode] * 1000:>28.0f} ms")
    print("sandbox overhead per entry (isolation cost, sandboxed - plain): "
          f"{(cost[True] - cost[False]) * 1000:+.0f} ms")
    # The sandboxed child starts its own session (setsid); where the kernel groups scheduling by session
    # (autogroup), a loaded machine can give it a larger CPU share, so compare the isolation cost, not wall.

if __name__ == "__main__":
    main()
