"""Heavy entries: a torchvision ResNet-18 and ResNet-50 at 3×224×224 (random weights, behind InputAdapter) run as a
real evaluation runs them (``harness.isolation.predict``, sandboxed where it works), and ``python -m harness.check``
on each.

For each model: seconds from the start to the first progress report with an estimate of the time left, the
seconds before the images are handed over (loading and warm-up), images/s (timed by the host from go), and the
wall time of ``python -m harness.check`` (stopped after ``--check-limit`` seconds). Run it on the code before and
after a change in the same session and compare the ratios; the machine's load is printed with the figures.

Usage: ``python benchmarks/heavy_models.py [--images 300] [--models resnet18,resnet50] [--check-limit 300]``
(the code measured is whichever ``harness`` is on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.entries import resnet, write_entry
from harness.entries.discovery import discover
from harness.isolation import Limits, predict


def load() -> str:
    return open("/proc/loadavg").read().split()[:3].__str__()


def evaluate(entry, n: int, timeout: float) -> dict:
    """One run of ``n`` random images, as an evaluation's public phase runs it."""
    images = {"mnist": np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)}
    started = time.perf_counter()
    first: list[float] = []
    phases: dict[str, float] = {}

    def heard(at) -> None:
        now = time.perf_counter() - started
        phases.setdefault(getattr(at, "phase", "predicting"), now)
        if at.seconds_left and not first:
            first.append(now)

    got = predict(entry, images, Limits(timeout=timeout, device="cpu"), preload_torchvision=True, on_progress=heard)
    if got.status != "ok":
        return {"error": got.error}
    return {"first_estimate_s": first[0] if first else None, "before_go_s": got.seconds - got.timed_seconds,
            "images_per_s": got.images_per_second, "phases": phases, "device": got.device}


def check(folder: Path, limit: float) -> dict:
    """``python -m harness.check`` on the entry: its wall time and its last lines (None when it was stopped)."""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "harness.check", str(folder), "--timeout", "600"],
                              capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "said": f"still running after {limit:g} s (stopped)"}
    return {"wall_s": time.perf_counter() - started, "rc": done.returncode,
            "said": " | ".join(line.strip() for line in done.stdout.strip().splitlines()[-4:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300, help="images per timed run (default 300)")
    p.add_argument("--models", default="resnet18,resnet50")
    p.add_argument("--check-limit", type=float, default=300.0, help="stop harness.check after this many seconds")
    args = p.parse_args()
    import harness
    print(f"harness from {Path(harness.__file__).parent}; load before: {load()}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models.split(","):
            folder = write_entry(Path(tmp) / "subs", arch, resnet(arch))
            entry = discover(Path(tmp) / "subs")[arch]
            ran = evaluate(entry, args.images, 900.0)
            print(f"{arch}: {ran}; load {load()}", flush=True)
            checked = check(folder, args.check_limit)
            print(f"{arch}: harness.check {checked}; load {load()}", flush=True)


if __name__ == "__main__":
    main()
