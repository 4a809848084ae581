"""CUDA evaluation path: CPU/GPU agreement and GPU timing against a resident one-batch baseline.

Usage: ``python benchmarks/gpu_check.py --mnist-dir DIR [--submissions submissions]``

* Every entry (the repo's entries plus generated 2-conv CNNs) is evaluated on CPU and on CUDA through the
  real runner; predicted labels must agree except where the CPU's top two probabilities are within
  float rounding (1e-3).
* Timing for the PyTorch-example 2-conv CNN over the 10k test set: the harness's forward time on CUDA vs
  the same model resident on the GPU as one batch, at batch 128, and the course way (DataLoader(64) with a
  per-batch copy). Target: harness within 4x of the resident figure.
* A CUDA memory bomb fails cleanly and its neighbours still succeed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness_speed import CNN_CODE, make_entries
from harness import runner
from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.store import evaluations
from harness.store.engine import make_engine
from harness.store.schema import unpack


def timed_cuda(fn, repeats=5) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def baselines(images: np.ndarray) -> dict:
    scope: dict = {}
    exec(CNN_CODE, scope)
    model = scope["Net"]().eval().cuda()
    cpu = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    gpu = cpu.cuda()

    def resident():
        with torch.inference_mode():
            model(gpu)

    def batch128():
        with torch.inference_mode():
            for s in range(0, len(gpu), 128):
                model(gpu[s:s + 128])

    def course():
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(cpu), batch_size=64)
        with torch.inference_mode():
            for (x,) in loader:
                model(x.cuda())

    return {"resident_one_batch_s": timed_cuda(resident), "batch128_s": timed_cuda(batch128),
            "course_dataloader64_s": timed_cuda(course, repeats=2)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mnist-dir", required=True)
    p.add_argument("--submissions", default=str(REPO / "submissions"))
    p.add_argument("--device", default="cuda", help="the device compared with CPU (cpu: a dry run of this script)")
    args = p.parse_args()
    gpu = args.device == "cuda"
    assert torch.cuda.is_available() or not gpu, "no CUDA device"
    split = mnist.load_split(Path(args.mnist_dir), "test", allow_download=False)
    spec = DatasetSpec("mnist", split.content_hash, split.labels, split.images, "MNIST test")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    report: dict = {"gpu": torch.cuda.get_device_name() if gpu else None, "torch": torch.__version__}
    try:
        subs = work / "subs"
        make_entries(subs, 3)
        for src in sorted(Path(args.submissions).glob("*")):
            if src.is_dir() and not src.name.startswith((".", "_")):
                shutil.copytree(src, subs / src.name)
        bomb = subs / "cuda-bomb"
        shutil.copytree(subs / "cnn-00", bomb)
        (bomb / "model.py").write_text(CNN_CODE.replace("x = F.relu(self.conv1(x))",
                                                        "torch.empty(1 << 45, device=x.device)\n        x = "
                                                        "F.relu(self.conv1(x))"))
        entries = list(discover(subs).values())
        results = {}
        for label, device in (("cpu", "cpu"), ("cuda", args.device)):
            engine = make_engine(f"sqlite:///{work / (label + '.db')}")
            summary = runner.run(engine, entries, [spec], runner.Options(runner.Limits(device=device, timeout=600)), [])
            stored = evaluations.load_evaluations(engine, list(summary.evaluation_ids.values()))
            results[label] = {e.version.entry.name: e for e in stored}
        agreement = {}
        for name, cpu_ev in results["cpu"].items():
            gpu_ev = results["cuda"][name]
            if cpu_ev.status != "ok" or gpu_ev.status != "ok":
                agreement[name] = {"cpu": cpu_ev.status, "cuda": gpu_ev.status, "cuda_error": gpu_ev.error,
                                   "cpu_error": cpu_ev.error}
                continue
            p_cpu = unpack(cpu_ev.results[0].predicted)
            p_gpu = unpack(gpu_ev.results[0].predicted)
            probs = np.sort(unpack(cpu_ev.results[0].probabilities).astype(np.float32), axis=1)
            margin = probs[:, -1] - probs[:, -2]
            differ = p_cpu != p_gpu
            agreement[name] = {"disagreements": int(differ.sum()), "unexplained": int((differ & (margin > 1e-3)).sum()),
                               "cpu_acc": cpu_ev.results[0].accuracy, "cuda_acc": gpu_ev.results[0].accuracy,
                               "cuda_forward_s": 10000 / gpu_ev.images_per_second, "cuda_wall_s": gpu_ev.seconds,
                               "cpu_forward_s": 10000 / cpu_ev.images_per_second}
        report["agreement"] = agreement
        if not gpu:
            return print(json.dumps(report, indent=2))
        report["baselines_cnn"] = baselines(split.images)
        harness_cnn = np.median([agreement[f"cnn-0{i}"]["cuda_forward_s"] for i in range(3)])
        report["harness_cnn_forward_s"] = float(harness_cnn)
        report["harness_vs_resident"] = float(harness_cnn / report["baselines_cnn"]["resident_one_batch_s"])
        report["course_vs_harness"] = float(report["baselines_cnn"]["course_dataloader64_s"] / harness_cnn)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
