"""Score entries on every handwriting population there is offline, and choose a stranger recipe by leaving a whole
population out: tuned on one writer population, reported on another.

    python scripts/populations.py                      # committed entries + any lab entries in build/recipe/

Populations (each a folder of labelled pictures read by the guest pipeline, as the harness reads a guest set):

- ``mnist-test``: MNIST's 10,000 test digits (US Census staff and students; the population entries train on).
- ``semeion-tune`` / ``semeion-held-out``: Semeion (~80 writers, Italy, scanned, thresholded 16×16), split per digit
  in file order by scripts/semeion_halves.py; ``baseline-robust`` trains on the tuning half (``--extra``).
- ``uci-tune`` / ``uci-held-out``: the 13 writers of UCI optical digits' test part (collected in Istanbul on NIST
  forms; 8×8 counts), split the same way by scripts/uci_digits.py. ``semeion`` and ``uci`` are the two halves together.
- ``sample``: mystery_digits/_sample, 100 of the UCI digits (its tuning half) as simulated photos: derived from
  ``uci``, not another population, and too small to rank (shown for reference only).

Prints, per population, each entry's accuracy with its Wilson 95% interval and the exact McNemar test of every entry
against ``baseline-strong`` on the same digits; then the leave-one-population-out choice: among the entries that
never trained on population B, the best on population A's held-out half, reported on all of B against
``baseline-strong``, for (A, B) = (semeion, uci) and (uci, semeion). Writes everything to build/populations.json.
Loads each entry in this process, as scripts/stranger_lab.py does: for entries you trust (committed or your own).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import semeion_halves
import uci_digits

from harness.data.guest import load_guest_set, sample_guest_dir
from harness.data.mnist import load_split
from harness.data.preprocess import to_uint8
from harness.entries.discovery import read_metadata
from harness.entries.loading import load_model
from harness.scoring.metrics import mcnemar_exact, wilson_interval

REFERENCE = "baseline-strong"
HELD_OUT = {"semeion": "semeion-held-out", "uci": "uci-held-out"}
PAIRS = (("semeion", "uci"), ("uci", "semeion"))   # (choose on, report on)


def populations(semeion: Path, mnist_dir: Path, build: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (uint8 images [N, 28, 28], labels [N])}: what the harness would hand an entry, and the answers."""
    if not (build / "semeion" / "held-out").is_dir():
        semeion_halves.main([str(semeion), str(build / "semeion")])
    if not (build / "uci" / "held-out").is_dir():
        uci_digits.main([str(build / "uci")])
    out = {}
    test = load_split(str(mnist_dir), "test", allow_download=False)
    out["mnist-test"] = (np.asarray(test.images, dtype=np.uint8), np.asarray(test.labels, dtype=np.int64))
    for name, folder in (("semeion-tune", build / "semeion" / "tune"),
                         ("semeion-held-out", build / "semeion" / "held-out"),
                         ("uci-tune", build / "uci" / "tune"), ("uci-held-out", build / "uci" / "held-out"),
                         ("sample", sample_guest_dir())):
        guest = load_guest_set(folder)
        out[name] = (to_uint8(guest.images[:, 0]), guest.labels)
    for whole in ("semeion", "uci"):
        parts = [out[f"{whole}-tune"], out[f"{whole}-held-out"]]
        out[whole] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out


@torch.inference_mode()
def correct(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Per digit, whether the model reads it right (images as the harness's worker hands them: uint8 / 255)."""
    with contextlib.suppress(NotImplementedError):  # a torch.export archive refuses eval(): exported in eval mode
        model.eval()
    preds = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start:start + batch]).unsqueeze(1).float().div_(255)
        preds.append(model(x).argmax(dim=1).numpy())
    return np.concatenate(preds) == labels


def trained_on(metadata) -> set[str]:
    """The populations an entry trained on besides MNIST, from its entry.toml's ``extra`` folders."""
    extra = " ".join(str(e) for e in metadata.hyperparameters.get("extra", []) or [])
    return {p for p in ("semeion", "uci") if p in extra}


def entry_folders(extra: list[Path]) -> list[Path]:
    committed = sorted(p for p in (ROOT / "submissions").iterdir() if (p / "entry.toml").is_file())
    lab = sorted(p for p in (ROOT / "build" / "recipe").glob("*") if (p / "entry.toml").is_file())
    return [*committed, *lab, *extra]


def fingerprint(folder: Path, sets: dict) -> str:
    """sha256 of the entry folder's files and of every population's digits and labels: the cache key."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    for name, (x, y) in sorted(sets.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(x).tobytes())
        h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:24]


def evaluate_all(folders: list[Path], sets: dict, cache: Path | None = None) -> dict:
    """{entry: {"trained_on": [...], "correct": {population: bool array}}}; with ``cache``, an entry whose files and
    populations are unchanged is read back from ``cache/<name>-<fingerprint>.npz`` instead of being run again."""
    out = {}
    for folder in folders:
        metadata = read_metadata(folder)
        stored = cache / f"{folder.name}-{fingerprint(folder, sets)}.npz" if cache else None
        if stored is not None and stored.is_file():
            with np.load(stored) as saved:
                hits = {name: saved[name] for name in sets}
        else:
            model = load_model(folder, metadata, module_name=None)
            hits = {name: correct(model, x, y) for name, (x, y) in sets.items()}
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                np.savez(stored, **hits)
        out[folder.name] = {"folder": str(folder), "trained_on": sorted(trained_on(metadata)), "correct": hits}
        print(f"scored {folder.name}", file=sys.stderr)
    return out


def row(hits: np.ndarray, reference: np.ndarray | None) -> dict:
    k, n = int(hits.sum()), len(hits)
    lo, hi = wilson_interval(k, n)
    cell = {"correct": k, "n": n, "accuracy": k / n, "wilson95": [lo, hi]}
    if reference is not None:
        cell.update(only_this=int((hits & ~reference).sum()), only_reference=int((~hits & reference).sum()),
                    mcnemar_p=mcnemar_exact(hits, reference))
    return cell


def table(results: dict, sets: dict) -> dict:
    ref = results.get(REFERENCE)
    return {name: {entry: row(r["correct"][name], None if entry == REFERENCE or ref is None else ref["correct"][name])
                   for entry, r in results.items()} for name in sets}


def leave_one_out(results: dict, cells: dict) -> list[dict]:
    """Choose on A's held-out half among entries that never saw B; report the choice on all of B against the
    reference."""
    out = []
    for choose_on, report_on in PAIRS:
        candidates = [e for e, r in results.items() if report_on not in r["trained_on"]]
        scores = {e: cells[HELD_OUT[choose_on]][e]["accuracy"] for e in candidates}
        chosen = max(scores, key=lambda e: (scores[e], e == REFERENCE))
        out.append({"chosen_on": HELD_OUT[choose_on], "candidates": scores, "chosen": chosen,
                    "reported_on": report_on, "result": cells[report_on][chosen],
                    "reference": cells[report_on][REFERENCE]})
    return out


def seen(population: str, trained: list[str]) -> bool:
    """Whether the entry trained on digits of this population (the sample is made from UCI's tuning half)."""
    root = "uci" if population == "sample" else population.split("-")[0]
    return root in trained and not population.endswith("held-out")


def pct(cell: dict) -> str:
    lo, hi = cell["wilson95"]
    return f"{100 * cell['accuracy']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown(results: dict, cells: dict, loo: list[dict]) -> str:
    names = [n for n in ("mnist-test", "semeion-held-out", "semeion", "uci-held-out", "uci", "sample") if n in cells]
    lines = ["| entry | trained on | " + " | ".join(f"{n} ({cells[n][REFERENCE]['n']})" for n in names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for entry, r in results.items():
        lines.append(f"| `{entry}` | {' + '.join(['MNIST', *r['trained_on']])} | "
                     + " | ".join(pct(cells[n][entry]) + (" (trained on)" if seen(n, r["trained_on"]) else "")
                                  for n in names) + " |")
    lines += ["", "(trained on): the entry trained on these very digits, or half of them (not a test of anything).",
              "", f"Paired against `{REFERENCE}` (digits only this entry reads right / only {REFERENCE} does; "
              "exact McNemar p):", "", "| entry | " + " | ".join(names) + " |",
              "| --- | " + " | ".join("---" for _ in names) + " |"]
    for entry in results:
        if entry != REFERENCE:
            lines.append(f"| `{entry}` | " + " | ".join(
                f"{cells[n][entry]['only_this']}/{cells[n][entry]['only_reference']}, "
                f"p={cells[n][entry]['mcnemar_p']:.2g}"
                for n in names) + " |")
    lines += ["", "Leave one population out:", ""]
    for choice in loo:
        res, ref = choice["result"], choice["reference"]
        lines.append(f"- chosen on {choice['chosen_on']} among {', '.join(sorted(choice['candidates']))}: "
                     f"`{choice['chosen']}`; on {choice['reported_on']} (never trained on): {pct(res)} vs "
                     f"{REFERENCE} {pct(ref)}" + (f", {res['only_this']}/{res['only_reference']}, McNemar "
                                                 f"p={res['mcnemar_p']:.2g}" if choice["chosen"] != REFERENCE else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--semeion", type=Path, default=Path("../shared/datasets/semeion"))
    p.add_argument("--mnist-dir", type=Path, default=Path(os.environ.get("MNIST_DIR") or "../shared/datasets/mnist"))
    p.add_argument("--entry", type=Path, nargs="*", default=[], help="more entry folders to score")
    p.add_argument("--build", type=Path, default=Path("build"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = populations(args.semeion, args.mnist_dir, args.build)
    results = evaluate_all(entry_folders(args.entry), sets, args.build / "populations-cache")
    cells = table(results, sets)
    loo = leave_one_out(results, cells)
    print(markdown(results, cells, loo))
    args.build.mkdir(exist_ok=True)
    (args.build / "populations.json").write_text(json.dumps(
        {"table": cells, "leave_one_out": loo,
         "trained_on": {e: r["trained_on"] for e, r in results.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
