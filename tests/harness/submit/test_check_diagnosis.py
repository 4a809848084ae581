"""``harness.check`` diagnoses real trained models packaged wrongly: it names the input convention that fixes one
(with the accuracy it then reaches) and explains a weights file that does not fit by its pattern, in one sentence.

The models are real: LeNet-5 trained by the training kit in seconds, the committed baseline's weights, and
tests/data/forgot-normalisation (a LeNet trained on (x-0.5)/0.5 inputs whose forward leaves that out, made by
scripts/forgot_normalisation.py): it reads 95.6% of the check's 500 images, which the check once passed in silence. A
model
"trained on inverted images" or "on 0-255 inputs" is the baseline with its built-in normalisation rewritten so that
it computes exactly what the baseline computes on such inputs (mean' = 1 - mean, std' = -std; mean' = 255·mean,
std' = 255·std): so the accuracy the fix must give is the baseline's own, measured by the same check.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from harness import check
from harness.entries.discovery import load_entry
from harness.entries.loading import describe_mismatch, import_code
from harness.isolation import Limits
from harness.isolation.process import GIB
from harness.submit import checking
from harness.train import main as train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
BASELINE = REPO / "submissions" / "baseline-lenet5"
FORGOT = REPO / "tests" / "data" / "forgot-normalisation"
AFFORDABLE = checking.affordable_sample  # before the fixture below replaces it
LIMITS = Limits(timeout=120.0, memory=8 * GIB, device="cpu", batch_size=checking.BATCH)
FOUND = re.compile(r"diagnosis: your model reads ([\d.]+) points better when the images are (.+?): ([\d.]+)% "
                   r"instead of ([\d.]+)% of the first (\d+) MNIST test images \((\d+) read right only so, (\d+) only "
                   r"as given; one-sided sign test p = ([\de.+-]+), under 0\.0002\)\. (.*)$")


@pytest.fixture(autouse=True)
def all_2000_images(monkeypatch):
    """The conventions are tried on all 2000 images whatever the speed measured on this (busy) machine, so the
    figures below do not depend on it (test_diagnosis_sample_follows_the_speed tests the choice itself)."""
    monkeypatch.setattr(checking, "affordable_sample", lambda images_per_second: checking.DIAGNOSIS_IMAGES)


def test_diagnosis_sample_follows_the_speed():
    # 6 runs (as given + 5 conventions) within 30 s: 400 images/s or more gets all 2000, 100 images/s 500 each
    affordable = AFFORDABLE
    assert affordable(3000.0) == 2000 and affordable(400.0) == 2000
    assert affordable(100.0) == 500 and affordable(2.0) == 10 and affordable(0.01) == 1
    assert affordable(None) == checking.SAMPLE  # speed unknown: the check's own 500
    assert affordable(100.0, seconds=60.0, runs=3) == 2000 and affordable(10.0, seconds=60.0, runs=3) == 200


def run_check(folder: Path, mnist_dir: Path, capsys, *flags: str) -> tuple[int, str]:
    status = check.main([str(folder), "--mnist-dir", str(mnist_dir), *flags])
    return status, " ".join(capsys.readouterr().out.split())


def accuracy_in(out: str) -> float:
    return float(re.search(r"accuracy on the first 500 MNIST test images: ([\d.]+)%", out).group(1))


def packaged(tmp_path: Path, source: Path, name: str, mean: float, std: float) -> Path:
    """A copy of the entry ``source`` whose constructor normalises with ``mean`` and ``std``."""
    folder = tmp_path / name
    shutil.copytree(source, folder)
    toml = folder / "entry.toml"
    head, rest = toml.read_text().split("[hyperparameters]", 1)
    head = re.sub(r"(?m)^mean = .*$", f"mean = {mean!r}", head)
    head = re.sub(r"(?m)^std = .*$", f"std = {std!r}", head)
    toml.write_text(head + "[hyperparameters]" + rest)
    return folder


@pytest.fixture(scope="module")
def baseline_accuracy(mnist_dir) -> float:
    report = check.check(BASELINE, str(mnist_dir))
    assert report["diagnosis"] is None  # a correctly packaged model gets no diagnosis
    return 100 * report["accuracy"]


@pytest.fixture(scope="module")
def baseline_on_2000(mnist_dir) -> float:
    """The baseline's accuracy on the first 2000 test images, where the diagnosis tries the conventions: it reads
    98.5%, so every convention is tried (none is skipped), and none is named."""
    images, labels, described = checking.sample_images(str(mnist_dir), 2000)
    found = checking.diagnose_inputs(load_entry(BASELINE), images, labels, LIMITS, described=described)
    assert not found.skipped and len(found.tried) == len(checking.VALUE_CONVENTIONS)
    assert found.named is None and found.sentence is None
    return 100 * found.accuracy


def forgot_net() -> nn.Module:
    module = import_code(FORGOT, None)  # our own fixture, imported here to compute the figures independently
    net = module.Net()
    net.load_state_dict(torch.load(FORGOT / "weights.pt", weights_only=True))
    return net.eval()


def test_a_model_that_forgot_its_half_normalisation_is_told_the_line_to_add(tmp_path, mnist_dir, mnist_test, capsys):
    """The club's commonest mistake reads 95.6% of the check's 500 images (over the 90% that once hid it) and loses
    a few points everywhere; the check names (x-0.5)/0.5 with the figures a direct computation gives."""
    status, out = run_check(FORGOT, mnist_dir, capsys)
    assert status == 0 and accuracy_in(out) == 95.6, out
    found = FOUND.search(out)
    assert found, out
    gain, said, fixed, wrong, count, better, worse, p, fix = found.groups()
    assert said == "normalised as (x-0.5)/0.5" and int(count) == 2000
    assert fix == ("Add `x = (x - 0.5) / 0.5` as the first line of Net.forward in model.py, or put "
                   "`InputAdapter(mean=0.5, std=0.5)` in front of the model (see 'Input' in submissions/README.md).")
    images = torch.from_numpy(mnist_test.images[:2000].copy()).float().div(255).unsqueeze(1)
    labels = mnist_test.labels[:2000]
    with torch.inference_mode():
        right = forgot_net()(images).argmax(1).numpy() == labels
        right_fixed = forgot_net()((images - 0.5) / 0.5).argmax(1).numpy() == labels
    expected_better, expected_worse = int((right_fixed & ~right).sum()), int((right & ~right_fixed).sum())
    assert (int(better), int(worse)) == (expected_better, expected_worse) == (64, 8)
    assert float(fixed) == round(100 * right_fixed.mean(), 1) and float(wrong) == round(100 * right.mean(), 1)
    assert float(gain) == pytest.approx(100 * (expected_better - expected_worse) / 2000, abs=0.05)
    reference = binomtest(expected_better, expected_better + expected_worse, 0.5, alternative="greater").pvalue
    assert float(p) == pytest.approx(reference, rel=0.25) and reference < 1e-10
    folder = tmp_path / "fixed"  # the fix the sentence names: then nothing is named, and it reads what it should
    shutil.copytree(FORGOT, folder)
    code = (folder / "model.py").read_text()
    (folder / "model.py").write_text(code.replace("# the mistake: no `x = (x - 0.5) / 0.5` here",
                                                  "\n        x = (x - 0.5) / 0.5"))
    status, out = run_check(folder, mnist_dir, capsys)
    assert status == 0 and "diagnosis" not in out and "warning" not in out
    with torch.inference_mode():
        as_trained = forgot_net()((images[:500] - 0.5) / 0.5).argmax(1).numpy() == labels[:500]
    assert accuracy_in(out) == round(100 * as_trained.mean(), 1) == 97.8


@pytest.mark.parametrize("name", ["baseline-strong", "exported-cnn", "organiser-lenet"])
def test_the_committed_entries_get_no_hint(mnist_dir, name, capsys):
    """Honest, correctly normalised models: the check tries the conventions and names none (baseline-lenet5 is
    the ``baseline_accuracy`` fixture's)."""
    status, out = run_check(REPO / "submissions" / name, mnist_dir, capsys)
    assert status == 0 and accuracy_in(out) > 98
    assert "diagnosis" not in out and "warning" not in out


def test_a_convention_that_reads_a_few_more_digits_by_chance_is_not_named(mnist_dir, baseline_on_2000):
    """The baseline reads 8 more of 2000 digits but 4 fewer when normalised twice (p = 0.19): not named."""
    images, labels, described = checking.sample_images(str(mnist_dir), 2000)
    mnist_twice = checking.VALUE_CONVENTIONS[1]
    found = checking.diagnose_inputs(load_entry(BASELINE), images, labels, LIMITS, conventions=(mnist_twice,),
                                     described=described)
    (tried,) = found.tried
    assert 100 * found.accuracy == pytest.approx(baseline_on_2000)
    assert tried.accuracy > found.accuracy and (tried.better, tried.worse) == (8, 4)
    assert tried.p == pytest.approx(binomtest(8, 12, 0.5, alternative="greater").pvalue) and tried.p > 0.1
    assert found.named is None and found.sentence is None


def test_a_model_that_reads_every_digit_is_not_tried(mnist_dir):
    """With fewer errors than the sign test could ever call a fix (10 for one convention at 0.001: 2**-10 < 0.001 <
    2**-9), no convention runs."""
    images, labels, _ = checking.sample_images(str(mnist_dir), 500)
    entry = load_entry(BASELINE)
    for errors, skipped in ((9, True), (10, False)):
        as_given = labels.copy()
        as_given[:errors] = (labels[:errors] + 1) % 10
        found = checking.diagnose_inputs(entry, images, labels, LIMITS, as_given=as_given,
                                         conventions=checking.VALUE_CONVENTIONS[2:3])  # inverted: one cheap run
        assert found.skipped == skipped and found.named is None
        assert len(found.tried) == (0 if skipped else 1)


def test_a_correctly_packaged_model_gets_no_diagnosis(mnist_dir, baseline_accuracy, capsys):
    status, out = run_check(BASELINE, mnist_dir, capsys)
    assert status == 0 and accuracy_in(out) == pytest.approx(baseline_accuracy) and baseline_accuracy > 97
    assert "diagnosis" not in out and "warning" not in out


def test_trained_with_half_normalisation_packaged_without_it(tmp_path, mnist_dir, capsys):
    out_dir = tmp_path / "half"
    assert train(["--arch", "lenet5", "--mean", "0.5", "--std", "0.5", "--limit", "6000", "--epochs", "2",
                  "--optimizer", "adam", "--lr", "0.002", "--threads", "1", "--seed", "0", "--mnist-dir",
                  str(mnist_dir), "--no-download", "--quiet", "--out", str(out_dir)]) == 0
    status, out = run_check(out_dir, mnist_dir, capsys)
    correct = accuracy_in(out)
    assert status == 0 and correct > 90 and "diagnosis" not in out
    bare = packaged(tmp_path, out_dir, "half-bare", 0.0, 1.0)  # Normalize((0.5,), (0.5,)) left out
    status, out = run_check(bare, mnist_dir, capsys)
    found = FOUND.search(out)
    assert status == 0 and found, out
    assert found.group(2) == "normalised as (x-0.5)/0.5" and float(found.group(3)) > float(found.group(4))
    assert found.group(9).startswith("Set mean = 0.5 and std = 0.5 under [constructor] in entry.toml, or add "
                                     "`x = (x - 0.5) / 0.5` as the first line of forward in model.py")


@pytest.mark.parametrize(("name", "mean", "std", "said", "line"), [
    ("inverted", 1 - 0.1307, -0.3081, "inverted (1-x: black ink on white)", "x = 1 - x"),
    ("scale-255", 0.1307 * 255, 0.3081 * 255, "on the 0-255 scale (255·x)", "x = x * 255"),
])
def test_trained_on_inverted_or_0_255_inputs(tmp_path, mnist_dir, baseline_on_2000, capsys, name, mean, std, said,
                                             line):
    status, out = run_check(packaged(tmp_path, BASELINE, name, mean, std), mnist_dir, capsys)
    assert status == 0 and accuracy_in(out) < 50
    found = FOUND.search(out)
    assert found and found.group(2) == said, out
    assert float(found.group(3)) == pytest.approx(baseline_on_2000, abs=0.05)  # the baseline's own figure
    assert found.group(9) == (f"Set mean = 0.1307 and std = 0.3081 under [constructor] in entry.toml, or add `{line}` "
                              "as the first line of forward in model.py (see 'Input' in submissions/README.md).")


WRAPPER = '''
import torch
from torch import nn


def layers():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = layers()

    def forward(self, x):
        return self.net((x - 0.1307) / 0.3081)
'''


def baseline_state() -> dict[str, torch.Tensor]:
    return torch.load(BASELINE / "weights.pt", weights_only=True)


def test_weights_of_a_bare_sequential_in_a_wrapper_name_the_prefix(tmp_path, mnist_dir, baseline_accuracy, capsys):
    folder = tmp_path / "wrapped"
    folder.mkdir()
    (folder / "model.py").write_text(textwrap.dedent(WRAPPER))
    module = import_code(folder, None)
    bare = module.layers()  # the baseline's trained weights, saved from the bare nn.Sequential
    bare.load_state_dict(dict(zip(bare.state_dict(), baseline_state().values(), strict=True)))
    torch.save(bare.state_dict(), folder / "weights.pt")
    status, out = run_check(folder, mnist_dir, capsys)
    sentence = out.removeprefix("error: wrapped: ")
    assert status == 1 and len(sentence) < 300, sentence
    assert sentence == ("the weights do not fit the model: every key of Net starts with 'net.', which the weights' "
                        "keys lack ('0.bias' in the weights, 'net.0.bias' in Net): they were saved from the inner "
                        "module; save torch.save(model.state_dict(), ...) from the whole Net.")
    status, verbose = run_check(folder, mnist_dir, capsys, "--verbose")
    assert status == 1 and verbose.startswith(out)  # the same sentence, then every key
    listed = set(re.findall(r'"([\w.]+)"', verbose[len(out):]))
    assert listed == set(bare.state_dict()) | {f"net.{k}" for k in bare.state_dict()}
    wrapper = module.Net()  # the fix the sentence names: save the whole model's state_dict
    wrapper.net.load_state_dict(bare.state_dict())
    torch.save(wrapper.state_dict(), folder / "weights.pt")
    status, out = run_check(folder, mnist_dir, capsys)
    assert status == 0 and accuracy_in(out) == pytest.approx(baseline_accuracy)


def test_one_layer_of_another_size_is_named_with_both_shapes(tmp_path, mnist_dir, capsys):
    folder = tmp_path / "narrow"
    shutil.copytree(BASELINE, folder)
    toml = folder / "entry.toml"
    toml.write_text(toml.read_text().replace("hidden = [\n    120,", "hidden = [\n    100,", 1))
    status, out = run_check(folder, mnist_dir, capsys)
    assert status == 1
    assert out == ("error: narrow: the weights do not fit the model (classifier.0.weight is [120, 400] in the weights "
                   "but [100, 400] in the model; classifier.0.bias is [120] in the weights but [100] in the model; "
                   "classifier.3.weight is [84, 120] in the weights but [84, 100] in the model); set the constructor "
                   "arguments in entry.toml to the ones you trained with, or save the state_dict of this exact model.")


def test_weights_of_another_class_in_model_py_name_it(tmp_path, mnist_dir, baseline_accuracy, capsys):
    folder = tmp_path / "other-class"
    folder.mkdir()
    shutil.copy(BASELINE / "weights.pt", folder)
    tiny = "\n\nclass Tiny(nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
           "        self.fc = nn.Linear(784, 10)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n"
    (folder / "model.py").write_text((BASELINE / "model.py").read_text() + tiny)
    (folder / "entry.toml").write_text('model_class = "Tiny"\n')
    status, out = run_check(folder, mnist_dir, capsys)
    assert status == 1
    assert out == ('error: other-class: these weights fit class LeNet5 in model.py, not Tiny: set model_class = '
                   '"LeNet5" in entry.toml.')
    (folder / "entry.toml").write_text('model_class = "LeNet5"\n')  # the fix the sentence names
    status, out = run_check(folder, mnist_dir, capsys)
    assert status == 0 and accuracy_in(out) == pytest.approx(baseline_accuracy)


@pytest.mark.parametrize(("saved", "model", "expected"), [
    ({"model.fc.weight": (10, 4), "model.fc.bias": (10,)}, "fc",
     ("every key in the weights starts with 'model.', which M's keys lack ('model.fc.bias' in the weights, 'fc.bias' "
      "in M): they were saved from a wrapper; save the state_dict of the inner model, the one M builds.")),
    ({"backbone.fc.weight": (10, 4), "backbone.fc.bias": (10,)}, "net",
     ("every key starts with 'backbone.' in the weights but 'net.' in M ('backbone.fc.bias' in the weights, "
      "'net.fc.bias' in M); rename the attribute in M or save the weights again from the model you load.")),
])
def test_prefix_patterns_either_way(saved, model, expected):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            if model == "fc":
                self.fc = nn.Linear(4, 10)
            else:
                self.net = nn.Module()
                self.net.fc = nn.Linear(4, 10)

    state = {k: torch.zeros(shape) for k, shape in saved.items()}
    assert describe_mismatch(state, M()) == f"the weights do not fit the model: {expected}"


def test_entry_toml_cannot_ask_for_an_adapter(tmp_path):
    folder = tmp_path / "sneaky"
    shutil.copytree(BASELINE, folder)
    with (folder / "entry.toml").open("r+") as fh:
        text = fh.read()
        fh.seek(0)
        fh.write('adapter = { mean = 0.5, std = 0.5 }\n' + text)
    error = load_entry(folder).metadata_error
    assert error and "unknown key(s) adapter" in error
