"""`harness.train --extra FOLDER`: other writers' labelled digits trained on as well, normalised like the guest's
digits, never the guest set itself; and that they help a model read a writer it has not seen (Semeion)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import preprocess
from harness.data.guest import load_guest_set
from harness.errors import HarnessError
from harness.train import main, parse
from harness.training import architectures
from harness.training.loop import TrainConfig, fit, load_data
from tests.conftest import mnist_folder

MNIST = mnist_folder()


pytestmark = pytest.mark.usefixtures("one_thread")


def semeion_files(semeion_dir: Path, per_digit: int, start: int = 0) -> list[tuple[Path, int]]:
    """``per_digit`` files of each digit, from the ``start``-th in sorted order."""
    return [(f, d) for d in range(10)
            for f in sorted((semeion_dir / str(d)).iterdir())[start:start + per_digit]]


def copy_digits(files: list[tuple[Path, int]], folder: Path) -> Path:
    for f, d in files:
        (folder / str(d)).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, folder / str(d) / f.name)
    return folder


def test_extra_digits_are_normalised_like_the_guest_set_and_repeated(mnist_dir, semeion_dir, tmp_path):
    files = semeion_files(semeion_dir, 1)
    folder = copy_digits(files, tmp_path / "others")
    config = TrainConfig(limit=600, val_fraction=0.5, extra=(str(folder),), extra_repeat=3)
    data = load_data(config, MNIST, download=False)
    plain = load_data(TrainConfig(limit=600, val_fraction=0.5), MNIST, download=False)
    assert torch.equal(data.train_x[:300], plain.train_x) and torch.equal(data.val_x, plain.val_x)   # MNIST unchanged
    assert len(data.train_x) == 300 + 3 * 10 and len(data.val_x) == 300                # validation stays MNIST only
    # The reference: each file through the guest pipeline's own steps, in the folder's order, three times over.
    expected = np.stack([preprocess.normalize_image(preprocess.open_image(f)) for f, _ in files])
    appended = data.train_x[300:].numpy()[:, 0]
    for r in range(3):
        np.testing.assert_allclose(appended[10 * r:10 * (r + 1)], expected, atol=1e-6)
        assert data.train_y[300 + 10 * r:300 + 10 * (r + 1)].tolist() == list(range(10))
    assert data.extra[0].images == 10 and data.extra[0].skipped == 0
    assert data.extra[0].content_hash == load_guest_set(folder).content_hash


@pytest.mark.slow
def test_the_guest_set_is_refused_as_training_data(mnist_dir, semeion_dir, tmp_path, monkeypatch):
    """The cheat: training on the digits the entries are ranked on, by naming the folder or by copying its files."""
    monkeypatch.chdir(tmp_path)
    files = semeion_files(semeion_dir, 1)
    copy_digits(files, tmp_path / "mystery_digits")
    for folder in ("mystery_digits", str(tmp_path / "mystery_digits" / "3")):
        with pytest.raises(HarnessError, match="is the guest set"):
            load_data(TrainConfig(limit=100, extra=(folder,)), MNIST, download=False)
    mixed = copy_digits(semeion_files(semeion_dir, 2, start=5) + files[3:4], tmp_path / "others")
    with pytest.raises(HarnessError, match=r"holds 1 of the guest's digits \(e\.g\. 3/"):
        load_data(TrainConfig(limit=100, extra=(str(mixed),)), MNIST, download=False)
    (mixed / "3" / files[3][0].name).unlink()
    assert load_data(TrainConfig(limit=100, extra=(str(mixed),)), MNIST, download=False).extra[0].images == 20
    # The same picture saved again as BMP: other bytes, the same digit once normalised.
    Image.open(files[7][0]).save(mixed / "7" / "resaved.bmp")
    with pytest.raises(HarnessError, match=r"holds 1 of the guest's digits \(e\.g\. 7/resaved\.bmp"):
        load_data(TrainConfig(limit=100, extra=(str(mixed),)), MNIST, download=False)


def test_extra_folders_without_digits_are_named_in_one_sentence(mnist_dir, tmp_path, capsys):
    base = ["--arch", "logreg", "--limit", "100", "--epochs", "1", "--mnist-dir", str(MNIST), "--no-download",
            "--quiet", "--out", str(tmp_path / "entry")]
    assert main([*base, "--extra", str(tmp_path / "nowhere")]) == 1
    assert "there is no such folder" in capsys.readouterr().err
    (tmp_path / "empty" / "4").mkdir(parents=True)
    (tmp_path / "empty" / "4" / "blank.png").write_bytes(b"not an image")
    assert main([*base, "--extra", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "has no labelled digit the pipeline can read" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "entry").exists()


@pytest.mark.slow
def test_the_entry_records_which_extra_digits_it_was_trained_on(mnist_dir, semeion_dir, tmp_path, capsys):
    folder = copy_digits(semeion_files(semeion_dir, 2), tmp_path / "others")
    code = main(["--arch", "logreg", "--limit", "300", "--epochs", "1", "--extra", str(folder), "--extra-repeat", "2",
                 "--mnist-dir", str(MNIST), "--no-download", "--quiet", "--out", str(tmp_path / "entry")])
    assert code == 0
    assert f"Extra digits: 20 from {folder}, each seen 2× per epoch." in capsys.readouterr().err
    toml = tomllib.loads((tmp_path / "entry" / "entry.toml").read_text())
    hyper = toml["hyperparameters"]
    assert toml["description"].endswith(", plus 20 digits by other writers).")
    assert hyper["extra"] == [str(folder)] and hyper["extra_repeat"] == 2
    assert hyper["extra_images"] == [20] and hyper["extra_sha256"] == [load_guest_set(folder).content_hash]
    assert hyper["train_images"] == 270 + 40
    assert main(["--arch", "logreg", "--limit", "300", "--epochs", "1", "--mnist-dir", str(MNIST), "--no-download",
                 "--quiet", "--out", str(tmp_path / "plain")]) == 0
    plain = tomllib.loads((tmp_path / "plain" / "entry.toml").read_text())["hyperparameters"]
    assert not {"extra", "extra_repeat", "extra_images", "extra_sha256"} & set(plain) and plain["train_images"] == 270


def test_augment_none_turns_off_a_presets_augmentations():
    _, args = parse(["--preset", "stranger", "--augment", "none", "--out", "x"])
    from harness.train import config_from_args
    assert config_from_args(args).augment.names == ()


@pytest.mark.slow
def test_other_writers_digits_help_a_model_read_writers_it_has_not_seen(mnist_dir, semeion_dir, tmp_path):
    """The same small CNN and MNIST images, with and without 300 Semeion digits of its first writers; scored on
    300 digits of later writers (files 100 onwards per digit), whom neither run saw."""
    folder = copy_digits(semeion_files(semeion_dir, 30), tmp_path / "others")
    later = semeion_files(semeion_dir, 30, start=100)
    x = torch.from_numpy(np.stack([preprocess.normalize_image(preprocess.open_image(f)) for f, _ in later]))[:, None]
    y = torch.tensor([d for _, d in later])

    def score(extra: tuple[str, ...]) -> float:
        config = TrainConfig(arch="cnn", channels=(8, 16, 16), optimizer="adamw", lr=3e-3, schedule="onecycle",
                             batch_size=64, epochs=2, limit=3000, val_fraction=0.1, extra=extra, extra_repeat=4)
        torch.manual_seed(0)
        model = architectures.build(config.arch, **config.constructor())
        fit(model, load_data(config, MNIST, download=False), config)
        with torch.inference_mode():
            return (model(x).argmax(dim=1) == y).float().mean().item()

    alone, helped = score(()), score((str(folder),))
    assert helped >= alone + 0.10, (alone, helped)      # measured: 60.0% alone, 80.7% helped


def test_semeions_parts_are_disjoint_and_in_writing_order(semeion_dir):
    """scripts/semeion_halves.py: the held-out half shares no file with the digits a recipe may train or be chosen
    on; per digit, tune-a's files come before tune-b's, which come before the held-out half's (writers in order)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("semeion_halves",
                                                  Path(__file__).parents[3] / "scripts" / "semeion_halves.py")
    halves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(halves)
    parts = {k: set(v) for k, v in halves.split(semeion_dir).items()}
    assert {k: len(v) for k, v in parts.items()} == {"tune": 793, "held-out": 799, "tune-a": 393, "tune-b": 400}
    assert parts["tune"] | parts["held-out"] == {p.relative_to(semeion_dir) for p in semeion_dir.glob("?/*.png")}
    assert not parts["tune"] & parts["held-out"] and parts["tune-a"] | parts["tune-b"] == parts["tune"]
    assert not parts["tune-a"] & parts["tune-b"]
    for d in range(10):
        a, b, h = ([p.name for p in parts[k] if p.parent.name == str(d)] for k in ("tune-a", "tune-b", "held-out"))
        assert max(a) < min(b) and max(b) < min(h)
