"""The peak memory the harness stores for an entry (its cgroup's, else its processes' as the host watched them):
the PyTorch example's CNN (random weights) through the front door (``harness.isolation.predict``) on the MNIST test
set with the memorisation check's 1,000 copies, as a run scores it, a few times.

Run it in two checkouts (a worktree of the older commit beside this one) to compare harnesses:

    python benchmarks/entry_peak_memory.py --mnist-dir ../shared/datasets/mnist --runs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness_speed import make_entries
from harness import runner
from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.isolation import prediction


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    split = mnist.load_split(mnist.resolve_dir(args.mnist_dir), "test", allow_download=False)
    spec = DatasetSpec("mnist", split.content_hash, split.labels, split.images, "bench")
    images = {"mnist": runner.Copies.draw(spec).mixed}  # the set and its copies, as a run hands them over
    work = Path(tempfile.mkdtemp(prefix="bench-peak-"))
    try:
        make_entries(work, 1)
        entry = discover(work)["cnn-00"]
        got = [prediction.predict(entry, images, runner.Limits(device="cpu")) for _ in range(args.runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert all(g.status == "ok" for g in got), [g.error for g in got]
    print(json.dumps({"peak_memory_mib": [round(g.peak_memory / 2 ** 20, 1) for g in got],
                      "sandboxed": got[0].sandboxed, "device": got[0].device}, indent=2))


if __name__ == "__main__":
    main()
