"""Make ``tests/data/forgot-normalisation``: the club's commonest mistake, with a real model.

A LeNet (the fixture's ``model.py``, whose ``forward`` has no normalisation) is trained on MNIST training images
normalised as (x-0.5)/0.5 outside the model, as the club's notebook does with ``transforms.Normalize((0.5,),
(0.5,))``, and its weights are saved beside ``model.py``. It then prints the model's accuracy on the MNIST test set
with the normalisation (as trained) and without it (as submitted)::

    python scripts/forgot_normalisation.py [--mnist-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.data import mnist

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "forgot-normalisation"


def net() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("forgot_normalisation_model", FIXTURE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Net()


def tensors(split: mnist.MnistSplit, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(split.images[:limit].copy()).float().div(255).unsqueeze(1)
    return images, torch.from_numpy(split.labels[:limit].copy()).long()


@torch.inference_mode()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(1) == labels).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist-dir", help="folder with the MNIST IDX files (default: $MNIST_DIR or data/mnist)")
    p.add_argument("--limit", type=int, default=20000, help="training images used (the first N)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)  # seed 0 loses 6 points, which the old check caught
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    root = mnist.resolve_dir(args.mnist_dir)
    images, labels = tensors(mnist.load_split(root, "train", allow_download=False), args.limit)
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(images)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model((images[batch] - 0.5) / 0.5), labels[batch]).backward()  # Normalize((0.5,), (0.5,))
            optimizer.step()
    model.eval()
    torch.save(model.state_dict(), FIXTURE / "weights.pt")
    test_images, test_labels = tensors(mnist.load_split(root, "test", allow_download=False))
    print(f"MNIST test accuracy: {100 * accuracy(model, (test_images - 0.5) / 0.5, test_labels):.2f}% with "
          f"(x-0.5)/0.5 as trained, {100 * accuracy(model, test_images, test_labels):.2f}% as submitted (without it); "
          f"first 500: {100 * accuracy(model, (test_images[:500] - 0.5) / 0.5, test_labels[:500]):.1f}% and "
          f"{100 * accuracy(model, test_images[:500], test_labels[:500]):.1f}%")


if __name__ == "__main__":
    main()
