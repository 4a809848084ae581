"""The entry check's core: load one entry folder in its own process (the sandbox, through ``harness.isolation``),
run it on a sample of MNIST test images, and name the input convention that would fix a model that reads them
wrongly. ``python -m harness.check`` prints it; the dashboard's Submit page runs it on an upload."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from harness.contract import name_problem
from harness.data import mnist
from harness.entries import parameters
from harness.entries.discovery import Entry, TrialMetadata, load_entry
from harness.errors import HarnessError
from harness.isolation import Limits, predict
from harness.isolation.process import GIB, needs_torchvision
from harness.scoring.metrics import detect_output_kind

SAMPLE = 500           # images the check runs, when the model is fast enough to run them within BUDGET_SECONDS
BATCH = 200            # 500 images in batches of 200: even_batch makes them 167, 167 and 166
PROBE, PROBE_BATCH = 11, 6  # the first run, timed: 11 images in batches of 6 and 5 (any batch size must work)
BUDGET_SECONDS = 45.0  # a slow model's check (a 224-px ResNet-50 on a laptop) keeps to about this, well within a minute
DIAGNOSIS_MIN = 20     # the fewest images a diagnosis runs on; when even that does not fit the budget, it is not tried
DIAGNOSE_BELOW = 0.90  # the committed baselines read 97-99% of the sample: below this, try the usual conventions
FIXED_GAIN = 0.20      # a convention that lifts accuracy by this much fixes it, even if still under DIAGNOSE_BELOW
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # as in harness/adapters.py, which this process does not import (torch)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The usual input conventions, tried in the entry's own process (one process each) with an InputAdapter in front of
# the model: (what the member reads, InputAdapter's arguments, the line to add, a note on it).
VALUE_CONVENTIONS = (
    ("(x-0.5)/0.5", {"mean": 0.5, "std": 0.5}, "InputAdapter(mean=0.5, std=0.5)", ""),
    ("(x-0.1307)/0.3081", {"mean": MNIST_MEAN, "std": MNIST_STD}, "InputAdapter(mean=MNIST_MEAN, std=MNIST_STD)", ""),
    ("inverted polarity (1-x: black ink on white)", {"mean": 1.0, "std": -1.0}, "InputAdapter(mean=1, std=-1)",
     "; it computes 1 - x, as `x = 1 - x` at the start of forward would"),
    ("the 0-255 scale (255·x)", {"std": 1 / 255}, "InputAdapter(std=1/255)",
     "; it computes 255·x, as `x = x * 255` at the start of forward would"),
    ("32×32 images", {"size": 32}, "InputAdapter(size=32)", ""),
)
SHAPE_CONVENTIONS = (  # when the model fails on [N, 1, 28, 28]
    ("3 channels", {"channels": 3}, "InputAdapter(channels=3)", ""),
    ("32×32 images", {"size": 32}, "InputAdapter(size=32)", ""),
    ("3 channels at 32×32", {"size": 32, "channels": 3}, "InputAdapter(size=32, channels=3)", ""),
    ("224×224 images", {"size": 224}, "InputAdapter(size=224)", ""),
    ("3 channels at 224×224 with ImageNet statistics",
     {"size": 224, "channels": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
     "InputAdapter(size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)", ""),
)


class CheckFailed(HarnessError):
    """The entry failed in its process: the sentence, plus what the check found (``hint``) and its log."""

    def __init__(self, message: str, hint: str | None = None, log: str = ""):
        super().__init__(message)
        self.hint, self.log = hint, log


def sample_images(mnist_dir: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Up to SAMPLE MNIST test images (uint8) with labels, or random noise when MNIST is not at hand, and what they
    are ("MNIST test images", "random images (MNIST not found)": the check says how many it ran)."""
    try:
        split = mnist.load_split(mnist.resolve_dir(mnist_dir), "test", allow_download=False)
        return split.images[:SAMPLE], split.labels[:SAMPLE], "MNIST test images"
    except HarnessError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (SAMPLE, 28, 28), dtype=np.uint8), None, "random images (MNIST not found)"


def affordable(images_per_second: float | None, load_seconds: float, seconds: float, most: int, least: int) -> int:
    """How many images one run of the entry can take in ``seconds``, at its speed and its time to load and warm up
    (each run is a fresh process): between ``least`` and ``most``."""
    if not images_per_second:
        return most
    return int(min(max(images_per_second * (seconds - load_seconds), least), most))


def diagnosis_seconds(images: int, images_per_second: float | None, load_seconds: float, conventions: tuple) -> float:
    """What a diagnosis on ``images`` images costs: one run of the entry per convention, each loaded afresh."""
    return len(conventions) * (load_seconds + images / (images_per_second or float("inf")))


def check(folder: Path, mnist_dir: str | None = None, device: str = "cpu", timeout: float = 120.0,
          budget: float = BUDGET_SECONDS) -> dict:
    """Load and run the entry in its own process; returns a report dict or raises HarnessError.

    A first run on PROBE images in batches of two sizes checks the contract and times the model; the main run then
    takes as many of the SAMPLE images as fit in half of what is left of ``budget`` seconds (all of them, unless
    the model is slow; none beyond the probe's when even those do not fit), and a diagnosis, if needed, gets a
    sample sized for the rest (or, when even DIAGNOSIS_MIN images would not fit, is not tried: ``diagnosis_skipped``
    says what it would cost, in seconds). Every run gets its images in a secret order, as in an evaluation. The
    report's
    ``images_per_second`` and ``load_seconds`` (time to load and warm up one process) are what an estimate of a
    full evaluation starts from.
    """
    started = time.monotonic()
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
    limits = Limits(timeout=timeout, memory=8 * GIB, device=device)
    torchvision = needs_torchvision([entry])  # imported once by the sandbox, not by each run's process
    probe = predict(entry, {"check": images[:PROBE]}, dataclasses.replace(limits, batch_size=PROBE_BATCH),
                    preload_torchvision=torchvision)
    if probe.status != "ok":
        hint = None
        if " in the model" in (probe.error or "") or "forward returned shape" in (probe.error or ""):
            hint = diagnose(entry, images, labels, limits, None, SHAPE_CONVENTIONS, "it runs and reads")
        raise CheckFailed(f"{entry.name}: {probe.error}", hint, probe.log)
    load_seconds = probe.seconds - (probe.timed_seconds or 0.0)
    n = affordable(probe.images_per_second, load_seconds, (budget - (time.monotonic() - started)) / 2, SAMPLE, PROBE)
    prediction = probe if n <= PROBE else predict(  # a slow model's at the batch an evaluation would use
        entry, {"check": images[:n]}, dataclasses.replace(limits, batch_size=BATCH if n == SAMPLE else None),
        preload_torchvision=torchvision)
    if prediction.status != "ok":
        raise CheckFailed(f"{entry.name}: {prediction.error}", None, prediction.log)
    params, refusal = parameters.measure(entry)  # counted only once the entry has run
    if refusal:
        raise CheckFailed(f"{entry.name}: {refusal}", None, prediction.log)
    outputs = prediction.outputs["check"]
    report = {"entry": entry.name, "display_name": entry.display_name, "author": entry.metadata.author,
              "params": params, "weights_bytes": entry.weights_bytes,
              "output_kind": detect_output_kind(outputs),
              "images_per_second": prediction.images_per_second,
              # each run's figure includes its fixed costs (reading, writing, exiting): the faster one is nearer
              "estimate_images_per_second": max(probe.images_per_second or 0.0, prediction.images_per_second or 0.0)
              or None,
              "load_seconds": prediction.seconds - (prediction.timed_seconds or 0.0),
              "sample": f"the first {n} {described}", "sample_size": n, "accuracy": None, "device": prediction.device}
    report["diagnosis"] = None
    if labels is not None:
        report["accuracy"] = accuracy = float((outputs.argmax(1) == labels[:n]).mean())
        if accuracy < DIAGNOSE_BELOW:
            # each convention is a run of its own: a slow model's diagnosis gets fewer images, its accuracy on
            # them the figure to beat
            rate, load, least = prediction.images_per_second, report["load_seconds"], min(DIAGNOSIS_MIN, n)
            left = budget - (time.monotonic() - started)
            m = affordable(rate, load, left / max(len(VALUE_CONVENTIONS), 1), n, 0)
            if m < least:
                report["diagnosis_skipped"] = diagnosis_seconds(least, rate, load, VALUE_CONVENTIONS)
            else:
                report["diagnosis"] = diagnose(entry, images[:m], labels[:m], limits,
                                               float((outputs[:m].argmax(1) == labels[:m]).mean()), VALUE_CONVENTIONS,
                                               "your model reads")
                report["diagnosis_sample"] = m
    return report


def try_convention(entry: Entry, images: np.ndarray, labels: np.ndarray | None, limits: Limits,
                   adapter: dict) -> float | None:
    """The entry's accuracy on ``images`` with ``InputAdapter(**adapter)`` in front of its model, run in its own
    process like any run (1.0 without labels when it runs); None when it fails."""
    trial = dataclasses.replace(entry, metadata=TrialMetadata(**vars(entry.metadata), adapter=adapter))
    prediction = predict(trial, {"check": images}, limits)
    if prediction.status != "ok":
        return None
    return 1.0 if labels is None else float((prediction.outputs["check"].argmax(1) == labels).mean())


def diagnose(entry: Entry, images: np.ndarray, labels: np.ndarray | None, limits: Limits, accuracy: float | None,
             conventions: tuple, verb: str) -> str | None:
    """The sentence naming the input convention that makes the entry work, or None when none does.

    Each convention costs one run of the entry in its own process; the best one wins, if it runs (``accuracy``
    None: the entry failed as it is) or lifts the accuracy to DIAGNOSE_BELOW or by FIXED_GAIN.
    """
    tried = [(try_convention(entry, images, labels, limits, adapter), said, line, note)
             for said, adapter, line, note in conventions]
    working = [t for t in tried if t[0] is not None]
    if not working:
        return None
    best, said, line, note = max(working, key=lambda t: t[0])
    if accuracy is not None and best < DIAGNOSE_BELOW and best - accuracy < FIXED_GAIN:
        return None
    figure = "" if labels is None else f" {100 * best:.1f}% of these images"
    instead = "" if accuracy is None else f" instead of {100 * accuracy:.1f}%"
    return (f"with {said} {verb}{figure}{instead}: add `{line}` in front of it (see 'Input' in "
            f"submissions/README.md{note}).")
