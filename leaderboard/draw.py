"""Draw-a-digit: a canvas drawing → the guest set's normalisation and uint8 step → every entry's prediction.

Entries run in their own processes through ``harness.isolation.predict`` (sandboxed where bubblewrap works, else
forked from the fork server with torch preloaded): submission code never runs inside the dashboard's process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness import isolation
from harness.data.preprocess import ImageProblem, normalize_image, to_uint8
from harness.entries.discovery import Entry, discover
from harness.errors import HarnessError
from harness.isolation import Limits
from harness.scoring.metrics import detect_output_kind, to_probabilities

TIMEOUT_S = 20.0
MEMORY_BYTES = 4 * 1024 ** 3


def has_ink(rgba: np.ndarray | None) -> bool:
    """Whether a canvas image (RGBA uint8) holds any drawn stroke."""
    if rgba is None or rgba.size == 0:
        return False
    rgba = np.asarray(rgba)
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        return bool((rgba[..., 3] > 0).any() and (rgba[..., :3].min(axis=2)[rgba[..., 3] > 0] < 128).any())
    return bool((rgba < 128).any())


def normalise_drawing(rgba: np.ndarray) -> np.ndarray:
    """The drawing as the models see it: float32 [28, 28] in [0, 1] (raises ImageProblem if blank)."""
    mode = "RGBA" if np.asarray(rgba).ndim == 3 and np.asarray(rgba).shape[2] == 4 else None
    return normalize_image(Image.fromarray(np.asarray(rgba, dtype=np.uint8), mode=mode))


def digit_key(digit: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(digit, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class Prediction:
    entry: str
    display_name: str
    probabilities: np.ndarray | None  # float [10]
    error: str | None

    @property
    def digit(self) -> int | None:
        return None if self.probabilities is None else int(np.argmax(self.probabilities))


def entries_on_disk(folder: Path) -> list[Entry]:
    """The entries in the submissions folder (empty when it is missing; folders that cannot be entries left out)."""
    try:
        return list(discover(folder, skipped=[]).values())
    except HarnessError:
        return []


def model_input(digit: np.ndarray) -> np.ndarray:
    """The normalised drawing as the entries receive it: uint8 [1, 28, 28], through the guest set's own step."""
    return to_uint8(np.asarray(digit, dtype=np.float32))[None]


def predict(entry: Entry, digit: np.ndarray, timeout: float = TIMEOUT_S) -> Prediction:
    """One entry's probabilities for one normalised digit, computed in an isolated process on the CPU."""
    limits = Limits(timeout=timeout, memory=MEMORY_BYTES, device="cpu", batch_size=1)
    try:
        ran = isolation.predict(entry, {"draw": model_input(digit)}, limits)
    except OSError as exc:  # no room for its temporary folder: the page shows the reason
        return Prediction(entry.name, entry.display_name, None, str(exc))
    if ran.status != "ok":
        return Prediction(entry.name, entry.display_name, None, ran.error or "failed")
    outputs = ran.outputs["draw"]
    return Prediction(entry.name, entry.display_name, to_probabilities(outputs, detect_output_kind(outputs))[0], None)


__all__ = ["ImageProblem", "Prediction", "digit_key", "entries_on_disk", "has_ink", "model_input", "normalise_drawing",
           "predict"]
