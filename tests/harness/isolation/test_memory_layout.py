"""On CPU the harness runs conv models in channels-last memory, but only where that changes nothing a member sees.

The models here are the template matcher written as a convolution: the image tiled 2×2 under ten 28×28 kernels
with stride 28 (the class means) gives each class's template score at four positions, [N, 10, 2, 2], and their
mean is the template's score. So their predictions are known independently (numpy, in
``tests.entries.template_predictions``), whatever the layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.isolation.inside.worker import probe_layout
from tests.entries import TEMPLATE_CODE, template_predictions, write_entry
from tests.harness.entries.test_contract import evaluate, predicted

CONV_CODE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 28, stride=28, bias=False)

    def forward(self, x):
        y = self.conv(x.repeat(1, 1, 2, 2) - 0.5)  # [N, 10, 2, 2]: four copies of each class's score
        return 0.05 * SCORES
'''
# The common way: flatten keeps the logical order in any memory layout.
FLATTEN = CONV_CODE.replace("SCORES", "y.flatten(2).mean(2)")
# x.view(n, -1) after a conv layer raises in channels-last memory: the model must get the usual layout back.
VIEW = CONV_CODE.replace("SCORES", "y.view(y.size(0), -1).view(-1, 10, 4).mean(2)")
# Reads raw memory: the usual layout gives classes 0-2's scores (0,0,0,0,1,1,1,1,2,2), channels-last all ten.
# It must keep the usual layout's result: the probe has to notice that the outputs differ.
STRIDED = CONV_CODE.replace("SCORES", "torch.as_strided(y, (y.size(0), 10), (y.stride(0), 1))")


def conv_weights(means: np.ndarray) -> dict:
    return {"conv.weight": torch.tensor(means, dtype=torch.float32).view(10, 1, 28, 28)}


def conv_model(code: str, means: np.ndarray) -> torch.nn.Module:
    scope: dict = {}
    exec(code, scope)
    model = scope["Net"]().eval()
    model.load_state_dict(conv_weights(means))
    return model


@pytest.mark.slow
def test_conv_entries_run_channels_last_only_when_outputs_agree(tmp_path, small_mnist, means):
    subs = tmp_path / "subs"
    for name, code in (("flatten", FLATTEN), ("view", VIEW), ("strided", STRIDED)):
        write_entry(subs, name, code=code, weights=conv_weights(means))
    write_entry(subs, "linear", code=TEMPLATE_CODE,
                weights={"fc.weight": torch.tensor(means, dtype=torch.float32)})
    results = evaluate(tmp_path, [small_mnist])
    expected = template_predictions(small_mnist.images, means)
    for name in ("flatten", "view", "linear"):
        assert results[name].status == "ok", (name, results[name].error)
        assert np.array_equal(predicted(results[name]), expected), name
    assert results["flatten"].device == "cpu, channels-last"
    assert results["view"].device == "cpu"
    assert results["linear"].device == "cpu"  # no conv weights: nothing to convert, no probe
    # The strided model computes something odd, but the same odd thing as in plain PyTorch's usual layout.
    strided = results["strided"]
    assert strided.status == "ok", strided.error
    assert strided.device == "cpu"
    with torch.inference_mode():
        x = torch.from_numpy(small_mnist.images[:, None].astype(np.float32) / 255)
        reference = conv_model(STRIDED, means)(x).argmax(1).numpy()
    assert np.array_equal(predicted(strided), reference)
    assert not np.array_equal(reference, expected)  # the check above would be empty if it did not differ


def conv_output(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.conv(images.float().repeat(1, 1, 2, 2))


def test_probe_puts_the_model_back_when_the_other_layout_fails(small_mnist, means):
    images = torch.from_numpy(small_mnist.images[:, None].copy())
    flat = conv_model(FLATTEN, means)
    assert conv_output(flat, images).is_contiguous()
    assert probe_layout(flat, images, 128, "test") == torch.channels_last
    y = conv_output(flat, images)  # its conv layer now writes channels-last memory
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    view = conv_model(VIEW, means)
    assert probe_layout(view, images, 128, "test") == torch.contiguous_format
    assert conv_output(view, images).is_contiguous()
    with torch.inference_mode():
        assert view(images.float() / 255).shape == (300, 10)  # usable again after the failed try
