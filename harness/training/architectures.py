"""The training kit's model classes, a registry of them, and the self-contained ``model.py`` they become.

Every class here takes the harness's input (float32 ``[N, 1, 28, 28]`` in ``[0, 1]`` for the MNIST warm-up; a
competition's task gives ``in_channels``, ``height``, ``width`` and ``num_classes``: :data:`TASK_KNOBS`) and returns
``[N, num_classes]`` logits. Resizing, centre-cropping and normalisation happen inside ``forward`` (in the entries'
own :class:`~harness.adapters.InputAdapter`), so a trained model is an entry as it is. The classes use
nothing but ``torch``: :func:`model_source` copies one of them, with its helpers (``InputAdapter``'s source
included), into an entry's ``model.py``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from harness.adapters import MNIST_MEAN, MNIST_STD, InputAdapter

ACTIVATIONS = ("relu", "tanh", "gelu", "silu")
TASK_KNOBS = ("in_channels", "height", "width", "num_classes")  # set from the task, never by a flag


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


class LogisticRegression(nn.Module):
    """One linear layer on the flattened pixels: softmax regression."""

    def __init__(self, resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD,
                 in_channels: int = 1, height: int = 28, width: int = 28, num_classes: int = 10):
        super().__init__()
        self.prep = InputAdapter(size=resize, channels=in_channels, crop=crop, mean=mean, std=std)
        self.linear = nn.Linear(flat_size(self.prep, in_channels, height, width), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.prep(x).flatten(1))


class MLP(nn.Module):
    """Fully connected layers of the given sizes, each followed by an activation and dropout."""

    def __init__(self, hidden: list[int] = (256, 128), dropout: float = 0.2, activation: str = "relu",
                 resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD,
                 in_channels: int = 1, height: int = 28, width: int = 28, num_classes: int = 10):
        super().__init__()
        self.prep = InputAdapter(size=resize, channels=in_channels, crop=crop, mean=mean, std=std)
        layers, width = [], flat_size(self.prep, in_channels, height, width)
        for size in hidden:
            layers += [nn.Linear(width, size), make_activation(activation), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.prep(x).flatten(1)))


class LeNet5(nn.Module):
    """LeCun et al. (1998): two convolution + pooling stages, then three fully connected layers."""

    def __init__(self, channels: list[int] = (6, 16), kernel_size: int = 5, hidden: list[int] = (120, 84),
                 dropout: float = 0.0, activation: str = "relu",
                 resize: int | None = None, crop: int | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD,
                 in_channels: int = 1, height: int = 28, width: int = 28, num_classes: int = 10):
        super().__init__()
        self.prep = InputAdapter(size=resize, channels=in_channels, crop=crop, mean=mean, std=std)
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size, padding=kernel_size // 2), make_activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size), make_activation(activation), nn.MaxPool2d(2),
        )
        layers, width = [], flat_size(nn.Sequential(self.prep, self.features), in_channels, height, width)
        for size in hidden:
            layers += [nn.Linear(width, size), make_activation(activation), nn.Dropout(dropout)]
            width = size
        self.classifier = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.prep(x)).flatten(1))


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


# --- the registry -----------------------------------------------------------------------------------

ARCHITECTURES: dict[str, type[nn.Module]] = {}
HELPERS = (make_activation, flat_size, InputAdapter)  # copied into every generated model.py


def register(name: str, cls: type[nn.Module]) -> None:
    if name in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is registered twice")
    ARCHITECTURES[name] = cls


register("logreg", LogisticRegression)
register("mlp", MLP)
register("lenet5", LeNet5)
register("cnn", StrongCNN)


def list_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def get_architecture(name: str) -> type[nn.Module]:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(list_architectures())}")
    return ARCHITECTURES[name]


def constructor_knobs(name: str) -> dict[str, object]:
    """The keyword arguments an architecture takes, with their defaults (tuples as lists)."""
    params = inspect.signature(get_architecture(name)).parameters
    return {k: list(p.default) if isinstance(p.default, tuple) else p.default for k, p in params.items()}


def build(name: str, **kwargs) -> nn.Module:
    """An instance of the named architecture; only keyword arguments it takes are accepted."""
    cls = get_architecture(name)
    unknown = set(kwargs) - set(constructor_knobs(name))
    if unknown:
        raise ValueError(f"architecture {name!r} takes no {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(constructor_knobs(name))}")
    return cls(**kwargs)


def model_source(name: str) -> str:
    """The text of a self-contained ``model.py`` (only ``torch`` imports) defining the architecture's class."""
    cls = get_architecture(name)
    parts = [
        f'"""{cls.__name__}: written by `python -m harness.train`; needs nothing but torch."""',
        "import torch\nfrom torch import nn",
        f"MNIST_MEAN, MNIST_STD = {MNIST_MEAN}, {MNIST_STD}",
        *(inspect.getsource(obj).rstrip() for obj in (*HELPERS, cls)),
    ]
    return "\n\n\n".join(parts) + "\n"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

