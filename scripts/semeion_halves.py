"""Split Semeion into the half used to choose the 'stranger' recipe and the half it is reported on.

    python scripts/semeion_halves.py ../shared/datasets/semeion build/semeion

writes build/semeion/tune/<digit>/... and build/semeion/held-out/<digit>/... (copies). Per digit, the files in
sorted order: the first half (rounded down) is for tuning, the rest is held out and never tuned on. Semeion's
files are in the order its ~80 writers were collected, so the two halves are mostly different people.

The tuning half is split the same way into tune-a/ and tune-b/ (its first and second half per digit): to choose how
much of other writers' digits to train on (harness.train --extra), a run trains on tune-a and is scored on tune-b.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HALVES = ("tune", "held-out", "tune-a", "tune-b")


def split(folder: Path) -> dict[str, list[Path]]:
    """{"tune": [...], "held-out": [...], "tune-a": [...], "tune-b": [...]}: paths relative to ``folder``
    (``<digit>/<file>``); tune-a and tune-b are the first and second half of each digit's tuning files."""
    out: dict[str, list[Path]] = {h: [] for h in HALVES}
    for digit in range(10):
        files = sorted(p.relative_to(folder) for p in (folder / str(digit)).iterdir() if p.is_file())
        tune = files[:len(files) // 2]
        out["tune"] += tune
        out["held-out"] += files[len(files) // 2:]
        out["tune-a"] += tune[:len(tune) // 2]
        out["tune-b"] += tune[len(tune) // 2:]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    for half, files in split(source).items():
        for rel in files:
            (target / half / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target / half / rel)
        print(f"{target / half}: {len(files)} digits")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
