"""Training throughput (images/s) of each architecture on this machine, through the real training loop.

    python benchmarks/train_throughput.py                  # all architectures, 2 threads
    python benchmarks/train_throughput.py --threads 1 --images 4096 --arch cnn lenet5

Uses MNIST training images when $MNIST_DIR (or --mnist-dir) has them, random images otherwise; the speed
is the same. Times only the training steps (forward, loss, backward, optimizer, augmentation), after a
warm-up, best of three runs, and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.errors import HarnessError
from harness.training import architectures, augment
from harness.training.loop import Data, TrainConfig, fit, load_data

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"


def images(n: int, mnist_dir: str | None) -> tuple[Data, str]:
    try:
        data = load_data(TrainConfig(limit=n, val_fraction=0.0), mnist_dir, download=False)
        return data, "MNIST"
    except HarnessError:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
        empty = x[:0]
        return Data(x, y, empty, y[:0], "random"), "random"


def throughput(config: TrainConfig, data: Data, repeats: int = 3, warmup: int = 256) -> float:
    """Images per second of training steps over one epoch of ``data``: the best of ``repeats`` runs after a
    short warm-up (on a shared machine the best run is the one least disturbed by other work)."""
    rates = []
    for n in (warmup, *[len(data.train_x)] * repeats):
        subset = replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n])
        torch.manual_seed(0)
        model = architectures.build(config.arch, **config.constructor())
        result = fit(model, subset, replace(config, epochs=1))
        rates.append(n / result.state.seconds)
    return max(rates[1:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=architectures.list_architectures(),
                   choices=architectures.list_architectures())
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=4096, help="images per measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per case; the best counts")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--mnist-dir")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data, source = images(args.images, args.mnist_dir)
    cases = [(arch, "none", TrainConfig(arch=arch, batch_size=args.batch_size)) for arch in args.arch]
    if "cnn" in args.arch:
        cases.append(("cnn", "affine", TrainConfig(arch="cnn", batch_size=args.batch_size,
                                                   augment=augment.AugmentConfig(names=("affine",)))))
    rows = []
    print(f"{'architecture':<14}{'augment':<10}{'parameters':>12}{'images/s':>12}")
    for arch, aug, config in cases:
        rate = throughput(config, data, args.repeats)
        params = architectures.count_parameters(architectures.build(arch))
        rows.append({"arch": arch, "augment": aug, "parameters": params, "images_per_s": round(rate, 1)})
        print(f"{arch:<14}{aug:<10}{params:>12,}{rate:>12,.0f}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "threads": args.threads, "batch_size": args.batch_size, "images": args.images, "repeats": args.repeats,
        "data": source,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(), "results": rows,
    }, indent=2))
    print(f"threads {args.threads}, batch {args.batch_size}, {args.images} {source} images; written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
