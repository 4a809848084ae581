"""What an entry's process spends before the host's clock starts: ``worker.load`` (model, weights, the counted first
pass, the layout probe) in fresh processes, two ways alternating, so that the machine's drift falls on both alike.

``--compare probe``: the layout probe compares channels-last with the outputs of the first, counted pass (on its
FIRST_PROBE images), against running the usual layout again on LAYOUT_COMPARED images first (before 2026-12-07).

    python benchmarks/warm_up_cost.py --compare probe --processes 12
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness_speed import make_entries


def child(folder: Path, old: bool) -> None:
    """Load the entry as the worker does (under its memory settings) and print the seconds it took."""
    from harness.entries.discovery import load_entry
    from harness.isolation.inside import worker
    worker.keep_freed_memory()
    entry = load_entry(folder)
    if old:  # the usual layout on LAYOUT_COMPARED images of its own, as before
        probe = worker.probe_layout
        worker.probe_layout = lambda model, images, batch, where, usual=None: probe(model, images, batch, where)
    t = time.perf_counter()
    loaded = worker.load(entry.folder, entry.metadata, "cpu")
    print(json.dumps({"seconds": time.perf_counter() - t, "layout": str(loaded.layout)}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--compare", choices=["probe"], default="probe")
    p.add_argument("--processes", type=int, default=12, help="fresh processes each way")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(Path(args.child), args.old)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-warm-up-"))
    seconds: dict[str, list[float]] = {"new": [], "old": []}
    layouts = set()
    try:
        make_entries(work, 1)
        folder = next(work.iterdir())
        for i in range(args.processes):
            for way in ("new", "old") if i % 2 == 0 else ("old", "new"):
                cmd = [sys.executable, __file__, "--child", str(folder)] + (["--old"] if way == "old" else [])
                said = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                seconds[way].append(said["seconds"])
                layouts.add(said["layout"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"compare": args.compare, "processes": args.processes, "layouts": sorted(layouts),
                      **{way: {"mean": round(statistics.mean(v), 4), "median": round(statistics.median(v), 4)}
                         for way, v in seconds.items()}}, indent=2))


if __name__ == "__main__":
    main()
