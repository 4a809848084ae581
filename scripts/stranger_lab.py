"""Choose training knobs for a stranger's handwriting: train with the training kit, score on MNIST validation and
on the TUNING half of Semeion (files in sorted order per label: the first half of each digit's files).

    python scripts/stranger_lab.py --name warp --augment rotate slant aspect warp --epochs 6 --threads 1

    python scripts/stranger_lab.py --score build/cand-affine/baseline-robust submissions/baseline-strong

scores entry folders that exist (written by harness.train, or committed) the same way, without training.

    python scripts/semeion_halves.py ../shared/datasets/semeion build/semeion
    python scripts/stranger_lab.py --name extra48 --preset stranger --epochs 6 --extra build/semeion/tune-a \
        --extra-repeat 48 --threads 1

trains on other writers' digits as well (tune-a, the first half of the tuning half): compare such runs by
semeion_tune_b, the writers of the tuning half that no run trains on (semeion_tune includes tune-a).
Each run appends one JSON line to build/stranger_lab.jsonl. The held-out half (the second half per label) is never
scored here unless --held-out is given, which is for the final, already chosen recipe only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semeion_halves import split

from harness import train
from harness.data.guest import load_guest_set
from harness.data.mnist import load_split
from harness.training.loop import evaluate, fit, load_data, to_tensor
from harness.training.model_setup import build_model


def semeion_halves(folder: Path):
    """The normalised Semeion set and its parts as scripts/semeion_halves.py splits it: {"tune": indices, ...}."""
    guest = load_guest_set(folder)
    where = {f: i for i, f in enumerate(guest.files)}
    return guest, {part: np.array([where[str(p)] for p in files]) for part, files in split(folder).items()}


def scoring_sets(semeion: str, mnist_dir: str):
    """((Semeion images, labels, {part: indices}), (MNIST test images, labels)) as tensors."""
    guest, parts = semeion_halves(Path(semeion))
    test = load_split(mnist_dir, "test", allow_download=False)
    return ((torch.from_numpy(guest.images), torch.from_numpy(guest.labels), parts),
            (to_tensor(test.images), torch.from_numpy(np.array(test.labels, dtype=np.int64))))


def semeion_scores(model, gx, gy, parts, held_out: bool = False) -> dict:
    row = {f"semeion_{part.replace('-', '_')}": evaluate(model, gx[parts[part]], gy[parts[part]])[1]
           for part in ("tune", "tune-b", *(("held-out",) if held_out else ()))}
    return {**row, "n_tune": len(parts["tune"]), "n_tune_b": len(parts["tune-b"]),
            **({"n_held_out": len(parts["held-out"])} if held_out else {})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--semeion", default="../shared/datasets/semeion")
    p.add_argument("--held-out", action="store_true", help="also score the held-out half (final recipe only)")
    p.add_argument("--save", type=Path, help="save the trained state_dict here")
    p.add_argument("--score", type=Path, nargs="+", metavar="ENTRY", help="score these entry folders; train nothing")
    p.add_argument("--mnist-dir", default="../shared/datasets/mnist")
    if "--score" in (argv if argv is not None else sys.argv[1:]):
        known = p.parse_args(["--name", "score", *(argv if argv is not None else sys.argv[1:])])
        return score(known)
    known, rest = p.parse_known_args(argv)
    _, args = train.parse([*rest, "--out", "build/lab-entry"])
    config = train.config_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(config, args.mnist_dir or known.mnist_dir, download=False)
    model, _, _, _ = build_model(config, args.model_file, args.model_class)
    started = time.perf_counter()
    fit(model, data, config)
    seconds = time.perf_counter() - started
    (gx, gy, parts), (tx, ty) = scoring_sets(known.semeion, args.mnist_dir or known.mnist_dir)
    row = {"name": known.name, "args": rest, "epochs": config.epochs, "train_s": round(seconds, 1),
           "val": evaluate(model, data.val_x, data.val_y)[1], "mnist_test": evaluate(model, tx, ty)[1],
           **semeion_scores(model, gx, gy, parts, known.held_out)}
    if known.save:
        known.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), known.save)
    Path("build").mkdir(exist_ok=True)
    with open("build/stranger_lab.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


def score(known) -> int:
    """The tuning half, MNIST validation (seed 0, 5%: the split the kit's recipes validate on) and MNIST test, for
    each entry folder in ``known.score``, loaded as the harness loads an entry (in this process: a lab tool for
    entries you trained, not for strangers' code)."""
    from harness.entries.discovery import read_metadata
    from harness.entries.loading import load_model
    from harness.training.loop import TrainConfig
    (gx, gy, parts), (tx, ty) = scoring_sets(known.semeion, known.mnist_dir)
    data = load_data(TrainConfig(val_fraction=0.05, seed=0), known.mnist_dir, download=False)
    for folder in known.score:
        model = load_model(folder, read_metadata(folder))
        row = {"name": f"score:{folder}", "val": evaluate(model, data.val_x, data.val_y)[1],
               "mnist_test": evaluate(model, tx, ty)[1], **semeion_scores(model, gx, gy, parts, known.held_out)}
        Path("build").mkdir(exist_ok=True)
        with open("build/stranger_lab.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
