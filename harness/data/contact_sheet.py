"""Contact sheets of "what the model sees": every guest digit after normalisation, with its label
(``overview.png``), each picture as given beside what the model sees (``pairs-<n>.png``), and the grid that the
sheet import and the dashboard draw digits in (:func:`contact_sheet`). The command is ``python -m harness.preview``.
Previews reveal the guest set: keep them out of git (``mystery_digits/_preview/`` already is)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from harness.data.guest import GuestSet
from harness.data.preprocess import ImageProblem, open_image

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "mystery_digits"
PAIRS_PER_PAGE = 120


def font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):   # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def tile(image: np.ndarray | Image.Image, px: int) -> Image.Image:
    """A 28×28 float array (white ink on black) or a picture, fitted into a px×px grey tile."""
    if isinstance(image, np.ndarray):
        a = np.clip(np.asarray(image, np.float32).reshape(28, 28), 0, 1)
        return Image.fromarray(np.round(a * 255).astype(np.uint8)).resize((px, px), Image.NEAREST)
    img = image.convert("L")
    img.thumbnail((px, px), Image.LANCZOS)
    out = Image.new("L", (px, px), 128)
    out.paste(img, ((px - img.width) // 2, (px - img.height) // 2))
    return out


def contact_sheet(tiles: list[np.ndarray | Image.Image | None], captions: list[str], cols: int = 10,
                  px: int = 84, title: str = "") -> Image.Image:
    """A grid of tiles (28×28 arrays or pictures; None leaves a gap), each captioned underneath."""
    cols = max(1, min(cols, len(tiles) or 1))
    rows = max(1, -(-len(tiles) // cols))
    cap_h, head = 16, (24 if title else 0)
    sheet = Image.new("L", (cols * (px + 6) + 6, head + rows * (px + cap_h + 6) + 6), 255)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 4), title, fill=0, font=font(14))
    for k, (t, cap) in enumerate(zip(tiles, captions, strict=False)):
        if t is None:
            continue
        r, c = divmod(k, cols)
        x, y = 6 + c * (px + 6), head + 6 + r * (px + cap_h + 6)
        sheet.paste(tile(t, px), (x, y))
        draw.text((x, y + px + 1), cap[: max(4, px // 6)], fill=0, font=font(11))
    return sheet


def overview(guest: GuestSet, per_row: int = 20) -> Image.Image:
    """The normalised digits, one block of rows per label, captioned with the label."""
    tiles, captions = [], []
    for label in range(10):
        idx = np.flatnonzero(guest.labels == label)
        for i in idx:
            tiles.append(guest.images[i, 0])
            captions.append(str(label))
        pad = (-len(idx)) % per_row
        tiles += [None] * pad
        captions += [""] * pad
    title = f"what the model sees: {len(guest)} digits ({guest.source}), skipped {len(guest.skipped)}"
    return contact_sheet(tiles, captions, cols=per_row, px=56, title=title)


def pair_pages(guest: GuestSet, folder: Path) -> list[Image.Image]:
    """Each picture as given next to its normalised version, captioned "label file"."""
    tiles, captions = [], []
    for i, name in enumerate(guest.files):
        try:
            original: np.ndarray | Image.Image = open_image(folder / name)
        except ImageProblem:
            original = np.zeros((28, 28), np.float32)
        tiles += [original, guest.images[i, 0]]
        captions += [f"{guest.labels[i]} {Path(name).name}", "model sees"]
    pages = []
    per = 2 * PAIRS_PER_PAGE
    for start in range(0, len(tiles), per):
        pages.append(contact_sheet(tiles[start:start + per], captions[start:start + per], cols=12,
                                   title=f"{folder.name}: as given | as the model sees it "
                                         f"({start // 2 + 1}-{min(len(guest), (start + per) // 2)} of {len(guest)})"))
    return pages


def write_previews(guest: GuestSet, folder: Path, out: Path) -> list[Path]:
    """Writes overview.png, pairs-N.png and skipped.txt into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "overview.png"]
    overview(guest).save(paths[0])
    for n, page in enumerate(pair_pages(guest, folder), start=1):
        paths.append(out / f"pairs-{n}.png")
        page.save(paths[-1])
    paths.append(out / "skipped.txt")
    paths[-1].write_text("".join(f"{f}: {why}\n" for f, why in guest.skipped) or "nothing skipped\n")
    return paths
