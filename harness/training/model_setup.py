"""The model a training run starts from: a built-in architecture with its knobs, or a member's own model file,
checked on one small batch before any training so that a mistake fails in a second, not after an epoch."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.contract import DIGITS, Interface
from harness.entries.loading import EntryError, find_class, import_code, model_classes
from harness.errors import HarnessError
from harness.training import architectures
from harness.training.loop import TrainConfig


def load_model_file(path: Path, class_name: str | None) -> tuple[type[torch.nn.Module], str]:
    """The model class from a member's own model file (imported and picked as the harness does) and the file's text."""
    if not path.is_file():
        raise HarnessError(f"--model-file {path} does not exist.")
    try:
        module = import_code(path.parent, module_name=None, code_file=path.name)
    except EntryError as exc:
        cause = exc.__cause__
        raise HarnessError(f"--model-file {path} fails to import ({type(cause).__name__}: {cause}).") from exc
    try:
        return find_class(module, class_name), path.read_text()
    except EntryError:
        raise HarnessError(f"{path} has no model class {class_name or 'Model or Net'}; it defines "
                           f"{', '.join(model_classes(module)) or 'no nn.Module'}; name one with "
                           "--model-class.") from None


def build_model(config: TrainConfig, model_file: Path | None = None, model_class: str | None = None,
                interface: Interface | None = None) -> tuple[torch.nn.Module, str, str, dict]:
    """(model, model.py text, class name, constructor kwargs), with the weights initialised from the seed.
    ``interface``: the competition task's input shape and classes (None: the MNIST warm-up's, and the constructor
    names none of them); a built-in architecture gets them as its :data:`architectures.TASK_KNOBS`."""
    torch.manual_seed(config.seed)
    io = interface or DIGITS
    shape, classes = io.input_shape, io.num_classes
    if config.arch == "custom":
        if config.constructor():
            raise HarnessError(f"--{next(iter(config.constructor())).replace('_', '-')} only applies to the built-in "
                               "architectures; set it inside your --model-file.")
        cls, code = load_model_file(model_file, model_class)
        try:
            model = cls()
        except TypeError as exc:
            raise HarnessError(f"{cls.__name__}() in {model_file} needs arguments ({exc}); give them "
                               "defaults.") from exc
        _try_forward(model, f"{cls.__name__} from {model_file}", shape, classes)
        return model, code, cls.__name__, {}
    knobs = {k: v for k, v in architectures.constructor_knobs(config.arch).items()
             if k not in architectures.TASK_KNOBS}
    unknown = [k for k in config.constructor() if k not in knobs]
    if unknown:
        raise HarnessError(f"--{unknown[0].replace('_', '-')} does not apply to --arch {config.arch}; "
                           f"its knobs are {', '.join('--' + k.replace('_', '-') for k in knobs)}.")
    constructor = {**knobs, **config.constructor()}
    if interface is not None:
        constructor.update(zip(architectures.TASK_KNOBS, (*shape, classes), strict=True))
    try:
        model = architectures.build(config.arch, **constructor)
    except (ValueError, RuntimeError) as exc:
        raise HarnessError(f"These knobs do not make a working {config.arch}: {str(exc).splitlines()[0]}") from exc
    _try_forward(model, f"--arch {config.arch} with these knobs", shape, classes)
    cls = architectures.get_architecture(config.arch)
    return model, architectures.model_source(config.arch), cls.__name__, constructor


def _try_forward(model: torch.nn.Module, what: str, shape: tuple[int, int, int] = DIGITS.input_shape,
                 classes: int = DIGITS.num_classes) -> None:
    """Fail now, not after an epoch, when the model cannot take a batch of two inputs of ``shape`` (the MNIST
    warm-up's [2, 1, 28, 28] by default) to [2, ``classes``]."""
    batch = ", ".join(map(str, (2, *shape)))
    try:
        with torch.no_grad():  # in eval mode: no batch-norm statistics or random numbers are touched
            out = model.eval()(torch.zeros(2, *shape))
    except Exception as exc:
        raise HarnessError(f"{what} fails on a [{batch}] batch: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        model.train()
    if getattr(out, "shape", None) != (2, classes):
        raise HarnessError(f"{what} returns shape {tuple(getattr(out, 'shape', ()))} for a batch of 2; it must be [2, "
                           f"{classes}].")
