"""The training kit on a competition's own task (``--competition DIR``): a generated folder of 3×40×24 colour
pictures of seven classes with inputs in [-1, 1] (tests/competition_folder.py). A real run writes an entry that takes
the task's input, answers seven scores, reads its training pictures well above chance and passes
``harness.check --competition``; bad folders are refused with one sentence."""

from __future__ import annotations

import importlib.util
import tomllib
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import check
from harness.train import main
from harness.training import architectures
from tests.competition_folder import CLASSES, HEIGHT, WIDTH, make_competition
from tests.conftest import mnist_folder, needs_mnist

MNIST = mnist_folder()

pytestmark = pytest.mark.usefixtures("one_thread")


def train(folder: Path, tmp_path: Path, *flags: str, out: str = "tall") -> int:
    return main(["--competition", str(folder), "--out", out, "--quiet", "--author", "tester",
                 "--checkpoint", str(tmp_path / "run.pt"), *flags])


def pictures(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every picture under ``folder/<class>/`` read with Pillow alone (not the harness's reader), as the entry receives
    it: float32 [N, 3, 40, 24] scaled from 0..255 to the task's [-1, 1], with its class's index."""
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / name).glob("*.png")):
            rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)  # [H, W, 3]
            images.append(rgb.transpose(2, 0, 1) / 255 * 2 - 1)
            labels.append(label)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


@pytest.mark.slow
def test_a_run_on_a_competitions_task_writes_an_entry_of_its_shape_that_passes_the_check(tmp_path, capsys):
    folder = make_competition(tmp_path / "tall", train=30)
    assert train(folder, tmp_path, "--arch", "cnn", "--epochs", "6", "--batch-size", "16", "--lr", "3e-3",
                 "--augment", "crop") == 0  # a random crop of the task's 40×24 after padding
    entry = folder / "submissions" / "tall"  # a bare --out name lands in the competition's submissions/
    meta = tomllib.loads((entry / "entry.toml").read_text())
    constructor, hyper = meta["constructor"], meta["hyperparameters"]
    assert {k: constructor[k] for k in architectures.TASK_KNOBS} == {"in_channels": 3, "height": HEIGHT,
                                                                       "width": WIDTH, "num_classes": 7}
    assert (constructor["mean"], constructor["std"]) == (0.0, 1.0)  # the middle and half of [-1, 1]
    assert hyper["task"] == "Seven patterns" and hyper["task_classes"] == list(CLASSES)
    assert hyper["task_input_shape"] == [3, HEIGHT, WIDTH] and hyper["task_value_range"] == [-1.0, 1.0]
    assert (hyper["train_images"], hyper["val_images"]) == (189, 21)  # 7 × 30 pictures, a tenth held out
    assert "--competition" in capsys.readouterr().err

    # Loaded without the harness: its own model.py and weights.pt
    spec = importlib.util.spec_from_file_location(f"m{uuid.uuid4().hex}", entry / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, meta["model_class"])(**constructor)
    model.load_state_dict(torch.load(entry / "weights.pt", weights_only=True))
    x, y = pictures(folder / "train")
    with torch.inference_mode():
        out = model.eval()(x)
    assert out.shape == (len(x), 7)
    assert (out.argmax(1) == y).float().mean().item() > 0.6  # chance is 1/7

    assert check.main(["--competition", str(folder), str(entry)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "✓ tall (tall) loads and runs: output [N, 7] logits, finite, any batch size." in said
    assert "42 pictures of Patterns test" in said  # its public set: 7 × 6 pictures

    # Scored by the real command into the competition's own database, and on its own board
    import contextlib
    import io
    import json

    from harness import evaluate
    from harness.common import competition
    from harness.scoring import board
    from harness.store.engine import make_engine
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert evaluate.main(["--competition", str(folder), "--device", "cpu", "--json"]) == 0
    row = json.loads(printed.getvalue())["entries"][0]
    assert row["name"] == "tall" and row["status"] == "ok"
    assert row["public"]["total"] == 42 and row["public"]["accuracy"] > 0.6 and row["secret"]["total"] == 28
    shown = board.read(make_engine(str(folder / "leaderboard.db")), competition.load(folder / "competition.toml"))
    assert [r.name for r in shown.rows] == ["tall"] and shown.primary == "public"  # sealed: ranked on the public set


def test_a_competition_without_a_training_folder_is_told_where_to_name_it(tmp_path, capsys):
    folder = make_competition(tmp_path / "x", train=None)
    assert train(folder, tmp_path) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err == (f"error: {folder} has no training folder: add train = \"train\" under [task] in its "
                   "competition.toml and put the training pictures there (a folder per class).")
    assert list((folder / "submissions").iterdir()) == []


def test_a_training_folder_without_pictures_is_named(tmp_path, capsys):
    folder = make_competition(tmp_path / "x", train=0)  # the class folders, empty
    assert train(folder, tmp_path) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err == (f"error: the training folder {(folder / 'train').resolve()} has no labelled picture; put the "
                   "pictures in a folder per class (red-disc, green-bar, blue-box, ...) or list them in a labels.csv.")


@pytest.mark.parametrize("augmentations, said", [
    (["stroke"], "--augment stroke is for handwritten digits"),
    (["affine", "refit", "stroke"], "--augment refit stroke are for handwritten digits"),
])
def test_handwriting_augmentations_are_refused_on_a_colour_task(tmp_path, capsys, augmentations, said):
    folder = make_competition(tmp_path / "x", train=2, public=1, secret=1)
    with pytest.raises(SystemExit) as exit_info:
        train(folder, tmp_path, "--augment", *augmentations)
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert said in err and "cannot apply to 'Seven patterns'" in err


def test_extra_digits_are_for_mnist_alone(tmp_path, capsys):
    folder = make_competition(tmp_path / "x", train=2, public=1, secret=1)
    assert train(folder, tmp_path, "--extra", str(tmp_path)) == 1
    assert "--extra is for the MNIST warm-up's digits" in capsys.readouterr().err


def test_the_kits_architectures_take_any_task_shape():
    """Each architecture, built for 3×40×24 inputs and 7 classes (and with --resize/--crop in front), answers
    [N, 7]."""
    x = torch.rand(5, 3, HEIGHT, WIDTH)
    task = {"in_channels": 3, "height": HEIGHT, "width": WIDTH, "num_classes": 7}
    for name in architectures.list_architectures():
        for extra in ({}, {"resize": 32}, {"resize": 32, "crop": 28}):
            model = architectures.build(name, **task, **extra).eval()
            assert model(x).shape == (5, 7), (name, extra)


@needs_mnist
def test_a_competition_without_a_task_table_trains_on_mnist_into_its_submissions(tmp_path):
    """A competition.toml without [task] is the MNIST warm-up: the kit trains on MNIST, as without --competition, and
    writes into the folder's submissions/ with the MNIST constructor (no task knobs)."""
    folder = tmp_path / "club"
    (folder / "submissions").mkdir(parents=True)
    (folder / "competition.toml").write_text('title = "The club"\n')
    assert train(folder, tmp_path, "--arch", "logreg", "--epochs", "1", "--limit", "200", "--mnist-dir", str(MNIST),
                 "--no-download", out="submissions/club-logreg") == 0
    meta = tomllib.loads((folder / "submissions" / "club-logreg" / "entry.toml").read_text())
    assert not set(architectures.TASK_KNOBS) & set(meta["constructor"]) and "task" not in meta["hyperparameters"]
    assert meta["constructor"]["mean"] == architectures.MNIST_MEAN
