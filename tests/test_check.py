"""``python -m harness.check``: a good entry is reported with its figures, a broken one exits non-zero."""

from __future__ import annotations

import re

from harness import check
from tests.entries import before_return, template_predictions, template_weights, with_forward, write_entry


def test_good_entry_report(tmp_path, mnist_dir, mnist_test, means, capsys):
    folder = write_entry(tmp_path, "good", weights=template_weights(means), toml='display_name = "Good one"\n')
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    expected = (template_predictions(mnist_test.images[:500], means) == mnist_test.labels[:500]).mean()
    assert "✓ good (Good one) loads and runs: output [N, 10] logits" in out
    assert "parameters: 7,840" in out
    assert "images/s on the first 500 MNIST test images (cpu)" in out  # no conv weights: the usual memory layout
    assert f"accuracy on the first 500 MNIST test images: {100 * expected:.1f}%" in out


def test_broken_entry_exits_nonzero_with_reason(tmp_path, mnist_dir, means, capsys):
    folder = write_entry(tmp_path, "fixed-batch", code=with_forward("return self.fc(x.view(200, -1))"),
                         weights=template_weights(means))
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("error: fixed-batch: RuntimeError in the model (model.py line 16)")


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


def test_an_entry_over_the_time_limit_is_told_the_flag(tmp_path, means, capsys):
    folder = write_entry(tmp_path, "spins", code=before_return("while True:\n    pass"), weights=template_weights(means))
    assert check.main([str(folder), "--timeout", "3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["error: spins: took longer than its time limit of 3 s and was stopped; make the model faster or raise "
                     "the time limit.",
                     f"  time limit: raise it with `python -m harness.check {folder} --timeout 6` (now 3 s)"]


def test_a_model_that_needs_3_channels_is_told_the_adapter(tmp_path, mnist_dir, mnist_test, means, capsys):
    three = with_forward("return self.scale * self.fc(x[:, 2].flatten(1) - 0.5)")  # reads the third channel
    folder = write_entry(tmp_path, "rgb", code=three, weights=template_weights(means))
    assert check.main([str(folder), "--mnist-dir", str(mnist_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    expected = (template_predictions(mnist_test.images[:500], means) == mnist_test.labels[:500]).mean()
    assert lines[0].startswith("error: rgb: IndexError in the model (model.py line 16)")
    assert lines[1] == (f"  with 3 channels it runs and reads {100 * expected:.1f}% of these images: add "
                        "`InputAdapter(channels=3)` in front of it (see 'Input' in submissions/README.md).")
