"""competition.toml's [task] table: what it builds, and one sentence for each way it can be wrong; the resize step on
hand-computed pictures; a folder of pictures read under class names."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

from harness.common import competition
from harness.common.competition import CompetitionConfigError, parse
from harness.data.guest import GuestSetError, Reader, load_guest_set
from harness.data.resize import resize_image
from harness.data.task import MNIST_DIGITS, task_of

GOOD = {
    "title": "Shapes",
    "task": {"title": "Five shapes", "classes": ["circle", "square", "triangle", "star", "cross"], "channels": 3,
             "height": 32, "width": 32, "train": "train",
             "public": {"title": "Shapes test", "folder": "public"},
             "secret": {"title": "the stranger's shapes", "folder": "secret"}},
}


def changed(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


def test_the_task_table_builds_the_task(tmp_path):
    rules = parse(GOOD, "x.toml", tmp_path)
    task = task_of(rules)
    assert task.classes == ("circle", "square", "triangle", "star", "cross") and task.num_classes == 5
    assert task.input_shape == (3, 32, 32) and task.stored_shape == (3, 32, 32) and not task.drawable
    assert rules.task.public.folder == (tmp_path / "public").resolve() and rules.task.train == (tmp_path / "train")
    assert (task.public.kind, task.secret.kind) == ("public", "secret") and task.secret.secret
    assert rules.set_kinds == ("public", "secret")
    assert rules.primary == "secret_accuracy" and rules.tie_break == ("public_accuracy",)  # the defaults, by kind


def test_without_a_task_table_it_is_the_mnist_warm_up():
    rules = parse({})
    assert rules.task is None and task_of(rules) is MNIST_DIGITS and rules.set_kinds == ("mnist", "guest")
    assert rules.primary == "guest_accuracy" and rules.tie_break == ("mnist_accuracy",)


@pytest.mark.parametrize("change, sentence", [
    (lambda d: d["task"].update(channels=2), "task.channels = 2 must be 1 (grey) or 3 (colour)."),
    (lambda d: d["task"].update(classes=["one"]), "task.classes must be a list of at least two different"),
    (lambda d: d["task"].update(classes=["a", "b", "a"]), "task.classes names 'a' twice; every class needs its own"),
    (lambda d: d["task"].update(classes=["a", "_b"]), "task.classes has '_b'; a class name is also its folder's"),
    (lambda d: d["task"].update(height=4), "task.height = 4 must be a whole number of pixels from 8 to 1024."),
    (lambda d: d["task"].update(width="wide"), "task.width = 'wide' must be a whole number of pixels"),
    (lambda d: d["task"].update(value_range=[1, 0]), "task.value_range = [1, 0] must go from low to high"),
    (lambda d: d["task"].update(preprocess="crop"), "task.preprocess = 'crop' must be \"digits\""),
    (lambda d: d["task"].update(preprocess="digits"), "task.preprocess = \"digits\" makes 1×28×28 inputs"),
    (lambda d: d["task"].pop("secret"), "[task] has no secret; add [task.secret] with title and folder."),
    (lambda d: d["task"].pop("classes"), "[task] has no classes; add classes = [\"circle\", \"square\"]."),
    (lambda d: d["task"]["secret"].update(folder="public"), "task.public.folder and task.secret.folder are both"),
    (lambda d: d["task"]["public"].pop("title"), "task.public.title must be a non-empty string"),
    (lambda d: d["task"]["public"].update(extra=1), "unknown key task.public.extra; the keys are title and folder."),
    (lambda d: d["task"].update(colour=True), "unknown key task.colour; the keys are title, classes, channels"),
    (lambda d: d.update(ranking={"primary": "guest_accuracy"}), "ranking has 'guest_accuracy', a metric of the MNIST"),
    (lambda d: d.update(task="shapes"), "'task' must be a table"),
])
def test_a_wrong_task_table_is_one_sentence_naming_the_key(change, sentence):
    with pytest.raises(CompetitionConfigError) as caught:
        parse(changed(change), "comp.toml")
    message = str(caught.value)
    assert message.startswith("comp.toml: ") and sentence in message
    assert message.count(". ") == 0 or message.endswith(".")  # one sentence


def test_a_task_metric_without_a_task_is_refused():
    with pytest.raises(CompetitionConfigError, match="'secret_accuracy', a metric of a competition with a \\[task\\]"):
        parse({"ranking": {"primary": "secret_accuracy"}})


def test_resize_keeps_the_aspect_ratio_and_pads_with_black():
    # a 4×2 (w×h) red picture into 3×8×8: scaled ×2 to 8×4, centred with two black rows above and below
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    out = resize_image(img, 3, 8, 8)
    assert out.shape == (3, 8, 8) and out.dtype == np.float32
    assert np.allclose(out[0, 2:6], 1.0) and np.allclose(out[1:, 2:6], 0.0)
    assert np.allclose(out[:, :2], 0.0) and np.allclose(out[:, 6:], 0.0)


def test_resize_to_grey_averages_when_it_shrinks():
    # a 4×4 picture of two columns 0 and 200 -> 1×2×2: the box filter averages each 2×2 block exactly
    a = np.zeros((4, 4), np.uint8)
    a[:, 2:] = 200
    out = resize_image(Image.fromarray(a, "L"), 1, 2, 2)
    assert np.allclose(out[0] * 255, [[0, 200], [0, 200]], atol=0.5)


def test_transparency_is_laid_on_black():
    img = Image.new("RGBA", (2, 2), (255, 255, 255, 0))
    assert np.allclose(resize_image(img, 3, 2, 2), 0.0)


def test_a_folder_is_read_under_its_class_names(tmp_path):
    reader = Reader(("cat", "dog"), lambda im: np.asarray(im.convert("L"), np.float32)[None] / 255, "t-1", (1, 2, 2),
                    "picture", lambda path: Image.open(path))
    (tmp_path / "dog").mkdir()
    Image.new("L", (2, 2), 10).save(tmp_path / "dog" / "a.png")
    Image.new("L", (2, 2), 20).save(tmp_path / "cat_7.png")            # the class name as the file name's prefix
    Image.new("L", (2, 2), 30).save(tmp_path / "x.png")
    (tmp_path / "labels.csv").write_text("file,label\nx.png,cat\n")   # a label in labels.csv is a class name
    read = load_guest_set(tmp_path, reader)
    assert dict(zip(read.files, read.labels.tolist(), strict=True)) == {"cat_7.png": 0, "dog/a.png": 1, "x.png": 0}
    assert read.images.shape == (3, 1, 2, 2)
    (tmp_path / "bird").mkdir()
    Image.new("L", (2, 2), 40).save(tmp_path / "bird" / "b.png")
    with pytest.raises(GuestSetError, match="label folder 'bird' is not one of the class names \\(cat, dog\\)"):
        load_guest_set(tmp_path, reader)


def test_settle_points_the_paths_into_the_competition_folder(tmp_path, monkeypatch):
    import argparse
    from pathlib import Path
    default = Path("submissions")
    (tmp_path / "competition.toml").write_text("")
    args = argparse.Namespace(competition=str(tmp_path), config=None, db=None, submissions=default)
    assert competition.settle(args, submissions=default) == tmp_path
    assert (args.config, args.db, args.submissions) == (str(tmp_path / "competition.toml"),
                                                        str(tmp_path / "leaderboard.db"), tmp_path / "submissions")
    given = argparse.Namespace(competition=None, config=None, db="x.db", submissions=Path("mine"))
    monkeypatch.setenv("LEADERBOARD_COMPETITION", str(tmp_path))
    competition.settle(given, submissions=default)
    assert (given.db, given.submissions) == ("x.db", Path("mine"))  # what the command line says stays


def test_an_entry_cannot_set_the_interface_it_is_handed(tmp_path):
    """What an entry receives is the competition's, never its own: entry.toml has no key for it."""
    from harness.contract import DIGITS, Interface
    from harness.entries.discovery import load_entry
    folder = tmp_path / "sly"
    folder.mkdir()
    (folder / "model.py").write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n")
    (folder / "entry.toml").write_text('interface = {input_shape = [1, 2, 2], num_classes = 2}\n')
    entry = load_entry(folder, Interface((3, 32, 32), 5))
    assert "unknown key(s) interface" in entry.metadata_error
    assert entry.metadata.interface == Interface((3, 32, 32), 5) != DIGITS  # the harness's, as handed over
