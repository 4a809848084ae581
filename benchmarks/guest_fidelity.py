"""How faithfully the guest pipeline turns real handwriting into MNIST-style input.

The model is fixed and plain (``benchmarks/reference_cnn.py``: 2 conv layers, 3 epochs on MNIST, no
augmentation, weights cached in ``benchmarks/reference_cnn.pt``), so the figures measure the
preprocessing, not the model. Data: the Semeion handwritten digits (real, scanned, stretched to fill
a 16×16 box and thresholded) as they are, and "photographed": each digit enlarged onto paper with a
lighting gradient, ±8° rotation, blur, sensor noise and JPEG quality 80 (``harness.data.photo_sim``).
Each is read naively (inverted and resized to 28×28) and through ``harness.data.preprocess``.

    python benchmarks/guest_fidelity.py                  # about a minute on 2 cores
    python benchmarks/guest_fidelity.py --json benchmarks/results/fidelity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from reference_cnn import load_mnist, load_or_train, predict

from harness.data.photo_sim import PhotoConditions, photograph
from harness.data.preprocess import PREPROCESS_VERSION, normalize_image

SEMEION = ROOT.parent / "shared" / "datasets" / "semeion"


def load_semeion(folder: Path = SEMEION) -> tuple[list[Image.Image], np.ndarray]:
    """Every Semeion digit (``<label>/<id>.png``) as an 8-bit image, and its label."""
    files = sorted(folder.glob("[0-9]/*.png"))
    if not files:
        raise SystemExit(f"no Semeion digits in {folder}")
    return [Image.open(f).convert("L") for f in files], np.array([int(f.parent.name) for f in files])


def naive(img: Image.Image) -> np.ndarray:
    """The baseline: grayscale, inverted (white ink on black), resized to 28×28."""
    return 1.0 - np.asarray(img.convert("L").resize((28, 28), Image.BILINEAR), dtype=np.float32) / 255.0


def accuracy(model, images: list[np.ndarray], labels: np.ndarray) -> tuple[float, list[float]]:
    pred = predict(model, np.stack(images))
    hits = pred == labels
    return float(hits.mean()), [float(hits[labels == d].mean()) for d in range(10)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--seed", type=int, default=0, help="seed of the photographed renderings")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    start = time.time()

    model = load_or_train()
    mnist_x, mnist_y = load_mnist("test")
    results: dict = {"preprocess_version": PREPROCESS_VERSION,
                     "reference_mnist_test": float((predict(model, mnist_x) == mnist_y).mean())}

    images, labels = load_semeion()
    rng = np.random.default_rng(args.seed)
    photos = [photograph(1.0 - np.asarray(im, np.float32) / 255.0, rng, PhotoConditions()) for im in images]
    mnist_sub = [Image.fromarray(np.round(x * 255).astype(np.uint8)) for x in mnist_x[:2000]]

    rows = [
        ("semeion", "naive", [naive(im) for im in images], labels),
        ("semeion", "pipeline", [normalize_image(im) for im in images], labels),
        ("photographed", "naive", [naive(im) for im in photos], labels),
        ("photographed", "pipeline", [normalize_image(im) for im in photos], labels),
        ("mnist_test_2000", "naive", list(mnist_x[:2000]), mnist_y[:2000]),     # as given: already MNIST-style
        ("mnist_test_2000", "pipeline", [normalize_image(im) for im in mnist_sub], mnist_y[:2000]),
    ]
    for data, method, x, y in rows:
        acc, per_class = accuracy(model, x, y)
        results[f"{data}/{method}"] = {"accuracy": acc, "per_class": per_class, "n": len(y)}

    print(f"reference CNN on MNIST test: {results['reference_mnist_test']:.2%}   preprocessing {PREPROCESS_VERSION}")
    print(f"{'data':<18}{'n':>6}{'naive':>10}{'pipeline':>10}")
    for data in ("semeion", "photographed", "mnist_test_2000"):
        n = results[f"{data}/pipeline"]["n"]
        print(f"{data:<18}{n:>6}{results[f'{data}/naive']['accuracy']:>10.1%}{results[f'{data}/pipeline']['accuracy']:>10.1%}")
    print("(naive: inverted and resized to 28×28; for MNIST, the images as given)")
    print("per digit, pipeline, photographed:", " ".join(f"{d}:{a:.0%}" for d, a in
                                                       enumerate(results["photographed/pipeline"]["per_class"])))
    print(f"({time.time() - start:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
