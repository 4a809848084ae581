"""``preprocess = "resize"``: how a photo or a scan becomes a competition's input, for tasks that are not handwriting.

One step, versioned by :data:`RESIZE_VERSION`: the picture in the task's colours (grey ``L`` for one channel, ``RGB``
for three; transparency laid on black), scaled to fit the input's height and width with its aspect ratio kept
(area-averaged when it shrinks, bicubic when it grows), then centred on black to the exact size. The result is
float32 ``[C, H, W]`` in [0, 1]; the worker maps it to the task's ``value_range``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from harness.data.preprocess import ImageProblem

RESIZE_VERSION = "resize-2"
"""Bump whenever :func:`resize_image`'s output changes: every set read through it is re-evaluated."""


def in_colours(img: Image.Image, channels: int) -> Image.Image:
    """``img`` as grey (1 channel) or RGB (3), transparency laid on black."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(base, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        span = float(a.max() - a.min()) or 1.0
        img = Image.fromarray(np.round((a - a.min()) / span * 255).astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


def resize_image(img: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    """One picture -> float32 [channels, height, width] in [0, 1] (see the module docstring)."""
    if img.width < 1 or img.height < 1:
        raise ImageProblem("the picture has no pixels; replace it.")
    img = in_colours(img, channels)
    scale = min(width / img.width, height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    fitted = img.resize(size, resample) if size != img.size else img
    canvas = Image.new(fitted.mode, (width, height), 0)
    canvas.paste(fitted, ((width - size[0]) // 2, (height - size[1]) // 2))
    a = np.asarray(canvas, dtype=np.float32) / 255.0
    return a[None] if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


def resizer(channels: int, height: int, width: int):
    """:func:`resize_image` for one input shape, as a one-argument step."""
    def step(img: Image.Image) -> np.ndarray:
        return resize_image(img, channels, height, width)
    step.__name__ = f"resize_{channels}x{height}x{width}"
    return step
