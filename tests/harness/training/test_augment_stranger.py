"""The batched augmentations of the 'stranger' recipe, against hand-computed geometry and the guest pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from harness import train
from harness.data import preprocess
from harness.training import augment


def fixed(monkeypatch, value: float) -> None:
    """Every random draw of the batched augmentations returns ``value``."""
    monkeypatch.setattr(augment, "_uniform", lambda n, low, high: torch.full((n,), float(value)))


def extent(image: torch.Tensor, threshold: float = 0.5) -> tuple[int, int]:
    ys, xs = np.nonzero(image.squeeze().numpy() > threshold)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def test_refit_frames_a_digit_like_the_guest_pipeline():
    """A 6×3 block in a corner comes out 20 tall, 10 wide, its centre of mass at (14, 14), as fit_and_center does."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 2:8, 3:6] = 1.0
    out = augment.refit(x)
    h, w = extent(out)
    assert abs(h - 20) <= 1 and abs(w - 10) <= 1      # bilinear edges land within a pixel of the box
    cy, cx = ndimage.center_of_mass(out.squeeze().numpy())
    assert abs(cy - 14) < 0.6 and abs(cx - 14) < 0.6
    reference = preprocess.fit_and_center(x.squeeze().numpy() > 0.5)   # the pipeline's own framing
    assert extent(torch.from_numpy(reference)) == (20, 10)
    ry, rx = ndimage.center_of_mass(reference)
    assert abs(cy - ry) < 1 and abs(cx - rx) < 1


def test_refit_leaves_a_framed_mnist_digit_nearly_alone(mnist_test):
    """MNIST digits are already framed this way, so refit moves them by at most a pixel's interpolation."""
    x = torch.from_numpy(mnist_test.images[:200].astype(np.float32) / 255).unsqueeze(1)
    out = augment.refit(x)
    assert (out - x).abs().mean() < 0.06
    heights = [max(extent(img, 0.3)) for img in out]
    assert np.median(heights) == 20


def test_refit_keeps_a_blank_image_blank():
    assert torch.equal(augment.refit(torch.zeros(2, 1, 28, 28)), torch.zeros(2, 1, 28, 28))


def test_stroke_dilates_and_thins_by_the_drawn_width(monkeypatch):
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 14, 14] = 1.0
    fixed(monkeypatch, 1.0)
    assert extent(augment.stroke(dot, 1.0), 0.99) == (3, 3)       # one 3×3 dilation
    fixed(monkeypatch, 2.0)
    assert extent(augment.stroke(dot, 2.0), 0.99) == (5, 5)       # two
    fixed(monkeypatch, 0.5)
    half = augment.stroke(dot, 1.0)
    assert half[0, 0, 14, 15].item() == pytest.approx(0.5)        # halfway to the dilation
    edge = torch.zeros(1, 1, 28, 28)
    edge[0, 0, 10, 10:13] = torch.tensor([0.3, 1.0, 0.8])
    fixed(monkeypatch, -1.0)                                       # threshold raised by 0.6: (x - 0.6) / 0.4
    thinned = augment.stroke(edge, 1.0)[0, 0, 10, 10:13]
    torch.testing.assert_close(thinned, torch.tensor([0.0, 1.0, 0.5]))


def test_slant_leans_a_vertical_bar_by_the_drawn_angle(monkeypatch):
    bar = torch.zeros(1, 1, 28, 28)
    bar[0, 0, 4:24, 13:15] = 1.0
    fixed(monkeypatch, 20.0)                                       # degrees
    out = augment.geometry(bar, augment.AugmentConfig(slant=20.0), ("slant",)).squeeze().numpy()
    centre = lambda row: float((out[row] * np.arange(28)).sum() / out[row].sum())  # noqa: E731
    # output -> input x_in = x_out + tan(20°)·y: moving down 14 rows moves the bar tan(20°)·14 pixels left
    assert centre(6) - centre(20) == pytest.approx(math.tan(math.radians(20)) * 14, abs=0.3)


def test_aspect_stretches_width_and_height_inversely(monkeypatch):
    square = torch.zeros(1, 1, 28, 28)
    square[0, 0, 9:19, 9:19] = 1.0
    fixed(monkeypatch, math.log(1.44))                             # width/height × 1/1.44: ×1/1.2 and ×1.2
    out = augment.geometry(square, augment.AugmentConfig(aspect=1.44), ("aspect",))
    h, w = extent(out)
    assert (h, w) in {(12, 8), (12, 9), (11, 8)}                   # 10·1.2 = 12 tall, 10/1.2 ≈ 8.3 wide


def test_warp_moves_pixels_by_about_its_size_and_keeps_the_ink():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0
    out = augment.geometry(x, augment.AugmentConfig(warp=1.5), ("warp",))
    assert 0.5 < (out.sum() / x.sum()).item() < 1.5
    assert not torch.equal(out[0], out[1])
    still = augment.geometry(x, augment.AugmentConfig(warp=1e-6), ("warp",))
    assert (still - x).abs().max() < 1e-3                          # no warp: identity resampling


def test_the_stranger_preset_sets_defaults_and_flags_override_it():
    _, args = train.parse(["--preset", "stranger", "--epochs", "2", "--out", "x"])
    config = train.config_from_args(args)
    assert config.epochs == 2 and config.optimizer == "adamw" and config.channels == (16, 32, 64)
    assert config.augment.names == ("affine", "slant", "stroke")
    _, plain = train.parse(["--out", "x"])
    assert train.config_from_args(plain).augment.names == ()


@pytest.mark.parametrize("flag, value, words",
                         [("--aspect", "0.8", "at least 1"), ("--stroke", "3", "between 0 and 2")])
def test_bad_knob_values_are_refused_with_a_sentence(capsys, flag, value, words):
    with pytest.raises(SystemExit):
        train.parse(["--out", "x", flag, value])
    assert words in capsys.readouterr().err


def test_the_preset_alone_is_the_committed_baseline_robust_recipe():
    """`--preset stranger` with no other flag than `--extra` gives every knob recorded in
    submissions/baseline-robust/entry.toml."""
    import tomllib

    from tests.conftest import REPO
    recorded = tomllib.loads((REPO / "submissions" / "baseline-robust" / "entry.toml").read_text())["hyperparameters"]
    _, args = train.parse(["--preset", "stranger", "--out", "x"])
    config = train.config_from_args(args).to_dict()
    augment_knobs = config.pop("augment")
    assert recorded["augment"] == list(augment_knobs["names"])
    for name in recorded["augment"]:
        for knob in augment.KNOBS[name]:
            value = augment_knobs[knob]
            assert recorded[f"augment_{knob}"] == (list(value) if isinstance(value, tuple) else value), knob
    for key in ("loss", "label_smoothing", "optimizer", "lr", "momentum", "weight_decay", "schedule", "batch_size",
                "epochs", "val_fraction", "seed", "channels", "dropout", "extra_repeat"):
        value = config[key]
        assert recorded[key] == (list(value) if isinstance(value, tuple) else value), key
    # ... plus the one thing a preset cannot hold, the other writers' digits: Semeion's tuning half, never the
    # held-out half it is reported on (scripts/semeion_halves.py).
    assert recorded["extra"] == ["build/semeion/tune"] and recorded["extra_images"] == [793]
