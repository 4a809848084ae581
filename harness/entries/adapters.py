"""Input adapters a submission can use inside ``forward`` (see harness/contract.py)."""

from __future__ import annotations

import torch
from torch import nn

from harness.contract import IMAGENET_MEAN, IMAGENET_STD, MNIST_MEAN, MNIST_STD  # noqa: F401  (re-exported)


class InputAdapter(nn.Module):
    """Turns the harness's ``[N,1,28,28]`` in ``[0,1]`` into what a model was trained on.

    Examples::

        InputAdapter(mean=0.5, std=0.5)                      # a CNN trained with Normalize((0.5,), (0.5,))
        InputAdapter(mean=MNIST_MEAN, std=MNIST_STD)         # Normalize((0.1307,), (0.3081,))
        InputAdapter(size=224, channels=3,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)   # a fine-tuned ImageNet ResNet
    """

    def __init__(self, size: int | None = None, channels: int = 1,
                 mean: float | tuple[float, ...] = 0.0, std: float | tuple[float, ...] = 1.0):
        super().__init__()
        self.size = size
        self.channels = channels
        shape = (1, channels, 1, 1)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).expand(channels).reshape(shape).clone(), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).expand(channels).reshape(shape).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.channels != x.shape[1]:
            x = x.expand(-1, self.channels, -1, -1)
        return (x - self.mean) / self.std
