"""The training kit: short runs learn, runs are reproducible and resumable, failures leave nothing behind,
and the committed baseline entries load and classify MNIST test digits."""

from __future__ import annotations

import ast
import errno
import gzip
import hashlib
import importlib.util
import inspect
import shlex
import signal
import tomllib
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.adapters import IMAGENET_MEAN, IMAGENET_STD, InputAdapter
from harness.train import main
from harness.training import architectures, augment
from harness.training.loop import TrainConfig, fit, load_checkpoint, load_data, to_tensor
from tests.conftest import REPO, mnist_folder, needs_mnist

ROOT = Path(__file__).resolve().parents[3]
MNIST = mnist_folder()
# Every entry folder committed in submissions/ (named as harness.entries.discovery names them), not a fixed list.
COMMITTED = sorted(p.name for p in (ROOT / "submissions").iterdir()
                   if p.is_dir() and not p.name.startswith((".", "_")))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_data(mnist_dir):
    """3,000 training images: 2,500 to train on, 500 to validate on."""
    return load_data(TrainConfig(limit=3000, val_fraction=1 / 6, seed=0), MNIST, download=False)


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    """The first 1,000 images of the official (md5-checked) test set."""
    from harness.data.mnist import load_split
    split = load_split(MNIST, "test", allow_download=False)
    return to_tensor(split.images[:1000]), torch.from_numpy(split.labels[:1000])


def accuracy(model, x, y) -> float:
    """Plain top-1 accuracy, written independently of harness.training.loop.evaluate (the model is in eval mode;
    an exported module cannot be switched)."""
    with torch.inference_mode():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def train(data, config, **kwargs):
    torch.manual_seed(config.seed)
    model = architectures.build(config.arch, **config.constructor())
    return fit(model, data, config, **kwargs)


def cli(tmp_path, *flags, out="entry"):
    argv = ["--mnist-dir", str(MNIST), "--no-download", "--quiet", "--out", str(tmp_path / out), *flags]
    return main(argv), argv


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- learning ---------------------------------------------------------------------------------------

@needs_mnist
def test_a_few_hundred_steps_reach_a_sensible_accuracy(small_data, test_digits):
    config = TrainConfig(arch="mlp", hidden=(128,), optimizer="sgd", lr=0.01, momentum=0.9,
                         batch_size=25, epochs=3, limit=3000, val_fraction=1 / 6)
    result = train(small_data, config)
    assert result.state.global_step == 300
    assert not result.interrupted
    assert accuracy(result.model, small_data.val_x, small_data.val_y) == pytest.approx(result.val_accuracy)
    assert result.val_accuracy >= 0.88
    assert accuracy(result.model, *test_digits) >= 0.88  # on digits it never saw, from the official test set
    assert result.history[-1].train_loss < result.history[0].train_loss


@pytest.mark.slow
@needs_mnist
def test_same_seed_same_weights_other_seed_other_weights(small_data):
    config = TrainConfig(arch="logreg", epochs=1, batch_size=50, augment=augment.AugmentConfig(names=("affine",)))
    a, b = train(small_data, config), train(small_data, config)
    c = train(small_data, replace(config, seed=1))
    assert all(torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]) for k in a.model.state_dict())
    assert not torch.equal(a.model.linear.weight, c.model.linear.weight)


@pytest.mark.slow
@needs_mnist
def test_resume_gives_the_same_result_as_an_uninterrupted_run(small_data, tmp_path):
    """Dropout, augmentation, Adam moments and the one-cycle schedule all have to come back exactly."""
    config = TrainConfig(arch="cnn", channels=(4, 8, 8), dropout=0.3, optimizer="adamw", lr=3e-3, schedule="onecycle",
                         batch_size=50, epochs=2, limit=3000, val_fraction=1 / 6,
                         augment=augment.AugmentConfig(names=("affine", "erasing")))
    data = replace(small_data, train_x=small_data.train_x[:500], train_y=small_data.train_y[:500])
    whole = train(data, config)
    ckpt = tmp_path / "run.pt"
    first = train(data, config, checkpoint=ckpt, should_stop=lambda s: s.global_step == 13)  # mid-epoch 2
    assert first.interrupted and ckpt.is_file() and first.state.epoch == 1
    resumed = train(data, config, resume=load_checkpoint(ckpt))
    assert resumed.state.global_step == whole.state.global_step == 20
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert without_timings(resumed.state.history) == without_timings(whole.state.history)


@needs_mnist
def test_ctrl_c_stops_after_the_batch_in_progress_and_saves_a_checkpoint(tmp_path, small_data):
    config = TrainConfig(arch="logreg", epochs=2, batch_size=50, limit=3000, val_fraction=1 / 6)
    ckpt = tmp_path / "ckpt.pt"
    handler = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(event, state, info):
        if event == "batch" and state.global_step == 10:
            signal.raise_signal(signal.SIGINT)

    result = train(small_data, config, checkpoint=ckpt, progress=press_ctrl_c)
    assert result.interrupted and result.state.global_step == 10
    saved = load_checkpoint(ckpt)
    assert saved["state"]["global_step"] == 10
    assert torch.equal(saved["model"]["linear.weight"], result.model.linear.weight)
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C behaves normally again afterwards


@needs_mnist
def test_cli_resume_continues_an_interrupted_cli_run(tmp_path, monkeypatch, capsys):
    import harness.training.loop as training
    ckpt = tmp_path / "c.pt"
    real_fit = training.fit
    monkeypatch.setattr("harness.train.fit",
                        lambda *a, **k: real_fit(*a, **k, should_stop=lambda s: s.global_step == 4))
    code, argv = cli(tmp_path, "--arch", "logreg", "--epochs", "2", "--limit", "400", "--batch-size", "60",
                     "--checkpoint", str(ckpt))
    assert code == 130 and ckpt.is_file() and not (tmp_path / "entry").exists()
    assert f"--resume {ckpt}" in capsys.readouterr().err
    monkeypatch.setattr("harness.train.fit", real_fit)
    assert main(["--resume", str(ckpt), "--quiet"]) == 0
    meta = tomllib.loads((tmp_path / "entry" / "entry.toml").read_text())
    assert meta["hyperparameters"]["command"] == shlex.join(["python", "-m", "harness.train", *argv])
    assert meta["hyperparameters"]["steps"] == 12  # 2 epochs of ceil(360 / 60) batches, counted across the interruption


# --- the entry it writes ----------------------------------------------------------------------------

def _gz_payload(path: Path, header: int) -> bytes:
    with gzip.open(path, "rb") as fh:
        return fh.read()[header:]


@pytest.mark.slow
@needs_mnist
def test_cli_writes_a_complete_self_contained_entry(tmp_path, test_digits, monkeypatch):
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getpass reads the first of these that is set
        monkeypatch.setenv(var, "ada-at-the-club")
    code, argv = cli(tmp_path, "--arch", "lenet5", "--channels", "4", "8", "--hidden", "32", "--epochs", "2",
                     "--limit", "2000", "--optimizer", "rmsprop", "--lr", "1e-3", "--schedule", "cosine",
                     "--augment", "affine", "--seed", "3", "--threads", "1")
    assert code == 0
    entry = tmp_path / "entry"
    assert sorted(p.name for p in entry.iterdir()) == ["curve.csv", "curve.png", "entry.toml", "model.py", "weights.pt"]
    assert leftovers(tmp_path) == []

    meta = tomllib.loads((entry / "entry.toml").read_text())
    assert meta["author"] == "ada-at-the-club"  # the login name, never the baselines' author
    hyper = run = meta["hyperparameters"]
    expected = {"arch": "lenet5", "channels": [4, 8], "hidden": [32], "kernel_size": 5, "optimizer": "rmsprop",
                "lr": 1e-3, "schedule": "cosine", "epochs": 2, "batch_size": 64, "seed": 3, "loss": "cross-entropy",
                "momentum": 0.9, "weight_decay": 0.0, "val_fraction": 0.1, "limit": 2000, "augment": ["affine"],
                "augment_degrees": 10.0, "threads": 1, "dropout": 0.0, "activation": "relu", "mean": 0.1307}
    assert {k: hyper.get(k) for k in expected} == expected
    assert run["command"] == shlex.join(["python", "-m", "harness.train", *argv])
    images = _gz_payload(MNIST / "train-images-idx3-ubyte.gz", 16)
    labels = _gz_payload(MNIST / "train-labels-idx1-ubyte.gz", 8)
    assert run["train_data_sha256"] == hashlib.sha256(images + labels).hexdigest()
    assert (run["train_images"], run["val_images"]) == (1800, 200)
    assert 0.5 < run["validation_accuracy"] <= 1.0
    rows = (entry / "curve.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_accuracy,val_loss,val_accuracy") and len(rows) == 3
    assert float(rows[-1].split(",")[4]) == pytest.approx(run["validation_accuracy"])
    assert (entry / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    source = (entry / "model.py").read_text()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])}
    assert imported == {"torch"}
    spec = importlib.util.spec_from_file_location(f"m{uuid.uuid4().hex}", entry / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, meta["model_class"])(**meta["constructor"])
    model.load_state_dict(torch.load(entry / meta["weights"], weights_only=True))
    assert accuracy(model.eval(), *test_digits) > 0.7


@pytest.mark.slow
@needs_mnist
def test_export_writes_a_code_free_entry_with_a_dynamic_batch(tmp_path, test_digits):
    code, _ = cli(tmp_path, "--arch", "cnn", "--channels", "4", "8", "8", "--epochs", "1", "--limit", "1000",
                  "--export")
    assert code == 0
    entry = tmp_path / "entry"
    assert not (entry / "model.py").exists() and not (entry / "weights.pt").exists()
    model = torch.export.load(entry / "model.pt2").module()
    x, _ = test_digits
    with torch.inference_mode():
        assert model(x[:3]).shape == (3, 10) and model(x[:17]).shape == (17, 10)
    assert "model_class" not in tomllib.loads((entry / "entry.toml").read_text())


@needs_mnist
def test_a_members_own_model_file_trains_into_an_entry(tmp_path):
    source = ROOT / "scripts" / "organiser_lenet.py"
    code, _ = cli(tmp_path, "--model-file", str(source), "--loss", "nll", "--optimizer", "sgd", "--lr", "0.02",
                  "--epochs", "1", "--limit", "1000")
    assert code == 0
    assert (tmp_path / "entry" / "model.py").read_text() == source.read_text()
    meta = tomllib.loads((tmp_path / "entry" / "entry.toml").read_text())
    assert (meta["model_class"], "constructor" in meta, meta["hyperparameters"]["arch"]) == ("Net", False, "custom")


# --- failures say what is wrong and leave nothing behind --------------------------------------------

@pytest.mark.parametrize("flags, words", [
    (["--arch", "resnet"], ["invalid choice: 'resnet'", "cnn", "lenet5", "logreg", "mlp"]),
    (["--optimizer", "adamax"], ["invalid choice: 'adamax'", "adam", "adamw", "rmsprop", "sgd"]),
    (["--loss", "hinge"], ["invalid choice: 'hinge'", "cross-entropy", "nll"]),
    (["--augment", "mixup"], ["invalid choice: 'mixup'", "affine", "elastic"]),
    (["--lr", "-0.1"], ["--lr", "must be positive"]),
    (["--val-fraction", "1.5"], ["--val-fraction", "below 1"]),
    (["--epochs", "two"], ["--epochs", "invalid"]),
])
def test_bad_flags_are_refused_with_the_valid_choices(tmp_path, capsys, flags, words):
    with pytest.raises(SystemExit) as exit_info:
        cli(tmp_path, *flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words), err
    assert list(tmp_path.iterdir()) == []


def test_the_kit_never_gives_a_members_entry_the_baselines_author(tmp_path, monkeypatch, capsys):
    """A member's entry is by --author, else the login name; only --out baseline-* gets the kit's own name (the one
    the committed baselines carry), and a member who types it is refused before training, with nothing written."""
    from harness.train import entry_author
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "bob")
    baselines = {tomllib.loads(p.read_text())["author"] for p in (REPO / "submissions").glob("baseline-*/entry.toml")}
    assert len(baselines) == 1
    assert entry_author(None, tmp_path / "my-cnn") == "bob"
    assert entry_author("  Ada Lovelace ", tmp_path / "my-cnn") == "Ada Lovelace"
    assert {entry_author(None, tmp_path / "baseline-lenet5")} == baselines
    code, _ = cli(tmp_path, "--author", "mnist club  TRAINING kit", "--epochs", "1", "--limit", "200")
    assert code == 1 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.strip().endswith(
        "'MNIST club training kit' is the author of the club's baselines; pass your own name, e.g. --author "
        "'Ada Lovelace'.")


def test_an_out_folder_that_cannot_be_an_entry_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(tmp_path, out="my entry")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out: entry folder name 'my entry' is not allowed; rename it using letters, digits" in err
    assert list(tmp_path.iterdir()) == []


@needs_mnist
def test_a_knob_the_architecture_lacks_is_refused(tmp_path, capsys):
    assert cli(tmp_path, "--arch", "logreg", "--hidden", "64", "--limit", "100")[0] == 1
    assert "--hidden does not apply to --arch logreg" in capsys.readouterr().err


def test_a_missing_data_directory_is_named(tmp_path, capsys):
    argv = ["--mnist-dir", str(tmp_path / "nowhere"), "--no-download", "--quiet", "--out", str(tmp_path / "entry")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "nowhere") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@needs_mnist
def test_a_model_file_that_cannot_classify_is_refused_before_training(tmp_path, capsys):
    model_file = tmp_path / "wrong.py"
    model_file.write_text("import torch\n\n\nclass Net(torch.nn.Module):\n"
                          "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(784, "
                          "5)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    assert cli(tmp_path, "--model-file", str(model_file), "--limit", "100")[0] == 1
    assert "returns shape (2, 5)" in capsys.readouterr().err
    assert not (tmp_path / "entry").exists()


def test_a_model_file_is_imported_and_its_class_picked_as_the_harness_does(tmp_path):
    """--model-file goes through harness.entries.loading (one importer), leaves no module behind, and says what is
    wrong in the training kit's own words (flags, not entry.toml)."""
    import sys

    from harness.errors import HarnessError
    from harness.training.model_setup import load_model_file
    two = "import torch\n\n\nclass A(torch.nn.Module):\n    pass\n\n\nclass B(torch.nn.Module):\n    pass\n"
    (tmp_path / "two.py").write_text(two)
    (tmp_path / "broken.py").write_text("import torch\nclass Net(torch.nn.Module:\n")
    modules, path = set(sys.modules), list(sys.path)
    cls, text = load_model_file(tmp_path / "two.py", "B")
    assert (cls.__name__, text) == ("B", two) and issubclass(cls, torch.nn.Module)
    with pytest.raises(HarnessError, match=r"two.py has no model class Model or Net; it defines A, B; name one with "
                                           r"--model-class\.$"):
        load_model_file(tmp_path / "two.py", None)
    with pytest.raises(HarnessError, match=r"broken.py fails to import \(SyntaxError: "):
        load_model_file(tmp_path / "broken.py", None)
    with pytest.raises(HarnessError, match=r"--model-file .*nowhere.py does not exist\.$"):
        load_model_file(tmp_path / "nowhere.py", None)
    assert set(sys.modules) == modules and sys.path == path


@needs_mnist
def test_a_corrupt_training_file_is_named(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    (data / "train-labels-idx1-ubyte.gz").write_bytes((MNIST / "train-labels-idx1-ubyte.gz").read_bytes())
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (60000, 28, 28))
    with gzip.open(data / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + bytes(1000))  # the header promises 47 MB of pixels
    argv = ["--mnist-dir", str(data), "--no-download", "--quiet", "--out", str(tmp_path / "entry")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "truncated or corrupt" in err
    assert not (tmp_path / "entry").exists()


@needs_mnist
def test_a_full_disk_while_saving_leaves_no_half_written_entry(tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if Path(f).name == "weights.pt":
            Path(f).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, _ = cli(tmp_path, "--arch", "logreg", "--epochs", "1", "--limit", "300",
                  "--checkpoint", str(tmp_path / "c.pt"))
    assert code == 1
    assert "disk is full" in capsys.readouterr().err
    assert not (tmp_path / "entry").exists() and leftovers(tmp_path) == []


@needs_mnist
def test_an_existing_entry_is_kept_unless_overwrite(tmp_path, capsys):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "model.py").write_text("# mine\n")
    assert cli(tmp_path, "--arch", "logreg", "--limit", "300")[0] == 1
    assert "--overwrite" in capsys.readouterr().err and (entry / "model.py").read_text() == "# mine\n"
    assert cli(tmp_path, "--arch", "logreg", "--limit", "300", "--epochs", "1", "--overwrite")[0] == 0
    assert (entry / "weights.pt").is_file() and leftovers(tmp_path) == []


def test_model_source_is_the_class_itself():
    """The generated model.py defines a class that computes exactly what the kit's class computes."""
    for name in architectures.list_architectures():
        namespace: dict = {}
        source = architectures.model_source(name)
        nodes = list(ast.walk(ast.parse(source)))
        imported = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names} | \
            {n.module for n in nodes if isinstance(n, ast.ImportFrom)}
        assert imported == {"torch"}, name  # needs nothing but torch
        assert inspect.getsource(InputAdapter) in source, name  # the harness's own adapter, copied
        exec(compile(source, "model.py", "exec"), namespace)
        cls = architectures.get_architecture(name)
        torch.manual_seed(0)
        ours = cls().eval()
        theirs = namespace[cls.__name__]().eval()
        theirs.load_state_dict(ours.state_dict())
        x = torch.rand(5, 1, 28, 28)
        assert torch.equal(ours(x), theirs(x)), name


# --- the committed entries --------------------------------------------------------------------------

def test_the_committed_entries_tested_are_those_the_harness_finds():
    from harness.entries.discovery import discover
    assert COMMITTED and sorted(discover(ROOT / "submissions")) == COMMITTED


@needs_mnist
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_entries_load_classify_and_record_their_command(name, test_digits):
    """Loaded without the harness's loader, each classifies 1,000 test digits as well as its recorded validation."""
    entry = ROOT / "submissions" / name
    meta = tomllib.loads((entry / "entry.toml").read_text())
    if (entry / "model.pt2").exists():
        model = torch.export.load(entry / "model.pt2").module()
    else:
        spec = importlib.util.spec_from_file_location(f"m{uuid.uuid4().hex}", entry / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = getattr(module, meta["model_class"])(**meta.get("constructor", {}))
        model.load_state_dict(torch.load(entry / meta["weights"], weights_only=True))
        model.eval()
    weights = [p for p in entry.iterdir() if p.suffix in (".pt", ".pt2", ".safetensors")]
    assert weights and all(p.stat().st_size < 5_000_000 for p in weights)
    assert meta["hyperparameters"]["command"].startswith("python -m harness.train ")
    recorded = meta["hyperparameters"]["validation_accuracy"]
    assert accuracy(model, *test_digits) >= max(0.88, recorded - 0.02)
    if (entry / "model.py").exists() and meta["hyperparameters"]["arch"] in architectures.list_architectures():
        # Today's kit builds the same model from the same knobs: its code (InputAdapter included) computes what the
        # committed model.py, written by an older kit, computes.
        kit = architectures.build(meta["hyperparameters"]["arch"], **meta["constructor"]).eval()
        kit.load_state_dict(model.state_dict())
        with torch.inference_mode():
            assert torch.equal(kit(test_digits[0][:100]), model(test_digits[0][:100]))


def test_resize_crop_and_normalise_inside_the_model_match_torchvision():
    """--resize/--crop/--mean/--std live in the model; they must equal the usual torchvision transforms."""
    from torchvision.transforms.v2 import functional as TF
    x = torch.rand(3, 1, 28, 28)
    prep = InputAdapter(size=32, crop=30, mean=0.5, std=0.25)
    expected = TF.normalize(TF.center_crop(TF.resize(x, [32, 32], antialias=False), [30, 30]), [0.5], [0.25])
    assert prep(x).shape == (3, 1, 30, 30) and prep.side == 30
    torch.testing.assert_close(prep(x), expected, atol=1e-5, rtol=0)
    rgb = InputAdapter(size=32, crop=30, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    expected = TF.normalize(TF.center_crop(TF.resize(x.expand(-1, 3, -1, -1), [32, 32], antialias=False), [30, 30]),
                            list(IMAGENET_MEAN), list(IMAGENET_STD))
    torch.testing.assert_close(rgb(x), expected, atol=1e-5, rtol=0)
    model = architectures.build("lenet5", resize=32, crop=30)
    assert model(x).shape == (3, 10)


@needs_mnist
@pytest.mark.parametrize("knob, value", [
    *[("loss", name) for name in ("cross-entropy", "nll", "multi-margin", "mse")],
    *[("optimizer", name) for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad")],
    *[("schedule", name) for name in ("constant", "step", "exponential", "cosine", "onecycle")],
])
def test_every_recipe_choice_lowers_the_training_loss(small_data, knob, value):
    lr = {"sgd": 0.05, "adagrad": 0.05}.get(value, 1e-3)
    config = replace(TrainConfig(arch="logreg", epochs=2, batch_size=50, momentum=0.5), **{knob: value, "lr": lr})
    data = replace(small_data, train_x=small_data.train_x[:1000], train_y=small_data.train_y[:1000])
    history = train(data, config).history
    assert history[1].train_loss < history[0].train_loss


@pytest.mark.parametrize("name", augment.list_augmentations())
def test_each_augmentation_changes_images_per_sample_within_range(name):
    transform = augment.build_transform(augment.AugmentConfig(names=(name,), erasing_p=1.0))
    torch.manual_seed(0)
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 8:20, 10:18] = 1.0  # a bar to move, bend or erase
    out = augment.augment_batch(x, transform)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    # refit is deterministic: it frames each digit into 20×20 (tests/harness/training/test_augment_stranger.py)
    if name != "refit":
        assert not torch.equal(out[0], out[1])  # each image gets its own random draw
