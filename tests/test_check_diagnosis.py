"""``harness.check`` diagnoses real trained models packaged wrongly: it names the input convention that fixes one
(with the accuracy it then reaches) and explains a weights file that does not fit by its pattern, in one sentence.

The models are real: LeNet-5 trained by the training kit in seconds, and the committed baseline's weights. A model
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
from torch import nn

from harness import check
from harness.entries.discovery import load_entry
from harness.entries.loading import describe_mismatch, import_code
from harness.train import main as train

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "submissions" / "baseline-lenet5"


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
    wrong = accuracy_in(out)
    assert status == 0 and wrong < 90
    found = re.search(r"diagnosis: with \(x-0\.5\)/0\.5 your model reads ([\d.]+)% of these images instead of "
                      r"([\d.]+)%: add `InputAdapter\(mean=0\.5, std=0\.5\)` in front of it", out)
    assert found, out
    assert float(found.group(1)) == pytest.approx(correct, abs=0.5) and float(found.group(2)) == wrong


@pytest.mark.parametrize(("name", "mean", "std", "said", "line"), [
    ("inverted", 1 - 0.1307, -0.3081, r"inverted polarity \(1-x: black ink on white\)",
     "InputAdapter(mean=1, std=-1)"),
    ("scale-255", 0.1307 * 255, 0.3081 * 255, r"the 0-255 scale \(255·x\)", "InputAdapter(std=1/255)"),
])
def test_trained_on_inverted_or_0_255_inputs(tmp_path, mnist_dir, baseline_accuracy, capsys, name, mean, std, said,
                                             line):
    status, out = run_check(packaged(tmp_path, BASELINE, name, mean, std), mnist_dir, capsys)
    wrong = accuracy_in(out)
    assert status == 0 and wrong < 50
    found = re.search(rf"diagnosis: with {said} your model reads ([\d.]+)% of these images instead of ([\d.]+)%: "
                      rf"add `{re.escape(line)}` in front of it", out)
    assert found, out
    assert float(found.group(1)) == pytest.approx(baseline_accuracy, abs=0.5) and float(found.group(2)) == wrong


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
