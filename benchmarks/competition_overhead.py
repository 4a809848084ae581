"""The harness's overhead per entry on the example competition (competitions/shapes: 3×32×32 colour, 5 classes)
against the MNIST warm-up's, as a ratio measured in the same run (issue #23: within 10%).

The same small CNN (adaptive pooling, so one definition fits both inputs) is written as N entries for each task;
each task's run scores them on 500 public pictures (MNIST: the first 500 test digits) with ``runner.run(...,
force=True)``, and its overhead per entry is the run's wall time per entry less the model's own forward pass over
the same pictures in this process (best of 3, in the faster memory layout, as the worker runs it). The two tasks
alternate round by round so that the machine's drift falls on both alike; the figure is the median over rounds.
``split_seconds_per_entry`` then says where one entry's time goes: the host's part, the entry's process before the
images (loading, and the warm-up and layout probe, which run the model: they cost what its pictures cost), and the
timed model run.

Usage: ``python benchmarks/competition_overhead.py [--mnist-dir DIR] [--entries 6] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import runner
from harness.common import competition
from harness.data import mnist
from harness.data.task import MNIST_DIGITS, DatasetSpec, task_of
from harness.entries.discovery import discover
from harness.store.engine import make_engine

CODE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, channels={channels}, classes={classes}):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x):
        return self.body(x)
'''


def make_entries(folder: Path, n: int, channels: int, classes: int) -> None:
    code = CODE.format(channels=channels, classes=classes)
    scope: dict = {}
    exec(code, scope)
    for i in range(n):
        torch.manual_seed(i)
        entry = folder / f"cnn-{i:02d}"
        entry.mkdir(parents=True)
        (entry / "model.py").write_text(code)
        torch.save(scope["Net"]().state_dict(), entry / "weights.pt")


def bare_seconds(images: np.ndarray, channels: int, classes: int, batch: int = 128) -> float:
    """The model's own compute on these uint8 images ([N, H, W] or [N, C, H, W]), best of 3 in each memory layout,
    in this process: the faster layout, as the harness's worker keeps the faster one (``probe_layout``)."""
    scope: dict = {}
    exec(CODE.format(channels=channels, classes=classes), scope)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = x[:, None] if x.ndim == 3 else x
    best = float("inf")
    for layout in (torch.contiguous_format, torch.channels_last):
        model = scope["Net"]().eval().to(memory_format=layout)
        xs = x.contiguous(memory_format=layout)
        for _ in range(3):
            t = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, len(xs), batch):
                    model(xs[i:i + batch])
            best = min(best, time.perf_counter() - t)
    return best


def split_costs(setups: dict, tasks: dict, rounds: int) -> dict:
    """Where one entry's time goes, from ``predict`` directly (the public pictures and as many changed copies, as the
    run hands over): the host's part (wall time less the entry's process's lifetime), the process's part before the
    images (loading, the warm-up and layout probe, which run the model), and the timed part (the model on the images);
    medians over ``rounds``, the tasks alternating."""
    from harness.common.limits import Limits
    from harness.data.copies import changed_copies
    from harness.isolation.prediction import predict
    parts: dict[str, dict[str, list[float]]] = {name: {"host": [], "before_images": [], "timed": []} for name in tasks}
    for r in range(rounds):
        for name, (_, entries, spec, _) in setups.items():
            _, copies = changed_copies(spec.images, runner.MEMO_COPIES, np.random.default_rng(r))
            t = time.perf_counter()
            p = predict(entries[0], {"x": np.concatenate([spec.images, copies])}, Limits(device="cpu"))
            wall = time.perf_counter() - t
            if r == 0:
                continue  # the first call starts what later calls find ready
            parts[name]["host"].append(wall - p.seconds)
            parts[name]["before_images"].append(p.seconds - p.timed_seconds)
            parts[name]["timed"].append(p.timed_seconds)
    return {"split_seconds_per_entry": {name: {k: round(statistics.median(v), 4) for k, v in ps.items()}
                                        for name, ps in parts.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--entries", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    split = mnist.load_split(mnist.resolve_dir(args.mnist_dir), "test", allow_download=False)
    rules = competition.load(REPO / "competitions" / "shapes" / "competition.toml")
    shapes = task_of(rules)
    shapes_public, _ = shapes.public.load(None)
    n = len(shapes_public.labels)
    tasks = {
        "mnist": (MNIST_DIGITS, DatasetSpec("mnist", "bench-500", split.labels[:n], split.images[:n], "bench")),
        "shapes": (shapes, shapes_public),
    }
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    overhead: dict[str, list[float]] = {name: [] for name in tasks}
    bare = {}
    setups = {}
    for name, (task, spec) in tasks.items():
        channels, classes = task.input_shape[0], task.num_classes
        make_entries(work / name, args.entries, channels, classes)
        entries = list(discover(work / name, interface=task.interface).values())
        bare[name] = bare_seconds(spec.images, channels, classes)
        engine = make_engine(f"sqlite:///{work / (name + '.db')}")
        rules_of = rules if name == "shapes" else competition.Competition()
        runner.run(engine, entries[:1], [spec], runner.Options(runner.Limits(device="cpu")), [],
                   competition=rules_of)  # starts the fork server and the sandbox
        setups[name] = (engine, entries, spec, rules_of)
    for _ in range(args.rounds):
        for name, (engine, entries, spec, rules_of) in setups.items():
            t = time.perf_counter()
            runner.run(engine, entries, [spec], runner.Options(runner.Limits(device="cpu"), force=True), [],
                       competition=rules_of)
            per_entry = (time.perf_counter() - t) / len(entries)
            overhead[name].append(per_entry - bare[name])
    out = {"entries": args.entries, "rounds": args.rounds, "pictures": n, "torch": torch.__version__,
           "bare_forward_seconds": bare,
           "overhead_seconds_per_entry": {k: [round(v, 3) for v in vs] for k, vs in overhead.items()},
           "median_overhead": {k: statistics.median(vs) for k, vs in overhead.items()}}
    out["shapes_over_mnist"] = out["median_overhead"]["shapes"] / out["median_overhead"]["mnist"]
    out.update(split_costs(setups, tasks, args.rounds + 2))
    print(json.dumps(out, indent=2))
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "competition_overhead.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
