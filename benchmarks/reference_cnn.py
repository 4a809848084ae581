"""The fixed reference model of the guest-digit fidelity benchmark: a plain 2-conv CNN.

Trained 3 epochs on the MNIST training set, no augmentation, fixed seed; its weights are cached
next to this file (``reference_cnn.pt``) so that the benchmark measures the preprocessing, not the
model. Delete the cache to retrain (about 3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
WEIGHTS = Path(__file__).resolve().with_name("reference_cnn.pt")
MEAN, STD = 0.1307, 0.3081


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (gzipped): big-endian header, then raw uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str, folder: Path = MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``train`` or ``test``: images float32 [N,28,28] in [0,1], labels int64 [N]."""
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


class ReferenceCNN(nn.Module):
    """conv5-32 → pool → conv5-64 → pool → fc128 → fc10; input [N,1,28,28] in [0,1]."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - MEAN) / STD))


def train_reference(epochs: int = 3, seed: int = 0, threads: int = 2) -> ReferenceCNN:
    """Trains the reference CNN on the MNIST training set (Adam 1e-3, batch 64, no augmentation)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    images, labels = load_mnist("train")
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    model = ReferenceCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        start = time.time()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}/{epochs}: last loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    return model.eval()


def predict(model: nn.Module, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Predicted digits for float32 images [N,28,28] or [N,1,28,28] in [0,1]."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).reshape(-1, 1, 28, 28)
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(b).argmax(1) for b in x.split(batch)]).numpy()


def load_or_train(path: Path = WEIGHTS) -> ReferenceCNN:
    """The cached reference model, trained and cached on first use."""
    model = ReferenceCNN()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = train_reference()
    torch.save(model.state_dict(), path)
    return model


if __name__ == "__main__":
    m = load_or_train()
    xt, yt = load_mnist("test")
    print(f"MNIST test accuracy: {(predict(m, xt) == yt).mean():.4f}")
