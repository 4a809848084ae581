"""How good the early estimate is: a ResNet-18 at 3×224×224 (random weights, wrapped in InputAdapter as in
submissions/README.md) predicts a subset of MNIST through the harness; the estimate of the whole run's time, as it
stood when the harness could first have stopped the entry (``ESTIMATE_AFTER_SECONDS`` after go), against the time
the run actually took, as a ratio (1.0: exact; above 1: the estimate was pessimistic).

    python benchmarks/estimate_accuracy.py                      # 200 images, batch 16: about a minute on 2 cores
    python benchmarks/estimate_accuracy.py --images 1000 --batch-size 32
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.entries import resnet, write_entry
from harness.data import mnist
from harness.entries.discovery import discover
from harness.isolation import Limits, Progress, predict, process


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--mnist-dir", default=os.environ.get("MNIST_DIR", "data/mnist"))
    args = p.parse_args()
    images = mnist.load_split(Path(args.mnist_dir), "test", allow_download=False).images[:args.images]
    with tempfile.TemporaryDirectory() as tmp:
        write_entry(Path(tmp) / "subs", "resnet18", resnet("resnet18"))
        entry = discover(Path(tmp) / "subs")["resnet18"]
        heard: list[tuple[float, Progress]] = []
        started = time.perf_counter()
        got = predict(entry, {"mnist": images}, Limits(timeout=3600, device="cpu", batch_size=args.batch_size),
                      preload_torchvision=True, on_progress=lambda at: heard.append((time.perf_counter(), at)))
        ended = time.perf_counter()
    assert got.status == "ok", got.error
    went = heard[0][0]  # Progress(0, total) is reported at go
    actual = ended - started
    print(f"ResNet-18 at 224 on {args.images} MNIST images, batch {args.batch_size}, {got.device}: "
          f"{actual:.1f} s in all, {got.images_per_second:.1f} images/s timed from go")
    first = None
    for at, progress in heard:
        if progress.seconds_left is None or progress.done >= progress.total:
            continue
        estimate = at - started + progress.seconds_left
        judged = at - went >= process.ESTIMATE_AFTER_SECONDS
        first = first or (estimate if judged else None)
        print(f"  {at - went:5.1f} s after go: {progress.done:4d}/{progress.total} images, estimate {estimate:5.1f} s "
              f"(ratio {estimate / actual:.2f}){'' if judged else ', too soon to stop an entry'}")
    if first is not None:
        print(f"first estimate that could stop an entry / actual time = {first / actual:.2f}")


if __name__ == "__main__":
    main()
