"""Write a trained model as a complete entry folder, atomically: everything goes to a temporary folder
beside the target, is loaded back and checked, and only then renamed into place."""

from __future__ import annotations

import csv
import errno
import shutil
import tempfile
import uuid
from pathlib import Path

import tomli_w
import torch
from torch import nn

from harness.contract import CODE_FILE, DIGITS, EXPORT_FILE, METADATA_FILE, EntryMetadata, Interface
from harness.entries.loading import EntryError, load_model, set_eval
from harness.errors import HarnessError

WEIGHTS_FILE = "weights.pt"
CURVE_CSV, CURVE_PNG = "curve.csv", "curve.png"
CURVE_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse, before any training, a target that exists (without ``overwrite``) or whose parent is missing."""
    if out.exists() and not overwrite:
        raise HarnessError(f"{out} already exists; choose another --out or pass --overwrite to replace it.")
    if not out.parent.is_dir():
        raise HarnessError(f"The folder {out.parent} does not exist; create it or choose another --out.")


def _toml_ready(value):
    """TOML has no null: drop ``None`` values, recursively; tuples become lists."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return value


def write_curve(folder: Path, history: list[dict], title: str) -> None:
    """The per-epoch curve as CSV and as a two-panel PNG (loss; validation accuracy)."""
    with open(folder / CURVE_CSV, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CURVE_COLUMNS})
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    if any(r["val_loss"] is not None for r in history):
        ax_loss.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", label="train (running)")
    if any(r["val_accuracy"] is not None for r in history):
        ax_acc.plot(epochs, [100 * r["val_accuracy"] for r in history], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.savefig(folder / CURVE_PNG, dpi=100)


def export_model(model: nn.Module, path: Path, shape: tuple[int, int, int] = DIGITS.input_shape) -> None:
    """``torch.export`` the model in eval mode with a dynamic batch dimension and save it as ``model.pt2``
    (``shape``: one input's, the task's)."""
    example = torch.rand(2, *shape)
    try:
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # torch.export raises many kinds of errors for code it cannot trace
        raise HarnessError(f"torch.export cannot capture this model ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); drop --export to save model.py + "
                           "weights.pt.") from exc
    torch.export.save(program, path)


def _verify(folder: Path, model: nn.Module, model_class: str | None, constructor: dict,
            interface: Interface = DIGITS) -> None:
    """The written entry, loaded back the way the harness loads it, must give the trained model's outputs, for more
    than one batch size, on inputs of the task's shape and value range (``interface``)."""
    low, high = interface.value_range
    try:
        loaded = set_eval(load_model(folder, EntryMetadata(model_class=model_class, constructor=constructor),
                                     module_name=None))
    except EntryError as exc:
        raise HarnessError(f"The entry written to {folder} cannot be loaded back ({exc}); this is a bug in "
                           "harness.train, please report it.") from exc
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for n in (1, 7):
            x = torch.rand(n, *interface.input_shape, generator=generator)
            x = x if (low, high) == (0.0, 1.0) else x * (high - low) + low
            expected, got = model(x), loaded(x)
            if got.shape != (n, interface.num_classes) or not torch.allclose(expected, got, atol=1e-5):
                raise HarnessError(f"The entry written to {folder} does not reproduce the trained model's outputs "
                                   f"(shape {tuple(got.shape)}); this is a bug in harness.train, please report it.")


def write_entry(out: Path, model: nn.Module, *, metadata: dict, history: list[dict], model_code: str | None = None,
                model_class: str | None = None, constructor: dict | None = None, export: bool = False,
                overwrite: bool = False, interface: Interface = DIGITS) -> Path:
    """Write the entry folder ``out`` and return it; on any failure nothing is left behind. ``interface``: what the
    model takes and returns (the task's; the MNIST warm-up's by default).

    Writes ``model.py`` + ``weights.pt`` (or ``model.pt2`` when ``export``), ``entry.toml`` from
    ``metadata`` (``None`` values dropped), ``curve.csv`` and ``curve.png``.
    """
    out = Path(out)
    check_target(out, overwrite)
    constructor = dict(constructor or {})
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an entry folder is an ordinary one
    backup = None
    try:
        model = model.to(memory_format=torch.contiguous_format).eval()  # training may have left it channels_last
        if export:
            export_model(model, tmp / EXPORT_FILE, interface.input_shape)
        else:
            (tmp / CODE_FILE).write_text(model_code)
            torch.save(model.state_dict(), tmp / WEIGHTS_FILE)
        with open(tmp / METADATA_FILE, "wb") as fh:
            tomli_w.dump(_toml_ready(metadata), fh)
        write_curve(tmp, history, metadata.get("display_name") or out.name)
        _verify(tmp, model, model_class, constructor, interface)
        if out.exists():
            backup = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
            out.rename(backup)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and not out.exists():
            backup.rename(out)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HarnessError(f"The disk is full: the entry {out} could not be saved and nothing was written; "
                               "free some space and run the command again (or --resume from the checkpoint).") from exc
        raise HarnessError(f"The entry {out} could not be saved ({exc.strerror or exc}); nothing was written.") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and not out.exists():
            backup.rename(out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return out


def weight_bytes(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in (WEIGHTS_FILE, EXPORT_FILE) if (folder / name).exists())
