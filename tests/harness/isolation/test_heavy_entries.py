"""Heavy entries: an entry that cannot finish within its time limit is stopped early with an estimate; progress
is shown while it runs, phase by phase (loading, warming up, images); a slow model warms up on small batches and
gets a batch it does in about a second; the organiser sets the limit in competition.toml; the device is resolved
once, before any limit, and the sandbox lets in the GPU only for CUDA."""

from __future__ import annotations

import json
import os
import re
import resource
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy.orm import Session
from torch import nn

from harness import evaluate, runner
from harness.common import competition
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.isolation import Limits, Progress, predict, prediction, process, sandbox_command
from harness.isolation.inside import exchange, worker
from harness.isolation.inside.rlimits import limit_process
from harness.store import runs
from harness.store.engine import make_engine
from harness.store.schema import Run
from leaderboard import admin
from tests.entries import before_return, template_weights, write_entry

BATCH, NAP = 8, 0.2  # the slow entry's batch and its sleep per batch: 40 images/s
SLOW = f'''
import time
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(1, 1)

    def forward(self, x):
        time.sleep({NAP})
        return x[:, 0, 0, :10] * 0
'''
WEIGHTS = {"unused.weight": torch.zeros(1, 1), "unused.bias": torch.zeros(1)}


def entry_of(root, name, code):
    write_entry(root, name, code=code, weights=WEIGHTS)
    return discover(root)[name]


def test_an_entry_too_slow_for_its_time_limit_is_stopped_early_with_a_fair_estimate(tmp_path):
    images = {"mnist": np.zeros((2000, 28, 28), np.uint8)}
    truth = 2000 / (BATCH / NAP)  # 50 s of predicting, by hand, without loading
    limit = truth / 3  # the entry would exceed it three times over
    seen: list[Progress] = []
    got = predict(entry_of(tmp_path, "slow", SLOW), images, Limits(timeout=limit, device="cpu", batch_size=BATCH),
                  on_progress=seen.append)
    assert got.status == "failed" and prediction.limits_hit(got.error) == ["time limit"]
    assert got.seconds < limit / 2  # stopped early, not at the limit
    found = re.search(r"needs about (\d+) s on this CPU \(([\d.]+) images/s for 2,000 images\), over its time limit "
                      r"of 17 s, and was stopped early; make the model faster, raise the time limit, run it on a "
                      r"GPU, or on a cluster\.", got.error)
    assert found, got.error
    assert truth / 2 <= float(found.group(1)) <= truth * 2
    assert BATCH / NAP / 2 <= float(found.group(2)) <= BATCH / NAP * 2
    done = [p.done for p in seen]
    assert done[0] == 0 and done == sorted(done) and 0 < done[-1] < 2000 and {p.total for p in seen} == {2000}


def test_progress_counts_rise_to_the_total_over_every_set(tmp_path):
    entry = entry_of(tmp_path, "pixels", "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
                     "    def __init__(self):\n        super().__init__()\n        self.unused = nn.Linear(1, 1)\n\n"
                     "    def forward(self, x):\n        return x[:, 0, 14, 4:14] * 255\n")
    rng = np.random.default_rng(3)
    images = {"a": rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
              "b": rng.integers(0, 256, (56, 28, 28), dtype=np.uint8)}
    seen: list[Progress] = []
    got = predict(entry, images, Limits(timeout=120, device="cpu", batch_size=16), on_progress=seen.append)
    assert got.status == "ok", got.error
    done = [p.done for p in seen]
    assert done[0] == 0 and done == sorted(done) and done[-1] == 256 and {p.total for p in seen} == {256}
    assert seen[-1].seconds_left == 0.0


class _Counted:
    """A job whose count of images done is set by the test."""
    def __init__(self):
        self.count = 0

    def progress(self) -> int:
        return self.count


def test_the_estimate_is_the_host_clock_arithmetic():
    """Started at 0, go at 1; 80 of 2,000 images seen at 3: 40 images/s, 48 s left, 51 s in all."""
    heard: list[Progress] = []
    job = _Counted()
    estimate = process._Estimate(2000, 20.0, "cpu", heard.append)
    job.count = 40
    assert estimate.update(job, 1.5, 0.0, 1.0) is None  # too soon after go to judge
    job.count = 80
    assert estimate.update(job, 3.0, 0.0, 1.0) == (
        "needs about 51 s on this CPU (40.0 images/s for 2,000 images), over its time limit of 20 s, and was stopped "
        "early; make the model faster, raise the time limit, run it on a GPU, or on a cluster.")
    assert heard[-1] == Progress(80, 2000, 48.0)
    job.count = 10 ** 9  # an entry's count is capped at the total; it cannot run past it
    assert process._Estimate(2000, 60.0, "cpu", None).update(job, 3.0, 0.0, 1.0) is None
    job.count = 80
    assert process._Estimate(2000, 60.0, "cuda", None).update(job, 3.0, 0.0, 1.0) is None  # 51 s fits in 60 × 1.2
    assert process.duration(3120) == "52 min" and process.duration(5400) == "1.5 h"
    assert process.describe("resnet18", Progress(1280, 10100, 29 * 60)) == \
        "resnet18: 1,280 of 10,100 images, about 29 min left"


@pytest.mark.parametrize(("limits", "seconds"), [
    ({}, 300.0), ({"timeout": 600}, 600.0), ({"timeout": "20 min"}, 1200.0), ({"timeout": "90 s"}, 90.0),
    ({"timeout": "1.5 h"}, 5400.0), ({"seconds_per_1000_images": 240}, 240 * 10.1),  # 10,100 images
])
def test_the_time_limit_comes_from_competition_toml(limits, seconds):
    assert competition.parse({"limits": limits}).time_limit(10_100) == pytest.approx(seconds)


@pytest.mark.parametrize(("limits", "sentence"), [
    ({"timeout": "soon"}, "limits.timeout = 'soon' is not a duration; write seconds (600) or a string such as "
                          "\"20 min\", \"90 s\" or \"1.5 h\"."),
    ({"timeout": 0}, "limits.timeout = 0 is not a duration"),
    ({"timeout": "5 days"}, "limits.timeout = '5 days' is not a duration"),
    ({"seconds_per_1000_images": -3}, "limits.seconds_per_1000_images = -3 must be a positive number of seconds, "
                                      "such as 240."),
    ({"timeout": 60, "seconds_per_1000_images": 240}, "limits.timeout and limits.seconds_per_1000_images both set "
                                                      "the time limit; keep one of them."),
    ({"per_entry": 60}, "unknown key limits.per_entry; the keys are timeout and seconds_per_1000_images."),
])
def test_a_bad_limit_is_one_sentence(limits, sentence):
    with pytest.raises(competition.CompetitionConfigError) as caught:
        competition.parse({"limits": limits})
    assert str(caught.value).startswith(f"competition.toml: {sentence}")


def test_the_command_line_timeout_wins_over_the_rules():
    rules = competition.parse({"limits": {"seconds_per_1000_images": 100}})
    sets = [DatasetSpec("mnist", "h", np.zeros(3000, np.int64), np.zeros((3000, 28, 28), np.uint8), "test")]
    assert evaluate.time_limit(evaluate.parser().parse_args([]), rules, sets) == 300.0  # 100 s × 3
    assert evaluate.time_limit(evaluate.parser().parse_args(["--timeout", "42"]), rules, sets) == 42.0


def test_auto_is_resolved_in_the_host_and_the_child_gets_the_resolved_device(tmp_path, monkeypatch):
    assert not torch.cuda.is_available()  # this machine: the CPU
    assert prediction.resolve_device("auto") == "cpu" and prediction.resolve_device("cuda") == "cuda"
    given = []

    def fake(folder, metadata, inputs, out_dir, **kwargs):
        given.append((kwargs["device"], kwargs["gpu_memory"]))
        return process.RunOutcome({"status": "failed", "error": "not run"}, 0.0, 0, "")

    monkeypatch.setattr(process, "run_isolated", fake)
    entry = entry_of(tmp_path, "any", SLOW)
    predict(entry, {"mnist": np.zeros((1, 28, 28), np.uint8)}, Limits(device="auto", memory=2 ** 30))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the decision only: CUDA is never started
    assert prediction.resolve_device("auto") == "cpu"  # no NVIDIA device file here: torch is not even asked
    monkeypatch.setattr(sandbox_command, "gpu_devices", lambda: ["/dev/nvidia0", "/dev/nvidiactl"])
    assert prediction.resolve_device("auto") == "cuda"
    predict(entry, {"mnist": np.zeros((1, 28, 28), np.uint8)}, Limits(device="auto", memory=2 ** 30))
    assert given == [("cpu", 2 ** 30), ("cuda", 2 ** 30)]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="resolved device"):
        process.run_isolated(entry.folder, entry.metadata, {}, tmp_path / "out", device="auto")


def _address_space_after(device: str) -> int:
    """RLIMIT_AS in a forked child after limit_process(1 GiB, device)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            limit_process(2 ** 30, device)
            os.write(write, str(resource.getrlimit(resource.RLIMIT_AS)[0]).encode())
        finally:
            os._exit(0)
    os.close(write)
    value = int(os.read(read, 64))
    os.close(read)
    os.waitpid(pid, 0)
    return value


def test_the_address_space_limit_applies_on_the_cpu_only():
    assert _address_space_after("cuda") == resource.RLIM_INFINITY
    capped = _address_space_after("cpu")
    assert capped != resource.RLIM_INFINITY and capped > 2 ** 30  # what the process had mapped, plus 1 GiB


def test_a_run_records_the_resolved_device(tmp_path, monkeypatch):
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    assert runner.run(engine, [], [], runner.Options(runner.Limits(device="auto")), argv=[]).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sandbox_command, "gpu_devices", lambda: ["/dev/nvidia0", "/dev/nvidiactl"])
    summary = runner.run(engine, [], [], runner.Options(runner.Limits(device="auto")), argv=[])
    with Session(engine) as session:
        assert [run.device for run in session.query(Run).order_by(Run.id)] == ["cpu", "cuda"]
    assert summary.device == "cuda" and runs.latest_run(engine)["device"] == "cuda"


@pytest.mark.slow
def test_the_evaluate_command_reports_the_device_it_used_and_the_limit_from_the_rules(tmp_path, mnist_dir, means,
                                                                                      capsys):
    subs = tmp_path / "subs"
    write_entry(subs, "spins", code=before_return("while True:\n    pass"), weights=template_weights(means))
    config = tmp_path / "competition.toml"
    config.write_text(textwrap.dedent('''
        [limits]
        timeout = "4 s"
    '''))
    assert evaluate.main(["--submissions", str(subs), "--mnist-dir", str(mnist_dir), "--mystery",
                          str(tmp_path / "none"), "--db", str(tmp_path / "lb.db"), "--config", str(config),
                          "--device", "auto", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["run"]["device"] == "cpu"
    assert "took longer than its time limit of 4 s" in doc["entries"][0]["error"]
    assert ("time limit: raise it with `python -m harness.evaluate --timeout 8` (now 4 s), or timeout / "
            "seconds_per_1000_images under [limits] in competition.toml; an entry that failed on a limit is evaluated "
            "again once that limit is raised.") in doc["notes"]


def test_run_progress_is_stored_and_shown_on_the_organiser_page(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    run_id = runs.start_run(engine, "cpu", [])
    runs.note_progress(engine, run_id, "resnet18", 1280, 10100, 29 * 60)
    run = runs.latest_run(engine)
    assert run["progress"]["entry"] == "resnet18" and (run["progress"]["done"], run["progress"]["total"]) == \
        (1280, 10100)

    class Running:
        running, started_at = True, run["started_at"]

    fraction, text = admin.run_progress(run, Running(), 4)
    assert fraction == pytest.approx((0 + 1280 / 10100) / 4)
    assert text == (f"run #{run_id} on cpu: 0 of 4 entries evaluated so far (unchanged entries are skipped); "
                    "now resnet18: 1,280 of 10,100 images, about 29 min left")
    runs.finish_run(engine, run_id)
    assert runs.latest_run(engine)["progress"] is None


@pytest.mark.parametrize(("device", "present", "bound"), [
    ("cpu", ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"], []),
    ("cuda", [], []),
    ("cuda", ["/dev/nvidia-uvm-tools", "/dev/nvidia1", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm",
              "/dev/nvidia-modeset", "/dev/nvidia-caps", "/dev/nvidia-caps-imex-channels"],
     ["/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0", "/dev/nvidia1",
      "/dev/nvidiactl"]),
])
def test_the_sandbox_binds_the_gpu_devices_only_for_cuda(device, present, bound):
    args = sandbox_command.gpu_binds(device, present)
    expected = [a for dev in bound for a in ("--dev-bind", dev, dev)]
    assert args == expected + (["--ro-bind", "/sys", "/sys"] if bound else [])
    full = sandbox_command.command(Path("/tmp/x"), as_root=True, device="cpu")
    assert not any(a.startswith("/dev/nvidia") for a in full) and "/sys" not in full


def test_a_run_reports_each_entry_and_notes_its_progress_in_the_store(tmp_path, monkeypatch, small_mnist):
    entry = entry_of(tmp_path / "subs", "pixels", "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
                     "    def __init__(self):\n        super().__init__()\n        self.unused = nn.Linear(1, 1)\n\n"
                     "    def forward(self, x):\n        return x[:, 0, 14, 4:14] * 255\n")
    noted, heard = [], []
    monkeypatch.setattr(runs, "note_progress", lambda engine, run_id, *at: noted.append(at))
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    summary = runner.run(engine, [entry], [small_mnist], runner.Options(runner.Limits(device="cpu", batch_size=50)),
                         argv=[], on_progress=lambda e, at: heard.append((e.name, at.done, at.total)))
    assert summary.outcome == {"pixels": runner.EVALUATED}
    done = [d for _, d, _ in heard]
    assert heard[0] == ("pixels", 0, 300) and done == sorted(done) and heard[-1] == ("pixels", 300, 300)
    assert noted[-1][:3] == ("pixels", 300, 300)  # the last note, written once the entry ended


SLEEPY_CONV = '''
import time
from torch import nn


class Net(nn.Module):
    """A conv model that takes {nap} s a forward pass, whatever the batch, and notes each batch's size."""

    def __init__(self):
        super().__init__()
        time.sleep({load})
        self.conv = nn.Conv2d(1, 10, 28)
        self.seen = []

    def forward(self, x):
        self.seen.append(len(x))
        time.sleep({nap})
        return self.conv(x).flatten(1)
'''


def sleepy_entry(root, name, load=0.0, nap=0.3):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 10, 28)
    write_entry(root, name, code=SLEEPY_CONV.format(load=load, nap=nap),
                weights={"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach()})
    return discover(root)[name]


@pytest.mark.parametrize(("flops", "batch", "probe"), [
    (15_680, 128, 128),      # a linear model on 784 pixels: 2 × 784 × 10
    (24e6, 128, 128),        # the PyTorch example's digits CNN
    (3.63e9, 32, 8),         # a 224-px ResNet-18: 55 images in 200 GFLOPs -> 32; 13.8 in 50 -> 8
    (8.17e9, 16, 4),         # a 224-px ResNet-50: 24.5 -> 16; 6.1 -> 4
    (100e9, 2, 1), (1e12, 1, 1), (0.0, 128, 128)])  # 0: the count failed, the largest batch as before
def test_the_cpu_batch_holds_200_gflops_as_a_power_of_two(flops, batch, probe):
    assert (worker.BATCH_FLOPS, worker.PROBE_FLOPS, worker.CPU_BATCH) == (200e9, 50e9, 128)
    assert worker.choose_batch(flops) == batch
    assert worker.choose_batch(flops, budget=worker.PROBE_FLOPS) == probe


@pytest.mark.parametrize(("per_image", "room", "batch"), [
    (100e6, 8e9, 32),      # a 224-px ResNet-50's activations, 8 GB free: half of it holds 40 images -> 32
    (1e3, 80e9, 8192),     # a digits MLP: the largest batch
    (10e9, 8e9, 1),        # one image does not even fit in half the room: 1, and halving on OOM as before
])
def test_the_cuda_batch_fits_half_the_room_the_warm_up_measured(per_image, room, batch):
    assert worker.fitting_batch(per_image, room) == batch


def test_a_costly_model_warms_up_on_small_batches_and_gets_a_small_one(tmp_path, monkeypatch):
    """Conv2d(1, 10, 28) on a 28×28 image: 2 × 10 × 784 = 15,680 FLOPs, counted on 2 images. With a batch budget
    of 45 such images and a probe budget of 11: a batch of 32, a layout probe on 8 images, not 128 (in channels-last,
    compared with the first pass's outputs on its 2), even when a larger batch is asked for."""
    monkeypatch.setattr(worker, "BATCH_FLOPS", 45 * 15_680)
    monkeypatch.setattr(worker, "PROBE_FLOPS", 11 * 15_680)
    entry = sleepy_entry(tmp_path, "costly", nap=0.0)
    loaded = worker.load(entry.folder, entry.metadata, "cpu")
    assert worker.flops_per_image(loaded.model, worker.probe_images(2), "test")[0] == 15_680
    assert loaded.batch_size == 32 and loaded.model.seen[:2] == [2, 8]
    asked = worker.load(entry.folder, entry.metadata, "cpu", batch_size=64)
    assert asked.batch_size == 64 and asked.model.seen == [2, 8]


def test_a_fast_model_keeps_the_largest_batch_and_batching_does_not_change_its_outputs(tmp_path, mnist_test):
    fast = sleepy_entry(tmp_path, "fast", nap=0.0)
    loaded = worker.load(fast.folder, fast.metadata, "cpu")
    assert loaded.batch_size == worker.CPU_BATCH
    path = tmp_path / "images.npy"
    np.save(path, mnist_test.images[:300, None])
    small = worker.load(fast.folder, fast.metadata, "cpu", batch_size=3)
    got = worker.answer(loaded, path, "the test images")
    again = worker.answer(small, path, "the test images")
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 10, 28)  # the same weights, run here in one batch without the harness
    with torch.inference_mode():
        reference = conv(torch.tensor(mnist_test.images[:300, None]).float() / 255).flatten(1).numpy()
    for outputs in (got, again):
        np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-4)
        assert (outputs.argmax(1) == reference.argmax(1)).all()


@pytest.mark.slow
def test_progress_names_its_phase_loading_warming_up_then_images_with_an_estimate(tmp_path):
    entry = sleepy_entry(tmp_path, "sleepy", load=0.5, nap=0.3)
    seen: list[Progress] = []
    got = predict(entry, {"mnist": np.zeros((40, 28, 28), np.uint8)},
                  Limits(timeout=120, device="cpu", batch_size=8), on_progress=seen.append)
    assert got.status == "ok", got.error
    phases = [p.phase for p in seen]
    assert [phase for i, phase in enumerate(phases) if i == 0 or phase != phases[i - 1]] == \
        ["loading", "warming up", "predicting"]
    assert all(p.done == 0 and p.seconds_left is None for p in seen if p.phase != "predicting")
    estimated = [p for p in seen if p.phase == "predicting" and p.seconds_left]
    assert estimated and estimated[0].done < 40  # an estimate before the end: after the first batch of 8
    assert process.describe("sleepy", seen[0]) == "sleepy: loading"
    assert process.describe("sleepy", Progress(0, 40, None, "warming up")) == "sleepy: warming up"
    assert process.describe("sleepy", Progress(4, 40, 2.7)) == "sleepy: 4 of 40 images, about 3 s left"


def test_the_phase_is_read_only_when_it_is_one_of_the_known_words(tmp_path):
    fd = os.open(tmp_path / exchange.PROGRESS_FILE, os.O_WRONLY | os.O_CREAT)
    for written, phase, done in [(exchange.LOADING, "loading", 0), (exchange.WARMING_UP, "warming up", 0),
                                 ("<script>", None, 0), ("12", None, 12)]:
        exchange.write_phase(fd, written) if not written.isdigit() else exchange.write_progress(fd, int(written))
        assert (exchange.read_phase(tmp_path), exchange.read_progress(tmp_path)) == (phase, done)
    os.close(fd)


def test_the_dashboard_shows_the_noted_phase(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'lb.db'}")
    run_id = runs.start_run(engine, "cpu", [])
    runs.note_progress(engine, run_id, "resnet50", 0, 10100, None, "warming up")
    assert admin.entry_progress(runs.latest_run(engine)["progress"]) == "resnet50: warming up"


POOLED = '''
from torch import nn


class Net(nn.Module):
    """Colour pictures of any size: the mean of each channel, then a linear layer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))
'''

PEAK_DURING_ANSWER = '''
import json, sys
from dataclasses import replace
from pathlib import Path
from harness.contract import Interface
from harness.entries.discovery import discover
from harness.isolation.inside import worker
root, name, shape, images, out = sys.argv[1:]
entry = discover(Path(root))[name]
interface = Interface(tuple(json.loads(shape)), 10, (-1.0, 1.0)) if shape != "digits" else entry.metadata.interface
loaded = worker.load(entry.folder, replace(entry.metadata, interface=interface), "cpu")
def kib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])
before = kib("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from what is resident now
outputs = worker.answer(loaded, Path(images), "the test images")
print(json.dumps({"rise": (kib("VmHWM:") - before) * 1024, "batch": loaded.batch_size}))
import numpy as np
np.save(out, outputs)
'''


def peak_during_answer(root: Path, name: str, shape: str, images: np.ndarray, tmp_path: Path) -> tuple[int, np.ndarray]:
    """How far the peak resident memory of a fresh process rose while the worker answered ``images`` with the loaded
    entry, beyond what was resident before; and the outputs."""
    import subprocess
    import sys
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", PEAK_DURING_ANSWER, str(root), name, shape,
                           str(tmp_path / "images.npy"), str(tmp_path / "outputs.npy")],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["batch"] == 128
    return measured["rise"], np.load(tmp_path / "outputs.npy")


def test_pictures_are_made_floats_a_batch_at_a_time_not_the_whole_set(tmp_path):
    """A competition of 64-px colour pictures: 4,000 of them are 49 MB as uint8 and would be 197 MB as floats. The
    worker reads the set (its 49 MB) and writes each batch of 128 into one input buffer (6.3 MB), so the process's
    peak rises by less than a quarter of the set's floats beyond the file (before: 246 MB, the whole set as floats
    beside it); the outputs equal the model's on the whole set converted at once (uint8 / 255, then to the task's
    range [-1, 1])."""
    torch.manual_seed(0)
    fc = nn.Linear(3, 10)
    write_entry(tmp_path, "pooled", code=POOLED, weights={"fc.weight": fc.weight.detach(), "fc.bias": fc.bias.detach()})
    images = np.random.default_rng(0).integers(0, 256, size=(4000, 3, 64, 64), dtype=np.uint8)
    rise, outputs = peak_during_answer(tmp_path, "pooled", "[3, 64, 64]", images, tmp_path)
    assert rise < images.nbytes + images.size * 4 // 4, (rise, images.nbytes)
    with torch.inference_mode():
        reference = fc((torch.from_numpy(images).double() / 255 * 2 - 1).mean(dim=(2, 3)).float()).numpy()
    np.testing.assert_allclose(outputs, reference, rtol=1e-5, atol=1e-5)


def test_nothing_piles_up_batch_by_batch(tmp_path):
    """The committed logistic regression on 11,000 digits (8.6 MB as uint8, 34.5 MB as floats, 86 batches of 128):
    the peak rises by the file and less than an eighth of the set's floats (measured 8.8 MB; 78 MB when the whole set
    was made floats at once). Its predictions are those of the same model run here on the whole set at once."""
    from harness.entries.loading import load_model
    images = np.random.default_rng(1).integers(0, 256, size=(11_000, 1, 28, 28), dtype=np.uint8)
    submissions = Path(__file__).resolve().parents[3] / "submissions"
    rise, outputs = peak_during_answer(submissions, "baseline-logreg", "digits", images, tmp_path)
    assert rise < images.nbytes + images.size * 4 // 8, (rise, images.nbytes)
    entry = discover(submissions)["baseline-logreg"]
    with torch.inference_mode():
        reference = load_model(entry.folder, entry.metadata).eval()(torch.from_numpy(images).float() / 255).numpy()
    np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-4)
    assert (outputs.argmax(1) == reference.argmax(1)).all()


SMALL_CONV = '''
from torch import nn


class Net(nn.Module):
    """A convolution over colour pictures of any size, averaged, then a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))
'''


@pytest.mark.slow
def test_a_set_larger_as_floats_than_the_memory_limit_is_evaluated_within_it(tmp_path):
    """10,000 colour pictures of 96×96 are 276 MB as uint8 and 1.1 GB as floats; under a 1 GiB memory limit the
    entry's process evaluates them all (before, it converted the whole set at once and failed: "out of memory"), and
    its outputs are the model's, computed here without the harness."""
    from harness.contract import Interface
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 10)
    write_entry(tmp_path, "colour", code=SMALL_CONV, weights={
        "conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach(),
        "fc.weight": fc.weight.detach(), "fc.bias": fc.bias.detach()})
    entry = discover(tmp_path, interface=Interface((3, 96, 96), 10, (0.0, 1.0)))["colour"]
    images = np.random.default_rng(0).integers(0, 256, (10_000, 3, 96, 96), dtype=np.uint8)
    assert images.size * 4 > 2 ** 30
    got = predict(entry, {"test": images}, Limits(timeout=600, memory=2 ** 30, device="cpu"))
    assert got.status == "ok", got.error
    with torch.inference_mode():
        reference = np.concatenate([fc(conv(torch.from_numpy(chunk).float() / 255).relu().mean(dim=(2, 3))).numpy()
                                    for chunk in np.array_split(images, 20)])
    np.testing.assert_allclose(got.outputs["test"], reference, rtol=1e-4, atol=1e-5)
    assert (got.outputs["test"].argmax(1) == reference.argmax(1)).mean() > 0.999  # ties at float rounding aside


@pytest.mark.parametrize("forward", [
    "return x[:, 0, 0, :10]",                                 # a view of its input, which the next batch overwrites
    "out = x[:, 0, 0, :10].clone()\n        x.zero_()\n        return out",  # it empties its input once read
    "self.kept.append(x)\n        return x[:, 0, 0, :10] * 1",  # it keeps every input it was given
])
def test_what_a_model_does_with_its_input_changes_no_other_batch(tmp_path, forward):
    """Every batch is written into one input buffer: each image's outputs must still be its own first ten pixels,
    scaled to [0, 1], in the given order, whatever the model does with the input it got."""
    code = ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
            "        super().__init__()\n        self.unused = nn.Linear(1, 1)\n        self.kept = []\n\n"
            f"    def forward(self, x):\n        {forward}\n")
    entry = entry_of(tmp_path, "pixels", code)
    images = np.random.default_rng(5).integers(0, 256, (203, 28, 28), dtype=np.uint8)
    got = predict(entry, {"test": images}, Limits(timeout=120, device="cpu", batch_size=16))
    assert got.status == "ok", got.error
    np.testing.assert_array_equal(got.outputs["test"], images[:, 0, :10].astype(np.float32) / 255)
