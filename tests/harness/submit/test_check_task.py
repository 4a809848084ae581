"""``python -m harness.check --competition DIR``: a competition's entry is checked on pictures of its public set, in
its input shape and value range, and the check's sentences say its classes and its set (tests/competition_folder.py:
3×40×24 colour pictures, seven classes, inputs in [-1, 1])."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness import check
from harness.common.competition import load
from harness.contract import Interface
from harness.data.task import task_of
from harness.submit.checking import sample_images, shape_conventions, value_conventions
from harness.training import architectures
from harness.training.entry_writer import write_entry
from tests.competition_folder import CLASSES, HEIGHT, WIDTH, make_competition

TASK = {"in_channels": 3, "height": HEIGHT, "width": WIDTH, "num_classes": 7}
INTERFACE = Interface((3, HEIGHT, WIDTH), 7, (-1.0, 1.0))


def kit_entry(folder, name: str, **knobs):
    """A logistic regression of the kit with seeded random weights, written as an entry into folder/submissions."""
    torch.manual_seed(0)
    constructor = {**TASK, "mean": 0.0, "std": 1.0, **knobs}
    model = architectures.build("logreg", **constructor)
    out = write_entry(folder / "submissions" / name, model, metadata={"model_class": "LogisticRegression",
                                                                       "weights": "weights.pt",
                                                                       "constructor": constructor},
                      history=[], model_code=architectures.model_source("logreg"), model_class="LogisticRegression",
                      constructor=constructor,
                      interface=INTERFACE if constructor["num_classes"] == 7 else Interface((3, HEIGHT, WIDTH), 10))
    return out, model.eval()


@pytest.fixture
def folder(tmp_path):
    return make_competition(tmp_path / "tall", train=None, public=6, secret=2)


def public_pictures(folder) -> tuple[torch.Tensor, np.ndarray]:
    """The public set read with Pillow alone, as the entry receives it ([-1, 1]), with its labels."""
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / "public" / name).glob("*.png")):
            rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)  # [H, W, 3]
            images.append(rgb.transpose(2, 0, 1) / 255 * 2 - 1)
            labels.append(label)
    return torch.from_numpy(np.stack(images)), np.array(labels)


@pytest.mark.slow
def test_a_competitions_entry_is_checked_on_its_public_pictures(folder, capsys):
    entry, model = kit_entry(folder, "tall-logreg")
    assert check.main(["--competition", str(folder), str(entry)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "✓ tall-logreg (tall-logreg) loads and runs: output [N, 7] logits, finite, any batch size." in said
    x, labels = public_pictures(folder)
    with torch.inference_mode():
        expected = (model(x).argmax(1).numpy() == labels).mean()
    assert f"accuracy on 42 pictures of Patterns test: {100 * expected:.1f}%" in said
    assert "(42 pictures of Patterns test + 42 memorisation copies + 14 pictures of the stranger's patterns" in said


@pytest.mark.slow
def test_an_entry_answering_ten_scores_is_refused_for_seven_classes(folder, capsys):
    entry, _ = kit_entry(folder, "ten", num_classes=10)
    assert check.main(["--competition", str(folder), str(entry)]) == 1
    said = " ".join(capsys.readouterr().out.split())
    assert said == ("error: ten: forward returned shape [2, 10] for a batch of 2 on the warm-up images; it must return "
                    "[2, 7] (one score per class).")


def test_the_sample_is_the_public_sets_pictures_in_a_fixed_mixed_order(folder):
    task = task_of(load(folder / "competition.toml"))
    images, labels, said = sample_images(None, 500, task)
    assert images.dtype == np.uint8 and images.shape == (42, 3, HEIGHT, WIDTH)
    assert said == "42 pictures of Patterns test"
    assert sorted(np.bincount(labels)) == [6] * 7 and len(set(labels[:7])) > 1  # every class, not by class
    again, _, _ = sample_images(None, 10, task)
    assert np.array_equal(again, images[:10])
    x, all_labels = public_pictures(folder)
    uint8 = np.round((x.numpy() + 1) / 2 * 255).astype(np.uint8)
    found = {uint8[i].tobytes(): all_labels[i] for i in range(len(uint8))}
    assert [found[image.tobytes()] for image in images] == list(labels)


def test_an_empty_public_set_gives_noise_of_the_tasks_shape(folder):
    for path in (folder / "public").rglob("*.png"):
        path.unlink()
    images, labels, said = sample_images(None, 20, task_of(load(folder / "competition.toml")))
    assert images.shape == (20, 3, HEIGHT, WIDTH) and labels is None
    assert said == "20 random images (Patterns test has no picture)"


def test_the_conventions_tried_follow_the_tasks_channels_and_size(folder):
    task = task_of(load(folder / "competition.toml"))
    values = value_conventions(task)
    assert values and all(c.adapter.get("channels") == 3 and "size" not in c.adapter for c in values)
    shapes = shape_conventions(task)
    assert [s[0] for s in shapes] == ["28×28 images", "32×32 images", "64×64 images", "224×224 images"]
    assert all(s[1]["channels"] == 3 for s in shapes)
