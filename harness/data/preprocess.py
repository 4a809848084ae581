"""Turns a picture of one handwritten digit into the 28×28 input every model sees (MNIST conventions).

The pipeline, one pure function per step, versioned by :data:`PREPROCESS_VERSION`:

1. :func:`to_grayscale` — any Pillow image (alpha, 16-bit, palette, CMYK) to floats in [0, 1].
2. :func:`ink_is_dark` — polarity: the ink is the thinner of two levels, or the heavier tail of the
   brightness around the paper's local median.
3. :func:`ink_map` — ink made bright, paper background and uneven lighting divided out.
4. :func:`digit_mask` — threshold, then drop specks: connected pieces that are small and far from
   the digit (thin strokes survive: nothing morphological touches the ink).
5. :func:`upscaled_digit` — crop to the ink and resample it to a fixed working size (4× the final
   20-pixel box), smoothed and thresholded there so that blocky or noisy input gives clean edges.
6. :func:`normalize_stroke` — thicken or thin the strokes into MNIST's range of pen widths.
7. :func:`fit_and_center` — fit 20×20 with anti-aliasing (area averaging), keeping the aspect ratio
   except that digits wider than MNIST's are narrowed (:func:`mnist_aspect`), then place in 28×28
   by centre of mass (LeCun's recipe).

Unusable images raise :class:`ImageProblem` with one sentence that says what is wrong.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PREPROCESS_VERSION = "guest-3"
"""Bump whenever the output of :func:`normalize_image` changes: the guest set is re-evaluated."""

BOX = 20                      # MNIST: the digit fits a 20×20 box ...
SIZE = 28                     # ... centred by mass in 28×28.
WORK = 4 * BOX                # working resolution of the upscaled digit (longer side, pixels)
MAX_SIDE = 400                # large photos are reduced to this before anything else
MNIST_STROKE_RANGE = (9.0, 14.0)   # MNIST test's pen widths at the working resolution, 10th–80th
                                   # percentile (stroke_width of upscaled_digit; median 11.7)
ASPECT_KNEE, ASPECT_SLOPE = 0.6, 0.5   # see mnist_aspect
MIN_CONTRAST = 0.08           # weakest ink accepted, as a fraction of the paper's brightness
# Pixel budgets, checked from the file's header before any pixel is decoded (Image.open is lazy). Reading costs
# up to ~36 bytes a pixel (a 169-megapixel RGBA PNG of 771 KB took 6 GB), and the pipeline reduces every picture
# to MAX_SIDE at once, so a digit needs far less than a megapixel. DIGIT_MAX_PIXELS (16 MP, under ~600 MB) lets a
# phone's 12-megapixel photo of one digit through; SHEET_MAX_PIXELS (50 MP, under ~1 GB as 8-bit gray) a 48-megapixel
# phone photo or a 600 dpi A4 scan (35 MP) of the whole printable sheet (``python -m harness.sheet import``).
DIGIT_MAX_PIXELS = 16_000_000
SHEET_MAX_PIXELS = 50_000_000


class _Ndimage:
    """``scipy.ndimage``, imported on first use: a guest set read from its cache needs none of it (about 0.2 s)."""

    def __getattr__(self, name: str):
        from scipy import ndimage as module
        return getattr(module, name)


ndimage = _Ndimage()


class ImageProblem(ValueError):
    """An image that cannot be turned into a digit; the message is one sentence for the organiser."""


def open_image(path: str | Path, max_pixels: int = DIGIT_MAX_PIXELS) -> Image.Image:
    """Reads any image Pillow knows, upright (EXIF rotation applied), alpha flattened, 8-bit gray.

    Raises :class:`ImageProblem` for unreadable or truncated files, and for one of more than ``max_pixels``
    (judged from its header, before anything is decoded).
    """
    path = Path(path)
    return read_image(path, path.name, max_pixels)


def pixel_problem(width: int, height: int, name: str, max_pixels: int = DIGIT_MAX_PIXELS) -> str | None:
    """One sentence when a ``width``×``height`` picture is over the budget, else None."""
    if width * height <= max_pixels:
        return None
    return (f"{name} is {width:,}×{height:,} pixels ({width * height / 1e6:.0f} megapixels), more than the "
            f"{max_pixels / 1e6:g} megapixels it may have; scale it down and save it again")


def open_picture(path: str | Path, max_pixels: int = DIGIT_MAX_PIXELS) -> Image.Image:
    """As :func:`open_image`, but the picture keeps its own colours and mode (for ``preprocess = "resize"``)."""
    path = Path(path)
    return read_image(path, path.name, max_pixels, grey=False)


def read_image(source: Path | io.BytesIO, name: str, max_pixels: int = DIGIT_MAX_PIXELS,
               grey: bool = True) -> Image.Image:
    too_big = None
    try:
        with Image.open(source) as im:
            too_big = pixel_problem(im.width, im.height, name, max_pixels)
            if too_big is None:  # judged from the header: an image over the budget is never decoded
                im.load()
                im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        reason = str(e).strip() or type(e).__name__
        raise ImageProblem(f"cannot read {name}: {reason}; re-save it as PNG or JPEG") from e
    if too_big:
        raise ImageProblem(too_big)
    if not grey:
        return im
    return Image.fromarray(np.round(to_grayscale(im) * 255).astype(np.uint8), mode="L")


def to_grayscale(img: Image.Image) -> np.ndarray:
    """Luminance as float32 in [0, 1].

    Transparent pixels become a background that contrasts with the visible strokes (white behind
    dark strokes, black behind light ones), so a canvas drawing with either colour keeps its ink.
    16-bit, 32-bit and float images are stretched to their own range (only contrast matters here).
    """
    if img.width == 0 or img.height == 0:
        raise ImageProblem("empty image: it has no pixels")
    if img.mode.startswith(("I", "F")):        # 16-bit, 32-bit and float: stretched to their range
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3]
    lum = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if alpha.min() >= 1.0:
        return lum
    visible = alpha > 0.5
    strokes_light = visible.any() and float(np.average(lum, weights=alpha)) > 0.5
    background = 0.0 if strokes_light else 1.0
    return (lum * alpha + background * (1 - alpha)).astype(np.float32)


def reduce_size(gray: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Shrinks large images (area averaging) so that the longer side is at most ``max_side``."""
    h, w = gray.shape
    if max(h, w) <= max_side:
        return gray
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.BOX), dtype=np.float32)


def is_two_level(gray: np.ndarray) -> bool:
    """Whether (almost) every pixel is near one of two levels: a thresholded scan or a drawing."""
    lo, hi = np.percentile(gray, [1, 99])
    span = hi - lo
    return bool(span > 0.05 and np.mean((gray <= lo + 0.15 * span) | (gray >= hi - 0.15 * span)) >= 0.97)


def ink_is_dark(gray: np.ndarray) -> bool:
    """True when the ink is darker than the paper.

    A two-level image (a scan thresholded to black and white, a canvas drawing) can have as much
    ink as paper: there the ink is the thinner of the two (smaller mean distance to the other).
    Otherwise the paper is most of the picture, so its level is the median, and the ink is the tail
    that holds more pixels beyond three noise deviations from it (robust to a lighting gradient).
    """
    if is_two_level(gray):
        lo, hi = np.percentile(gray, [1, 99])
        dark = gray < (lo + hi) / 2
        if dark.any() and (~dark).any():
            return (ndimage.distance_transform_edt(dark)[dark].mean()
                    < ndimage.distance_transform_edt(~dark)[~dark].mean())
    g = ndimage.gaussian_filter(gray, 0.7) if min(gray.shape) >= 9 else gray
    d = g - smooth_level(g, 50, min(g.shape) / 3)
    s = 3 * 1.4826 * np.median(np.abs(d))
    return np.maximum(-d - s, 0).sum() > np.maximum(d - s, 0).sum()


def smooth_level(img: np.ndarray, percent: float, window: float) -> np.ndarray:
    """A percentile of ``img`` over windows of ``window`` pixels, smoothly varying.

    Computed on a copy reduced to about 9 pixels per window and enlarged again, so that a lighting
    gradient or a shadow is followed but strokes (narrower than the window) are not.
    """
    h, w = img.shape
    s = min(1.0, 9.0 / max(window, 1.0))
    small = img if s >= 1 else np.asarray(
        Image.fromarray(img, mode="F").resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX))
    win = max(3, round(window * s))
    level = ndimage.percentile_filter(small, percent, size=win, mode="nearest")
    level = ndimage.uniform_filter(level, size=max(3, win // 2), mode="nearest")
    if level.shape != img.shape:
        level = np.asarray(Image.fromarray(level.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    return level.astype(np.float32)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink as a fraction of the light the paper reflects: 0 on paper, about 1 on solid ink.

    Dark ink on paper becomes ``(paper - pixel) / paper``, which removes a lighting gradient or a
    shadow (they scale paper and ink alike); light ink on a dark ground is treated as its negative.
    A two-level image has no lighting to remove: its two levels become 0 and 1.
    """
    bright = 1.0 - gray if ink_is_dark(gray) else gray
    if is_two_level(bright):
        lo, hi = np.percentile(bright, [1, 99])
        return np.clip((bright - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    bg = smooth_level(bright, 20, min(bright.shape) / 3)
    ink = np.clip((bright - bg) / np.maximum(1.0 - bg, 0.05), 0.0, 1.0)
    pen = stroke_width(ink > 0.5 * np.percentile(ink, 99.5))
    window = round(2.5 * pen)
    if 5 <= window < min(bright.shape) / 3:
        # second pass, once the pen width is known: an opening (erosion then dilation) removes
        # everything narrower than the window, i.e. the ink, and keeps the sharp edge of a shadow
        smooth = ndimage.gaussian_filter(bright, 1.0)
        bg = np.maximum(ndimage.grey_opening(smooth, size=(window, window)), bg)
        ink = np.clip((bright - bg) / np.maximum(1.0 - bg, 0.05), 0.0, 1.0)
    return ink.astype(np.float32)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centers)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0) ** 2 / (w0 * (1 - w0))
    between[~np.isfinite(between)] = 0
    return float(centers[int(np.argmax(between))])


def noise_level(ink: np.ndarray) -> float:
    """Standard deviation of the paper's noise: median absolute deviation of the pixels below half
    the strongest ink."""
    faint = ink[ink < 0.5 * np.percentile(ink, 99.9)]
    if faint.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(faint - np.median(faint))))


def smoothed_ink(ink: np.ndarray) -> np.ndarray:
    """The ink map as :func:`digit_mask` reads it: lightly smoothed against pixel noise."""
    return ndimage.gaussian_filter(ink, max(0.5, min(ink.shape) / 200))


def contrast_floor(smooth: np.ndarray) -> float:
    """The weakest ink that counts as writing on a :func:`smoothed_ink` map: :data:`MIN_CONTRAST` of
    the paper's brightness, or six times the paper's noise where that is more.

    The one rule for "is there ink": the pipeline refuses a picture whose ink never reaches it, and
    the sheet import (:mod:`harness.sheet`) keeps a box whose ink reaches it in a digit-sized piece.
    """
    return max(MIN_CONTRAST, 6 * noise_level(smooth))


def digit_mask(ink: np.ndarray) -> np.ndarray:
    """Pixels that belong to the digit: thresholded ink without specks.

    Keeps the largest connected piece, pieces at least 15% of its size, and smaller pieces (at
    least 2%) that lie within the largest piece's bounding box grown by a fifth.
    Raises :class:`ImageProblem` when there is no ink.
    """
    smooth = smoothed_ink(ink)
    peak = float(np.percentile(smooth, 99.9))
    if peak < contrast_floor(smooth):
        raise ImageProblem("no ink found: the image is blank or the digit is too faint")
    t = max(otsu_threshold(smooth[smooth > 0.25 * peak]) if (smooth > 0.25 * peak).any() else 0.0, 0.3 * peak)
    t = min(t, 0.6 * peak)
    mask = smooth > t
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        raise ImageProblem("no ink found: the image is blank or the digit is too faint")
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    main = int(np.argmax(areas)) + 1
    boxes = ndimage.find_objects(labels)
    ys, xs = boxes[main - 1]
    gy, gx = (ys.stop - ys.start) / 5, (xs.stop - xs.start) / 5
    keep = np.zeros(n + 1, dtype=bool)
    for i, (area, (by, bx)) in enumerate(zip(areas, boxes, strict=True), start=1):
        near = (by.start >= ys.start - gy and by.stop <= ys.stop + gy
                and bx.start >= xs.start - gx and bx.stop <= xs.stop + gx)
        keep[i] = area >= 0.15 * areas[main - 1] or (near and area >= 0.02 * areas[main - 1])
    return keep[labels]


def upscaled_digit(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The digit cropped to its ink and resampled so that its longer side is :data:`WORK` pixels.

    Returns a boolean image: smoothed (against blocky upscaling and noise) and thresholded at half
    the ink's typical strength there (so a faint or hair-thin pen still counts), with a margin so
    that later thickening has room.
    """
    grown = ndimage.binary_dilation(mask, iterations=max(1, round(min(ink.shape) / 100)))
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(grown, ink, 0.0)[y0:y1, x0:x1].astype(np.float32)
    factor = WORK / max(y1 - y0, x1 - x0)
    h, w = max(1, round((y1 - y0) * factor)), max(1, round((x1 - x0) * factor))
    margin = WORK // 4
    big = np.zeros((h + 2 * margin, w + 2 * margin), dtype=np.float32)
    resample = Image.BICUBIC if factor > 1 else Image.BOX
    big[margin:margin + h, margin:margin + w] = np.asarray(Image.fromarray(crop, mode="F").resize((w, h), resample))
    big = ndimage.gaussian_filter(big, max(1.0, 0.5 * factor))
    if not big.max() > 0:
        raise ImageProblem("no ink found: the image is blank or the digit is too faint")
    level = float(np.percentile(big[big > 0.2 * big.max()], 90))
    return big > 0.5 * level


def stroke_width(mask: np.ndarray) -> float:
    """Typical pen width of a binary digit: four times the mean distance of its ink to the paper."""
    if not mask.any():
        return 0.0
    return float(4 * ndimage.distance_transform_edt(mask)[mask].mean())


def normalize_stroke(mask: np.ndarray, target: float | None = None) -> np.ndarray:
    """Thickens or thins the strokes of a binary digit into MNIST's range of pen widths.

    ``target`` forces a width; by default a width inside :data:`MNIST_STROKE_RANGE` is kept and
    one outside is brought to the nearer end. Thinning keeps each stroke's ridge, so a stroke
    thinner than the erosion is narrowed, never removed.
    """
    width = stroke_width(mask)
    lo, hi = MNIST_STROKE_RANGE
    target = min(max(width, lo), hi) if target is None else target
    delta = (target - width) / 2
    if abs(delta) < 0.5:
        return mask
    if delta > 0:
        return ndimage.distance_transform_edt(~mask) <= delta
    dist = ndimage.distance_transform_edt(mask)
    thinned = dist > -delta
    ridge = mask & (dist >= ndimage.maximum_filter(dist, size=3))
    return thinned | ridge


def mnist_aspect(aspect: float) -> float:
    """The width/height ratio a digit is drawn at: unchanged up to :data:`ASPECT_KNEE`, and the
    excess above it multiplied by :data:`ASPECT_SLOPE`.

    MNIST's digits are tall (the height fills the 20-pixel box in 93% of them; median width/height
    0.7), so a model trained on it reads a wide or box-stretched digit poorly. Narrowing only the
    excess leaves MNIST-shaped digits alone: the reference model scores the same on MNIST test with and
    without this step, and better on Semeion, whose digits are stretched to fill a square (figures: docs/organiser.md,
    "Guest digits").
    """
    return aspect if aspect <= ASPECT_KNEE else ASPECT_KNEE + ASPECT_SLOPE * (aspect - ASPECT_KNEE)


def fit_and_center(mask: np.ndarray) -> np.ndarray:
    """Fits the ink's bounding box into 20×20 (area-averaged: anti-aliased), centred by mass in 28×28.

    The aspect ratio is kept, except that wide digits are narrowed by :func:`mnist_aspect`.
    """
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    height, width = crop.shape[0], mnist_aspect(crop.shape[1] / crop.shape[0]) * crop.shape[0]
    s = BOX / max(height, width)
    h, w = max(1, min(BOX, round(height * s))), max(1, min(BOX, round(width * s)))
    small = np.asarray(Image.fromarray(crop, mode="F").resize((w, h), Image.BOX), dtype=np.float32)
    small = small / max(float(small.max()), 1e-6)
    cy, cx = ndimage.center_of_mass(small)
    top, left = round(SIZE / 2 - cy), round(SIZE / 2 - cx)
    out = np.zeros((SIZE + 2 * BOX, SIZE + 2 * BOX), dtype=np.float32)
    out[BOX + top:BOX + top + h, BOX + left:BOX + left + w] = small
    return np.clip(out[BOX:BOX + SIZE, BOX:BOX + SIZE], 0.0, 1.0)


def normalize_image(img: Image.Image) -> np.ndarray:
    """A picture of one digit → float32 [28, 28] in [0, 1], white ink on black, MNIST conventions.

    Raises :class:`ImageProblem` (one sentence) for an empty image or one without ink.
    """
    gray = reduce_size(to_grayscale(img))
    ink = ink_map(gray)
    mask = digit_mask(ink)
    big = normalize_stroke(upscaled_digit(ink, mask))
    return fit_and_center(big)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] as the uint8 levels the harness stores and hands to entries (each rounded to the nearest);
    the guest set and a digit drawn on the dashboard both go through this one step."""
    return np.clip(np.rint(np.asarray(images) * 255), 0, 255).astype(np.uint8)
