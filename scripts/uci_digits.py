"""Write scikit-learn's bundled UCI digits as labelled picture folders: a second population of real handwriting,
independent of Semeion and MNIST, to score entries on (``harness.evaluate --mystery``) or to train on (``--extra``).

    python scripts/uci_digits.py build/uci          # needs scikit-learn (the data ship inside its wheel)

writes build/uci/all/, build/uci/tune/ and build/uci/held-out/, each ``<digit>/uci_<index>.png``.

The data: ``sklearn.datasets.load_digits``, 1,797 digits, which is the TEST part of UCI "Optical Recognition of
Handwritten Digits" (Alpaydin & Kaynak, Bogazici University, 1998): 13 writers (the 30 others wrote the training part,
which scikit-learn does not ship), filled in on NIST forms. Each digit was a 32×32 binary bitmap, reduced to 8×8 by
counting the ink pixels in each 4×4 block (0–16). No writer ids are shipped.

The route to a picture: the 8×8 counts as ink density (count/16), enlarged to the original 32×32 bicubically and
thresholded at 0.4 (:data:`INK_LEVEL`), i.e. an estimate of the binary bitmap, saved dark ink on white. The harness's
guest pipeline then normalises it like any guest digit (two-level image: no lighting to remove). Handing it the 8×8
grey levels directly breaks the strokes (its threshold cuts the partly inked blocks) and a grey 32×32 rendering
gets hollowed out (its background estimate takes the fat strokes for paper); see the contact sheet it writes,
``<target>/contact_sheet.png`` (source on the left, normalised 28×28 on the right), to check the digits.

Halves, as scripts/semeion_halves.py: per digit, the files in index order; the first half (rounded down) is
``tune``, the rest ``held-out``. The set is stored in the order it was collected, so the halves are mostly different
writers, but with no writer ids this is not guaranteed.

``mystery_digits/_sample`` is NOT another population: scripts/make_sample_guest_set.py renders the first 10 digits
per label of this same set (indices 0–99 per label order, all in ``tune``) as simulated phone photos.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

INK_LEVEL = 0.4          # ink density above which a pixel of the 32×32 estimate is ink
SIDE = 32                # the UCI bitmaps' side before the 4×4 counting
PARTS = ("all", "tune", "held-out")


def load() -> tuple[np.ndarray, np.ndarray]:
    """(counts uint8 [1797, 8, 8] in 0–16, labels int64 [1797]) from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise SystemExit("scikit-learn is needed for the UCI digits: .venv/bin/pip install scikit-learn") from exc
    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def bitmap(counts: np.ndarray) -> np.ndarray:
    """One 8×8 digit (ink counts 0–16) as the estimated 32×32 binary bitmap (True = ink)."""
    density = Image.fromarray((counts / 16.0).astype(np.float32), mode="F")
    return np.asarray(density.resize((SIDE, SIDE), Image.BICUBIC)) > INK_LEVEL


def picture(counts: np.ndarray) -> Image.Image:
    """The digit as a scan would show it: dark ink on white paper, 8-bit gray."""
    return Image.fromarray(np.where(bitmap(counts), 0, 255).astype(np.uint8), mode="L")


def split(labels: np.ndarray) -> dict[str, list[int]]:
    """{"all": [...], "tune": [...], "held-out": [...]}: indices; per digit, the first half in index order tunes."""
    out: dict[str, list[int]] = {part: [] for part in PARTS}
    for digit in range(10):
        idx = [int(i) for i in np.flatnonzero(labels == digit)]
        out["all"] += idx
        out["tune"] += idx[:len(idx) // 2]
        out["held-out"] += idx[len(idx) // 2:]
    return out


def contact_sheet(counts: np.ndarray, labels: np.ndarray, path: Path, per_digit: int = 6) -> None:
    """Source 8×8 (enlarged) beside the guest pipeline's 28×28, ``per_digit`` of each digit, for a look."""
    from harness.data.preprocess import normalize_image
    rows = []
    for digit in range(10):
        tiles = []
        for i in np.flatnonzero(labels == digit)[:per_digit]:
            source = np.kron(counts[i] / 16.0, np.ones((3, 3)))[:, :24]
            source = np.pad(source, 2)[:28, :28]
            tiles += [source, normalize_image(picture(counts[i])), np.full((28, 4), 0.5)]
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(np.rint(sheet * 255).astype(np.uint8)).resize(
        (sheet.shape[1] * 3, sheet.shape[0] * 3), Image.NEAREST).save(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    target = Path(argv[0])
    counts, labels = load()
    for part, indices in split(labels).items():
        if (target / part).exists():
            shutil.rmtree(target / part)
        for i in indices:
            (target / part / str(labels[i])).mkdir(parents=True, exist_ok=True)
            picture(counts[i]).save(target / part / str(labels[i]) / f"uci_{i:04d}.png")
        print(f"{target / part}: {len(indices)} digits")
    contact_sheet(counts, labels, target / "contact_sheet.png")
    print(f"{target / 'contact_sheet.png'}: source and normalised digits side by side")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
