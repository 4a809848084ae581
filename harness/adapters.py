"""Input adapters a submission can use inside ``forward`` (see harness/contract.py), and the usual statistics.

``from harness.contract import InputAdapter, MNIST_MEAN, ...`` reaches these lazily. The training kit's models use
:class:`InputAdapter` too, and a generated ``model.py`` carries a copy of its source (see
``harness/training/architectures.py``), so this class must need nothing but torch.
"""

from __future__ import annotations

import torch
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    """Turns the harness's ``[N,1,28,28]`` in ``[0,1]`` into what a model was trained on.

    Resize to ``size`` (bilinear), centre-crop to ``crop``, repeat to ``channels``, then normalise with ``mean`` and
    ``std`` (one value, or one per channel). Examples::

        InputAdapter(mean=0.5, std=0.5)                      # a CNN trained with Normalize((0.5,), (0.5,))
        InputAdapter(mean=MNIST_MEAN, std=MNIST_STD)         # Normalize((0.1307,), (0.3081,))
        InputAdapter(size=224, channels=3,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)   # a fine-tuned ImageNet ResNet
    """

    def __init__(self, size: int | None = None, channels: int = 1,
                 mean: float | tuple[float, ...] = 0.0, std: float | tuple[float, ...] = 1.0,
                 crop: int | None = None):
        super().__init__()
        self.size, self.crop = size, crop
        self.channels = channels
        self.side = crop or size or 28  # the side of the image the layers after this one see
        shape = (1, channels, 1, 1)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).expand(channels).reshape(shape).clone(),
                             persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).expand(channels).reshape(shape).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.crop is not None:
            top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
            x = x[..., top:top + self.crop, left:left + self.crop]
        if self.channels != x.shape[1]:
            x = x.expand(-1, self.channels, -1, -1)
        return (x - self.mean) / self.std
