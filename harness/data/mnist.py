"""MNIST in the official IDX format: locate, verify, download when missing, and read."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

DEFAULT_DIR = Path("data") / "mnist"
ENV_VAR = "MNIST_DIR"

# Official archive names and md5 sums (the same list torchvision uses).
FILES = {
    "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
    "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
}
# Only the test set decides the leaderboard, so only its checksums are enforced. Training files are
# checked for format only (a faithful re-export of the training images has another md5).
VERIFY_MD5 = {"test"}
USED_BY = {"test": "harness.evaluate and harness.check", "train": "harness.train"}


@dataclass(frozen=True)
class MnistSplit:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # int64 [N]
    content_hash: str   # sha256 of the raw (uncompressed) image and label bytes


def resolve_dir(arg: str | os.PathLike | None = None) -> Path:
    """The MNIST folder: the argument, else $MNIST_DIR, else ./data/mnist."""
    if arg:
        return Path(arg)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_files(root: Path, split: str) -> list[str]:
    return [name for name, _ in FILES[split] if not (root / name).is_file() and not (root / name[:-3]).is_file()]


def also_needed(root: Path, split: str) -> str:
    """For a message about ``split``'s files: the other split's files missing from ``root`` too, and which commands
    need them: whoever copies files by hand then copies all they will need."""
    other = "train" if split == "test" else "test"
    missing = missing_files(root, other)
    return f" (and, for {USED_BY[other]}, {', '.join(missing)})" if missing else ""


def download(root: Path, split: str) -> None:
    """Fetch the split's missing archives from torchvision's mirrors, verifying md5 where known."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"MNIST files are missing from {root} and the folder cannot be created ({exc.strerror}); "
                           f"point --mnist-dir or ${ENV_VAR} at a folder holding "
                           f"{', '.join(n for n, _ in FILES[split])}.") from exc
    for name, md5 in FILES[split]:
        if (root / name).is_file():
            continue
        errors = []
        for mirror in MNIST.mirrors:
            try:
                download_url(mirror + name, root=str(root), filename=name, md5=md5 if split in VERIFY_MD5 else None)
                break
            except Exception as exc:  # noqa: BLE001 - network errors come in many types
                errors.append(f"{mirror}: {exc}")
                (root / name).unlink(missing_ok=True)
        else:
            raise HarnessError(
                f"MNIST file {name} is not in {root} and could not be downloaded "
                f"({errors[-1] if errors else 'no mirror'}); offline, copy {', '.join(n for n, _ in FILES[split])} "
                f"into {root}{also_needed(root, split)} or point --mnist-dir / ${ENV_VAR} at a folder that holds them.")


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise HarnessError(f"{path} is not a readable IDX file ({exc}); delete it and let the harness download it "
                           "again.") from exc
    if len(data) < 8:
        raise HarnessError(f"{path} is truncated; delete it and let the harness download it again.")
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise HarnessError(f"{path} has IDX magic number {magic:#x}, expected {expected_magic:#x}: it is not the MNIST "
                           "file its name says.")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) - offset != count:
        raise HarnessError(f"{path} holds {len(data) - offset} bytes of data where its header promises {count}; "
                           "the file is truncated or corrupt: delete it and download it again.")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _path(root: Path, name: str) -> Path:
    return root / name if (root / name).is_file() else root / name[:-3]


def load_split(root: Path, split: str = "test", allow_download: bool = True) -> MnistSplit:
    """Read one split, downloading missing files when allowed and verifying the test set's md5."""
    if split not in FILES:
        raise ValueError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    root = Path(root)
    if missing_files(root, split):
        if not allow_download:
            raise HarnessError(f"MNIST {split} files {', '.join(missing_files(root, split))} are missing from {root}; "
                               f"copy them there{also_needed(root, split)} or point --mnist-dir / ${ENV_VAR} at a "
                               "folder that holds them.")
        download(root, split)
    (img_name, img_md5), (lbl_name, lbl_md5) = FILES[split]
    if split in VERIFY_MD5:
        for name, md5 in ((img_name, img_md5), (lbl_name, lbl_md5)):
            path = root / name
            if path.is_file() and md5sum(path) != md5:
                raise HarnessError(f"{path} does not match the official MNIST md5 ({md5}); it is corrupt or a "
                                   "different file: delete it and let the harness download it again.")
    images = _read_idx(_path(root, img_name), 0x00000803)
    labels = _read_idx(_path(root, lbl_name), 0x00000801)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise HarnessError(f"MNIST {split} files in {root} disagree: {images.shape} images for {labels.shape} labels.")
    digest = hashlib.sha256(images.tobytes())
    digest.update(labels.tobytes())
    return MnistSplit(images=images, labels=labels.astype(np.int64), content_hash=digest.hexdigest())
