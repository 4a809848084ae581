"""What the host's own work costs an entry: two ways of the harness, alternating entry by entry in one run.

The machine's speed drifts by up to 15% within minutes, so a few milliseconds are only seen side by side: one
``runner.run`` over new entries (the PyTorch example's CNN, random weights, the MNIST test set with the
memorisation copies, sandboxed), where every other entry runs the old way.

``--compare watch``: while the entry runs, the host reads nothing per process and wakes only for progress (with a
cgroup that keeps its own peak: ``process._watch``), against the old way (each process's memory and the cgroup's
events every 20 ms). Reports the host's CPU seconds from go to the entry's exit (all its threads) and the timed
seconds.

``--compare gate``: the entry's process is moved into its cgroup in the background while the host writes its images
(``SandboxJob.let_through``), against waiting for the move first. Reports each entry's untimed seconds (the front
door's wall time less the timed part).

``--compare kill``: after the entry's exit, the host lists the sandbox's processes to kill what it left only when its
cgroup still holds a process (``SandboxJob.kill``), against listing them every time. Reports the seconds spent
killing per entry (twice after each exit) and its untimed seconds.

    python benchmarks/host_during_entry.py --mnist-dir ../shared/datasets/mnist --compare watch --entries 12
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness_speed import make_entries
from harness import runner
from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.isolation import cgroups, prediction, process, sandbox
from harness.store.engine import make_engine


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "median": round(statistics.median(values), 4),
            "n": len(values)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--compare", choices=["watch", "gate", "kill"], default="watch")
    p.add_argument("--entries", type=int, default=12, help="new entries, half of them run the old way")
    args = p.parse_args()
    split = mnist.load_split(mnist.resolve_dir(args.mnist_dir), "test", allow_download=False)
    spec = DatasetSpec("mnist", split.content_hash, split.labels, split.images, "bench")
    work = Path(tempfile.mkdtemp(prefix="bench-host-"))
    make_entries(work / "start", 1, seed=999)
    make_entries(work / "entries", args.entries)
    os.sync()
    engine = make_engine(f"sqlite:///{work / 'bench.db'}")
    options = runner.Options(runner.Limits(device="cpu"))
    runner.run(engine, list(discover(work / "start").values()), [spec], options, [])  # the sandbox starts here
    try:
        cgroups.create(1 << 30, "bench").remove()
    except cgroups.Unavailable as exc:
        sys.exit(f"no cgroup here ({exc}): both ways are the old one")

    turn = [0]
    old_way = lambda: turn[0] % 2 == 1  # noqa: E731 - every other entry
    measured: dict[str, dict[str, list[float]]] = {"new": {}, "old": {}}

    def note(name: str, value: float) -> None:
        measured["old" if old_way() else "new"].setdefault(name, []).append(value)

    front_door, go, watch = prediction.predict, sandbox.SandboxJob.go, process._watch
    let_through, keeps_peak = sandbox.SandboxJob.let_through, cgroups.Cgroup.keeps_peak
    went: list[float] = []

    def timed_go(job) -> None:
        go(job)
        went[:] = [time.process_time()]

    def timed_watch(*a, **k):
        watched = watch(*a, **k)
        if watched.timed is not None:
            note("host_cpu_seconds_while_timed", time.process_time() - went[0])
            note("timed_seconds", watched.timed)
        return watched

    def either_let_through(job) -> None:
        let_through(job)
        if args.compare == "gate" and old_way():
            job.started()  # the old way: wait for the move before writing the images

    kill = sandbox.SandboxJob.kill
    killing = [0.0]

    def either_kill(job) -> None:
        t = time.perf_counter()
        if args.compare == "kill" and old_way():
            job.box.kill_entry_processes()  # the old way: a process list every time
        else:
            kill(job)
        killing[0] += time.perf_counter() - t

    def counted_predict(*a, **k):
        t = time.perf_counter()
        killing[0] = 0.0
        got = front_door(*a, **k)
        if got.timed_seconds is not None:
            note("untimed_seconds", time.perf_counter() - t - got.timed_seconds)
            note("killing_seconds", killing[0])
        turn[0] += 1
        return got

    sandbox.SandboxJob.go, process._watch, sandbox.SandboxJob.let_through = timed_go, timed_watch, either_let_through
    if args.compare == "watch":
        cgroups.Cgroup.keeps_peak = property(lambda self: not old_way() and keeps_peak.fget(self))
    prediction.predict, sandbox.SandboxJob.kill = counted_predict, either_kill
    try:
        runner.run(engine, list(discover(work / "entries").values()), [spec], options, [])
    finally:
        prediction.predict, sandbox.SandboxJob.go, process._watch = front_door, go, watch
        sandbox.SandboxJob.kill = kill
        sandbox.SandboxJob.let_through, cgroups.Cgroup.keeps_peak = let_through, keeps_peak
    print(json.dumps({"compare": args.compare, "entries": args.entries,
                      **{way: {name: summary(values) for name, values in figures.items()}
                         for way, figures in measured.items()}}, indent=2))


if __name__ == "__main__":
    main()
