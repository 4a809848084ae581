"""Database growth per kept entry version, against the zip-per-version storage used before revision 0004; and the
size of a whole club's database with every version's files kept or only the last 2 (``[storage] keep_versions``).

    python benchmarks/version_storage.py [--megabytes 44] [--versions 3]
    python benchmarks/version_storage.py --club [--members 200] [--versions 10] [--cnn-sample 20] [--resnet-sample 2]

The first: an entry with weights of the given size (44 MB is a ResNet-18) gets ``versions`` versions that differ only
in model.py, each kept through ``harness.store.snapshots.keep`` in a fresh SQLite database. The baseline is what a
zip of each version's files would have added: the sum of every version's file sizes.

``--club``: members who each submit ``versions`` versions of a small CNN (``benchmarks/reference_cnn.py``, 1.8 MB of
weights) or of a ResNet-50 (torchvision, 10 classes, 94 MB), every version retrained (new weights, a changed
model.py) and evaluated (its results and per-sample predictions on MNIST's 10,000 and 1,592 guest digits stored as a
run stores them). Each version is kept as a run keeps it; with ``keep_versions = 2`` the run then prunes, as
``harness.runner.plan`` does. A sample of members is really written to an SQLite file (the full club would not fit on
this disk); members are independent, so the full size is the empty database plus the sample's growth per member times
``members`` (a linear extrapolation, said as such). The file is measured as the runs leave it (SQLite reuses freed
pages but never shrinks: the sample's free pages and write-ahead log, as large as the largest write, are added once,
not per member, since the room one member's pruning frees is reused by the next one's version) and after
``python -m harness.versions --prune`` (VACUUM).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.data.task import DatasetSpec
from harness.entries.discovery import load_entry
from harness.store import eval_sets, evaluations, runs, snapshots, versions
from harness.store.engine import make_engine


def database_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--megabytes", type=float, default=44.0)
    p.add_argument("--versions", type=int, default=None, help="versions per entry (default: 3, with --club 10)")
    p.add_argument("--club", action="store_true", help="a whole club's database, keeping all versions or the last 2")
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--keep", type=int, default=2, help="keep_versions to compare with keeping all (default: 2)")
    p.add_argument("--cnn-sample", type=int, default=20, help="members really written with the small CNN")
    p.add_argument("--resnet-sample", type=int, default=2, help="members really written with the ResNet-50")
    p.add_argument("--only", choices=list(MODELS), help="measure one model only")
    args = p.parse_args()
    if args.club:
        club(args)
        return
    args.versions = args.versions or 3
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp:
        folder = Path(tmp) / "subs" / "big"
        folder.mkdir(parents=True)
        torch.manual_seed(0)
        torch.save({"w": torch.randn(int(args.megabytes * 1e6 / 4))}, folder / "weights.pt")
        db = Path(tmp) / "lb.db"
        url = f"sqlite:///{db}"
        make_engine(url).dispose()
        start, zips = database_bytes(db), 0
        for i in range(args.versions):
            (folder / "model.py").write_text(f"import torch\n\n\nclass Net(torch.nn.Module):\n    pass  # edit {i}\n")
            entry = load_entry(folder)
            zips += sum(f.stat().st_size for f in folder.iterdir())
            engine = make_engine(url)
            snapshots.keep(engine, versions.ensure_version(engine, entry), entry)
            engine.dispose()
            grown = database_bytes(db) - start
            print(f"after version {i + 1}: database grew by {grown / 1e6:.1f} MB; one zip per version: "
                  f"{zips / 1e6:.1f} MB ({zips / grown:.2f}x)")


def small_cnn() -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from reference_cnn import ReferenceCNN
    return ReferenceCNN().state_dict()


def resnet50() -> dict:
    import torchvision
    return torchvision.models.resnet50(num_classes=10).state_dict()


MODELS = {"small CNN": small_cnn, "ResNet-50": resnet50}
SETS = {"mnist": 10_000, "guest": 1_592}


def fake_results(engine, rng: np.random.Generator) -> tuple[dict, object]:
    """The two datasets as a run stores them, and a function giving one evaluation's metrics of realistic size."""
    from harness.scoring.metrics import summarize
    ids, labels = {}, {}
    for kind, n in SETS.items():
        labels[kind] = rng.integers(0, 10, n)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        ids[kind] = eval_sets.ensure_dataset(engine, DatasetSpec(kind=kind, content_hash=f"bench-{kind}",
                                                                 labels=labels[kind], images=images, source="bench"))

    def metrics() -> dict:
        return {ids[kind]: summarize(labels[kind], rng.normal(size=(n, 10)).astype(np.float32))
                for kind, n in SETS.items()}
    return ids, metrics


def one_club(tmp: Path, weights: dict, members: int, rounds: int, keep: int | None) -> dict:
    """Write ``members`` members' ``rounds`` versions into a fresh SQLite file; its sizes."""
    from harness.common import competition
    from harness.scoring import retention
    from harness.store import space
    db = tmp / f"club-{keep}.db"
    engine = make_engine(f"sqlite:///{db}")
    rng = np.random.default_rng(0)
    _, metrics = fake_results(engine, rng)
    empty = space.reclaim(engine).after  # the schema and the two datasets, checkpointed: the baseline
    rules = competition.Competition(keep_versions=keep)
    run_id = runs.start_run(engine, "cpu", ["bench"])
    per_version = []
    for v in range(rounds):  # a round: every member submits a new version, then a run keeps, prunes, evaluates
        for m in range(members):
            folder = tmp / "subs" / f"member{m:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.py").write_text(f"import torch\n\n\nclass Net(torch.nn.Module):\n    pass  # member {m}"
                                             f", version {v}\n")
            (folder / "entry.toml").write_text(f'author = "member {m}"\ndescription = "version {v}"\n')
            torch.save({k: torch.randn_like(t) if t.is_floating_point() else t for k, t in weights.items()},
                       folder / "weights.pt")
            per_version.append(sum(f.stat().st_size for f in folder.iterdir()))
            entry = load_entry(folder)
            version_id = versions.ensure_version(engine, entry)
            snapshots.keep(engine, version_id, entry)
            if keep is not None:
                retention.prune(engine, rules)
            record = evaluations.Record(status="ok", error=None, seconds=1.0, device="cpu", params=0, metrics=metrics())
            evaluations.save_evaluation(engine, run_id=run_id, version_id=version_id, eval_key=f"bench-{version_id}",
                                        record=record)
    wal = Path(f"{db}-wal")
    # one log for the file, as large as its largest write: not per member
    wal = wal.stat().st_size if wal.exists() else 0
    left = space.database_bytes(engine) - wal
    files = snapshots.stored_bytes(engine)
    vacuumed = space.reclaim(engine).after
    engine.dispose()
    db.unlink()
    return {"empty": empty, "left": left, "wal": wal, "vacuumed": vacuumed, "files": files,
            "per_version": sum(per_version) / len(per_version)}


def club(args: argparse.Namespace) -> None:
    from harness.store.space import size_text
    versions = args.versions or 10
    print(f"{args.members} members x {versions} versions, every version evaluated; keep all vs keep_versions = "
          f"{args.keep}; SQLite. Sizes are MB/GB of 10^6/10^9 bytes.")
    print("| model | files per version | kept | measured on | database as the runs leave it | after --prune (VACUUM) "
          "| of which versions' files |")
    print("|---|---|---|---|---|---|---|")
    for (name, make), sample in zip(MODELS.items(), (args.cnn_sample, args.resnet_sample), strict=True):
        if args.only and name != args.only:
            continue
        weights = make()
        for keep in (None, args.keep):
            with tempfile.TemporaryDirectory(prefix="bench-club-") as tmp:
                got = one_club(Path(tmp), weights, sample, versions, keep)

            def full(size: int, got: dict = got, sample: int = sample) -> int:
                """Linear in members: each member's versions are its own (this pass's sizes bound, not looked up)."""
                return int(got["empty"] + (size - got["empty"]) * args.members / sample)
            scale = args.members / sample
            # the room pruning frees is reused by the next member's version, so it is counted once, not per member
            free = got["left"] + got["wal"] - got["vacuumed"]
            print(f"| {name} | {size_text(int(got['per_version']))} | {'all' if keep is None else f'last {keep}'} | "
                  f"{sample} members, extrapolated x{scale:g} | {size_text(full(got['vacuumed']) + free)} | "
                  f"{size_text(full(got['vacuumed']))} | {size_text(int(got['files'] * scale))} |", flush=True)


if __name__ == "__main__":
    main()
