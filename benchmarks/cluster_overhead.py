"""What running on a Dask cluster costs per entry, against a local run, in one run; and a ResNet-50's images/s.

(1) Overhead: the same entries (a linear model, random weights) go one at a time through ``harness.isolation.predict``
here, then through a ``local:2`` cluster's ``predict`` (files sent as bytes, the worker writes them, checks their hash
and runs the same front door), alternating so both see the same machine state. The difference of the mean wall time
per entry is the cluster's overhead (target ≤ 0.5 s). The one-time start (the cluster, its workers' sandboxes) is
reported apart. Then the same entries run two at a time on the two workers, as ``runner`` does.

(2) ``--resnet50 N``: a ResNet-50 at 3×224×224 (random weights, InputAdapter as in submissions/README.md) predicts N
MNIST test images through ``predict`` on this machine: the per-image rate behind docs/cluster.md's table.

    python benchmarks/cluster_overhead.py                    # 8 entries, 1,000 images: about 30 s on 2 cores
    python benchmarks/cluster_overhead.py --entries 4 --resnet50 50
    python benchmarks/cluster_overhead.py --entries 2 --resnet50 2000 --resnet50-device cuda   # on a GPU box
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.entries import LINEAR, resnet, write_entry
from harness.data import mnist
from harness.entries.discovery import load_entry
from harness.isolation import Limits, cluster, predict, process


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist-dir", default=os.environ.get("MNIST_DIR", str(ROOT.parent / "shared/datasets/mnist")))
    p.add_argument("--entries", type=int, default=8)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--resnet50", type=int, default=0, metavar="N", help="also time a ResNet-50 at 224 on N images")
    p.add_argument("--resnet50-device", default="cpu", choices=("cpu", "cuda"), help="where the ResNet-50 runs")
    args = p.parse_args()
    test = mnist.load_split(Path(args.mnist_dir), "test", allow_download=False)
    images = {"mnist": test.images[:args.images]}
    limits = Limits(timeout=600, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        entries = [load_entry(write_entry(Path(tmp), f"linear-{i:02d}", LINEAR, seed=len(f"linear-{i:02d}")))
                   for i in range(args.entries)]
        process.prestart(False, "cpu")
        predict(entries[0], images, limits)  # the local sandbox warm, as the cluster's workers are after connect
        start, pool_ctx = time.perf_counter(), cluster.connect("local:2")
        pool = pool_ctx.__enter__()
        try:
            started = time.perf_counter() - start
            pool.predict(entries[0], images, limits)  # both workers warm
            pool.predict(entries[1], images, limits)
            here, there, gap = [], [], 0.0
            for entry in entries:
                seconds, a = timed(lambda e=entry: predict(e, images, limits))
                here.append(seconds)
                seconds, b = timed(lambda e=entry: pool.predict(e, images, limits))
                there.append(seconds)
                assert a.status == b.status == "ok", (a.error, b.error)
                gap = max(gap, float(abs(a.outputs["mnist"] - b.outputs["mnist"]).max()))
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(2) as threads:
                both, _ = timed(lambda: list(threads.map(lambda e: pool.predict(e, images, limits), entries)))
        finally:
            pool_ctx.__exit__(None, None, None)
        local, remote = statistics.mean(here), statistics.mean(there)
        print(f"{args.entries} linear entries, {args.images} images each, CPU, {os.cpu_count()} cores:")
        print(f"  cluster start (local:2, workers' sandboxes warm): {started:.1f} s, once per run")
        print(f"  per entry, one at a time: local {local:.3f} s, cluster {remote:.3f} s: overhead "
              f"{remote - local:+.3f} s per entry (ratio {remote / local:.2f}); target <= 0.5 s")
        print(f"  largest output difference, local vs cluster: {gap:.2g} (float rounding: each call draws its "
              "own secret order, so batches differ)")
        print(f"  two at a time on the 2 workers: {both / args.entries:.3f} s per entry "
              f"({local / (both / args.entries):.2f}x the local rate)")
        if args.resnet50:
            entry = load_entry(write_entry(Path(tmp), "resnet50", resnet("resnet50"), seed=len("resnet50")))
            few = {"mnist": test.images[:args.resnet50]}
            process.prestart(True, args.resnet50_device)
            got = predict(entry, few, replace(limits, batch_size=16, device=args.resnet50_device),
                          preload_torchvision=True)
            assert got.status == "ok", got.error
            print(f"ResNet-50 at 224, {args.resnet50} images, batch 16, {got.device}: {got.seconds:.1f} s in all, "
                  f"timed {got.timed_seconds:.1f} s: {got.images_per_second:.2f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
