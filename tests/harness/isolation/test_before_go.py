"""What an entry's process does before the host's clock starts, and how the host waits for it: cheap, and honest.

The warm-up runs the model on synthetic images (``worker.probe_images``) and tries channels-last memory
(``worker.probe_layout``); the host asks often whether the entry is ready, but checks its limits at their own pace
(``process._watch``), and writes the images while the entry loads (``run_isolated(..., prepare=...)``), handing them
over only at go.
"""

from __future__ import annotations

import contextlib
import textwrap
import time

import numpy as np
import psutil
import pytest
import torch
from torch import nn

from harness.contract import EntryMetadata, Interface
from harness.entries.discovery import discover
from harness.isolation import cgroups, process
from harness.isolation.inside import worker
from tests.entries import before_return, template_predictions, template_weights, write_entry


def probe_images_one_by_one(batch_size: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """The warm-up images drawn stroke by stroke, as the worker drew them before they were drawn all at once: a
    second implementation, to hold the vectorised one to the same images."""
    rng = np.random.default_rng(0)
    n = min(batch_size, 128)
    channels, height, width = shape
    images = np.zeros((n, channels, height, width), dtype=np.float32)
    steps = np.linspace(0.0, 1.0, max(height, width) - 4)
    size = np.array([height, width, height, width])
    for image in images.reshape(n * channels, height, width):
        for _ in range(3):
            r0, c0, r1, c1 = rng.integers(0, 20, size=4) * size * 5 // 7 // 20 + size // 7
            image[np.rint(r0 + (r1 - r0) * steps).astype(int), np.rint(c0 + (c1 - c0) * steps).astype(int)] = 1.0
    blurred = nn.functional.avg_pool2d(torch.from_numpy(images), 3, stride=1, padding=1)
    return (blurred / blurred.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 40, 24), (1, 16, 16)])
@pytest.mark.parametrize("n", [2, 8, 128, 500])
def test_the_warm_up_images_are_the_strokes_drawn_one_by_one(monkeypatch, shape, n):
    monkeypatch.setattr(worker, "IO", Interface(shape, 10, (0.0, 1.0)))
    got = worker.probe_images(n)
    assert got.shape == (min(n, 128), *shape) and got.dtype == torch.uint8
    assert torch.equal(got, probe_images_one_by_one(n, shape))
    assert (got.amax(dim=(2, 3)) == 255).all()  # every plane has its strokes


class Counting(nn.Module):
    """A conv model that notes each batch's size and memory layout; with ``flat_view`` its head uses ``x.view``,
    which raises in channels-last memory."""

    def __init__(self, flat_view: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 5)
        self.fc = nn.Linear(4 * 24 * 24, 10)
        self.flat_view = flat_view
        self.seen: list[tuple[int, bool]] = []

    def forward(self, x):
        self.seen.append((len(x), x.is_contiguous()))
        y = self.conv(x)
        return self.fc(y.view(len(y), -1) if self.flat_view else y.flatten(1))


def test_the_layout_probe_compares_a_few_images_and_warms_up_the_batch_it_keeps():
    images = worker.probe_images(128)
    fine = Counting().eval()
    assert worker.probe_layout(fine, images, 128, "test") == torch.channels_last
    # the usual layout on LAYOUT_COMPARED images, channels-last on the whole batch (the timed run's shape)
    assert fine.seen == [(worker.LAYOUT_COMPARED, True), (128, True)]  # one channel: both layouts are contiguous
    broken = Counting(flat_view=True).eval()
    assert worker.probe_layout(broken, images, 128, "test") == torch.contiguous_format
    # the failed try, then the usual layout once on the whole batch: its set-up is not paid after go either
    assert [n for n, _ in broken.seen] == [worker.LAYOUT_COMPARED, 128, 128]
    with torch.inference_mode():
        x = worker.to_device(images, torch.device("cpu"))
        assert torch.equal(broken(x), Counting(flat_view=True).eval()(x))  # usable, and as it was


def test_given_the_first_pass_outputs_the_probe_runs_only_channels_last_and_compares_against_them():
    """``load`` hands the probe the flops count's outputs on its FIRST_PROBE images: no second pass in the usual
    layout, and those outputs decide: outputs that are not the model's (here shifted far beyond float rounding) keep
    the usual layout, however well channels-last runs."""
    images = worker.probe_images(128)
    counted = Counting().eval()
    flops, usual = worker.flops_per_image(counted, images, "test")
    assert flops == 2 * 25 * (4 * 24 * 24) + 2 * (4 * 24 * 24) * 10  # conv: 5×5 taps into 4 maps of 24×24; linear
    assert usual.shape == (worker.FIRST_PROBE, 10)
    fine = Counting().eval()
    assert worker.probe_layout(fine, images, 128, "test", usual=usual) == torch.channels_last
    assert fine.seen == [(128, True)]
    wrong = Counting().eval()
    assert worker.probe_layout(wrong, images, 128, "test", usual=usual + 1.0) == torch.contiguous_format
    assert wrong.seen == [(128, True), (128, True)]  # channels-last tried, then the usual layout warmed up
    broken = Counting(flat_view=True).eval()
    assert worker.probe_layout(broken, images, 128, "test",
                               usual=worker.flops_per_image(Counting(flat_view=True).eval(), images, "test")[1]) \
        == torch.contiguous_format


def test_loading_a_conv_model_runs_two_warm_up_passes(tmp_path):
    """What the worker runs before go for a conv CNN on CPU: the counted pass on FIRST_PROBE images, then the whole
    first batch in channels-last (no separate pass in the usual layout)."""
    code = textwrap.dedent('''
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 5)
                self.fc = nn.Linear(4 * 24 * 24, 10)
                self.seen = []

            def forward(self, x):
                self.seen.append(len(x))
                return self.fc(torch.relu(self.conv(x)).flatten(1))
    ''')
    torch.manual_seed(0)
    scope: dict = {}
    exec(code, scope)
    write_entry(tmp_path / "subs", "conv", code=code, weights=scope["Net"]().state_dict())
    entry = discover(tmp_path / "subs")["conv"]
    loaded = worker.load(entry.folder, entry.metadata, "cpu")
    assert loaded.layout == torch.channels_last and loaded.batch_size == worker.CPU_BATCH
    assert loaded.model.seen == [worker.FIRST_PROBE, worker.CPU_BATCH]


def test_the_kept_layout_computes_what_the_model_computes():
    """Whatever layout the probe keeps, the outputs are the model's own (the layout is only a speed choice): the
    conv model's outputs in the kept layout equal plain PyTorch's on a fresh copy."""
    model = Counting().eval()
    images = worker.probe_images(128)
    kept = worker.probe_layout(model, images, 128, "test")
    x = worker.to_device(images, torch.device("cpu"))
    with torch.inference_mode():
        reference = Counting().eval()(x)
        got = model(x.contiguous(memory_format=kept))
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)


class ClockedJob:
    """A stand-in for a running entry on a clock that only its waits advance: it says ready at ``ready_at`` seconds
    and exits ``runs_for`` seconds after go."""

    def __init__(self, clock: list[float], ready_at: float, runs_for: float):
        self.clock, self.ready_at, self.runs_for = clock, ready_at, runs_for
        self.went_at: float | None = None
        self.exitcode = None
        self.log_bytes = 0

    def wait(self, seconds: float) -> bool:
        if self.exitcode is not None:
            return True
        if self.went_at is not None and self.clock[0] + seconds >= self.went_at + self.runs_for:
            self.clock[0] = self.went_at + self.runs_for
            self.exitcode = 0
            return True
        self.clock[0] += seconds
        return False

    def ready(self) -> bool:
        return self.clock[0] >= self.ready_at

    def go(self) -> None:
        self.went_at = self.clock[0]

    def processes(self) -> list:
        return []

    def progress(self) -> int:
        return 0

    def phase(self) -> str | None:
        return None

    def kill(self) -> None:
        self.exitcode = -9


def test_the_host_hands_over_as_soon_as_the_entry_is_ready_and_checks_limits_at_their_own_pace(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(process.time, "perf_counter", lambda: clock[0])
    checks = []
    monkeypatch.setattr(process, "_memory", lambda procs: checks.append(clock[0]) or 0)
    job = ClockedJob(clock, ready_at=0.1, runs_for=0.5)
    watched = process._watch(job, timeout=60.0, memory_limit=1 << 30, total=10)
    assert 0.1 <= job.went_at <= 0.1 + process.READY_POLL_SECONDS + 1e-9  # not up to a whole POLL_SECONDS late
    assert watched.timed == pytest.approx(0.5) and watched.reason is None
    loading = [at for at in checks if at < job.went_at]
    # while it loads, its memory and time are checked about every POLL_SECONDS, not at every readiness check
    assert 0.1 / process.POLL_SECONDS - 1 <= len(loading) <= 0.1 / process.POLL_SECONDS + 1
    gaps = np.diff(loading)
    assert (gaps >= process.POLL_SECONDS - 1e-9).all()


def test_the_limits_still_stop_an_entry_that_never_gets_ready(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(process.time, "perf_counter", lambda: clock[0])
    job = ClockedJob(clock, ready_at=float("inf"), runs_for=0.0)
    watched = process._watch(job, timeout=1.0, memory_limit=1 << 30, total=10)
    assert "time limit of 1 s" in watched.reason and job.went_at is None
    assert 1.0 < watched.seconds <= 1.0 + process.POLL_SECONDS + 1e-9


class KernelCgroup:
    """A stand-in for the entry's cgroup: the kernel holds the limit and keeps the peak (or, ``keeps_peak`` False, a
    v2 kernel before memory.peak); ``kill_at`` is when the kernel kills one of its processes for memory."""

    def __init__(self, clock: list[float], keeps_peak: bool = True, kill_at: float = float("inf")):
        self.clock, self.keeps_peak, self.kill_at = clock, keeps_peak, kill_at
        self.looked: list[float] = []

    def over_limit(self) -> bool:
        self.looked.append(self.clock[0])
        return self.clock[0] >= self.kill_at

    def peak(self) -> int:
        return 123 << 20


class CountedJob(ClockedJob):
    """A clocked entry in a cgroup, which counts the host's waits and what it asks about its processes."""

    def __init__(self, clock: list[float], ready_at: float, runs_for: float, cgroup: KernelCgroup):
        super().__init__(clock, ready_at, runs_for)
        self.cgroup, self.waits, self.listed = cgroup, [], 0

    def wait(self, seconds: float) -> bool:
        self.waits.append((self.clock[0], seconds))
        return super().wait(seconds)

    def processes(self) -> list:
        self.listed += 1
        return []


def test_while_the_entry_runs_in_a_cgroup_that_keeps_its_peak_the_host_only_wakes_to_read_its_progress(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(process.time, "perf_counter", lambda: clock[0])
    read = []
    monkeypatch.setattr(process, "_memory", lambda procs: read.append(clock[0]) or 0)
    job = CountedJob(clock, ready_at=0.1, runs_for=2.0, cgroup=KernelCgroup(clock))
    watched = process._watch(job, timeout=60.0, memory_limit=1 << 30, total=10)
    assert watched.timed == pytest.approx(2.0) and watched.reason is None and watched.peak == 123 << 20
    assert read == [] and job.listed == 0  # no process listed, no memory read: the kernel holds the limit
    after_go = [seconds for at, seconds in job.waits if at >= job.went_at]
    # 2 s of running: about 20 waits of PROGRESS_SECONDS, not 100 of POLL_SECONDS
    assert after_go and max(after_go) == pytest.approx(process.PROGRESS_SECONDS)
    assert len(after_go) <= 2.0 / process.PROGRESS_SECONDS + 1
    # a kill the kernel made is still looked for, at the pace of LIST_SECONDS (and once more at the end)
    looked = np.array(job.cgroup.looked[:-1])
    assert len(looked) >= 2.1 / process.LIST_SECONDS - 1 and (np.diff(looked) >= process.LIST_SECONDS - 1e-9).all()


def test_in_such_a_cgroup_a_kernel_kill_and_the_time_limit_still_stop_the_entry_in_time(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(process.time, "perf_counter", lambda: clock[0])
    job = CountedJob(clock, ready_at=0.1, runs_for=60.0, cgroup=KernelCgroup(clock, kill_at=1.0))
    watched = process._watch(job, timeout=60.0, memory_limit=1 << 30, total=10)
    assert watched.reason == process.memory_limit_reason(1 << 30) and job.exitcode == -9
    assert 1.0 <= watched.seconds <= 1.0 + process.LIST_SECONDS + process.PROGRESS_SECONDS
    clock[0] = 0.0
    job = CountedJob(clock, ready_at=0.1, runs_for=60.0, cgroup=KernelCgroup(clock))
    watched = process._watch(job, timeout=1.05, memory_limit=1 << 30, total=10)
    assert "time limit of 1.05 s" in watched.reason
    assert 1.05 < watched.seconds <= 1.05 + 0.002  # the last wait ends at the limit, not a whole pause after it


def test_a_cgroup_without_a_peak_of_its_own_is_watched_per_process_as_before(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(process.time, "perf_counter", lambda: clock[0])
    read = []
    monkeypatch.setattr(process, "_memory", lambda procs: read.append(clock[0]) or 0)
    job = CountedJob(clock, ready_at=0.1, runs_for=1.0, cgroup=KernelCgroup(clock, keeps_peak=False))
    watched = process._watch(job, timeout=60.0, memory_limit=1 << 30, total=10)
    assert watched.timed == pytest.approx(1.0)
    assert len([at for at in read if at >= job.went_at]) >= 1.0 / process.POLL_SECONDS - 1 and job.listed >= 2
    assert max(seconds for at, seconds in job.waits if at >= job.went_at) == pytest.approx(process.POLL_SECONDS)


def template_run(tmp_path, means, mnist_test, sandboxed: bool):
    """The template entry's images file (not written yet), 50 digits for it, and a run of the entry whose ``prepare``
    writes the file while it loads: ``run(out_folder_name, prepare)``."""
    folder = write_entry(tmp_path / "subs", "template", weights=template_weights(means))
    images = tmp_path / "work" / "images_mnist.npy"
    images.parent.mkdir()

    def run(out: str, prepare):
        return process.run_isolated(folder, EntryMetadata(), {"mnist": images}, tmp_path / out, device="cpu",
                                    timeout=120, sandboxed=sandboxed, prepare=prepare)

    return images, mnist_test.images[:50], run


@pytest.mark.sandbox
@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "plain"])
def test_images_written_while_the_entry_loads_reach_it_and_a_failed_write_leaves_no_process(tmp_path, sandboxed,
                                                                                            means, mnist_test):
    if sandboxed and process.sandbox.shared([]) is None:
        pytest.skip("bubblewrap cannot run here")
    images, digits, run = template_run(tmp_path, means, mnist_test, sandboxed)
    outcome = run("out", lambda: np.save(images, digits[:, None]))
    assert outcome.result["status"] == "ok", outcome.result
    outputs = np.load(tmp_path / "out" / "outputs_mnist.npy")
    assert np.array_equal(outputs.argmax(1), template_predictions(digits, means))

    images.unlink()
    before = alive_children()
    seen = []

    def fails():
        seen.append(alive_children() - before)  # the entry's own process, started before the images are written
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        run("out2", fails)
    assert seen and seen[0]
    assert not alive_children() - before  # and gone once the write failed (a sandbox's server stays, as before)
    again = run("out3", lambda: np.save(images, digits[:, None]))  # the next entry starts as usual
    assert again.result["status"] == "ok", again.result


@pytest.mark.sandbox
def test_ctrl_c_while_the_images_are_written_is_what_the_caller_hears_even_when_the_server_went_too(tmp_path, means,
                                                                                                    mnist_test):
    """Ctrl-C reaches the sandbox's server too (the terminal signals the whole process group): when it lands while
    the host writes the entry's images, the host's KeyboardInterrupt is what propagates (the command then says how to
    go on), not the server's end read while cleaning up; and the next entry starts in a new sandbox."""
    box = process.sandbox.shared([])
    if box is None:
        pytest.skip("bubblewrap cannot run here")
    images, digits, run = template_run(tmp_path, means, mnist_test, sandboxed=True)

    def interrupted():
        server = psutil.Process(box.proc.pid)
        for p in [*server.children(recursive=True), server]:
            with contextlib.suppress(psutil.Error):
                p.kill()
        server.wait(10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("out", interrupted)
    again = run("out2", lambda: np.save(images, digits[:, None]))
    assert again.result["status"] == "ok", again.result
    assert np.array_equal(np.load(tmp_path / "out2" / "outputs_mnist.npy").argmax(1),
                          template_predictions(digits, means))


def alive_children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


@pytest.mark.sandbox
def test_the_host_writes_the_images_while_the_kernel_moves_the_entry_into_its_cgroup(tmp_path, monkeypatch, means,
                                                                                   mnist_test):
    """Moving a process into a cgroup waits for the kernel (``SandboxJob.let_through``); the host writes the images
    meanwhile, and the entry still runs only once it is in its cgroup. When the move fails, the entry does not run,
    says so in one sentence, and the next entry starts as usual."""
    if process.sandbox.shared([]) is None:
        pytest.skip("bubblewrap cannot run here")
    try:
        cgroups.create(1 << 30, "probe").remove()
    except cgroups.Unavailable as exc:
        pytest.skip(f"no cgroup here ({exc})")
    folder = write_entry(tmp_path / "subs", "template", weights=template_weights(means))
    images = tmp_path / "work" / "images_mnist.npy"
    images.parent.mkdir()
    digits = mnist_test.images[:50]
    moves: list[tuple[float, float]] = []
    move = cgroups.Cgroup.add

    def slow_move(self, pid):
        start = time.perf_counter()
        time.sleep(0.3)  # a slow kernel
        move(self, pid)
        moves.append((start, time.perf_counter()))
        assert pid in self.pids()

    monkeypatch.setattr(cgroups.Cgroup, "add", slow_move)
    written = []

    def run(out: str):
        return process.run_isolated(folder, EntryMetadata(), {"mnist": images}, tmp_path / out, device="cpu",
                                    timeout=120, sandboxed=True,
                                    prepare=lambda: written.append(time.perf_counter()) or np.save(images,
                                                                                                   digits[:, None]))

    outcome = run("out")
    assert outcome.result["status"] == "ok", outcome.result
    (start, end), = moves
    assert written[0] < end - 0.25 and end - start >= 0.3  # written while the move went on, not after it
    assert 0 < outcome.peak_rss < 1 << 30  # the cgroup's peak (what its process wrote, not the pages it shares)
    assert np.array_equal(np.load(tmp_path / "out" / "outputs_mnist.npy").argmax(1),
                          template_predictions(digits, means))

    def refused(self, pid):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cgroups.Cgroup, "add", refused)
    images.unlink()
    failed = run("out2")
    assert failed.result == {"status": "failed", "error": "the sandbox could not start the entry ([Errno 13] "
                                                           "Permission denied)."}
    monkeypatch.setattr(cgroups.Cgroup, "add", move)
    again = run("out3")
    assert again.result["status"] == "ok", again.result


def test_after_its_exit_the_host_lists_an_entrys_processes_only_while_its_cgroup_holds_one(tmp_path, monkeypatch,
                                                                                         means, mnist_test):
    """Every process an entry starts is in its cgroup, so once its own process has exited with the cgroup empty,
    nothing is left to kill and the host reads no process list (``SandboxJob.kill``); a child it left behind keeps the
    cgroup busy, and is found and killed as before."""
    box = process.sandbox.shared([])
    if box is None:
        pytest.skip("bubblewrap cannot run here")
    try:
        cgroups.create(1 << 30, "probe").remove()
    except cgroups.Unavailable as exc:
        pytest.skip(f"no cgroup here ({exc})")
    listed = []
    kill_listed = process.sandbox.Sandbox.kill_entry_processes

    def counted(self):
        listed.append(len(self.entry_processes()))
        kill_listed(self)

    monkeypatch.setattr(process.sandbox.Sandbox, "kill_entry_processes", counted)
    images = tmp_path / "images_mnist.npy"
    digits = mnist_test.images[:50]
    np.save(images, digits[:, None])
    honest = write_entry(tmp_path / "subs", "honest", weights=template_weights(means))
    leaves = write_entry(tmp_path / "subs", "leaves", weights=template_weights(means),
                         code=before_return("import os, time\nif os.fork() == 0:\n    time.sleep(3600)"))

    def run(folder):
        return process.run_isolated(folder, EntryMetadata(), {"mnist": images}, tmp_path / f"out-{folder.name}",
                                    device="cpu", timeout=120, sandboxed=True)

    outcome = run(honest)
    assert outcome.result["status"] == "ok", outcome.result
    assert listed == []  # exited, cgroup empty: no scan
    outcome = run(leaves)
    assert outcome.result["status"] == "ok", outcome.result
    assert listed and listed[0] >= 1  # its child was still there, and listed
    assert box.entry_processes() == []
    assert np.array_equal(np.load(tmp_path / "out-leaves" / "outputs_mnist.npy").argmax(1),
                          template_predictions(digits, means))
