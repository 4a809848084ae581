"""Shared fixtures: the MNIST folder beside the repo (as in CI), small datasets and template weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness import mnist, store
from tests.entries import class_means

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("MNIST_DIR") or SHARED / "mnist")
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX files not found in {path} (set MNIST_DIR)")
    return path


@pytest.fixture(scope="session")
def mnist_test(mnist_dir) -> mnist.MnistSplit:
    return mnist.load_split(mnist_dir, "test", allow_download=False)


@pytest.fixture(scope="session")
def means(mnist_dir) -> np.ndarray:
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    return class_means(train.images[:20000], train.labels[:20000])


@pytest.fixture(scope="session")
def small_mnist(mnist_test) -> store.DatasetSpec:
    """The first 300 MNIST test images as a dataset (fast runs through the whole pipeline)."""
    images, labels = mnist_test.images[:300], mnist_test.labels[:300]
    return store.DatasetSpec(kind="mnist", content_hash="small-mnist-300", labels=labels, images=images, source="test")
