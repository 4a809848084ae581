"""The training loop: data split, mini-batch SGD with the chosen recipe, per-epoch validation, and
checkpoints that resume exactly (same weights as an uninterrupted run)."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.common.competition import TaskRules
from harness.data.guest import GuestSet, GuestSetError, has_guest_files, load_guest_set
from harness.data.mnist import load_split, resolve_dir
from harness.data.preprocess import to_uint8
from harness.errors import HarnessError
from harness.training import augment, recipes


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run. ``None`` in an architecture knob means the architecture's default."""

    arch: str = "cnn"
    # architecture knobs (only those the architecture takes may be set)
    hidden: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    kernel_size: int | None = None
    convs_per_stage: int | None = None
    dropout: float | None = None
    activation: str | None = None
    resize: int | None = None
    crop: int | None = None
    mean: float | None = None
    std: float | None = None
    # recipe
    loss: str = "cross-entropy"
    label_smoothing: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    batch_size: int = 64
    epochs: int = 3
    # data
    val_fraction: float = 0.1
    limit: int | None = None
    extra: tuple[str, ...] = ()          # folders of other writers' labelled digits, trained on as well
    extra_repeat: int = 8                # times each extra digit is seen per epoch
    augment: augment.AugmentConfig = field(default_factory=augment.AugmentConfig)
    seed: int = 0

    ARCH_KNOBS = ("hidden", "channels", "kernel_size", "convs_per_stage", "dropout", "activation", "resize", "crop",
                  "mean", "std")

    def constructor(self) -> dict:
        """The architecture knobs that were set, as keyword arguments."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k in self.ARCH_KNOBS if (v := getattr(self, k)) is not None}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        aug = data.pop("augment", {}) or {}
        aug = augment.AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values, augment=aug)


@dataclass(frozen=True)
class ExtraSet:
    folder: str
    images: int             # distinct digits used (each repeated ``extra_repeat`` times per epoch)
    skipped: int            # files that could not be used (unreadable, no ink, no label)
    content_hash: str       # the guest pipeline's hash of the normalised digits and their labels


@dataclass
class Data:
    train_x: torch.Tensor   # float32 [N, C, H, W] in [0, 1] (MNIST: [N, 1, 28, 28]); augmented in [0, 1]
    train_y: torch.Tensor   # int64 [N]
    val_x: torch.Tensor
    val_y: torch.Tensor
    content_hash: str       # sha256 of the whole training file's images and labels
    extra: list[ExtraSet] = field(default_factory=list)   # other writers' digits, already in train_x (repeated)
    value_range: tuple[float, float] = (0.0, 1.0)         # what the model receives: the [0, 1] images scaled to it

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as the model receives them: scaled to the task's value range (unchanged for [0, 1])."""
        low, high = self.value_range
        return x if (low, high) == (0.0, 1.0) else x * (high - low) + low


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainState:
    """Where a run is: saved in checkpoints, restored by resume."""

    epoch: int = 0                 # the epoch in progress (0-based)
    step: int = 0                  # batches of that epoch already done
    global_step: int = 0
    loss_sum: float = 0.0          # running sums of the epoch in progress
    correct: int = 0
    seen: int = 0
    epoch_seconds: float = 0.0
    seconds: float = 0.0           # training time so far, all sessions together
    history: list[dict] = field(default_factory=list)


@dataclass
class Result:
    model: nn.Module
    state: TrainState
    interrupted: bool
    checkpoint: Path | None

    @property
    def history(self) -> list[EpochRecord]:
        return [EpochRecord(**h) for h in self.state.history]

    @property
    def val_accuracy(self) -> float | None:
        return self.state.history[-1]["val_accuracy"] if self.state.history else None


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float32 ``[N, 1, 28, 28]`` in [0, 1], like ``ToTensor()``; ``[N, H, W]`` and
    ``[N, C, H, W]`` alike (one channel is added to the first)."""
    x = torch.from_numpy(np.array(images, dtype=np.float32))
    return (x.unsqueeze(1) if x.ndim == 3 else x).div_(255.0)


def split(x: torch.Tensor, y: torch.Tensor, config: TrainConfig, content_hash: str,
          value_range: tuple[float, float] = (0.0, 1.0)) -> Data:
    """The first ``config.limit`` images (all by default), split into train and validation by the seed."""
    if config.limit is not None:
        x, y = x[:config.limit], y[:config.limit]
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    n_val = int(round(n * config.val_fraction))
    if n - n_val < 1:
        raise HarnessError(f"--val-fraction {config.val_fraction} leaves no training images out of {n}; lower it.")
    val, train = order[:n_val], order[n_val:]
    return Data(x[train], y[train], x[val], y[val], content_hash, value_range=tuple(value_range))


def load_data(config: TrainConfig, mnist_dir: str | os.PathLike | None = None, download: bool = True) -> Data:
    """The MNIST training set (format-checked, not md5-checked), split into train and validation by the seed."""
    train_file = load_split(resolve_dir(mnist_dir), "train", allow_download=download)
    images, labels = train_file.images, train_file.labels
    if config.limit is not None:
        images, labels = images[:config.limit], labels[:config.limit]
    data = split(to_tensor(images), torch.from_numpy(np.array(labels, dtype=np.int64)), config,
                 train_file.content_hash)
    refused = guest_pictures() if config.extra else set()
    for folder in config.extra:
        guest = extra_digits(Path(folder), refused)
        data.train_x = torch.cat([data.train_x, torch.from_numpy(guest.images).repeat(config.extra_repeat, 1, 1, 1)])
        data.train_y = torch.cat([data.train_y, torch.from_numpy(guest.labels).repeat(config.extra_repeat)])
        data.extra.append(ExtraSet(folder, len(guest), len(guest.skipped), guest.content_hash))
    return data


def load_task_data(config: TrainConfig, rules: TaskRules, where: str) -> Data:
    """A competition's training pictures (``[task].train``: a folder per class, or a labels.csv), read and cached like
    its sets (the task's reader: its classes, its preprocess), split into train and validation by the seed. ``where``
    names the competition in the sentences."""
    from harness.data.task import reader_of
    folder = rules.train
    if folder is None:
        raise HarnessError(f"{where} has no training folder: add train = \"train\" under [task] in its "
                           "competition.toml and put the training pictures there (a folder per class).")
    if not folder.is_dir():
        raise HarnessError(f"{where}'s training folder {folder} does not exist; create it with a folder per class "
                           f"({', '.join(rules.classes[:3])}, ...) or point train under [task] elsewhere.")
    try:
        read = load_guest_set(folder, reader_of(rules))
    except GuestSetError as exc:
        raise HarnessError(f"the training folder {folder}: {exc}") from exc
    if len(read) == 0:
        raise HarnessError(f"the training folder {folder} has no labelled picture; put the pictures in a folder per "
                           f"class ({', '.join(rules.classes[:3])}, ...) or list them in a labels.csv.")
    if config.extra:
        raise HarnessError(f"--extra is for the MNIST warm-up's digits; for {where}, put the other pictures in its "
                           f"training folder {folder} instead.")
    # the folder's order is by class: shuffled by the seed first, so that --limit keeps some of every class
    mixed = torch.randperm(len(read), generator=torch.Generator().manual_seed(config.seed))
    return split(torch.from_numpy(read.images)[mixed], torch.from_numpy(read.labels)[mixed], config,
                 read.content_hash, rules.value_range)


GUEST_FOLDER = Path("mystery_digits")


def guest_pictures() -> set[bytes]:
    """The guest's digits in ``mystery_digits/`` (when there are any), normalised, as the bytes of their uint8
    levels: what :func:`extra_digits` refuses."""
    if not (GUEST_FOLDER.is_dir() and has_guest_files(GUEST_FOLDER)):
        return set()
    return {to_uint8(image).tobytes() for image in load_guest_set(GUEST_FOLDER).images}


def extra_digits(folder: Path, refused: set[bytes]) -> GuestSet:
    """The labelled digits in ``folder`` (the guest set's layouts), normalised by the guest pipeline, so that they look
    like what the model will be ranked on. Refuses the guest set itself, by its folder or by any of its pictures
    (``refused``, from :func:`guest_pictures`): an entry trained on the digits it is ranked on would be measured on
    its own training data."""
    if not folder.is_dir():
        raise HarnessError(f"--extra {folder}: there is no such folder; give a folder of labelled digits "
                           "(a folder per digit 0–9, or files named like 7_001.png).")
    guest = GUEST_FOLDER.resolve()
    if refused and (folder.resolve() == guest or guest in folder.resolve().parents):
        raise HarnessError(f"--extra {folder} is the guest set ({GUEST_FOLDER}/): entries are ranked on those digits, "
                           "so training on them is not allowed; give other writers' digits.")
    try:
        digits = load_guest_set(folder)
    except GuestSetError as exc:
        raise HarnessError(f"--extra {folder}: {exc}") from exc
    if len(digits) == 0:
        raise HarnessError(f"--extra {folder} has no labelled digit the pipeline can read; put the images in folders "
                           "named 0–9 (or name them like 7_001.png).")
    # Compared after normalisation, so that a copy saved again in another format is caught as well.
    shared = [name for name, image in zip(digits.files, digits.images, strict=True)
              if to_uint8(image).tobytes() in refused]
    if shared:
        raise HarnessError(f"--extra {folder} holds {len(shared)} of the guest's digits (e.g. {shared[0]}, the same "
                           f"picture as one in {GUEST_FOLDER}/): entries are ranked on those, so training on them "
                           "is not allowed; remove them.")
    return digits


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=None,
             batch_size: int = 1000) -> tuple[float | None, float | None]:
    """(mean loss, accuracy) of the model on the given images; (None, None) for an empty set."""
    if len(x) == 0:
        return None, None
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        out = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        if loss_fn is not None:
            loss_sum += loss_fn(out, target).item() * len(target)
        correct += int((out.argmax(dim=1) == target).sum())
    model.train(was_training)
    return (loss_sum / len(x) if loss_fn is not None else None), correct / len(x)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffle of one epoch, a function of (seed, epoch) alone so that a resumed run sees the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch + 1))


class StopFlag:
    """Set by the first Ctrl-C (the loop then stops after the batch in progress); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def save_checkpoint(path: Path, config: TrainConfig, argv: list[str], model: nn.Module,
                    optimizer: torch.optim.Optimizer, schedule, state: TrainState) -> None:
    """Write the checkpoint atomically (a temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": config.to_dict(), "argv": list(argv), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "state": asdict(state), "rng": torch.get_rng_state(),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"Could not write the checkpoint {path} ({exc.strerror or exc}); free some space or "
                           "choose another --checkpoint.") from exc


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError as exc:
        raise HarnessError(f"There is no checkpoint at {path}; pass the path printed when the run was "
                           "interrupted.") from exc
    except Exception as exc:
        raise HarnessError(f"{path} is not a checkpoint written by harness.train ({exc}).") from exc


def fit(model: nn.Module, data: Data, config: TrainConfig, *, checkpoint: Path | None = None,
        argv: list[str] = (), resume: dict | None = None, progress=None,
        should_stop: Callable[[TrainState], bool] | None = None) -> Result:
    """Train ``model`` in place. Stops early, saving a checkpoint, on Ctrl-C or when ``should_stop(state)`` is true.

    ``resume`` is a loaded checkpoint to continue from. ``progress`` is called as
    ``progress(event, state, info)`` with event ``"epoch_start"``, ``"batch"`` or ``"epoch_end"``.
    """
    model.to(memory_format=torch.channels_last)  # faster convolutions on CPU
    loss_fn = recipes.build_loss(config.loss, config.label_smoothing)
    optimizer = recipes.build_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum,
                                        config.weight_decay, config.nesterov)
    steps_per_epoch = math.ceil(len(data.train_x) / config.batch_size)
    schedule = recipes.build_schedule(config.schedule, optimizer, config.lr, config.epochs * steps_per_epoch,
                                      steps_per_epoch)
    transform = augment.build_transform(config.augment, tuple(data.train_x.shape[-2:]))
    torch.manual_seed(config.seed)  # dropout and augmentation draw from the global generator
    state = TrainState() if resume is None else resumed(resume, model, optimizer, schedule)
    progress = progress or (lambda event, state, info: None)
    model.train()
    with StopFlag() as stop:
        while state.epoch < config.epochs:
            order = epoch_order(config.seed, state.epoch, len(data.train_x))
            progress("epoch_start", state, {"steps": steps_per_epoch})
            while state.step < steps_per_epoch:
                if stop.requested or (should_stop is not None and should_stop(state)):
                    if checkpoint is not None:
                        save_checkpoint(checkpoint, config, list(argv), model, optimizer, schedule, state)
                    return Result(model, state, True, checkpoint)
                speed = train_step(model, data, order, config.batch_size, transform, loss_fn, optimizer, schedule,
                                   state)
                progress("batch", state, {"steps": steps_per_epoch, "images_per_s": speed})
            progress("epoch_end", state, end_epoch(model, data, loss_fn, optimizer, state))
            next_epoch(state)
            if checkpoint is not None and state.epoch < config.epochs:
                save_checkpoint(checkpoint, config, list(argv), model, optimizer, schedule, state)
    model.eval()
    return Result(model, state, False, checkpoint)


def resumed(resume: dict, model: nn.Module, optimizer, schedule) -> TrainState:
    """Where a loaded checkpoint left off: the model, optimizer, schedule and random state as they were."""
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    schedule.load_state_dict(resume["schedule"])
    state = TrainState(**resume["state"])
    torch.set_rng_state(resume["rng"])
    return state


def train_step(model: nn.Module, data: Data, order: torch.Tensor, batch_size: int, transform, loss_fn, optimizer,
               schedule, state: TrainState) -> float:
    """The epoch's next mini-batch (``state.step`` in ``order``): forward, backward, an optimizer and a schedule
    step, counted in ``state``; its images per second."""
    started = time.perf_counter()
    idx = order[state.step * batch_size:(state.step + 1) * batch_size]
    x, y = data.to_input(augment.augment_batch(data.train_x[idx], transform)), data.train_y[idx]
    out = model(x)
    loss = loss_fn(out, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    state.step += 1
    state.global_step += 1
    state.loss_sum += loss.item() * len(y)
    state.correct += int((out.argmax(dim=1) == y).sum())
    state.seen += len(y)
    elapsed = time.perf_counter() - started
    state.epoch_seconds += elapsed
    state.seconds += elapsed
    return len(y) / max(elapsed, 1e-9)


def end_epoch(model: nn.Module, data: Data, loss_fn, optimizer, state: TrainState) -> dict:
    """Validate at the end of an epoch and add its record to ``state.history``; the record."""
    val_loss, val_acc = evaluate(model, data.to_input(data.val_x), data.val_y, loss_fn)
    state.history.append(asdict(EpochRecord(
        epoch=state.epoch + 1, train_loss=state.loss_sum / state.seen, train_accuracy=state.correct / state.seen,
        val_loss=val_loss, val_accuracy=val_acc, lr=optimizer.param_groups[0]["lr"],
        seconds=state.epoch_seconds)))
    return state.history[-1]


def next_epoch(state: TrainState) -> None:
    """Start the next epoch's counts."""
    state.epoch += 1
    state.step = state.correct = state.seen = 0
    state.loss_sum = state.epoch_seconds = 0.0
