"""The front door for running an entry: ``harness.isolation.predict`` draws a secret order per call, runs the entry
in its own process, checks what that process wrote and gives its outputs back in the dataset's order."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.entries.discovery import discover
from harness.isolation import Limits, Prediction, predict, prediction, process
from tests.entries import before_return, write_entry

# An entry that answers with ten of each image's pixels (row 14, columns 4..13) back on the 0..255 scale: every
# output row names the image it came from, and it is computed pixel by pixel, so its place in a batch cannot
# change a bit of it.
PIXELS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(1, 1)

    def forward(self, x):
        return x[:, 0, 14, 4:14] * 255
'''
CPU = Limits(timeout=120, device="cpu")


def entry_of(root: Path, name: str, code: str):
    import torch
    write_entry(root, name, code=code, weights={"unused.weight": torch.zeros(1, 1), "unused.bias": torch.zeros(1)})
    return discover(root)[name]


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"a": rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
            "b": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)}


def test_each_call_draws_its_own_order_and_gives_outputs_in_the_dataset_order(tmp_path, monkeypatch, images):
    handed: list[dict[str, np.ndarray]] = []  # what each call's entry process was given, read from its files
    run = process.run_isolated

    def watched(folder, metadata, inputs, out_dir, prepare, **kwargs):
        def written():  # the files are written once the entry's process has started
            prepare()
            handed.append({kind: np.load(path)[:, 0] for kind, path in inputs.items()})
        return run(folder, metadata, inputs, out_dir, prepare=written, **kwargs)

    monkeypatch.setattr(process, "run_isolated", watched)
    entry = entry_of(tmp_path / "subs", "pixels", PIXELS)
    first, second = predict(entry, images, CPU), predict(entry, images, CPU)
    for got in (first, second):
        assert got.status == "ok", (got.error, got.log)
        assert got.error is None and got.device.startswith("cpu") and got.peak_memory > 0
        assert 0 < got.timed_seconds < got.seconds
        assert got.images_per_second == pytest.approx(250 / got.timed_seconds)
        for kind, array in images.items():
            out = got.outputs[kind]
            assert out.dtype == np.float32 and out.shape == (len(array), 10)
            assert np.array_equal(np.rint(out), array[:, 14, 4:14])  # row i is image i's pixels
    for kind in images:
        assert np.array_equal(first.outputs[kind], second.outputs[kind])  # the same bits
    for kind, array in images.items():
        one, two = handed[0][kind], handed[1][kind]
        as_rows = lambda a: sorted(map(bytes, a))  # noqa: E731
        assert as_rows(one) == as_rows(two) == as_rows(array)  # every image once, nothing else ...
        assert not np.array_equal(one, array) and not np.array_equal(two, array)  # ... not in the dataset's order
        assert not np.array_equal(one, two)  # ... and not in the other call's order


def test_a_failing_entry_gives_a_failed_prediction_with_one_sentence(tmp_path, images):
    entry = entry_of(tmp_path / "subs", "raises", PIXELS.replace("return x[", "raise ValueError('kaboom')\n        x["))
    got = predict(entry, images, CPU)
    assert got.status == "failed" and got.outputs == {}
    assert got.error.startswith("ValueError in the model (model.py line ") and got.error.endswith("kaboom")
    assert "\n" not in got.error
    assert got.timed_seconds is None and got.images_per_second is None
    assert "ValueError: kaboom" in got.log  # its traceback, in its log


@pytest.mark.slow
def test_the_time_limit_is_named_as_a_limit(tmp_path, images):
    entry = entry_of(tmp_path / "subs", "spins", before_return("while True:\n    pass").replace(
        "self.fc = nn.Linear(784, 10, bias=False)", "self.unused = nn.Linear(1, 1)"))
    got = predict(entry, images, Limits(timeout=3, device="cpu"))
    assert got.status == "failed"
    assert got.error == ("took longer than its time limit of 3 s and was stopped; make the model faster or raise the "
                         "time limit.")
    assert prediction.limits_hit(got.error) == ["time limit"]


@pytest.mark.slow
def test_a_missing_gpu_is_said_without_naming_a_flag(tmp_path, images):
    import torch
    if torch.cuda.is_available():
        pytest.skip("PyTorch sees a CUDA GPU here")
    got = predict(entry_of(tmp_path / "subs", "pixels", PIXELS), images, Limits(timeout=60, device="cuda"))
    assert (got.status, got.error) == ("failed", "a CUDA GPU was asked for but PyTorch sees none here; run on the CPU.")


def test_a_refused_entry_fails_with_its_sentence_and_nothing_runs(tmp_path, monkeypatch, images):
    monkeypatch.setattr(process, "run_isolated", lambda *a, **k: pytest.fail("the entry's process was started"))
    entry = replace(entry_of(tmp_path / "subs", "pixels", PIXELS), metadata_error="its files take too much room.")
    got = predict(entry, images, CPU)
    assert (got.status, got.error, got.outputs, got.device) == ("failed", "its files take too much room.", {}, "cpu")
    assert got.sandboxed is None and got.peak_memory is None and got.images_per_second is None


@pytest.mark.parametrize("written, message", [
    (None, "returned no readable outputs for the a set"),
    (np.zeros((200, 10), np.float64), "returned float64 outputs for the a set"),
    (np.zeros((199, 10), np.float32), "returned (199, 10) outputs for the 200 images of the a set; expected one row"),
    (np.zeros((200, 9), np.float32), "returned outputs of shape [200, 9] for the a set; expected [200, 10]"),
    (np.zeros(200, np.float32), "returned outputs of shape [200] for the a set; expected [200, 10]"),
    (np.full((200, 10), np.inf, np.float32), "returned NaN or infinite outputs for the a set"),
])
def test_what_the_entrys_process_wrote_is_checked(tmp_path, monkeypatch, images, written, message):
    """The outputs files are the entry's claim (its own code runs in the process that writes them)."""
    def claims_ok(folder, metadata, inputs, out_dir, **_):
        out_dir.mkdir()
        if written is not None:
            np.save(out_dir / "outputs_a.npy", written)
        return process.RunOutcome(result={"status": "ok", "device": "cpu"}, seconds=2.0, peak_rss=1, log="",
                               timed_seconds=1.0)

    monkeypatch.setattr(process, "run_isolated", claims_ok)
    entry = entry_of(tmp_path / "subs", "pixels", PIXELS)
    got = predict(entry, {"a": images["a"]}, CPU)
    assert got.status == "failed" and message in got.error, got.error
    assert got.outputs == {} and got.timed_seconds is None and got.images_per_second is None


def test_limits():
    assert Limits(timeout=10).cpu_seconds == math.ceil(10 * os.cpu_count()) + 1  # every core for the whole time
    assert (Limits().timeout, Limits().memory, Limits().device, Limits().batch_size) == (300.0, 8 * 2**30, "auto", None)
    with pytest.raises(ValueError, match="unknown device 'gpu'; use one of auto, cpu, cuda"):
        Limits(device="gpu")
    with pytest.raises(AttributeError):
        CPU.timeout = 1  # built once


def test_images_must_be_uint8_like_the_stored_sets(tmp_path, images):
    entry = entry_of(tmp_path / "subs", "pixels", PIXELS)
    with pytest.raises(ValueError, match=r"the a images are float32 \[5, 28, 28\]; predict takes uint8"):
        predict(entry, {"a": images["a"][:5].astype(np.float32) / 255}, CPU)


def test_the_front_door_is_imported_lazily():
    """The sandbox's server imports this package inside the entry's process: that must not load the host side."""
    code = ("import sys, harness.isolation, harness.isolation.inside.exchange\n"
            "import harness.isolation.inside.sandbox_server\n"
            "assert not {'harness.isolation.process', 'harness.isolation.prediction', 'sqlalchemy',\n"
            "            'multiprocessing'} & set(sys.modules), sorted(sys.modules)\n"
            "from harness.isolation import Prediction, predict\n"
            "from harness.isolation import prediction\n"
            "assert predict is prediction.predict and Prediction is prediction.Prediction\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
    assert Prediction is prediction.Prediction
