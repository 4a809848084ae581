"""``python -m harness.check``: a good entry is reported with its figures, a broken one exits non-zero."""

from __future__ import annotations

import argparse
import re

import pytest

from harness import check
from tests.entries import before_return, template_predictions, template_weights, with_forward, write_entry


@pytest.mark.slow
def test_good_entry_report(tmp_path, mnist_dir, mnist_test, means, capsys):
    folder = write_entry(tmp_path, "good", weights=template_weights(means), toml='display_name = "Good one"\n')
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    expected = (template_predictions(mnist_test.images[:500], means) == mnist_test.labels[:500]).mean()
    assert "✓ good (Good one) loads and runs: output [N, 10] logits" in out
    assert "parameters: 7,840" in out
    assert "images/s on the first 500 MNIST test images (cpu)" in out  # no conv weights: the usual memory layout
    assert f"accuracy on the first 500 MNIST test images: {100 * expected:.1f}%" in out


@pytest.mark.slow
def test_broken_entry_exits_nonzero_with_reason(tmp_path, mnist_dir, means, capsys):
    folder = write_entry(tmp_path, "fixed-batch", code=with_forward("return self.fc(x.view(200, -1))"),
                         weights=template_weights(means))
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("error: fixed-batch: RuntimeError in the model (model.py line 16)")


@pytest.mark.slow
def test_an_inverted_entry_is_told_the_fix_and_the_accuracy_it_gives(tmp_path, mnist_dir, mnist_test, means, capsys):
    inverted = with_forward("return self.scale * self.fc((1 - x).flatten(1) - 0.5)")
    folder = write_entry(tmp_path, "inverted", code=inverted, weights=template_weights(means))
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    count = int(re.search(r"instead of [\d.]+% of the first (\d+) MNIST test images", out).group(1))
    assert 500 <= count <= 2000  # as many as its speed allows (a template matcher: all 2000)
    images, labels = mnist_test.images[:count], mnist_test.labels[:count]
    as_is = template_predictions(255 - images, means) == labels  # what it reads: 1 - x
    fixed = template_predictions(images, means) == labels
    assert as_is.mean() + 0.2 < fixed.mean()
    better, worse = int((fixed & ~as_is).sum()), int((as_is & ~fixed).sum())
    assert (f"diagnosis: your model reads {100 * (fixed.mean() - as_is.mean()):.1f} points better when the images are "
            f"inverted (1-x: black ink on white): {100 * fixed.mean():.1f}% instead of {100 * as_is.mean():.1f}% of "
            f"the first {count} MNIST test images ({better} read right only so, {worse} only as given; one-sided sign "
            f"test p = ") in out
    assert out.endswith("Add `x = 1 - x` as the first line of your model's forward in model.py, or put "
                        "`InputAdapter(mean=1, std=-1)` in front of the model (see 'Input' in submissions/README.md).")


@pytest.mark.slow
def test_no_convention_helps_a_model_that_cannot_read_digits(tmp_path, mnist_dir, means, capsys):
    shuffled = means[[3, 4, 5, 6, 7, 8, 9, 0, 1, 2]]  # every class's template under another digit's name
    folder = write_entry(tmp_path, "shuffled", weights=template_weights(shuffled))
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "diagnosis" not in out
    assert "warning: under 90% and none of the usual input conventions (normalisation, polarity, 0-255, size) does " \
           "better" in out


def test_not_a_folder(tmp_path, capsys):
    assert check.main([str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().out


def test_without_mnist_uses_random_images(tmp_path, means, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "no-mnist"))
    folder = write_entry(tmp_path, "good", weights=template_weights(means))
    assert check.main([str(folder)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "500 random images (MNIST not found)" in out and "accuracy on" not in out


@pytest.mark.slow
def test_an_entry_over_the_time_limit_is_told_the_flag(tmp_path, means, capsys):
    folder = write_entry(tmp_path, "spins", code=before_return("while True:\n    pass"),
                         weights=template_weights(means))
    assert check.main([str(folder), "--timeout", "3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["error: spins: took longer than its time limit of 3 s and was stopped; make the model faster or "
                     "raise the time limit.",
                     f"  time limit: raise it with `python -m harness.check {folder} --timeout 6` (now 3 s)"]


@pytest.mark.slow
def test_a_model_that_needs_3_channels_is_told_the_adapter(tmp_path, mnist_dir, mnist_test, means, capsys):
    three = with_forward("return self.scale * self.fc(x[:, 2].flatten(1) - 0.5)")  # reads the third channel
    folder = write_entry(tmp_path, "rgb", code=three, weights=template_weights(means))
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    expected = (template_predictions(mnist_test.images[:500], means) == mnist_test.labels[:500]).mean()
    assert lines[0].startswith("error: rgb: IndexError in the model (model.py line 16)")
    assert lines[1] == (f"  with 3 channels it runs and reads {100 * expected:.1f}% of these images: add "
                        "`InputAdapter(channels=3)` in front of it (see 'Input' in submissions/README.md).")


def test_a_slow_model_is_checked_on_fewer_images_within_the_budget_and_says_what_it_skipped(tmp_path, mnist_dir,
                                                                                             means, capsys):
    shuffled = means[[3, 4, 5, 6, 7, 8, 9, 0, 1, 2]]  # reads nothing right: a diagnosis would be due
    folder = write_entry(tmp_path, "slow", code=before_return("import time\ntime.sleep(0.1 * len(x))"),
                         weights=template_weights(shuffled))  # 10 images/s at any batch size: 500 would take 50 s,
    # and a diagnosis on DIAGNOSIS_MIN = 20 images, five runs of 2 s each, over the budget whatever the machine
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir), "--budget", "6", "--mystery",
                       str(tmp_path / "none")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    found = re.search(r"a slow model: (\d+) of the usual 500 images, so that the check answers in about a minute\.",
                      out)
    assert found and 11 <= int(found.group(1)) < 500, out
    assert f"accuracy on the first {found.group(1)} MNIST test images" in out
    assert re.search(r"diagnosis: not tried: the usual input conventions would take about \d+ s more "
                     rf"at this speed; `python -m harness.check {folder} --budget \d+` tries them\.", out), out
    assert re.search(r"estimate: a full evaluation takes about \d+ (s|min|h) on this CPU \(10,000 MNIST images \+ "
                     r"1,000 memorisation copies \+ 100 guest digits, and two loads of [\d.]+ s\), (within|over) its "
                     r"time limit of", out), out
    assert "[limits]" in out or "within its time limit" in out  # shown as written, not taken for markup


def test_the_estimate_of_a_full_evaluation_is_its_images_at_the_checked_speed_plus_two_loads(tmp_path):
    config = tmp_path / "competition.toml"
    config.write_text('[limits]\ntimeout = "20 min"\n')
    args = argparse.Namespace(mystery=tmp_path / "none", config=str(config))  # no guest digits: the sample's 100
    line = check.estimate(args)
    # 2 loads of 5 s + (10,000 + 1,000 copies + 100 guest) images at 10/s = 1,120 s
    assert line({"images_per_second": 10.0, "load_seconds": 5.0, "device": "cpu, channels-last"}) == (
        "a full evaluation takes about 19 min on this CPU (10,000 MNIST images + 1,000 memorisation copies + 100 guest "
        "digits, and two loads of 5.0 s), within its time limit of 20 min.")
    # at 5/s: 2,230 s, over 20 min; the flag offered leaves half as much again, in whole minutes (56 min)
    assert line({"images_per_second": 5.0, "load_seconds": 5.0, "device": "cpu"}) == (
        "a full evaluation takes about 37 min on this CPU (10,000 MNIST images + 1,000 memorisation copies + 100 guest "
        "digits, and two loads of 5.0 s), over its time limit of 20 min: raise it with `python -m harness.evaluate "
        "--timeout 3360` or under [limits] in competition.toml, or make the model faster.")
    assert line({"images_per_second": None, "load_seconds": 5.0, "device": "cpu"}) is None
