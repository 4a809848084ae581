"""``python -m harness.check submissions/<entry>``: validate one entry in seconds, before evaluation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console

from harness import cli
from harness.data import mnist
from harness.entries import parameters
from harness.contract import name_problem
from harness.entries.discovery import load_entry
from harness.errors import HarnessError
from harness.isolation import Limits, predict
from harness.isolation.prediction import limits_hit
from harness.isolation.process import GIB
from harness.scoring.metrics import detect_output_kind

SAMPLE = 500
BATCH = 200  # 500 images in batches of 200: the last batch of 100 checks that any batch size works


def sample_images(mnist_dir: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Up to SAMPLE MNIST test images (uint8) with labels, or random noise when MNIST is not at hand."""
    try:
        split = mnist.load_split(mnist.resolve_dir(mnist_dir), "test", allow_download=False)
        return split.images[:SAMPLE], split.labels[:SAMPLE], f"the first {SAMPLE} MNIST test images"
    except HarnessError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (SAMPLE, 28, 28), dtype=np.uint8), None, f"{SAMPLE} random images (MNIST not found)"


def check(folder: Path, mnist_dir: str | None = None, device: str = "cpu", timeout: float = 120.0) -> dict:
    """Load and run the entry in its own process; returns a report dict or raises HarnessError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f"{folder} is not a folder; pass an entry folder such as submissions/my-cnn.")
    problem = name_problem(folder.resolve().name)
    if problem:
        raise HarnessError(f"{problem}.")
    entry = load_entry(folder)
    if entry.metadata_error:
        raise HarnessError(entry.metadata_error)
    images, labels, described = sample_images(mnist_dir)
    limits = Limits(timeout=timeout, memory=8 * GIB, device=device, batch_size=BATCH)
    prediction = predict(entry, {"check": images}, limits)  # in a secret order, as in a real evaluation
    if prediction.status != "ok":
        raise HarnessError(f"{entry.name}: {prediction.error}")
    outputs = prediction.outputs["check"]
    report = {"entry": entry.name, "display_name": entry.display_name, "author": entry.metadata.author,
              "params": parameters.count(entry), "weights_bytes": entry.weights_bytes,
              "output_kind": detect_output_kind(outputs),
              "images_per_second": prediction.images_per_second,
              "load_seconds": prediction.seconds - (prediction.timed_seconds or 0.0),
              "sample": described, "accuracy": None, "device": prediction.device}
    if labels is not None:
        report["accuracy"] = float((outputs.argmax(1) == labels).mean())
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.check", description="Validate one entry folder.")
    p.add_argument("entry", type=Path, help="the entry folder, e.g. submissions/my-cnn")
    p.add_argument("--mnist-dir", help="folder with the MNIST IDX files (default: $MNIST_DIR or data/mnist)")
    cli.add_device_argument(p, default="cpu")
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    try:
        return report(check(args.entry, args.mnist_dir, args.device, args.timeout))
    except HarnessError as exc:
        cli.say_error(exc, sys.stdout)
        if "time limit" in limits_hit(str(exc)):
            print(f"  time limit: --timeout (now {args.timeout:g} s)")
        return 1


def report(r: dict) -> int:
    """Print what ``check`` found about a working entry."""
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[green]✓[/green] {r['entry']} ({r['display_name']}) loads and runs: output [N, 10] {r['output_kind']}, "
                  f"finite, any batch size.")
    params = "unreadable" if r["params"] is None else f"{r['params']:,}"
    speed = "—" if r["images_per_second"] is None else f"{r['images_per_second']:,.0f}"
    console.print(f"  parameters: {params}   weights: {r['weights_bytes'] / 1e6:.2f} MB   "
                  f"load: {r['load_seconds']:.2f} s   speed: {speed} images/s on {r['sample']} "
                  f"({r['device']})")
    if r["accuracy"] is not None:
        console.print(f"  accuracy on {r['sample']}: {100 * r['accuracy']:.1f}%")
        if r["accuracy"] < 0.5:
            console.print("  [yellow]warning:[/yellow] under 50% — the model probably expects another input "
                          "normalisation or polarity; see 'Input' in submissions/README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
