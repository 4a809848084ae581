"""Database growth per kept entry version, against the zip-per-version storage used before revision 0004.

    python benchmarks/version_storage.py [--megabytes 44] [--versions 3]

An entry with weights of the given size (44 MB is a ResNet-18) gets ``versions`` versions that differ only in
model.py, each kept through ``harness.store.snapshots.keep`` in a fresh SQLite database. The baseline is what a zip
of each version's files would have added: the sum of every version's file sizes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.store import snapshots
from harness.store import results as store
from harness.store.engine import make_engine  # noqa: E402
from harness.entries.discovery import load_entry  # noqa: E402


def database_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--megabytes", type=float, default=44.0)
    p.add_argument("--versions", type=int, default=3)
    args = p.parse_args()
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
            snapshots.keep(engine, store.ensure_version(engine, entry), entry)
            engine.dispose()
            grown = database_bytes(db) - start
            print(f"after version {i + 1}: database grew by {grown / 1e6:.1f} MB; one zip per version: "
                  f"{zips / 1e6:.1f} MB ({zips / grown:.2f}x)")


if __name__ == "__main__":
    main()
