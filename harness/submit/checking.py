"""The entry check's core: load one entry folder in its own process (the sandbox, through ``harness.isolation``),
run it on a sample of MNIST test images, and name the input convention that would fix a model that reads them
wrongly. ``python -m harness.check`` prints it; the dashboard's Submit page runs it on an upload.

Every entry that runs is tried with the usual input conventions (:func:`diagnose_inputs`), however well it reads:
a model trained on (x-0.5)/0.5 and submitted without it still reads 95% or so, and loses those points on every
board. A convention is named only when a paired test on the same images says it reads better (:data:`ALPHA`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harness.contract import name_problem
from harness.data import mnist
from harness.data.task import MNIST_DIGITS, Task
from harness.entries import parameters
from harness.entries.discovery import EntryFolder, TrialMetadata, load_entry
from harness.errors import HarnessError
from harness.isolation import Limits, Prediction, predict
from harness.isolation.process import needs_torchvision
from harness.scoring.metrics import above_rate_p, detect_output_kind, discordant, sign_test_p

SAMPLE = 500           # images the check runs, when the model is fast enough to run them within BUDGET_SECONDS
BATCH = 200            # 500 images in batches of 200: even_batch makes them 167, 167 and 166
PROBE, PROBE_BATCH = 11, 6  # the first run, timed: 11 images in batches of 6 and 5 (any batch size must work)
CHECK_TIMEOUT = 120.0  # seconds each of the check's runs of the entry may take, loading included
LIMITS = Limits(timeout=CHECK_TIMEOUT, device="cpu")  # each run's, by default (the default memory)
BUDGET_SECONDS = 45.0  # a slow model's check (a 224-px ResNet-50 on a laptop) keeps to about this, well within a minute
DIAGNOSIS_MIN = 20     # the fewest images a diagnosis runs on; when even that does not fit the budget, it is not tried
DIAGNOSE_BELOW = 0.90  # the committed baselines read 97-99% of the sample: below this with no fix named, a warning
ALPHA = 0.001            # a convention is named when the sign test gives p below ALPHA / (conventions tried)
DIAGNOSIS_IMAGES = 2000  # the most MNIST test images the conventions are tried on (500 cannot show a 2-point loss)
DIAGNOSIS_SECONDS = 30.0  # the inference time the conventions may take together: a LeNet gets all, a slow model fewer
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # as in harness/adapters.py, which this process does not import (torch)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Convention(NamedTuple):
    """An input convention a model may have been trained on: how the member reads it ("the images are ..."),
    InputAdapter's arguments, and the two ways to write it: the adapter, and a line at the start of forward."""

    said: str
    adapter: dict
    adapter_line: str
    forward_line: str


# The usual input conventions, tried in the entry's own process (one process each) with an InputAdapter in front of
# the model.
VALUE_CONVENTIONS = (
    Convention("normalised as (x-0.5)/0.5", {"mean": 0.5, "std": 0.5}, "InputAdapter(mean=0.5, std=0.5)",
               "x = (x - 0.5) / 0.5"),
    Convention("normalised as (x-0.1307)/0.3081", {"mean": MNIST_MEAN, "std": MNIST_STD},
               "InputAdapter(mean=MNIST_MEAN, std=MNIST_STD)", "x = (x - 0.1307) / 0.3081"),
    Convention("inverted (1-x: black ink on white)", {"mean": 1.0, "std": -1.0}, "InputAdapter(mean=1, std=-1)",
               "x = 1 - x"),
    Convention("on the 0-255 scale (255·x)", {"std": 1 / 255}, "InputAdapter(std=1/255)", "x = x * 255"),
    Convention("resized to 32×32", {"size": 32}, "InputAdapter(size=32)",
               'x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)'),
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


def sample_images(mnist_dir: str | None, count: int = SAMPLE,
                  task: Task = MNIST_DIGITS) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The first ``count`` MNIST test images (uint8) with labels, or random noise when MNIST is not at hand, and what
    they are (:func:`described`). For a competition's task (``task``, with a [task] table): ``count`` pictures of its
    public set, in an order fixed once (the folder's is by class), or noise of its shape when that set is empty."""
    if task is not MNIST_DIGITS:
        return task_sample(task, count)
    try:
        split = mnist.load_split(mnist.resolve_dir(mnist_dir), "test", allow_download=False)
        return split.images[:count], split.labels[:count], described(count, True)
    except HarnessError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), None, described(count, False)


def task_sample(task: Task, count: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``count`` pictures of the task's public set (uint8, the task's stored shape) with their labels, in a fixed
    shuffled order; noise of that shape when the set has no picture (or cannot be read)."""
    try:
        spec, _ = task.public.load(None)
    except (HarnessError, ValueError, OSError):
        spec = None
    if spec is None or len(spec.labels) == 0:
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (count, *task.stored_shape), dtype=np.uint8), None,
                described(count, False, task))
    order = np.random.default_rng(0).permutation(len(spec.labels))[:count]
    return spec.images[order], spec.labels[order], described(len(order), True, task)


def described(count: int, mnist_found: bool, task: Task = MNIST_DIGITS) -> str:
    """What the first ``count`` sample images are, as the check says it (``mnist_found``: the set was found)."""
    if task is not MNIST_DIGITS:
        title = task.public.title
        return f"{count} pictures of {title}" if mnist_found else f"{count} random images ({title} has no picture)"
    return f"the first {count} MNIST test images" if mnist_found else f"{count} random images (MNIST not found)"


def value_conventions(task: Task = MNIST_DIGITS) -> tuple[Convention, ...]:
    """The value conventions tried on a working entry: :data:`VALUE_CONVENTIONS` for handwritten digits; for another
    task the value ones alone (no resizing), on its channels."""
    if task.is_digits:
        return VALUE_CONVENTIONS
    channels = task.input_shape[0]
    return tuple(c._replace(adapter={**c.adapter, "channels": channels}) if channels > 1 else c
                 for c in VALUE_CONVENTIONS if "size" not in c.adapter)


def shape_conventions(task: Task = MNIST_DIGITS) -> tuple:
    """The input shapes tried on an entry that fails on the task's: :data:`SHAPE_CONVENTIONS` for the MNIST
    warm-up; for another task, 3 channels (for a grey one) and the usual sizes at its channels."""
    if task is MNIST_DIGITS or task.input_shape == MNIST_DIGITS.input_shape:
        return SHAPE_CONVENTIONS
    channels, height, width = task.input_shape
    tried = [("3 channels", {"channels": 3}, "InputAdapter(channels=3)", "")] if channels == 1 else []
    for side in (28, 32, 64, 224):
        if (height, width) != (side, side):
            more = "" if channels == 1 else f", channels={channels}"
            tried.append((f"{side}×{side} images", {"size": side, "channels": channels},
                          f"InputAdapter(size={side}{more})", ""))
    return tuple(tried)


def affordable(images_per_second: float | None, load_seconds: float, seconds: float, most: int, least: int) -> int:
    """How many images one run of the entry can take in ``seconds``, at its speed and its time to load and warm up
    (each run is a fresh process): between ``least`` and ``most``."""
    if not images_per_second:
        return most
    return int(min(max(images_per_second * (seconds - load_seconds), least), most))


def diagnosis_seconds(images: int, images_per_second: float | None, load_seconds: float, conventions: tuple) -> float:
    """What a diagnosis on ``images`` images costs: one run of the entry per convention, each loaded afresh."""
    return len(conventions) * (load_seconds + images / (images_per_second or float("inf")))


def check(folder: Path, mnist_dir: str | None = None, limits: Limits = LIMITS,
          budget: float = BUDGET_SECONDS, task: Task = MNIST_DIGITS) -> dict:
    """Load and run the entry in its own process under ``limits`` (each run); returns a report dict or raises
    HarnessError. ``task``: the competition's (what the entry takes and returns, and where the sample comes from:
    :func:`sample_images`); the MNIST warm-up's by default.

    A first run on PROBE images in batches of two sizes checks the contract and times the model; the main run then
    takes as many of the SAMPLE images as fit in half of what is left of ``budget`` seconds (all of them, unless the
    model is slow; none beyond the probe's when even those do not fit), and the convention diagnosis (every entry) gets
    a sample sized for the rest (or, when even DIAGNOSIS_MIN images would not fit, is not tried: ``diagnosis_skipped``
    says what it would cost, in seconds). Every run gets its images in a secret order, as in an evaluation. The report's
    ``images_per_second`` and ``load_seconds`` (time to load and warm up one process) are what an estimate of a full
    evaluation starts from.
    """
    started = time.monotonic()
    entry = entry_to_check(Path(folder), task)
    images, labels, _ = sample_images(mnist_dir, SAMPLE, task)
    torchvision = needs_torchvision([entry])  # imported once by the sandbox, not by each run's process
    probe = run_probe(entry, images, labels, limits, torchvision, task)
    load_seconds = probe.seconds - (probe.timed_seconds or 0.0)
    n = affordable(probe.images_per_second, load_seconds, (budget - (time.monotonic() - started)) / 2, SAMPLE, PROBE)
    full = n == SAMPLE
    n = min(n, len(images))  # a competition's public set may hold fewer pictures
    prediction = probe if n <= PROBE else predict(  # a slow model's at the batch an evaluation would use
        entry, {"check": images[:n]}, dataclasses.replace(limits, batch_size=BATCH if full else None),
        preload_torchvision=torchvision)
    if prediction.status != "ok":
        raise CheckFailed(f"{entry.name}: {prediction.error}", None, prediction.log)
    params, refusal = parameters.measure(entry)  # counted only once the entry has run
    if refusal:
        raise CheckFailed(f"{entry.name}: {refusal}", None, prediction.log)
    report = first_report(entry, probe, prediction, params, n, labels is not None, task)
    report["whole_set"] = n == len(images) < SAMPLE  # the public set holds fewer than SAMPLE: all of it ran
    if labels is not None:
        predicted = prediction.outputs["check"].argmax(1)
        report["accuracy"] = float((predicted == labels[:n]).mean())
        diagnose_sample(report, entry, images, labels, limits, predicted, budget - (time.monotonic() - started),
                        mnist_dir, task)
    return report


def entry_to_check(folder: Path, task: Task = MNIST_DIGITS) -> EntryFolder:
    """The entry in ``folder``, to run on the task's inputs; a HarnessError saying why when there is none to
    check."""
    if not folder.is_dir():
        raise HarnessError(f"{folder} is not a folder; pass an entry folder such as submissions/my-cnn.")
    problem = name_problem(folder.resolve().name)
    if problem:
        raise HarnessError(f"{problem}.")
    entry = load_entry(folder, task.interface)
    if entry.metadata_error:
        raise HarnessError(entry.metadata_error)
    return entry


def run_probe(entry: EntryFolder, images: np.ndarray, labels: np.ndarray | None, limits: Limits,
              torchvision: bool, task: Task = MNIST_DIGITS) -> Prediction:
    """The first run, on PROBE images in batches of PROBE_BATCH and the rest: it checks the contract and times the
    model. A failure raises CheckFailed, with the input shape that makes the model run when it failed on the shape."""
    probe = predict(entry, {"check": images[:PROBE]}, dataclasses.replace(limits, batch_size=PROBE_BATCH),
                    preload_torchvision=torchvision)
    if probe.status != "ok":
        hint = None
        if " in the model" in (probe.error or "") or "forward returned shape" in (probe.error or ""):
            hint = diagnose(entry, images, labels, limits, None, shape_conventions(task), "it runs and reads")
        raise CheckFailed(f"{entry.name}: {probe.error}", hint, probe.log)
    return probe


def first_report(entry: EntryFolder, probe: Prediction, prediction: Prediction, params: int | None, n: int,
                 mnist_found: bool, task: Task = MNIST_DIGITS) -> dict:
    """The report of a check whose runs passed, before its accuracy and diagnosis."""
    outputs = prediction.outputs["check"]
    return {"entry": entry.name, "display_name": entry.display_name, "author": entry.metadata.author,
            "params": params, "weights_bytes": entry.weights_bytes,
            "output_kind": detect_output_kind(outputs),
            "images_per_second": prediction.images_per_second,
            # each run's figure includes its fixed costs (reading, writing, exiting): the faster one is nearer
            "estimate_images_per_second": max(probe.images_per_second or 0.0, prediction.images_per_second or 0.0)
            or None,
            "load_seconds": prediction.seconds - (prediction.timed_seconds or 0.0),
            "sample": described(n, mnist_found, task), "sample_size": n, "accuracy": None, "device": prediction.device,
            "diagnosis": None, "classes": task.num_classes}


def diagnose_sample(report: dict, entry: EntryFolder, images: np.ndarray, labels: np.ndarray, limits: Limits,
                    as_given: np.ndarray, left: float, mnist_dir: str | None, task: Task = MNIST_DIGITS) -> None:
    """The convention diagnosis, into ``report``. Each convention is a run of its own, loaded afresh: a slow model's
    diagnosis gets fewer images, and none when even DIAGNOSIS_MIN would not fit in the ``left`` seconds of the
    budget (the report then says what they would cost, ``diagnosis_skipped``)."""
    n = report["sample_size"]
    rate, load, least = report["images_per_second"], report["load_seconds"], min(DIAGNOSIS_MIN, n)
    conventions = value_conventions(task)
    count = min(affordable_sample(rate),  # sized for MNIST's conventions: a task's are no more
                affordable(rate, load, left / (len(conventions) + 1), DIAGNOSIS_IMAGES, 0))
    if count < least:
        report["diagnosis_skipped"] = diagnosis_seconds(least, rate, load, conventions)
        return
    if count <= n:
        found = diagnose_inputs(entry, images, labels, limits, sample=count, as_given=as_given,
                                conventions=conventions, described=described(count, True, task))
    else:
        pool, pool_labels, said = sample_images(mnist_dir, count, task)
        found = diagnose_inputs(entry, pool, pool_labels, limits, conventions=conventions, described=said)
    report["diagnosis"], report["diagnosis_sample"] = found.sentence, found.images


def try_convention(entry: EntryFolder, images: np.ndarray, labels: np.ndarray | None, limits: Limits,
                   adapter: dict) -> float | None:
    """The entry's accuracy on ``images`` with ``InputAdapter(**adapter)`` in front of its model, run in its own
    process like any run (1.0 without labels when it runs); None when it fails."""
    predicted = predict_with(entry, images, limits, adapter)
    if predicted is None:
        return None
    return 1.0 if labels is None else float((predicted == labels).mean())


def diagnose(entry: EntryFolder, images: np.ndarray, labels: np.ndarray | None, limits: Limits, accuracy: float | None,
             conventions: tuple, verb: str) -> str | None:
    """For an entry that fails on the task's input ([N, 1, 28, 28] for MNIST): the sentence naming the input shape that
    makes it run (the best of
    ``conventions`` that runs, with the accuracy it then reaches), or None when none does. Each costs one run of the
    entry in its own process. (``accuracy`` is None: the entry did not run as it is.)"""
    tried = [(try_convention(entry, images, labels, limits, adapter), said, line, note)
             for said, adapter, line, note in conventions]
    working = [t for t in tried if t[0] is not None]
    if not working:
        return None
    best, said, line, note = max(working, key=lambda t: t[0])
    figure = "" if labels is None else f" {100 * best:.1f}% of these images"
    instead = "" if accuracy is None else f" instead of {100 * accuracy:.1f}%"
    return (f"with {said} {verb}{figure}{instead}: add `{line}` in front of it (see 'Input' in "
            f"submissions/README.md{note}).")


def affordable_sample(images_per_second: float | None, seconds: float = DIAGNOSIS_SECONDS,
                      runs: int = len(VALUE_CONVENTIONS) + 1, most: int = DIAGNOSIS_IMAGES) -> int:
    """How many images ``runs`` runs of a model this fast may each take within ``seconds`` of inference (at most
    ``most``); SAMPLE when its speed is unknown. The process starts come on top (one per run)."""
    if not images_per_second:
        return SAMPLE
    return affordable(images_per_second, 0.0, seconds / runs, most, 1)  # inference only: no load counted here


@dataclasses.dataclass(frozen=True)
class Tried:
    """One convention tried on the diagnosis's images: its accuracy (None: the entry failed with it), the images
    read right only with it (``better``) and only as given (``worse``), and the one-sided sign test's p-value."""

    convention: Convention
    accuracy: float | None
    better: int = 0
    worse: int = 0
    p: float = 1.0


@dataclasses.dataclass(frozen=True)
class InputDiagnosis:
    """What :func:`diagnose_inputs` found: the accuracy as given, each convention tried (none when no convention
    could have been shown better, see ``skipped``), the level each was tested at, and the one named (or None)."""

    entry: EntryFolder
    described: str
    images: int
    accuracy: float
    tried: tuple[Tried, ...]
    level: float
    named: Tried | None
    skipped: bool = False

    @property
    def sentence(self) -> str | None:
        """What is wrong and the exact fix, with the figures, in two sentences; None when no convention is named."""
        if self.named is None:
            return None
        t, c = self.named, self.named.convention
        return (f"your model reads {100 * (t.accuracy - self.accuracy):.1f} points better when the images are "
                f"{c.said}: {100 * t.accuracy:.1f}% instead of {100 * self.accuracy:.1f}% of {self.described} "
                f"({t.better} read right only so, {t.worse} only as given; one-sided sign test p = {t.p:.1g}, "
                f"under {self.level:.2g}). {fix(self.entry, c)}")


def fix(entry: EntryFolder, convention: Convention) -> str:
    """The sentence saying where to write ``convention``: in entry.toml for the training kit's models (their
    [constructor] normalises with ``mean`` and ``std``), else at the start of forward in model.py, else (an
    exported program) in front of the exported model."""
    see = "(see 'Input' in submissions/README.md)"
    built_in = entry.metadata.constructor
    if entry.code_hash and {"mean", "std"} <= set(built_in) and set(convention.adapter) <= {"mean", "std", "channels"}:
        try:  # the model computes (x - m1) / s1; with (x - m2) / s2 before it: (x - (m2 + m1·s2)) / (s1·s2)
            m1, s1 = float(built_in["mean"]), float(built_in["std"])
        except (TypeError, ValueError):
            pass
        else:
            m2, s2 = convention.adapter.get("mean", 0.0), convention.adapter.get("std", 1.0)
            return (f"Set mean = {m2 + m1 * s2:.6g} and std = {s1 * s2:.6g} under [constructor] in entry.toml, or "
                    f"add `{convention.forward_line}` as the first line of forward in model.py {see}.")
    if not entry.code_hash:
        return f"Export the model again with `{convention.adapter_line}` in front of it {see}."
    forward = f"{entry.metadata.model_class}.forward" if entry.metadata.model_class else "your model's forward"
    return (f"Add `{convention.forward_line}` as the first line of {forward} in model.py, or put "
            f"`{convention.adapter_line}` in front of the model {see}.")


def diagnose_inputs(entry: EntryFolder, images: np.ndarray, labels: np.ndarray, limits: Limits, *,
                    sample: int | None = None, as_given: np.ndarray | None = None,
                    conventions: tuple[Convention, ...] = VALUE_CONVENTIONS, alpha: float = ALPHA,
                    described: str = "these images") -> InputDiagnosis:
    """Try the entry with each input convention on the first ``sample`` of ``images`` (all by default) and name the
    one that reads them clearly better than the entry as it is.

    ``as_given``: the entry's predicted classes on those images as it is (one more run when None). Each convention
    costs one run in the entry's own process; ``affordable_sample`` says how many images a time budget allows. The
    conventions are compared with the entry as given on the same images: a one-sided exact sign test on the images
    read right one way only, at ``alpha`` / len(conventions) each (Bonferroni), so an honest model gets a hint by
    chance at most ``alpha`` of the time. A convention must also read clearly better than guessing the commonest
    digit (a model that cannot read digits is not "fixed" from 7% to 11%). Of those that pass, the most accurate is
    named. When the entry reads so many right that no convention could pass, none is run (``skipped``).
    """
    count = len(images) if sample is None else min(sample, len(images))
    images, labels = images[:count], np.asarray(labels[:count])
    if as_given is None:
        prediction = predict(entry, {"check": images}, limits)
        if prediction.status != "ok":
            raise CheckFailed(f"{entry.name}: {prediction.error}", None, prediction.log)
        as_given = prediction.outputs["check"].argmax(1)
    right = np.asarray(as_given[:count]) == labels
    level = alpha / len(conventions)
    found = dict(entry=entry, described=described, images=count, accuracy=float(right.mean()), level=level)
    if sign_test_p(int(count - right.sum()), 0) >= level:  # even fixing every error would not pass
        return InputDiagnosis(**found, tried=(), named=None, skipped=True)
    tried = []
    for convention in conventions:
        predicted = predict_with(entry, images, limits, convention.adapter)
        if predicted is None:
            tried.append(Tried(convention, None))
            continue
        worse, better = discordant(right, predicted == labels)
        tried.append(Tried(convention, float((predicted == labels).mean()), better, worse, sign_test_p(better, worse)))
    guessing = np.bincount(labels, minlength=10).max() / count  # what always saying the commonest digit reads
    passed = [t for t in tried if t.accuracy is not None and t.p < level  # better than as given, and than guessing
              and above_rate_p(round(t.accuracy * count), count, guessing) < level]
    named = max(passed, key=lambda t: t.accuracy) if passed else None
    return InputDiagnosis(**found, tried=tuple(tried), named=named)


def predict_with(entry: EntryFolder, images: np.ndarray, limits: Limits, adapter: dict) -> np.ndarray | None:
    """The entry's predicted classes on ``images`` with ``InputAdapter(**adapter)`` in front of its model, run in its
    own process like any run; None when it fails."""
    trial = dataclasses.replace(entry, metadata=TrialMetadata(**vars(entry.metadata), adapter=adapter))
    prediction = predict(trial, {"check": images}, limits)
    return prediction.outputs["check"].argmax(1) if prediction.status == "ok" else None
