"""Writes the shipped sample guest set, ``mystery_digits/_sample/``, so that a fresh clone runs end to end.

The digits are real handwriting: scikit-learn's ``load_digits`` (UCI optical digits, 8×8, 43
writers). Each is smoothed into pen strokes and "photographed" on paper (rotation, lighting
gradient, blur, noise, JPEG; see ``harness.data.photo_sim``) so that the whole guest pipeline runs.
It is NOT the guest's set: the real one goes in ``mystery_digits/<label>/`` and stays secret.

    python scripts/make_sample_guest_set.py            # 10 per digit, seed 0 (needs scikit-learn)
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
README = """# Sample guest set (not the real one)

{n} handwritten digits from scikit-learn's `load_digits` (UCI optical recognition of handwritten
digits, 8x8, license CC BY 4.0), smoothed into strokes and rendered as phone photos of paper by
`scripts/make_sample_guest_set.py` (seed {seed}). The harness uses them only while no real guest
digits are in `mystery_digits/`; results on them are labelled "sample".
"""


def strokes(digit8: np.ndarray) -> np.ndarray:
    """An 8×8 intensity digit (0–16) as smooth pen strokes at 32×32, ink = 1."""
    big = np.asarray(Image.fromarray((digit8 / 16.0).astype(np.float32), mode="F").resize((32, 32), Image.BICUBIC))
    return np.clip((ndimage.gaussian_filter(big, 1.0) - 0.4) / 0.3, 0.0, 1.0)


def main(argv: list[str] | None = None) -> None:
    from sklearn.datasets import load_digits

    from harness.data.photo_sim import photograph

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "mystery_digits" / "_sample")
    ap.add_argument("--per-digit", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    if args.out.exists():
        shutil.rmtree(args.out)
    n = 0
    for label in range(10):
        (args.out / str(label)).mkdir(parents=True)
        for index in np.flatnonzero(digits.target == label)[: args.per_digit]:
            photograph(strokes(digits.images[index]), rng).save(args.out / str(label) / f"sklearn_{index:04d}.jpg",
                                                                quality=90)
            n += 1
    (args.out / "README.md").write_text(README.format(n=n, seed=args.seed))
    print(f"wrote {n} sample digits to {args.out}")


if __name__ == "__main__":
    main()
