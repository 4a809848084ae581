"""Tested starting points for ``python -m harness.train --preset NAME``: each sets flags' defaults, and any flag
given as well overrides it. How each was chosen, with the measured effect of every knob: submissions/README.md,
"What helps against unknown handwriting"."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    summary: str
    settings: dict = field(default_factory=dict)   # argparse destinations of harness.train -> value


PRESETS: dict[str, Preset] = {
    "stranger": Preset(
        summary="baseline-robust's recipe, tuned on Semeion: the compact CNN with the augmentations that read "
                "Semeion's tuning half best: random affine, slant and pen-width variation; with --extra FOLDER, other "
                "writers' digits make about a quarter of each epoch (24 repeats of ~800 digits). On writers from "
                "elsewhere it has read no better than baseline-strong (scripts/populations.py)",
        settings=dict(arch="cnn", channels=[16, 32, 64], dropout=0.1, optimizer="adamw", lr=3e-3, weight_decay=0.01,
                      schedule="onecycle", label_smoothing=0.1, batch_size=128, epochs=12, val_fraction=0.05,
                      augment=["affine", "slant", "stroke"], extra_repeat=24),
    ),
}


def describe() -> str:
    return "; ".join(f"{name}: {preset.summary}" for name, preset in PRESETS.items())
