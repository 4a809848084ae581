"""StrongCNN: written by `python -m harness.train`; needs nothing but torch."""


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


class StrongCNN(nn.Module):
    """Stages of (conv, batch norm, activation) x ``convs_per_stage`` then max-pooling, global average pooling, dropout, linear."""

    def __init__(self, channels: list[int] = (16, 32, 64), kernel_size: int = 3, convs_per_stage: int = 2,
                 dropout: float = 0.1, activation: str = "relu",
                 resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.prep = Preprocess(resize, crop, mean, std)
        layers, width = [], 1
        for stage, out in enumerate(channels):
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2, bias=False),
                           nn.BatchNorm2d(out), make_activation(activation)]
                width = out
            if stage < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.prep(x))
        return self.head(self.dropout(x.mean(dim=(2, 3))))
