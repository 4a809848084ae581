"""What the entry's process spends on its images inside the timed run: ``worker.answer`` over the MNIST test set with
the memorisation check's 1,000 copies, against a bare pass over the same images (the model's own compute, its input
built before), both in one fresh process after ``worker.load``, as in a real run (first time: fresh pages included).

Two ways, alternating process by process so that the machine's drift falls on both alike: the worker as it is (each
batch made the model's input as it runs, from the images' file mapped into memory) and the way before 2026-12-07 (the
file read whole, the whole set converted to floats, then batched). Reports, per way, the median of ``answer`` less
the bare pass and the process's peak resident memory; and checks that both ways give the same outputs bit for bit.

    python benchmarks/worker_input.py --mnist-dir ../shared/datasets/mnist --processes 10
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness_speed import BarePass, make_entries  # noqa: E402


def whole_set(loaded, path: Path, where: str) -> np.ndarray:
    """The worker's ``answer`` before 2026-12-07: the whole set read and converted to floats first."""
    from harness.isolation.inside import worker
    raw = np.load(path, allow_pickle=False)
    resident = worker.to_device(worker.host_tensor(raw, loaded.device), loaded.device)
    if loaded.layout is not None:
        resident = resident.contiguous(memory_format=loaded.layout)
    return worker.run_batches(loaded.model, resident, loaded.batch_size, where)


def child(work: Path, way: str, answer_first: bool) -> None:
    """Load the entry as the worker does, then time its answer (``way``) and one bare pass, in the order given."""
    import torch

    from harness.entries.discovery import load_entry
    from harness.isolation.inside import worker
    worker.keep_freed_memory()
    entry = load_entry(work / "entry" / "cnn-00")
    images = work / "images.npy"
    loaded = worker.load(entry.folder, entry.metadata, "cpu")
    bare = BarePass(np.load(images)[:, 0], "cpu", loaded.batch_size, loaded.layout or torch.contiguous_format)
    got: dict = {}

    def timed_answer() -> None:
        t = time.perf_counter()
        outputs = worker.answer(loaded, images, "x") if way == "now" else whole_set(loaded, images, "x")
        got["answer"] = time.perf_counter() - t
        np.save(work / f"outputs-{way}.npy", outputs)

    def bare_pass() -> None:
        got["bare"] = bare()

    for step in (timed_answer, bare_pass) if answer_first else (bare_pass, timed_answer):
        step()
    got["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(got))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--processes", type=int, default=10, help="fresh processes each way")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--way", default="now", help=argparse.SUPPRESS)
    p.add_argument("--answer-first", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(Path(args.child), args.way, args.answer_first)
        return
    from harness import runner
    from harness.data import mnist
    from harness.data.copies import changed_copies
    split = mnist.load_split(mnist.resolve_dir(args.mnist_dir), "test", allow_download=False)
    work = Path(tempfile.mkdtemp(prefix="bench-worker-input-"))
    rows: dict[str, list[dict]] = {"now": [], "before": []}
    try:
        make_entries(work / "entry", 1)
        _, copies = changed_copies(split.images, runner.MEMO_COPIES, np.random.default_rng(0))
        np.save(work / "images.npy", np.concatenate([split.images, copies])[:, None])
        for i in range(args.processes):
            for way in ("now", "before") if i % 2 == 0 else ("before", "now"):
                cmd = [sys.executable, __file__, "--child", str(work), "--way", way]
                cmd += ["--answer-first"] if i % 4 < 2 else []  # the bare pass first in half of the processes
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                rows[way].append(json.loads(done.stdout.strip().splitlines()[-1]))
        same = np.array_equal(np.load(work / "outputs-now.npy"), np.load(work / "outputs-before.npy"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {way: {"answer_less_bare_seconds_median": round(statistics.median(r["answer"] - r["bare"] for r in rs), 4),
                 "answer_seconds_median": round(statistics.median(r["answer"] for r in rs), 4),
                 "bare_seconds_median": round(statistics.median(r["bare"] for r in rs), 4),
                 "peak_rss_mb_median": round(statistics.median(r["peak_rss_mb"] for r in rs), 1)}
           for way, rs in rows.items()}
    out["same_outputs"] = bool(same)
    out["processes_each_way"] = args.processes
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
