"""StrongCNN: written by `python -m harness.train`; needs nothing but torch."""


import torch
from torch import nn


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def make_activation(name: str) -> nn.Module:
    """``nn.ReLU()`` for ``"relu"`` and so on."""
    classes = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}
    if name not in classes:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(classes)}")
    return classes[name]()


def flat_size(layers: nn.Module, in_channels: int, height: int, width: int) -> int:
    """How many numbers ``layers`` make of one ``in_channels``×``height``×``width`` input (a dry run on zeros, which
    draws no random number)."""
    with torch.no_grad():
        return layers(torch.zeros(1, in_channels, height, width)).numel()


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


class StrongCNN(nn.Module):
    """Stages of (conv, batch norm, activation) x ``convs_per_stage`` then max-pooling, global average pooling,
    dropout, linear."""

    def __init__(self, channels: list[int] = (16, 32, 64), kernel_size: int = 3, convs_per_stage: int = 2,
                 dropout: float = 0.1, activation: str = "relu",
                 resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD,
                 in_channels: int = 1, height: int = 28, width: int = 28, num_classes: int = 10):
        super().__init__()
        self.prep = InputAdapter(size=resize, channels=in_channels, crop=crop, mean=mean, std=std)
        layers, width = [], in_channels
        for stage, out in enumerate(channels):
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2, bias=False),
                           nn.BatchNorm2d(out), make_activation(activation)]
                width = out
            if stage < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.prep(x))
        return self.head(self.dropout(x.mean(dim=(2, 3))))
