"""LogisticRegression: written by `python -m harness.train`; needs nothing but torch."""


import torch
import torch.nn.functional as F
from torch import nn


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def make_activation(name: str) -> nn.Module:
    """``nn.ReLU()`` for ``"relu"`` and so on."""
    classes = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}
    if name not in classes:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(classes)}")
    return classes[name]()


class Preprocess(nn.Module):
    """Resize, centre-crop and normalise the ``[N, 1, 28, 28]`` input, identically in training and evaluation."""

    def __init__(self, resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.resize, self.crop = resize, crop
        self.side = crop or resize or 28  # the side of the image the layers after this one see
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        if self.crop is not None:
            top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
            x = x[..., top:top + self.crop, left:left + self.crop]
        return (x - self.mean) / self.std


class LogisticRegression(nn.Module):
    """One linear layer on the flattened pixels: softmax regression."""

    def __init__(self, resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.prep = Preprocess(resize, crop, mean, std)
        self.linear = nn.Linear(self.prep.side ** 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.prep(x).flatten(1))
