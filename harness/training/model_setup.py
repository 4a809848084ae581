"""The model a training run starts from: a built-in architecture with its knobs, or a member's own model file,
checked on one small batch before any training so that a mistake fails in a second, not after an epoch."""

from __future__ import annotations

from pathlib import Path

import torch

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


def build_model(config: TrainConfig, model_file: Path | None = None,
                model_class: str | None = None) -> tuple[torch.nn.Module, str, str, dict]:
    """(model, model.py text, class name, constructor kwargs), with the weights initialised from the seed."""
    torch.manual_seed(config.seed)
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
        _try_forward(model, f"{cls.__name__} from {model_file}")
        return model, code, cls.__name__, {}
    knobs = architectures.constructor_knobs(config.arch)
    unknown = [k for k in config.constructor() if k not in knobs]
    if unknown:
        raise HarnessError(f"--{unknown[0].replace('_', '-')} does not apply to --arch {config.arch}; "
                           f"its knobs are {', '.join('--' + k.replace('_', '-') for k in knobs)}.")
    constructor = {**knobs, **config.constructor()}
    try:
        model = architectures.build(config.arch, **constructor)
    except (ValueError, RuntimeError) as exc:
        raise HarnessError(f"These knobs do not make a working {config.arch}: {str(exc).splitlines()[0]}") from exc
    _try_forward(model, f"--arch {config.arch} with these knobs")
    cls = architectures.get_architecture(config.arch)
    return model, architectures.model_source(config.arch), cls.__name__, constructor


def _try_forward(model: torch.nn.Module, what: str) -> None:
    """Fail now, not after an epoch, when the model cannot take a [2, 1, 28, 28] batch to [2, 10]."""
    try:
        with torch.no_grad():  # in eval mode: no batch-norm statistics or random numbers are touched
            out = model.eval()(torch.zeros(2, 1, 28, 28))
    except Exception as exc:
        raise HarnessError(f"{what} fails on a [2, 1, 28, 28] batch: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        model.train()
    if getattr(out, "shape", None) != (2, 10):
        raise HarnessError(f"{what} returns shape {tuple(getattr(out, 'shape', ()))} for a batch of 2; it must be [2, "
                           "10].")
