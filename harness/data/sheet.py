"""A printable sheet for the guest's digits, and its import from a phone photo or a scan (the command is
``python -m harness.sheet``).

The sheet has a row of boxes per digit 0–9 (the digit printed small at the row's start) and a
black square at each corner; the top-left one has a white hole so that the page's orientation is
known. Import finds the squares, undoes perspective and rotation (a photo taken at an angle, a
skewed or upside-down scan), removes uneven lighting, cuts the boxes, skips the empty ones and
writes each digit as ``<out>/<label>/sheet-<photo>-r<row>c<col>.png``, plus a contact sheet
``<out>/_contact_sheet-<photo>.png`` of every digit cut, with its label.

A box counts as written by the same contrast rule the per-digit pipeline reads ink by
(:func:`harness.data.preprocess.contrast_floor`), so a faint pen that the pipeline reads is imported. A box
with marks below that rule but clearly not blank paper is named, and the import exits non-zero; so
does a sheet on which every box is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from harness.data.preprocess import (
    SHEET_MAX_PIXELS,
    ImageProblem,
    contrast_floor,
    ink_map,
    normalize_image,
    open_image,
    reduce_size,
    smooth_level,
    smoothed_ink,
    to_grayscale,
)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "mystery_digits"
MIN_PIECE = 0.004      # a written digit: ink at the contrast floor in one piece of this fraction of the box
FAINT_SIGMA = 1.5      # faint marks: the ink smoothed this much (pixels) so that a stroke stands out of noise,
FAINT_PIECE = 0.016    # ... at half the contrast floor in one piece of this fraction of the box


class SheetProblem(ValueError):
    """A photo that cannot be imported as a sheet; the message is one sentence."""


@dataclass(frozen=True)
class Layout:
    """Geometry of the sheet in pixels of the template (A4 at 150 dpi)."""

    width: int = 1240
    height: int = 1754
    marker: int = 64                   # side of the corner squares
    hole: int = 26                     # side of the hole in the top-left square
    inset: int = 70                    # distance of a square's centre from the page edge... plus half a side
    columns: int = 8
    cell: int = 112                    # box side
    pitch: int = 124                   # distance between boxes
    grid_left: int = 180
    grid_top: int = 250

    def marker_centers(self) -> np.ndarray:
        """Centres of the squares: top-left, top-right, bottom-right, bottom-left (x, y)."""
        a = self.inset + self.marker / 2
        return np.array([(a, a), (self.width - a, a), (self.width - a, self.height - a), (a, self.height - a)])

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the box for digit ``row``, column ``col``."""
        x, y = self.grid_left + col * self.pitch, self.grid_top + row * self.pitch
        return x, y, x + self.cell, y + self.cell


LAYOUT = Layout()


def render_template(layout: Layout = LAYOUT) -> Image.Image:
    """The printable page: title, corner squares, and a row of boxes per digit."""
    from harness.data.contact_sheet import font

    page = Image.new("L", (layout.width, layout.height), 255)
    d = ImageDraw.Draw(page)
    for k, (cx, cy) in enumerate(layout.marker_centers()):
        h = layout.marker / 2
        d.rectangle([cx - h, cy - h, cx + h - 1, cy + h - 1], fill=0)
        if k == 0:
            q = layout.hole / 2
            d.rectangle([cx - q, cy - q, cx + q - 1, cy + q - 1], fill=255)
    d.text((layout.grid_left, 120), "Write one digit per box, in dark pen, the digit shown at the start of the row.",
           fill=0, font=font(22))
    d.text((layout.grid_left, 152), "Leave boxes empty if you like. Keep the four black squares visible in the photo.",
           fill=90, font=font(18))
    for row in range(10):
        x0, y0, _, y1 = layout.cell_box(row, 0)
        d.text((x0 - 50, (y0 + y1) / 2 - 14), str(row), fill=110, font=font(28))
        for col in range(layout.columns):
            d.rectangle(layout.cell_box(row, col), outline=150, width=2)
    return page


def write_template(stem: Path, layout: Layout = LAYOUT) -> list[Path]:
    """Writes ``<stem>.png`` and ``<stem>.pdf`` (A4)."""
    page = render_template(layout)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    page.save(png, dpi=(150, 150))
    page.convert("RGB").save(pdf, resolution=150.0)
    return [png, pdf]


def dark_regions(gray: np.ndarray) -> np.ndarray:
    """Pixels clearly darker than the paper around them (the page's lighting divided out)."""
    paper = smooth_level(gray, 80, min(gray.shape) / 6)
    return gray < 0.55 * np.maximum(paper, 1e-3)


def marker_candidates(gray: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Dark, solid, squarish blobs that could be corner squares: (area, x, y, hole fraction)."""
    labels, _ = ndimage.label(dark_regions(gray))
    side = min(gray.shape)
    found = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if not (side / 80 <= min(h, w) and max(h, w) <= side / 6 and 0.5 <= h / w <= 2):
            continue
        blob = labels[sl] == i
        filled = ndimage.binary_fill_holes(blob)
        hole = 1 - blob.sum() / filled.sum()
        if filled.sum() / (h * w) < 0.55 or hole > 0.3:     # a written 0 has a much bigger hole
            continue
        cy, cx = ndimage.center_of_mass(filled)
        found.append((float(filled.sum()), cx + sl[1].start, cy + sl[0].start, float(hole)))
    return found


def find_markers(candidates: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Centres (x, y) of the four corner squares in page order: top-left, top-right, bottom-right,
    bottom-left.

    The squares are the candidates farthest towards the four corners of the picture, which must
    be of similar size; the page is then turned so that the square with a hole comes first.
    Raises :class:`SheetProblem` when they cannot be found.
    """
    if len(candidates) < 4:
        raise SheetProblem(f"found {len(candidates)} of the 4 corner squares")
    c = np.array(candidates)
    x, y = c[:, 1], c[:, 2]
    picks = [int(np.argmin(x + y)), int(np.argmax(x - y)), int(np.argmax(x + y)), int(np.argmin(x - y))]
    areas = c[picks, 0]
    if len(set(picks)) < 4 or areas.min() < areas.max() / 4:
        raise SheetProblem("could not tell the 4 corner squares apart from the rest of the picture")
    holes = c[picks, 3]
    first = int(np.argmax(holes))
    if holes[first] < 0.05:
        raise SheetProblem("found 4 corner squares but none with the hole that marks the top-left corner")
    return np.roll(c[picks, 1:3], -first, axis=0)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3×3 projective map taking 4 points ``src`` to ``dst`` (direct linear transform)."""
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=False):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.array(rows, dtype=np.float64))
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def rectify(img: Image.Image, markers: np.ndarray, layout: Layout = LAYOUT) -> Image.Image:
    """The photo warped onto the template's coordinates."""
    h = homography(layout.marker_centers(), markers)       # template → photo, as PIL wants
    return img.transform((layout.width, layout.height), Image.PERSPECTIVE, tuple(h.ravel()[:8]), Image.BICUBIC,
                         fillcolor=255)


def largest_piece(mask: np.ndarray) -> int:
    """Pixels in the largest connected piece of a boolean image (0 if none)."""
    labels, n = ndimage.label(mask)
    return 0 if n == 0 else int(ndimage.sum_labels(mask, labels, range(1, n + 1)).max())


def box_contents(crop: Image.Image) -> str:
    """What a box holds: ``"digit"``, ``"faint"`` or ``"empty"``.

    A digit is ink that reaches the pipeline's :func:`contrast_floor` in one piece of at least
    :data:`MIN_PIECE` of the box, on the very ink map :func:`normalize_image` computes from this crop
    (so the pipeline reads every box kept). Faint marks fall short of that, yet once smoothed
    (:data:`FAINT_SIGMA`) hold half the floor in a stroke-sized piece (:data:`FAINT_PIECE`), which
    the paper's noise and a shadow's edge never do.
    """
    ink = ink_map(reduce_size(to_grayscale(crop)))
    smooth = smoothed_ink(ink)
    floor = contrast_floor(smooth)
    if largest_piece(smooth >= floor) >= MIN_PIECE * ink.size:
        return "digit"
    if largest_piece(ndimage.gaussian_filter(ink, FAINT_SIGMA) >= floor / 2) >= FAINT_PIECE * ink.size:
        return "faint"
    return "empty"


def cut_cells(page: Image.Image, layout: Layout = LAYOUT,
              margin: float = 0.1) -> list[tuple[int, int, Image.Image, str]]:
    """(row, col, crop, :func:`box_contents`) of every box that is not empty; the printed outline is
    cut away and the page's lighting divided out of the crop."""
    gray = np.asarray(page.convert("L"), np.float32) / 255
    # the paper's brightness: a closing (dilation then erosion) erases pen strokes, which are much
    # narrower than a quarter of a box, but keeps the sharp edge of a shadow
    paper = ndimage.grey_closing(ndimage.gaussian_filter(gray, 1.0), size=layout.cell // 4)
    flat = np.clip(gray / np.maximum(paper, 0.05), 0, 1)
    cells = []
    m = round(layout.cell * margin)
    for row in range(10):
        for col in range(layout.columns):
            x0, y0, x1, y1 = layout.cell_box(row, col)
            crop = Image.fromarray(np.round(flat[y0 + m:y1 - m, x0 + m:x1 - m] * 255).astype(np.uint8))
            kind = box_contents(crop)
            if kind != "empty":
                cells.append((row, col, crop, kind))
    return cells


def save_debug(img: Image.Image, candidates: list[tuple[float, float]], path: Path) -> None:
    """The photo with every candidate corner square circled, for a failed import."""
    dbg = img.convert("RGB")
    scale = min(1.0, 1600 / max(dbg.size))
    dbg = dbg.resize((round(dbg.width * scale), round(dbg.height * scale)))
    d = ImageDraw.Draw(dbg)
    for x, y in candidates:
        x, y = x * scale, y * scale
        d.ellipse([x - 20, y - 20, x + 20, y + 20], outline=(255, 0, 0), width=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    dbg.save(path)


@dataclass(frozen=True)
class SheetImport:
    """What :func:`import_sheet` did with one photo."""

    written: list[Path]                 # one file per digit, ``out/<label>/sheet-<photo>-r<row>c<col>.png``
    contact: Path                       # the contact sheet of every box cut
    faint: list[tuple[int, int]]        # (row, col) of boxes holding marks too faint to read, not written


def box_name(row: int, col: int) -> str:
    """A box as the files and messages name it: ``r<row>c<column from 1>``."""
    return f"r{row}c{col + 1}"


def import_sheet(photo: Path, out: Path = DEFAULT_OUT, layout: Layout = LAYOUT) -> SheetImport:
    """Cuts a filled-in sheet into ``out/<label>/`` files.

    Raises :class:`SheetProblem` (after saving ``out/_debug-<photo>.png``) when the corner squares
    cannot be found, and :class:`ImageProblem` when the photo cannot be read.
    """
    from harness.data.contact_sheet import contact_sheet

    img = open_image(photo, SHEET_MAX_PIXELS)  # a whole sheet: more pixels than one digit
    gray = np.asarray(img, np.float32) / 255
    scale = min(1.0, 1600 / max(gray.shape))
    small = gray if scale == 1 else np.asarray(img.resize((round(img.width * scale), round(img.height * scale)),
                                                          Image.BOX), np.float32) / 255
    candidates = marker_candidates(small)
    try:
        markers = find_markers(candidates)
    except SheetProblem as e:
        debug = out / f"_debug-{photo.stem}.png"
        save_debug(Image.fromarray(np.round(small * 255).astype(np.uint8)), [(x, y) for _, x, y, _ in candidates],
                   debug)
        raise SheetProblem(f"cannot import {photo.name}: {e}; photograph the whole sheet flat with all four "
                           f"black corner squares visible (candidates circled in {debug})") from None
    page = rectify(img, markers / scale, layout)
    written, faint, tiles, captions = [], [], [], []
    for row, col, crop, kind in cut_cells(page, layout):
        try:
            seen = normalize_image(crop) if kind == "digit" else None
        except ImageProblem:                   # cannot happen by box_contents; never dropped in silence
            seen = None
        if seen is None:
            faint.append((row, col))
            ink = np.asarray(crop, np.float32)
            stretched = 255 - (255 - ink) * (255 / max(float(255 - ink.min()), 1.0))
            tiles += [crop, Image.fromarray(np.round(stretched).astype(np.uint8))]
            captions += [f"{box_name(row, col)} too faint", "darkened"]
            continue
        path = out / str(row) / f"sheet-{photo.stem}-{box_name(row, col)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path)
        written.append(path)
        tiles += [crop, seen]
        captions += [f"{row}  {box_name(row, col)}", "model sees"]
    sheet = out / f"_contact_sheet-{photo.stem}.png"
    out.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, captions, cols=2 * layout.columns,
                  title=f"{photo.name}: {len(written)} digits cut (label, row/column | what the model sees)"
                        + (f", {len(faint)} boxes too faint to read" if faint else "")).save(sheet)
    return SheetImport(written, sheet, faint)
