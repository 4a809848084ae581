"""harness.sheet on sheets composed from real handwriting (Semeion) and photographed badly:
perspective, rotation, a shadow, a lighting gradient, noise and JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from harness.data.guest import load_guest_set
from harness.data.preprocess import normalize_image
from harness.data.sheet import LAYOUT, SheetProblem, homography, import_sheet, render_template
from harness.sheet import main
from tests.conftest import SEMEION, needs_semeion

pytestmark = pytest.mark.slow


def semeion_digit(label: int, k: int) -> np.ndarray:
    f = sorted((SEMEION / str(label)).glob("*.png"))[k]
    return 1.0 - np.asarray(Image.open(f).convert("L"), np.float32) / 255


def filled_sheet(cells: dict[tuple[int, int], np.ndarray], rng: np.random.Generator,
                 brightness: float | dict[tuple[int, int], float] = 0.15) -> Image.Image:
    """The template with each (row, col) box written in: the ink enlarged to 55–75% of the box, its
    ink's brightness ``brightness`` times the paper's (one value, or one per box)."""
    page = np.asarray(render_template(), np.float32) / 255
    for (row, col), ink in cells.items():
        x0, y0, x1, y1 = LAYOUT.cell_box(row, col)
        size = int(LAYOUT.cell * rng.uniform(0.55, 0.75))
        big = np.asarray(Image.fromarray(ink, mode="F").resize((size, size), Image.BILINEAR))
        top = y0 + (LAYOUT.cell - size) // 2 + int(rng.integers(-6, 7))
        left = x0 + (LAYOUT.cell - size) // 2 + int(rng.integers(-6, 7))
        region = page[top:top + size, left:left + size]
        level = brightness[(row, col)] if isinstance(brightness, dict) else brightness
        region[:] = np.minimum(region, 1 - (1 - level) * big)
    return Image.fromarray(np.round(page * 255).astype(np.uint8))


def photographed(page: Image.Image, rng: np.random.Generator, tilt: float = 0.06, turn: float = 0.0,
                 shadow: bool = True, size: tuple[int, int] = (1500, 2000)) -> bytes:
    """The page lying on a darker table, shot at an angle: JPEG bytes."""
    w, h = size
    corners = np.array([(0, 0), (page.width, 0), (page.width, page.height), (0, page.height)], float)
    c, s = np.cos(np.radians(turn)), np.sin(np.radians(turn))
    centred = (corners - corners.mean(0)) * 0.82 * min(w / page.width, h / page.height)
    placed = centred @ np.array([[c, s], [-s, c]]) + (w / 2, h / 2)
    placed += rng.uniform(-tilt, tilt, placed.shape) * (w, h)
    hmat = homography(placed, corners)                        # photo → page, as PIL wants
    paper = Image.new("L", page.size, 255)
    mask = paper.transform(size, Image.PERSPECTIVE, tuple(hmat.ravel()[:8]), Image.BILINEAR, fillcolor=0)
    shot = page.transform(size, Image.PERSPECTIVE, tuple(hmat.ravel()[:8]), Image.BICUBIC, fillcolor=0)
    img = np.where(np.asarray(mask) > 127, np.asarray(shot, np.float32) / 255, 0.3)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    light = 0.65 + 0.35 * (xx + yy) / (xx + yy).max()
    if shadow:
        light = light * np.where(xx - 0.4 * yy > 0.35, 0.55, 1.0)
    img = ndimage.gaussian_filter(img * ndimage.gaussian_filter(light, 8), 1.0)
    img = img + rng.normal(0, 0.02, img.shape)
    rgb = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28×28 digits, blurred so that a one-pixel shift of a thin stroke counts little."""
    a, b = ndimage.gaussian_filter(a, 1.0), ndimage.gaussian_filter(b, 1.0)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@needs_semeion
@pytest.mark.parametrize("tilt,turn", [(0.06, 4.0), (0.01, 181.5)], ids=["phone-at-an-angle", "upside-down-scan"])
def test_import_cuts_every_written_box_and_nothing_else(tmp_path, tilt, turn):
    rng = np.random.default_rng(int(turn))
    cells = {(row, col): semeion_digit(row, col) for row in range(10) for col in range(0, 8, 3)}
    cells.pop((4, 3))                                         # and some empty boxes in written rows
    photo = tmp_path / "sheet.jpg"
    photo.write_bytes(photographed(filled_sheet(cells, rng), rng, tilt=tilt, turn=turn))

    out = tmp_path / "mystery_digits"
    result = import_sheet(photo, out)
    written, contact = result.written, result.contact
    got = {(int(p.parent.name), int(p.stem.split("c")[-1]) - 1) for p in written}
    assert got == set(cells) and result.faint == []
    assert contact.is_file() and Image.open(contact).width > 500
    scores = [corr(normalize_image(Image.open(p)),
                   normalize_image(Image.fromarray(np.round((1 - cells[k]) * 255).astype(np.uint8))))
              for p, k in zip(written, sorted(got, key=lambda k: (k[0], k[1])), strict=False)]
    assert np.mean(scores) > 0.9 and min(scores) > 0.75, scores

    guest = load_guest_set(out)                                # the contact sheet is not a digit
    assert len(guest) == len(cells) and not guest.skipped
    assert sorted(guest.labels.tolist()) == sorted(r for r, _ in cells)


def boxes_on_disk(out: Path) -> set[tuple[int, int]]:
    """(label folder, column) of every digit file an import wrote."""
    return {(int(p.parent.name), int(p.stem.split("c")[-1]) - 1) for p in out.glob("[0-9]/sheet-*.png")}


@needs_semeion
def test_faint_pen_is_imported_like_the_pipeline_reads_it(tmp_path, capsys):
    # ink at 0.6 of the paper's brightness, as dark as the printed row numbers: legible
    rng = np.random.default_rng(7)
    cells = {(row, col): semeion_digit(row, col + 10) for row in range(10) for col in range(1, 8, 3)}
    page = filled_sheet(cells, rng, brightness=0.6)
    photo = tmp_path / "faint.jpg"
    photo.write_bytes(photographed(page, rng))

    out = tmp_path / "mystery_digits"
    assert main(["import", str(photo), "--out", str(out)]) == 0
    assert f"{len(cells)} digits from faint.jpg" in capsys.readouterr().out
    assert boxes_on_disk(out) == set(cells)
    guest = load_guest_set(out)
    assert sorted(guest.labels.tolist()) == sorted(r for r, _ in cells) and not guest.skipped

    # reference: the per-digit pipeline reads each box cut straight from the unphotographed page,
    # and the imported digit is that digit
    for row, col in cells:
        x0, y0, x1, y1 = LAYOUT.cell_box(row, col)
        reference = normalize_image(page.crop((x0 + 11, y0 + 11, x1 - 11, y1 - 11)))
        imported = normalize_image(Image.open(out / str(row) / f"sheet-faint-r{row}c{col + 1}.png"))
        assert corr(imported, reference) > 0.75, (row, col)


@pytest.mark.parametrize("seed,shadow", [(5, True), (6, False), (8, True)])
def test_blank_sheet_gives_no_digits_and_says_so(tmp_path, capsys, seed, shadow):
    # an import that brings in nothing is a mistake to notice (the unfilled template, or a pen the
    # camera did not see), so it exits non-zero; the paper's noise and the shadow are not "faint marks"
    rng = np.random.default_rng(seed)
    photo = tmp_path / "blank.jpg"
    photo.write_bytes(photographed(render_template(), rng, shadow=shadow, turn=180.0 * (seed % 2)))
    result = import_sheet(photo, tmp_path / "out")
    assert result.written == [] and result.faint == [] and result.contact.is_file()
    capsys.readouterr()
    assert main(["import", str(photo), "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == ("error: every box on blank.jpg is empty, so no digits were imported; photograph the "
                           "sheet once the guest has filled it in")


@needs_semeion
def test_marks_too_faint_to_read_are_named_and_the_import_fails(tmp_path, capsys):
    # rows 0–4 in dark pen; rows 5–9 at 0.93 of the paper's brightness, under the 0.08 contrast floor
    rng = np.random.default_rng(11)
    cells = {(row, col): semeion_digit(row, col + 20) for row in range(10) for col in range(0, 8, 2)}
    dark = {k for k in cells if k[0] < 5}
    photo = tmp_path / "pencil.jpg"
    brightness = {k: 0.15 if k in dark else 0.93 for k in cells}
    photo.write_bytes(photographed(filled_sheet(cells, rng, brightness=brightness), rng))

    out = tmp_path / "mystery_digits"
    result = import_sheet(photo, out)
    assert boxes_on_disk(out) == dark
    assert set(result.faint) <= set(cells) - dark and len(result.faint) >= 15, result.faint
    capsys.readouterr()
    assert main(["import", str(photo), "--out", str(out)]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    named = ", ".join(f"r{r}c{c + 1}" for r, c in result.faint)
    assert last == (f"error: {len(result.faint)} boxes on pencil.jpg hold marks too faint to read ({named}), so they "
                    f"were not imported; have the guest go over them in dark pen and import a new photo (they are "
                    f"shown darkened in {out / '_contact_sheet-pencil.png'})")


def test_missing_corner_square_is_reported_with_a_debug_image(tmp_path, capsys):
    page = render_template()
    page.paste(255, (0, LAYOUT.height - 200, 250, LAYOUT.height))   # bottom-left square torn off
    photo = tmp_path / "torn.jpg"
    photo.write_bytes(photographed(page, np.random.default_rng(2), shadow=False))
    with pytest.raises(SheetProblem, match="cannot import torn.jpg: .*corner squares"):
        import_sheet(photo, tmp_path / "out")
    assert (tmp_path / "out" / "_debug-torn.png").is_file()
    assert main(["import", str(photo), "--out", str(tmp_path / "out")]) == 2
    assert "corner squares" in capsys.readouterr().out


def test_template_writes_pdf_and_png(tmp_path):
    assert main(["template", "--out", str(tmp_path / "sheet")]) == 0
    assert (tmp_path / "sheet.pdf").read_bytes().startswith(b"%PDF")
    png = Image.open(tmp_path / "sheet.png")
    assert png.size == (LAYOUT.width, LAYOUT.height)
    corners = np.asarray(png.convert("L"))[[102, 102, -103, -103], [102, -103, -103, 102]]
    assert corners.tolist() == [255, 0, 0, 0]                   # the top-left square has its hole
