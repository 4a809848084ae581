"""Draw-a-digit: a canvas drawing → the guest set's normalisation and uint8 step → every entry's prediction.

Entries are kept warm (``harness.isolation.WarmPool``, one pool per dashboard server process, shared by every
visitor): each is loaded once in its own process, in a bubblewrap sandbox of its own where it works, under the
limits below, and then answers each drawing in milliseconds. Submission code never runs inside the dashboard's
process. ``predict`` is the one-off way (a fresh process per drawing), kept as the benchmark's baseline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

from harness import isolation
from harness.data.preprocess import ImageProblem, normalize_image, pixel_problem, to_uint8
from harness.entries.discovery import EntryFolder, discover
from harness.errors import HarnessError
from harness.isolation import Limits
from harness.scoring.metrics import detect_output_kind, to_probabilities

TIMEOUT_S = 20.0
MEMORY_BYTES = 4 * 1024 ** 3
LIMITS = Limits(timeout=TIMEOUT_S, memory=MEMORY_BYTES, device="cpu", batch_size=1)
WARM_CAP = 12            # entries kept warm at once, and within competition.toml's [dashboard] warm_memory
IDLE_SECONDS = 15 * 60   # a warm entry nobody has asked for this long is shut down


def has_ink(rgba: np.ndarray | None) -> bool:
    """Whether a canvas image (RGBA uint8) holds any drawn stroke."""
    if rgba is None or rgba.size == 0:
        return False
    rgba = np.asarray(rgba)
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        return bool((rgba[..., 3] > 0).any() and (rgba[..., :3].min(axis=2)[rgba[..., 3] > 0] < 128).any())
    return bool((rgba < 128).any())


def normalise_drawing(rgba: np.ndarray) -> np.ndarray:
    """The drawing as the models see it: float32 [28, 28] in [0, 1] (raises ImageProblem if blank, or larger than
    a digit's pixel budget: the canvas's image comes from the visitor's browser)."""
    shape = np.shape(rgba)
    too_big = pixel_problem(shape[1], shape[0], "the drawing") if len(shape) >= 2 else None
    if too_big:
        raise ImageProblem(too_big)
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


def entries_on_disk(folder: Path) -> list[EntryFolder]:
    """The entries in the submissions folder (empty when it is missing; folders that cannot be entries left out)."""
    try:
        return list(discover(folder, skipped=[]).values())
    except HarnessError:
        return []


def model_input(digit: np.ndarray) -> np.ndarray:
    """The normalised drawing as the entries receive it: uint8 [1, 28, 28], through the guest set's own step."""
    return to_uint8(np.asarray(digit, dtype=np.float32))[None]


def reading(entry: EntryFolder, ran: isolation.Prediction) -> Prediction:
    """An entry's run over the one drawing, as the page shows it: probabilities, or its failure's sentence."""
    if ran.status != "ok":
        return Prediction(entry.name, entry.display_name, None, ran.error or "failed")
    outputs = ran.outputs["draw"]
    return Prediction(entry.name, entry.display_name, to_probabilities(outputs, detect_output_kind(outputs))[0], None)


def predict(entry: EntryFolder, digit: np.ndarray, timeout: float = TIMEOUT_S) -> Prediction:
    """One entry's probabilities for one normalised digit, computed in a fresh isolated process on the CPU."""
    limits = Limits(timeout=timeout, memory=MEMORY_BYTES, device="cpu", batch_size=1)
    try:
        ran = isolation.predict(entry, {"draw": model_input(digit)}, limits)
    except OSError as exc:  # no room for its temporary folder: the page shows the reason
        return Prediction(entry.name, entry.display_name, None, str(exc))
    return reading(entry, ran)


def warm_pool(memory_budget: int | None = None) -> isolation.WarmPool:
    """The pool of warm entries the page asks (the dashboard keeps one per server process; its memory budget is
    competition.toml's ``[dashboard] warm_memory``, set again on every page run so that an edit applies)."""
    return isolation.WarmPool(LIMITS, cap=WARM_CAP, idle_seconds=IDLE_SECONDS, memory_budget=memory_budget)


def memory_text(n: int) -> str:
    """Bytes as a person reads them, in the units the budget is written in (1 GiB = 1,024 MiB)."""
    return f"{n / 1024 ** 3:.1f} GiB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:,.0f} MiB"


def warm_note(memory: dict[str, int], budget: int | None, entries: int) -> str | None:
    """What the page says about the entries kept loaded within the memory budget: how many, what they hold (None:
    no budget, so nothing was measured)."""
    if budget is None:
        return None
    held = sum(memory.values())
    note = (f"{len(memory):,} of {entries:,} entries are kept loaded between drawings, holding {memory_text(held)} "
            f"of the {memory_text(budget)} set by `[dashboard] warm_memory` in competition.toml")
    return note + ("; the others load again for each drawing, which takes a few seconds more." if
                   len(memory) < entries else ".")


def read_all(pool: isolation.WarmPool, entries: Sequence[EntryFolder], digit: np.ndarray) -> Iterator[Prediction]:
    """Every entry's reading of the digit, yielded as each one answers (the fastest first)."""
    images = model_input(digit)
    for entry, ran in pool.ask_all(entries, images):
        yield reading(entry, ran)


def consensus(results: Sequence[Prediction]) -> tuple[int, int, int] | None:
    """The digit most entries read, how many read it and how many answered (ties: the smaller digit)."""
    digits = [r.digit for r in results if r.digit is not None]
    if not digits:
        return None
    counts = np.bincount(digits, minlength=10)
    return int(counts.argmax()), int(counts.max()), len(digits)


def probability_bars(probabilities: np.ndarray) -> alt.Chart:
    """One entry's probabilities as bars over a digit axis 0–9 (compact: one per entry on the page)."""
    frame = pd.DataFrame({"digit": list(range(10)), "probability": np.asarray(probabilities, dtype=float)})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("digit:O", title=None, axis=alt.Axis(labelAngle=0, labelFontSize=12)),
        y=alt.Y("probability:Q", title=None, scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%", values=[0, 0.5, 1], grid=True)),
        tooltip=[alt.Tooltip("digit:O"), alt.Tooltip("probability:Q", format=".1%")])


def without_strokes(drawing: dict | None, edit: int, last_only: bool = True) -> dict:
    """The canvas's drawing (its ``json_data``) with the last stroke (or every stroke) taken away, for the canvas to
    redraw from. ``edit`` (a count of edits) makes each one differ from the last, so that the canvas redraws even
    when the strokes left are the same as after an earlier edit."""
    objects = list((drawing or {}).get("objects") or [])
    return {**(drawing or {}), "objects": objects[:-1] if last_only else [], "edit": edit}


__all__ = ["ImageProblem", "Prediction", "consensus", "digit_key", "entries_on_disk", "has_ink", "memory_text",
           "model_input", "normalise_drawing", "predict", "probability_bars", "read_all", "reading", "warm_note",
           "warm_pool", "without_strokes"]
