"""Turn an entry folder into a ready ``nn.Module`` (runs inside the entry's own process)."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import pickle
import sys
import uuid
from pathlib import Path

import torch
from torch import nn

from harness.adapters import InputAdapter
from harness.contract import CLASS_NAMES, CODE_FILE, EXPORT_FILE, EntryMetadata
from harness.entries.discovery import TrialMetadata, real_file, weights_file


class EntryError(Exception):
    """The entry itself is broken; the message says what to fix."""


def import_code(folder: Path, module_name: str | None = "submission_model", code_file: str = CODE_FILE):
    """Import the entry's ``model.py`` (or ``code_file``): the one way the harness imports a model file.

    Inside the entry's own process the module keeps ``module_name`` in ``sys.modules`` and its folder goes on
    ``sys.path`` (for the entry's own helper modules). With ``module_name=None`` (the training kit, in the harness's
    process) it gets a unique name and leaves ``sys.modules`` and ``sys.path`` as they were.
    """
    path = folder / code_file
    private = module_name is None
    if private:
        module_name = f"_model_file_{uuid.uuid4().hex}"
    else:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise EntryError(f"{code_file} line {exc.lineno}: syntax error ({exc.msg}); fix the code and run "
                         f"`python -m harness.check {folder}`.") from exc
    except ImportError as exc:
        raise EntryError(f"{code_file} cannot import {exc.name or exc}; entries may use torch, torchvision and the "
                         "standard library, plus .py files inside the entry folder.") from exc
    except Exception as exc:
        raise EntryError(f"{code_file} raised {type(exc).__name__} while being imported: {exc}") from exc
    finally:
        if private:
            sys.modules.pop(module_name, None)
    return module


def model_classes(module) -> dict[str, type[nn.Module]]:
    """The ``nn.Module`` subclasses the module defines itself (not those it imports), by name."""
    return {name: obj for name, obj in vars(module).items()
            if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__}


def find_class(module, wanted: str | None) -> type[nn.Module]:
    """The model class: ``model_class`` from entry.toml, else ``Model``/``Net``, else the only one defined."""
    defined = model_classes(module)
    if wanted:
        if wanted not in defined:
            raise EntryError(f"{CODE_FILE} defines no nn.Module class named {wanted!r} (entry.toml model_class); "
                             f"it defines: {', '.join(defined) or 'none'}.")
        return defined[wanted]
    for name in CLASS_NAMES:
        if name in defined:
            return defined[name]
    if len(defined) == 1:
        return next(iter(defined.values()))
    if not defined:
        raise EntryError(f"{CODE_FILE} defines no nn.Module subclass; define your model class there.")
    raise EntryError(f"{CODE_FILE} defines several nn.Module classes ({', '.join(defined)}); name the model with "
                     "model_class = \"...\" in entry.toml or call it Model.")


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """Accept a plain state_dict, a checkpoint dict holding one, and DataParallel's 'module.' prefix."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise EntryError(f"{path.name} does not hold a state_dict (a dict of tensors); save it with "
                         "torch.save(model.state_dict(), 'weights.pt').")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in a weights file (found by ``discovery.weights_file``), read without running pickled code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:
            raise EntryError(f"{path.name} is not a readable safetensors file ({exc}); save it again with "
                             "safetensors.torch.save_file(model.state_dict(), ...).") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise EntryError(f"{path.name} needs pickled Python code to load, which the harness refuses for safety; save "
                         "only the weights: torch.save(model.state_dict(), 'weights.pt').") from exc
    except Exception as exc:
        raise EntryError(f"{path.name} is not a readable PyTorch weights file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); save it again with "
                         "torch.save(model.state_dict(), ...).") from exc
    return _unwrap_state_dict(obj, path)


SHOWN_SHAPES = 3  # shape mismatches named in the one sentence


def _shape(tensor: torch.Tensor) -> str:
    return str(list(tensor.shape))


def _prefix_change(weights: set[str], model: set[str]) -> tuple[str, str] | None:
    """``(extra, wanted)`` when the weights' keys are the model's keys with the prefix ``wanted`` replaced by
    ``extra`` (either may be empty, both end with a dot), else None."""
    if not weights or len(weights) != len(model) or weights == model:
        return None
    first = min(weights)
    tails = [first] + [first[i + 1:] for i, c in enumerate(first) if c == "."]  # longest first
    for key in model:
        tail = next((t for t in tails if key == t or key.endswith("." + t)), None)
        if tail is None:
            continue
        extra, wanted = first[:len(first) - len(tail)], key[:len(key) - len(tail)]
        if all(k.startswith(extra) for k in weights) and {wanted + k[len(extra):] for k in weights} == model:
            return extra, wanted
    return None


def describe_mismatch(state: dict[str, torch.Tensor], model: nn.Module, others: dict[str, str] | None = None) -> str:
    """One sentence that says why ``state`` does not fit ``model`` and how to fix it.

    It names the pattern when there is one: every key under one prefix more or less (``net.``, ``module.``...),
    the layers whose shapes differ, or (``others``: class name -> constructor call) another class in model.py that
    the weights fit. ``load_model`` prints the full key lists into the entry's log (``harness.check --verbose``).
    """
    name = type(model).__name__
    expected = model.state_dict()
    saved, wanted = set(state), set(expected)
    if others:
        found, also = next(iter(others.items()))
        return (f"these weights fit class {found} in {CODE_FILE}, not {name}: set model_class = \"{found}\" "
                f"in entry.toml{also}.")
    change = _prefix_change(saved, wanted)
    if change:
        extra, prefix = change
        example = min(saved, key=lambda k: (len(k), k))
        shown = f"'{example}' in the weights, '{prefix + example[len(extra):]}' in {name}"
        if extra and prefix:
            how = (f"every key starts with '{extra}' in the weights but '{prefix}' in {name} ({shown}); rename the "
                   f"attribute in {name} or save the weights again from the model you load.")
        elif prefix:
            how = (f"every key of {name} starts with '{prefix}', which the weights' keys lack ({shown}): they were "
                   f"saved from the inner module; save torch.save(model.state_dict(), ...) from the whole {name}.")
        else:
            how = (f"every key in the weights starts with '{extra}', which {name}'s keys lack ({shown}): they were "
                   f"saved from a wrapper; save the state_dict of the inner model, the one {name} builds.")
        return f"the weights do not fit the model: {how}"
    if saved == wanted:
        shapes = [(k, state[k], expected[k]) for k in expected if state[k].shape != expected[k].shape]
        parts = [f"{k} is {_shape(a)} in the weights but {_shape(b)} in the model" for k, a, b in shapes[:SHOWN_SHAPES]]
        more = f" and {len(shapes) - SHOWN_SHAPES} more" if len(shapes) > SHOWN_SHAPES else ""
        return (f"the weights do not fit the model ({'; '.join(parts)}{more}); set the constructor arguments in "
                "entry.toml to the ones you trained with, or save the state_dict of this exact model.")
    missing, unexpected = sorted(wanted - saved), sorted(saved - wanted)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' if len(missing) > 1 else ''} such as \"{missing[0]}\""
                     if len(missing) > 1 else f"missing keys \"{missing[0]}\"")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys such as \"{unexpected[0]}\""
                     if len(unexpected) > 1 else f"unexpected keys \"{unexpected[0]}\"")
    return (f"the weights do not fit the model ({'; '.join(parts)}); save the state_dict of this exact model, or "
            "set the constructor arguments in entry.toml to the ones you trained with (python -m harness.check "
            "--verbose lists every key).")


def fitting_class(module, state: dict[str, torch.Tensor], metadata: EntryMetadata, tried: type) -> dict[str, str]:
    """The first other nn.Module class in ``module`` that takes ``state`` strictly, built with entry.toml's
    constructor arguments or with none: ``{name: what else to change in entry.toml}``, or ``{}``."""
    for name, cls in model_classes(module).items():
        if cls is tried:
            continue
        for kwargs in ([metadata.constructor, {}] if metadata.constructor else [{}]):
            try:
                cls(**kwargs).load_state_dict(state, strict=True)
            except Exception:  # noqa: BLE001 - any failure means: not this class, or not with these arguments
                continue
            return {name: " and remove its [constructor] table" if metadata.constructor and not kwargs else ""}
    return {}


def load_model(folder: Path, metadata: EntryMetadata, module_name: str | None = "submission_model") -> nn.Module:
    """Build the entry's model on the CPU with its weights loaded (``module_name``: see ``import_code``)."""
    folder = Path(folder)
    if real_file(folder, CODE_FILE) is None:
        export = real_file(folder, EXPORT_FILE)
        if export is None:
            raise EntryError(f"the entry has neither {CODE_FILE} nor {EXPORT_FILE}; add your model code and weights "
                             "(see submissions/README.md).")
        try:
            return with_adapter(torch.export.load(str(export)).module(), metadata)
        except Exception as exc:
            raise EntryError(f"{EXPORT_FILE} is not a loadable torch.export archive ({type(exc).__name__}: {exc}); "
                             "write it with torch.export.save(torch.export.export(model, (x,)), 'model.pt2').") from exc
    module = import_code(folder, module_name)
    cls = find_class(module, metadata.model_class)
    try:
        model = cls(**metadata.constructor)
    except TypeError as exc:
        raise EntryError(f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in metadata.constructor.items())}) failed: "
                         f"{exc}; set the constructor arguments in entry.toml's [constructor] table.") from exc
    except Exception as exc:
        raise EntryError(f"{cls.__name__}() raised {type(exc).__name__}: {exc}") from exc
    weights = weights_file(folder, metadata)
    if weights is None and metadata.weights:
        raise EntryError(f"weights file {metadata.weights} is missing; save it with torch.save(model.state_dict(), "
                         f"'{metadata.weights}') into the entry folder (a real file, not a link).")
    if weights is None:
        raise EntryError(f"the entry has {CODE_FILE} but no weights; save torch.save(model.state_dict(), "
                         "'weights.pt') into the entry folder.")
    state = read_weights(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        print(f"{cls.__name__}.load_state_dict said: {exc}", file=sys.stderr)  # the full key lists, for --verbose
        others = fitting_class(module, state, metadata, cls)
        raise EntryError(describe_mismatch(state, model, others)) from exc
    return with_adapter(model, metadata)


def with_adapter(model: nn.Module, metadata: EntryMetadata) -> nn.Module:
    """The model, behind an InputAdapter when ``metadata`` is a TrialMetadata that asks for one."""
    adapter = getattr(metadata, "adapter", None) if isinstance(metadata, TrialMetadata) else None
    return nn.Sequential(InputAdapter(**adapter), model) if adapter else model


def set_eval(model: nn.Module) -> nn.Module:
    """``model.eval()``; exported programs are already frozen in eval mode and may refuse the call."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        model.eval()
    return model
