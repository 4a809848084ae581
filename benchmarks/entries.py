"""Entries the benchmarks write: a model's source and random weights of a given seed (the tests' own fixtures are in
tests/entries.py; these need no MNIST)."""

from __future__ import annotations

from pathlib import Path

import torch

LINEAR = '''
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))
'''


def resnet(arch: str) -> str:
    """A torchvision ResNet (``resnet18``, ``resnet50``) at 3×224×224 behind InputAdapter, as members package one."""
    return f'''
import torch.nn as nn
from torchvision.models import {arch}
from harness.contract import IMAGENET_MEAN, IMAGENET_STD, InputAdapter


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.adapt = InputAdapter(size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.net = {arch}(weights=None, num_classes=10)

    def forward(self, x):
        return self.net(self.adapt(x))
'''


def write_entry(root: Path, name: str, code: str, seed: int = 0) -> Path:
    """``root/name`` with ``code`` as model.py and the state_dict of its ``Net`` built under ``seed``."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(code)
    namespace: dict = {}
    exec(code, namespace)  # the same class the entry's process will build
    torch.manual_seed(seed)
    torch.save(namespace["Net"]().state_dict(), folder / "weights.pt")
    return folder
