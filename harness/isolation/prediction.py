"""The front door for running an entry: images in, the entry's outputs in the dataset's order out, under limits.

:func:`predict` owns everything in between: a private temporary folder, a secret order drawn for this call
(``harness.isolation.order``), the entry's own process (``harness.isolation.process``) and the checks on what that
process wrote. Until they pass, its outputs are only the entry's claim. Callers never see the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from harness.common.limits import Limits
from harness.common.tempfolders import temp_folder
from harness.contract import Interface
from harness.entries.discovery import EntryFolder
from harness.isolation import order, process
from harness.isolation.process import Progress

LIMIT_NAMES = ("time limit", "memory limit")  # how this package's messages name the limit that stopped an entry
DEVICE_CHARS = 40  # the worker's description of its device, as kept (it comes from the entry's process)


def resolve_device(requested: str) -> str:
    """Where entries run, decided once in the host before any limit applies: "auto" becomes "cuda" where PyTorch
    sees a GPU (asking does not start CUDA in this process), else "cpu". Without an NVIDIA device file there is no
    GPU to see, and torch is not imported (a second or two of every run that has nothing to evaluate)."""
    if requested == "auto":
        if process.likely_device("auto") == "cpu":
            return "cpu"
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@dataclass
class Prediction:
    """How one run of an entry ended. Only ``outputs``, ``seconds``, ``timed_seconds`` and ``peak_memory`` are
    measured here; ``device`` and a failure's ``error`` are what the entry's process said."""
    status: str                                  # "ok" or "failed"
    error: str | None                            # one sentence when failed
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # set -> float32 [N, classes], the dataset's order
    device: str = ""                             # as the worker reported it, e.g. "cpu, channels-last"
    seconds: float = 0.0                         # wall time of the entry's whole process
    timed_seconds: float | None = None           # from handing over the images to the process's exit; None unless ok
    peak_memory: int | None = None               # bytes; None when nothing ran
    log: str = ""                                # what the entry printed, cut to its start and end
    sandboxed: bool | None = None                # None when nothing ran
    protections: tuple[str, ...] = ()            # what isolation was missing (empty when sandboxed)

    @property
    def images_per_second(self) -> float | None:
        images = sum(len(outputs) for outputs in self.outputs.values())
        return images / self.timed_seconds if self.timed_seconds else None


def predict(entry: EntryFolder, images: dict[str, np.ndarray], limits: Limits, *, preload_torchvision: bool = False,
            sandboxed: bool | None = None, on_progress: Callable[[Progress], None] | None = None,
            secret: bool = False, while_loading: Callable[[], None] | None = None) -> Prediction:
    """Run ``entry`` in its own process on each set of ``images`` (uint8 [N, H, W], or [N, C, H, W] for more than
    one channel: the task's input shape, ``entry.metadata.interface``) and return its outputs.

    Each set is handed over in a secret order drawn for this call and the outputs are put back in the given order,
    so nothing the entry sees depends on how a set is sorted. An entry whose files are refused
    (``entry.metadata_error``) fails with that sentence and nothing runs. ``sandboxed``: as in
    :func:`harness.isolation.process.run_isolated`. ``limits.device`` "auto" is resolved here (see
    :func:`resolve_device`). ``on_progress`` hears the images done of all sets, as the entry counts them; an entry
    that at its speed so far cannot finish within the time limit is stopped early, with the estimate. ``secret``:
    ``images`` hold a secret set; the entry runs where no public phase ever runs (the secret phase's own sandbox),
    and the caller keeps everything but the outputs sealed (``harness.runner``). ``while_loading``: the caller's own
    work, done once the images are written, while the entry's process loads its model (its time limit counts from
    when that is done); not done when nothing runs.
    """
    check_images(images, entry.metadata.interface)
    limits = replace(limits, device=resolve_device(limits.device))
    if entry.metadata_error:
        return Prediction("failed", entry.metadata_error, device=limits.device)
    work = temp_folder("predict")
    try:
        shuffled = order.draw(images, work)
        outcome = process.run_isolated(entry.folder, entry.metadata, shuffled, work / "out", device=limits.device,
                                       timeout=limits.timeout, memory_limit=limits.memory,
                                       batch_size=limits.batch_size, preload_torchvision=preload_torchvision,
                                       sandboxed=sandboxed, gpu_memory=limits.gpu_memory or limits.memory,
                                       total=sum(len(array) for array in images.values()), on_progress=on_progress,
                                       secret=secret, prepare=lambda: _prepare(images, shuffled, while_loading))
        said = outcome.result
        prediction = Prediction("failed", None, device=str(said.get("device", limits.device))[:DEVICE_CHARS],
                                seconds=outcome.seconds, peak_memory=outcome.peak_rss, log=outcome.log,
                                sandboxed=outcome.sandboxed, protections=outcome.protections)
        if said["status"] != "ok":
            prediction.error = str(said.get("error") or "the entry's process failed without saying why.")
            return prediction
        try:
            outputs = {kind: _outputs(work / "out", kind, shuffled, entry.metadata.interface.num_classes)
                       for kind in images}
        except ValueError as exc:
            prediction.error = str(exc)
            return prediction
        prediction.status, prediction.outputs, prediction.timed_seconds = "ok", outputs, outcome.timed_seconds
        return prediction
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prepare(images: dict[str, np.ndarray], shuffled: order.Shuffled,
             while_loading: Callable[[], None] | None) -> None:
    """What the host does while the entry's process loads: write the images, then the caller's work."""
    order.save(images, shuffled)
    if while_loading is not None:
        while_loading()


@runtime_checkable
class Predictor(Protocol):
    """Where entries run, as the run loop sees it: this machine (:class:`Local`), a Dask cluster
    (``harness.isolation.cluster.Cluster``) or entries kept warm (``harness.isolation.warm.WarmPool``)."""

    @property
    def width(self) -> int:
        """How many entries it runs at once."""

    def resolve_device(self, requested: str) -> str:
        """Where "auto" runs its entries ("cpu" or "cuda"); "cpu" and "cuda" as they are."""

    def predict(self, entry: EntryFolder, images: dict[str, np.ndarray], limits: Limits, *,
                preload_torchvision: bool = False, on_progress: Callable[[Progress], None] | None = None,
                secret: bool = False, while_loading: Callable[[], None] | None = None) -> Prediction:
        """The entry's outputs for each set of ``images`` (uint8, ``Interface.stored_shape``) in the given order, under
        ``limits``, or its failure in one sentence: what :func:`predict` returns. ``while_loading`` (host work, such
        as keeping the entry's files) is done while the entry loads, where that can be known, else first."""


class Local:
    """This machine: one entry at a time, through the front door (:func:`predict`)."""

    width = 1

    def resolve_device(self, requested: str) -> str:
        return resolve_device(requested)

    def predict(self, entry: EntryFolder, images: dict[str, np.ndarray], limits: Limits, *,
                preload_torchvision: bool = False, on_progress: Callable[[Progress], None] | None = None,
                secret: bool = False, while_loading: Callable[[], None] | None = None) -> Prediction:
        return predict(entry, images, limits, preload_torchvision=preload_torchvision, on_progress=on_progress,
                       secret=secret, while_loading=while_loading)


LOCAL = Local()


def check_images(images: dict[str, np.ndarray], interface: Interface, taker: str = "predict takes") -> None:
    """ValueError unless every set is uint8 images of the task's shape (``Interface.stored_shape``); a set named "" is
    said as "the images"."""
    shape = interface.stored_shape
    for kind, array in images.items():
        if array.dtype != np.uint8 or array.shape[1:] != shape:
            said = f"the {kind} images" if kind else "the images"
            raise ValueError(f"{said} are {array.dtype} {list(array.shape)}; {taker} uint8 "
                             f"[N, {', '.join(map(str, shape))}] (harness.data.preprocess.to_uint8 turns [0, 1] "
                             "images into that).")


def _outputs(out_dir: Path, kind: str, shuffled: order.Shuffled, classes: int = 10) -> np.ndarray:
    """The entry's outputs for one set, checked and back in the dataset's order (else ValueError, one sentence)."""
    try:
        outputs = np.load(out_dir / f"outputs_{kind}.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"the entry's process returned no readable outputs for the {kind} set ({exc}).") from exc
    if outputs.dtype != np.float32:
        raise ValueError(f"the entry's process returned {outputs.dtype} outputs for the {kind} set.")
    return check_rows(shuffled.unshuffle(kind, outputs), kind, classes)  # one row per image


def check_rows(outputs: np.ndarray, kind: str, classes: int = 10) -> np.ndarray:
    """Outputs with one row of ``classes`` finite scores per image, as the entry's process wrote them (else
    ValueError)."""
    if outputs.ndim != 2 or outputs.shape[1] != classes:
        raise ValueError(f"the entry's process returned outputs of shape {list(outputs.shape)} for the {kind} set; "
                         f"expected [{len(outputs)}, {classes}].")
    if not np.isfinite(outputs).all():
        raise ValueError(f"the entry's process returned NaN or infinite outputs for the {kind} set.")
    return outputs


def limits_hit(error: str | None) -> list[str]:
    """The limits a failure's sentence says stopped the entry ("time limit", "memory limit"): the commands name
    the flag that sets each one."""
    return [name for name in LIMIT_NAMES if name in (error or "")]
