"""LeNet5: written by `python -m harness.train`; needs nothing but torch."""


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


class LeNet5(nn.Module):
    """LeCun et al. (1998): two convolution + pooling stages, then three fully connected layers."""

    def __init__(self, channels: list[int] = (6, 16), kernel_size: int = 5, hidden: list[int] = (120, 84),
                 dropout: float = 0.0, activation: str = "relu",
                 resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.prep = Preprocess(resize, crop, mean, std)
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size, padding=kernel_size // 2), make_activation(activation), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size), make_activation(activation), nn.MaxPool2d(2),
        )
        side = (self.prep.side // 2 - kernel_size + 1) // 2
        layers, width = [], c2 * side * side
        for size in hidden:
            layers += [nn.Linear(width, size), make_activation(activation), nn.Dropout(dropout)]
            width = size
        self.classifier = nn.Sequential(*layers, nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.prep(x)).flatten(1))
