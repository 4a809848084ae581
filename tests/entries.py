"""Small fake submissions, good and broken, written into a temporary folder for tests.

The "good" models are template matchers: a linear layer whose rows are the MNIST class means, so their
accuracy is known without any training (computed independently in the tests with numpy).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch

TEMPLATE_CODE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    """Template matcher: logits = scale * <x - 0.5, class mean - 0.5>."""

    def __init__(self, scale: float = 0.05):
        super().__init__()
        self.scale = scale
        self.fc = nn.Linear(784, 10, bias=False)

    def forward(self, x):
        return self.scale * self.fc(x.flatten(1) - 0.5)
'''


def class_means(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[10, 784] mean image of each class, in [0,1], centred at 0.5."""
    flat = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return np.stack([flat[labels == c].mean(0) for c in range(10)]) - 0.5


def template_predictions(images: np.ndarray, means: np.ndarray) -> np.ndarray:
    """What the template entry must predict, computed with numpy alone."""
    flat = images.reshape(len(images), -1).astype(np.float64) / 255.0 - 0.5
    return (flat @ means.T).argmax(1)


def write_entry(root: Path, name: str, code: str | None = TEMPLATE_CODE, weights: dict | None = None,
                toml: str | None = None, weights_name: str = "weights.pt", extra: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if code is not None:
        (folder / "model.py").write_text(textwrap.dedent(code))
    if weights is not None:
        if weights_name.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(weights, str(folder / weights_name))
        else:
            torch.save(weights, folder / weights_name)
    if toml is not None:
        (folder / "entry.toml").write_text(textwrap.dedent(toml))
    for rel, text in (extra or {}).items():
        (folder / rel).write_text(textwrap.dedent(text))
    return folder


def template_weights(means: np.ndarray) -> dict:
    return {"fc.weight": torch.tensor(means, dtype=torch.float32)}


def with_forward(body: str) -> str:
    """Template model code whose forward is ``body`` instead."""
    return TEMPLATE_CODE.replace(
        "        return self.scale * self.fc(x.flatten(1) - 0.5)",
        textwrap.indent(textwrap.dedent(body).strip(), " " * 8))


def before_return(body: str) -> str:
    """Template model code whose forward runs ``body`` first, then returns as usual."""
    return with_forward(body + "\nreturn self.scale * self.fc(x.flatten(1) - 0.5)")
