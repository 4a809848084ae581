"""Harness speed, as ratios against baselines measured in the same run.

(a) harness overhead per entry beyond the bare model compute (same model, same batches, in-process), each round a
    run of new entries with a bare pass right after each one's process (the machine's speed drifts within minutes),
    the median over rounds; also as a share of the bare pass (comparable between days), and beyond the bare pass over
    every image handed over (the set and the memorisation check's 1,000 copies);
(b) ``python -m harness.evaluate`` on 10 entries vs. the course way: one Python process per model with
    torchvision ``MNIST`` + ``ToTensor`` + ``DataLoader(batch_size=64)``;
(c) a re-run of ``python -m harness.evaluate`` where nothing changed, with 50 entries (wall seconds, and CPU seconds,
    which hardly move with the machine's load);
(d) what sealing the secret set costs per entry: the public set and a 100-digit secret set in one process (the
    design before harness 0.4.0) against two phases (``runner.evaluate_one``), without and with the memorisation
    check's 1,000 changed copies; the three alternate, entry by entry, in the same run.

Usage: ``python benchmarks/harness_speed.py [--mnist-dir DIR] [--device cpu|cuda] [--entries 10] [--unchanged 50]
[--parts a,b,c,d] [--phases-only] [--phase-rounds 3] [--a-rounds 3]``; ``--parts a,c`` measures (a) and (c) alone
(three minutes, not ten).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import runner
from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.entries.discovery import RACY_SECONDS, discover
from harness.isolation import prediction
from harness.isolation.inside.worker import keep_freed_memory
from harness.store.engine import make_engine

CNN_CODE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    """The PyTorch MNIST example's 2-conv CNN."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)
'''

COURSE_SCRIPT = '''
import sys, torch
from torchvision import datasets, transforms
from torch.utils.data import DataLoader
sys.path.insert(0, sys.argv[1])
from model import Net
model = Net()
model.load_state_dict(torch.load(sys.argv[1] + "/weights.pt", weights_only=True))
model.eval()
data = datasets.MNIST(sys.argv[2], train=False, download=False, transform=transforms.ToTensor())
correct = 0
with torch.no_grad():
    for x, y in DataLoader(data, batch_size=64):
        correct += (model(x).argmax(1) == y).sum().item()
print(correct / len(data))
'''


def make_entries(folder: Path, n: int, seed: int = 0) -> None:
    scope: dict = {}
    exec(CNN_CODE, scope)
    for i in range(n):
        torch.manual_seed(seed + i)
        entry = folder / f"cnn-{i:02d}"
        entry.mkdir(parents=True)
        (entry / "model.py").write_text(CNN_CODE)
        torch.save(scope["Net"]().state_dict(), entry / "weights.pt")


class BarePass:
    """One bare pass at a time over the images, on a model and input built once (for passes interleaved with the
    harness's entries)."""

    def __init__(self, images: np.ndarray, device: str, batch: int, layout: torch.memory_format):
        scope: dict = {}
        exec(CNN_CODE, scope)
        self.model = scope["Net"]().eval().to(device, memory_format=layout)
        x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
        self.x = x.to(device).contiguous(memory_format=layout)
        self.device, self.batch = device, batch

    def __call__(self) -> float:
        with torch.inference_mode():
            if self.device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for s in range(0, len(self.x), self.batch):
                self.model(self.x[s:s + self.batch])
            if self.device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t


def bare_seconds(images: np.ndarray, device: str, batch: int,
                 layout: torch.memory_format = torch.contiguous_format, statistic=min) -> float:
    """The model's own compute: in-process forward over the same images and batches (``statistic`` of 3 passes:
    the best by default)."""
    bare = BarePass(images, device, batch, layout)
    return statistic([bare() for _ in range(3)])


def overhead_per_entry(split, spec: DatasetSpec, work: Path, device: str, n: int, rounds: int) -> dict:
    """(a): the harness's wall time per entry (``runner.run`` over ``n`` new entries, each scored once) less the
    model's own compute, the bare forward pass over the same images in this process.

    The machine's speed drifts within minutes, so the two are measured side by side: in each round, right after
    each entry's process has ended, one bare pass runs here (its time is taken out of the run's wall time), and the
    round's figure is the run's time per entry less the mean of those passes; the figure is the median over rounds.
    Each round's entries are written for it (new versions: hashed, kept in the store, scored). A bare pass measured
    once before the round (the median of 3, as this benchmark measured until 2026-12-07) is reported beside it. On
    CPU the harness runs this CNN in channels-last memory (``harness.isolation.inside.worker.probe_layout``), so the
    bare pass is the channels-last one, not the slower usual layout, under the worker's memory settings."""
    batch = 8192 if device == "cuda" else 128
    # the bare pass runs with the memory settings the worker gives every entry's process (glibc keeps freed blocks:
    # without them a pass here is up to 1.7× slower, which would flatter the harness)
    keep_freed_memory()
    for r in range(rounds):  # written first, and synced, so that no round's timing shares the disk with their writing
        make_entries(work / f"a-{r}", n, seed=1000 * (r + 1))
    make_entries(work / "a-start", 1)
    os.sync()
    out: dict = {"bare_forward_seconds_by_batch": {b: bare_seconds(split.images, device, b)
                                                   for b in sorted({64, 128, batch, 10000})}}
    layout = torch.channels_last if device == "cpu" else torch.contiguous_format
    engine = make_engine(f"sqlite:///{work / 'a.db'}")
    limits = runner.Limits(device=device)
    runner.run(engine, list(discover(work / "a-start").values()), [spec], runner.Options(limits), [])  # the sandbox
    measured = []
    calls: list[tuple[float, float, float]] = []  # each entry's (front door's wall time, its process's, timed part)
    beside: list[float] = []  # the bare pass run right after each entry's process, one per entry
    bare = BarePass(split.images, device, batch, layout)
    front_door = prediction.predict

    def predict(*args, **kwargs):
        t = time.perf_counter()
        got = front_door(*args, **kwargs)
        calls.append((time.perf_counter() - t, got.seconds, got.timed_seconds or 0.0))
        beside.append(bare())
        return got

    prediction.predict = predict  # what runner.run calls (through prediction.Local), timed around it
    try:
        for r in range(rounds):
            entries = list(discover(work / f"a-{r}").values())
            before = bare_seconds(split.images, device, batch, layout, statistic=statistics.median)
            calls.clear()
            beside.clear()
            t = time.perf_counter()
            runner.run(engine, entries, [spec], runner.Options(limits), [])
            per_entry = (time.perf_counter() - t - sum(beside)) / n
            own = statistics.mean(beside)
            wall, process, timed = (statistics.mean(column) for column in zip(*calls, strict=True))
            measured.append({"bare_seconds": round(own, 4), "bare_before_seconds": round(before, 4),
                             "harness_seconds_per_entry": round(per_entry, 4),
                             "overhead_seconds_per_entry": round(per_entry - own, 4),
                             "overhead_against_bare_before_seconds_per_entry": round(per_entry - before, 4),
                             # the same as a share of the bare pass: comparable between days, when this machine's
                             # speed (and the bare pass with it) drifts by half or more
                             "overhead_share_of_bare": round((per_entry - own) / own, 4),
                             # where an entry's time went: the run loop beside it (keeping a new version's files,
                             # the store), the host's part of running it, its process before the images, the timed part
                             "split_seconds_per_entry": {"run_loop": round(per_entry - wall, 4),
                                                         "host": round(wall - process, 4),
                                                         "before_images": round(process - timed, 4),
                                                         "timed": round(timed, 4)}})
    finally:
        prediction.predict = front_door
    out["a_rounds"] = measured
    middle = sorted(measured, key=lambda m: m["overhead_seconds_per_entry"])[len(measured) // 2]
    out["bare_forward_seconds_as_run_by_harness"] = middle["bare_seconds"]
    out["a_harness_seconds_per_entry"] = middle["harness_seconds_per_entry"]
    out["a_overhead_seconds_per_entry"] = middle["overhead_seconds_per_entry"]
    out["a_overhead_against_bare_before_seconds_per_entry"] = statistics.median(
        m["overhead_against_bare_before_seconds_per_entry"] for m in measured)
    out["a_overhead_share_of_bare"] = middle["overhead_share_of_bare"]
    # of which, by design: the bare pass over the memorisation check's changed copies, scored with the set
    copies = runner.MEMO_COPIES / len(split.images)
    out["a_memorisation_copies_bare_seconds"] = middle["bare_seconds"] * copies
    # so, beyond the bare pass over every image the harness hands over (the set and its copies), the median round's
    beyond = [m["overhead_seconds_per_entry"] - m["bare_seconds"] * copies for m in measured]
    out["a_overhead_beyond_images_handed_over_seconds_per_entry"] = round(statistics.median(beyond), 4)
    return out


def phase_costs(entries: list, public: DatasetSpec, secret: DatasetSpec, device: str,
                rounds: int) -> dict:
    """Seconds per entry: both sets in one process (``predict``, as before harness 0.4.0), two phases without the
    memorisation copies, and two phases as the harness runs them (with the copies)."""
    from harness.isolation import Limits, predict
    limits = Limits(device=device)
    ids = {"mnist": 1, "guest": 2}
    ways = {
        "one_process": lambda e: predict(e, {"mnist": public.images, "guest": secret.images}, limits),
        "two_phases_no_copies": lambda e: runner.evaluate_one(e, [public, secret], ids, limits),
        "two_phases": lambda e: runner.evaluate_one(e, [public, secret], ids, limits),
    }
    seconds = {name: 0.0 for name in ways}
    copies = runner.MEMO_COPIES
    for _ in range(rounds):
        for entry in entries:
            for name, way in ways.items():
                runner.MEMO_COPIES = 0 if name == "two_phases_no_copies" else copies
                t = time.perf_counter()
                assert way(entry).status == "ok"
                seconds[name] += time.perf_counter() - t
    runner.MEMO_COPIES = copies
    n = rounds * len(entries)
    out = {f"d_{name}_seconds_per_entry": total / n for name, total in seconds.items()}
    out["d_two_phases_no_copies_ratio"] = seconds["two_phases_no_copies"] / seconds["one_process"]
    out["d_two_phases_ratio"] = seconds["two_phases"] / seconds["one_process"]
    return out


def timed(cmd: list[str], **kw) -> float:
    return timed_cpu(cmd, **kw)[0]


def timed_cpu(cmd: list[str], **kw) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command and what it waited for) of one command: the CPU
    figure hardly moves with the machine's load, the wall one does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, **kw)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--entries", type=int, default=10)
    p.add_argument("--unchanged", type=int, default=50)
    p.add_argument("--skip-course", action="store_true")
    p.add_argument("--phase-rounds", type=int, default=3, help="(d): rounds over the entries, each way")
    p.add_argument("--a-rounds", type=int, default=3, help="(a): rounds, each a bare pass beside a run of new entries")
    p.add_argument("--phases-only", action="store_true", help="measure (d) alone (as --parts d)")
    p.add_argument("--parts", default="a,b,c,d", help="which parts to measure, e.g. a,c (default: all four)")
    args = p.parse_args()
    parts = {"d"} if args.phases_only else set(args.parts.replace(" ", "").split(","))
    if not parts or parts - set("abcd"):
        p.error(f"--parts takes letters among a, b, c, d separated by commas, not {args.parts!r}")
    mnist_dir = mnist.resolve_dir(args.mnist_dir)
    split = mnist.load_split(mnist_dir, "test", allow_download=False)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    py = sys.executable
    out: dict = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "parts": ",".join(sorted(parts)),
                 # (c) compiles the harness's modules anew on every start when Python may not cache their bytecode
                 # (about 0.15 s of CPU): say so beside the figures
                 "bytecode_cache_off": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))}
    try:
        subs = work / "subs"
        make_entries(subs, args.entries)
        empty_guest = work / "no-guest"
        (empty_guest / "_sample").mkdir(parents=True)
        common = ["--submissions", str(subs), "--mnist-dir", str(mnist_dir), "--mystery", str(empty_guest),
                  "--device", args.device]

        spec = DatasetSpec("mnist", split.content_hash, split.labels, split.images, "bench")
        secret = DatasetSpec("guest", "bench-secret", split.labels[:100], split.images[:100], "bench")
        entries = list(discover(subs).values())
        if parts == {"d"}:
            out.update(phase_costs(entries, spec, secret, args.device, args.phase_rounds))
            print(json.dumps(out, indent=2))
            return

        if "a" in parts:
            out.update(overhead_per_entry(split, spec, work, args.device, args.entries, args.a_rounds))

        if "d" in parts:  # (d) one process for both sets against two phases, alternating entry by entry
            out.update(phase_costs(entries, spec, secret, args.device, args.phase_rounds))

        if "b" in parts:  # (b) harness.evaluate on N entries (fresh database, everything new) vs the course way.
            out["b_harness_evaluate_seconds"] = timed([py, "-m", "harness.evaluate", *common,
                                                       "--db", str(work / "b.db")])
        if "b" in parts and not args.skip_course:
            raw = work / "tv" / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for name, _ in mnist.FILES["test"] + mnist.FILES["train"]:  # torchvision checks all four
                with gzip.open(mnist_dir / name) as src, open(raw / name[:-3], "wb") as dst:
                    shutil.copyfileobj(src, dst)
            script = work / "course_eval.py"
            script.write_text(COURSE_SCRIPT)
            out["b_course_seconds"] = sum(timed([py, str(script), str(e.folder), str(work / "tv")]) for e in entries)
            out["b_speedup"] = out["b_course_seconds"] / out["b_harness_evaluate_seconds"]

        if "c" in parts:  # (c) re-run with nothing changed, many entries.
            many = work / "many"
            make_entries(many, args.unchanged)
            # files written just now are hashed again by every run until RACY_SECONDS have passed (their change
            # time could still hide a change): let them settle, as they have between an upload and any re-run
            time.sleep(RACY_SECONDS)
            cmd = [py, "-m", "harness.evaluate", *common, "--submissions", str(many), "--db", str(work / "c.db")]
            timed(cmd)
            out["c_unchanged_rerun_seconds"], out["c_unchanged_rerun_cpu_seconds"] = timed_cpu(cmd)
            out["c_entries"] = args.unchanged
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"harness_speed_{args.device}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
