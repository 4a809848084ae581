"""Renders a digit as if written on paper and photographed with a phone (for tests, the fidelity
benchmark and the shipped sample).

:func:`photograph` puts dark ink on paper-coloured background, enlarged, then applies what a phone
does: a slight rotation, a lighting gradient, lens blur, sensor noise and JPEG compression.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage


@dataclass(frozen=True)
class PhotoConditions:
    """The conditions of the benchmark's "photographed" renderings."""

    size: int = 128                  # output side, pixels
    digit_height: float = 0.6        # ink height as a fraction of the side
    max_rotation: float = 8.0        # degrees, uniform in ±
    gradient: tuple[float, float] = (0.55, 0.8)   # darkest corner's brightness relative to the brightest
    blur: tuple[float, float] = (0.6, 1.4)        # Gaussian sigma, pixels
    noise: float = 0.03              # sensor noise, standard deviation (0–1 scale)
    jpeg_quality: int = 80


def photograph(ink: np.ndarray, rng: np.random.Generator, cond: PhotoConditions = PhotoConditions()) -> Image.Image:
    """``ink`` (2-D, 1 = ink, 0 = paper, any size) → an RGB "photo" of it written on paper."""
    ink = np.asarray(ink, dtype=np.float32)
    ink = ink / max(float(ink.max()), 1e-6)
    h, w = ink.shape
    scale = cond.digit_height * cond.size / h
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    big = np.asarray(Image.fromarray(ink, mode="F").resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    canvas = np.zeros((cond.size, cond.size), np.float32)
    top = (cond.size - nh) // 2 + int(rng.integers(-cond.size // 16, cond.size // 16 + 1))
    left = (cond.size - nw) // 2 + int(rng.integers(-cond.size // 16, cond.size // 16 + 1))
    top, left = max(0, min(top, cond.size - nh)), max(0, min(left, cond.size - nw))
    canvas[top:top + nh, left:left + nw] = big[:cond.size, :cond.size]
    canvas = ndimage.rotate(canvas, rng.uniform(-cond.max_rotation, cond.max_rotation), reshape=False, order=1)
    alpha = np.clip(canvas, 0, 1)[..., None]

    paper = np.array([0.93, 0.91, 0.86], np.float32) * rng.uniform(0.9, 1.05)
    pen = np.array([0.12, 0.12, 0.22], np.float32) * rng.uniform(0.6, 1.4)
    img = paper * (1 - alpha) + pen * alpha
    yy, xx = np.mgrid[0:cond.size, 0:cond.size] / cond.size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    low = rng.uniform(*cond.gradient)
    img = img * (low + (1 - low) * ramp)[..., None]
    img = ndimage.gaussian_filter(img, (rng.uniform(*cond.blur),) * 2 + (0,))
    img = img + rng.normal(0, cond.noise, img.shape)
    rgb = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=cond.jpeg_quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
