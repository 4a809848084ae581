"""The submission contract takes the ways members really write models, and predictions are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import runner
from harness.data.task import DatasetSpec
from harness.entries.discovery import discover
from harness.store import evaluations
from harness.store.engine import make_engine
from harness.store.schema import unpack
from tests.entries import TEMPLATE_CODE, template_predictions, template_weights, write_entry

CPU = runner.Options(runner.Limits(device="cpu", timeout=60))


def evaluate(tmp_path, datasets, options=CPU):
    """Run every entry under tmp_path/subs; returns {name: Evaluation} from a fresh database."""
    engine = make_engine(f"sqlite:///{tmp_path / 'results.db'}")
    summary = runner.run(engine, list(discover(tmp_path / "subs").values()), datasets, options, argv=[])
    stored = evaluations.load_evaluations(engine, list(summary.evaluation_ids.values()))
    return {e.version.entry.name: e for e in stored}


def predicted(evaluation, kind="mnist"):
    return next(unpack(r.predicted) for r in evaluation.results if r.dataset.kind == kind).astype(np.int64)


def test_template_entry_matches_numpy_reference(tmp_path, small_mnist, means):
    write_entry(tmp_path / "subs", "plain", weights=template_weights(means))
    ev = evaluate(tmp_path, [small_mnist])["plain"]
    expected = template_predictions(small_mnist.images, means)
    assert ev.status == "ok", ev.error
    assert np.array_equal(predicted(ev), expected)
    result = ev.results[0]
    assert result.total == 300 and result.correct == int((expected == small_mnist.labels).sum())
    assert ev.output_kind == "logits"
    assert ev.params == 7840


@pytest.mark.slow
def test_member_variants_give_identical_predictions(tmp_path, small_mnist, means):
    """log_softmax with 0.5/0.5 normalisation, softmax with MNIST's 0.1307/0.3081, safetensors, checkpoints."""
    subs = tmp_path / "subs"
    w = template_weights(means)
    # The organiser's way: normalise with mean 0.5/std 0.5 inside forward, return log_softmax.
    write_entry(subs, "half-logsoftmax", code=TEMPLATE_CODE.replace(
        "return self.scale * self.fc(x.flatten(1) - 0.5)",
        "x = (x - 0.5) / 0.5\n        return F.log_softmax(self.scale * self.fc(x.flatten(1) * 0.5), "
        "dim=1)"), weights=w)
    # Normalised with MNIST's statistics through the harness's InputAdapter, returning probabilities.
    write_entry(subs, "mnist-norm-softmax", code=TEMPLATE_CODE.replace(
        "super().__init__()", "super().__init__()\n        from harness.contract import InputAdapter\n"
        "        self.adapt = InputAdapter(mean=0.1307, std=0.3081)").replace(
        "return self.scale * self.fc(x.flatten(1) - 0.5)",
        "x = self.adapt(x) * 0.3081 + 0.1307\n        return (self.scale * self.fc(x.flatten(1) - "
        "0.5)).softmax(1)"), weights=w)
    write_entry(subs, "safetensors", weights=w, weights_name="weights.safetensors")
    write_entry(subs, "checkpoint-dict", weights={"epoch": torch.tensor(3),
                                                  "state_dict": {"module.fc.weight": w["fc.weight"]}})
    results = evaluate(tmp_path, [small_mnist])
    expected = template_predictions(small_mnist.images, means)
    for name, ev in results.items():
        assert ev.status == "ok", (name, ev.error)
        assert np.array_equal(predicted(ev), expected), name
    assert results["half-logsoftmax"].output_kind == "log_probabilities"
    assert results["mnist-norm-softmax"].output_kind == "probabilities"


def test_constructor_arguments_and_named_class_from_toml(tmp_path, small_mnist, means):
    code = TEMPLATE_CODE + '''

class Helper(nn.Module):
    pass


class Wide(nn.Module):
    def __init__(self, hidden: int, scale: float = 1.0):
        super().__init__()
        self.hidden, self.scale = hidden, scale
        self.fc = nn.Linear(784, hidden, bias=False)

    def forward(self, x):
        return self.scale * self.fc(x.flatten(1) - 0.5)
'''
    toml = '''
    display_name = "Wide template"
    author = "Grace"
    model_class = "Wide"
    [constructor]
    hidden = 10
    scale = 2.0
    [hyperparameters]
    optimizer = "none"
    '''
    write_entry(tmp_path / "subs", "wide", code=code, weights=template_weights(means), toml=toml)
    ev = evaluate(tmp_path, [small_mnist])["wide"]
    assert ev.status == "ok", ev.error
    assert np.array_equal(predicted(ev), template_predictions(small_mnist.images, means))
    assert ev.version.display_name == "Wide template" and ev.version.author == "Grace"
    assert ev.version.constructor == {"hidden": 10, "scale": 2.0}
    assert ev.version.hyperparameters == {"optimizer": "none"}


@pytest.mark.slow
def test_resnet_that_wants_3x224(tmp_path, small_mnist):
    """A torchvision ResNet fine-tuned at 3×224×224 plugs in with InputAdapter inside forward."""
    code = '''
    import torch
    from torch import nn
    from torchvision.models import resnet18
    from harness.contract import IMAGENET_MEAN, IMAGENET_STD, InputAdapter


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.adapt = InputAdapter(size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
            self.net = resnet18(num_classes=10)

        def forward(self, x):
            assert x.shape[1:] == (1, 28, 28)
            x = self.adapt(x)
            assert x.shape[1:] == (3, 224, 224)
            return self.net(x)
    '''
    torch.manual_seed(0)
    from torchvision.models import resnet18
    net = resnet18(num_classes=10).eval()
    write_entry(tmp_path / "subs", "resnet", code=code, weights={f"net.{k}": v for k, v in net.state_dict().items()})
    tiny = DatasetSpec("mnist", "tiny-8", small_mnist.labels[:8], small_mnist.images[:8], "test")
    ev = evaluate(tmp_path, [tiny])["resnet"]
    assert ev.status == "ok", ev.error
    x = torch.nn.functional.interpolate(torch.from_numpy(tiny.images[:, None] / 255.0).float(), size=224,
                                        mode="bilinear").expand(-1, 3, -1, -1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        reference = net((x - mean) / std).argmax(1).numpy()
    assert np.array_equal(predicted(ev), reference)


@pytest.mark.slow
def test_code_free_torch_export_entry(tmp_path, small_mnist, means):
    scope = {}
    exec(TEMPLATE_CODE, scope)
    model = scope["Net"]()
    model.load_state_dict(template_weights(means))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model.eval(), (torch.zeros(4, 1, 28, 28),), dynamic_shapes=({0: batch},))
    folder = write_entry(tmp_path / "subs", "exported", code=None)
    torch.export.save(program, folder / "model.pt2")
    ev = evaluate(tmp_path, [small_mnist])["exported"]
    assert ev.status == "ok", ev.error
    assert np.array_equal(predicted(ev), template_predictions(small_mnist.images, means))
    assert ev.version.code_hash == "" and ev.version.weights_bytes > 0


def test_worker_sees_images_only(tmp_path, monkeypatch, small_mnist, means):
    """The files the entry's process is given hold images and nothing else: no labels, no file names."""
    from harness.isolation import Limits, predict, process
    seen = {}

    def look(folder, metadata, inputs, out_dir, prepare, **_):
        prepare()  # what the front door writes once the entry's process has started
        seen["files"] = sorted(p.name for p in inputs["mnist"].parent.iterdir())
        seen["images"], seen["order"] = np.load(inputs["mnist"]), inputs.orders["mnist"]
        return process.RunOutcome(result={"status": "failed", "error": "looked."}, seconds=0.0, peak_rss=0, log="")

    monkeypatch.setattr(process, "run_isolated", look)
    entry = discover(write_entry(tmp_path / "subs", "plain", weights=template_weights(means)).parent)["plain"]
    assert predict(entry, {"mnist": small_mnist.images}, Limits(device="cpu")).error == "looked."
    assert seen["files"] == ["images_mnist.npy"]  # its output folder comes later, beside this one
    stored, order = seen["images"], seen["order"]
    assert stored.shape == (300, 1, 28, 28) and stored.dtype == np.uint8
    # a secret order of the set: position carries no information
    assert sorted(order.tolist()) == list(range(300)) and not np.array_equal(order, np.arange(300))
    assert np.array_equal(stored[:, 0], small_mnist.images[order])


def test_worker_scales_uint8_to_unit_range_exactly():
    from harness.isolation.inside.worker import to_device
    raw = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(2, 0)
    x = to_device(np.pad(raw, ((0, 0), (0, 0), (6, 6), (6, 6))), torch.device("cpu"))
    assert x.dtype == torch.float32 and float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert np.array_equal(x.numpy()[:, :, 6:22, 6:22], raw.astype(np.float32) / np.float32(255))


@pytest.mark.slow
def test_the_contract_needs_no_torch_and_the_adapters_need_no_contract():
    """The harness's own process reads the contract and finds entries without torch; the adapters (copied into the
    training kit's model.py files) import nothing from the harness, so the two modules do not import each other."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]
    probe = ("import sys\n"
             "import harness.contract, harness.entries.discovery, harness.entries.parameters\n"
             "assert 'torch' not in sys.modules, 'torch imported'\n"
             "from harness.contract import IMAGENET_MEAN, IMAGENET_STD, MNIST_MEAN, MNIST_STD, InputAdapter\n"
             "from harness import adapters\n"
             "assert (IMAGENET_MEAN, MNIST_MEAN, InputAdapter) == (adapters.IMAGENET_MEAN, 0.1307, "
             "adapters.InputAdapter)\nassert 'harness.contract' in sys.modules\n")
    assert subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True).stderr == ""
    alone = "import sys\nimport harness.adapters\nassert 'harness.contract' not in sys.modules\n"
    assert subprocess.run([sys.executable, "-c", alone], cwd=root, capture_output=True, text=True).stderr == ""
