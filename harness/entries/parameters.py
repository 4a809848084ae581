"""An entry's parameter count, read by the host from its files; never taken from the entry's own process.

For a ``model.py`` entry it is the number of values in the floating-point tensors of its weights file (the
``state_dict`` the model loads strictly), less BatchNorm's running statistics, which are buffers, not trained
parameters; for a ``torch.export`` archive, the tensors its weights config marks as parameters. Nothing of
the entry is imported or executed: ``weights.pt`` is opened with ``torch.load(weights_only=True)`` (memory-mapped),
a safetensors file and a ``.pt2`` archive only have their headers read.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

from harness.contract import CODE_FILE
from harness.entries.discovery import Entry, real_file, weights_file

BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
FLOAT_SAFETENSORS = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def _counted(name: str) -> bool:
    return not name.endswith(BUFFER_SUFFIXES)


def from_state_dict(state: dict) -> int:
    import torch
    return sum(t.numel() for k, t in state.items()
               if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()) and _counted(k))


def from_weights(path: Path) -> int | None:
    """Parameters in a ``state_dict`` file (``.pt``/``.pth``/``.safetensors``); None when it cannot be read."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt") as fh:
                return sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys()
                           if fh.get_slice(k).get_dtype() in FLOAT_SAFETENSORS and _counted(k))
        except Exception:  # noqa: BLE001 - not a readable file: the entry's own load fails with the reason
            return None
    import torch

    from harness.entries.loading import EntryError, _unwrap_state_dict
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
        return from_state_dict(_unwrap_state_dict(obj, path))
    except (EntryError, Exception):  # noqa: BLE001 - as above
        return None


def from_export(path: Path) -> int | None:
    """Parameters of a ``torch.export`` archive, from its weights config (JSON); None without one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data/weights/model_weights_config.json")]
            if not names:
                return None
            config = json.loads(archive.read(names[0]))["config"]
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return None
    total = 0
    for meta in config.values():
        if meta.get("is_param"):
            total += math.prod(int(size["as_int"]) for size in meta["tensor_meta"]["sizes"])
    return total


def count(entry: Entry) -> int | None:
    """The entry's parameter count as the host reads it from its files (None when they cannot be read)."""
    weights = weights_file(entry.folder, entry.metadata)
    if weights is None:
        return None
    return from_weights(weights) if real_file(entry.folder, CODE_FILE) else from_export(weights)
