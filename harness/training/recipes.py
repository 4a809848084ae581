"""The training knobs that are a choice from torch: losses, optimizers and learning-rate schedules.

Each is a small registry (name -> builder); an unknown name is refused with the list of valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error between the softmax and the one-hot target (the pre-cross-entropy way)."""
    return F.mse_loss(outputs.softmax(dim=1), F.one_hot(targets, outputs.shape[1]).to(outputs.dtype))


LOSSES: dict[str, Callable[..., Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "cross-entropy": lambda label_smoothing=0.0: nn.CrossEntropyLoss(label_smoothing=label_smoothing),
    # NLLLoss wants log-probabilities; log_softmax leaves a model's log_softmax output unchanged.
    "nll": lambda label_smoothing=0.0: lambda out, y: F.nll_loss(F.log_softmax(out, dim=1), y),
    "multi-margin": lambda label_smoothing=0.0: nn.MultiMarginLoss(),
    "mse": lambda label_smoothing=0.0: _mse,
}

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, lr, momentum, weight_decay, nesterov: torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0),
    "adam": lambda params, lr, momentum, weight_decay, nesterov: torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay),
    "adamw": lambda params, lr, momentum, weight_decay, nesterov: torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay),
    "rmsprop": lambda params, lr, momentum, weight_decay, nesterov: torch.optim.RMSprop(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay),
    "adagrad": lambda params, lr, momentum, weight_decay, nesterov: torch.optim.Adagrad(
        params, lr=lr, weight_decay=weight_decay),
}

# Every schedule is stepped once per batch; total_steps is epochs × batches per epoch.
SCHEDULES: dict[str, Callable[..., torch.optim.lr_scheduler.LRScheduler]] = {
    "constant": lambda opt, lr, total_steps, steps_per_epoch: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0),
    "step": lambda opt, lr, total_steps, steps_per_epoch: torch.optim.lr_scheduler.StepLR(
        opt, step_size=max(1, total_steps // 3), gamma=0.1),
    "exponential": lambda opt, lr, total_steps, steps_per_epoch: torch.optim.lr_scheduler.ExponentialLR(
        opt, gamma=0.5 ** (1 / steps_per_epoch)),
    "cosine": lambda opt, lr, total_steps, steps_per_epoch: torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=total_steps),
    "onecycle": lambda opt, lr, total_steps, steps_per_epoch: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total_steps),
}
SCHEDULE_HELP = ("constant: lr throughout; step: ×0.1 after each third of training; exponential: halves every epoch; "
                 "cosine: cosine decay to 0; onecycle: warm up to lr, then anneal (Smith 2018)")


def _pick(registry: dict, kind: str, name: str):
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}")
    return registry[name]


def build_loss(name: str, label_smoothing: float = 0.0):
    return _pick(LOSSES, "loss", name)(label_smoothing=label_smoothing)


def build_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.0,
                    weight_decay: float = 0.0, nesterov: bool = False) -> torch.optim.Optimizer:
    return _pick(OPTIMIZERS, "optimizer", name)(params, lr, momentum, weight_decay, nesterov)


def build_schedule(name: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    return _pick(SCHEDULES, "schedule", name)(optimizer, lr, max(1, total_steps), max(1, steps_per_epoch))
