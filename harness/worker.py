"""What runs inside an entry's own process: load the model, run it over image files, write the outputs.

The worker sees only image tensors (``.npy`` files written by the harness): never labels, file names,
the database or the guest folder. It reports through ``result.json`` and ``outputs_<dataset>.npy`` in
its private output folder; the harness validates both before trusting them.
"""

from __future__ import annotations

import errno
import ctypes
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from harness.contract import NUM_CLASSES, EntryMetadata
from harness.loading import EntryError, load_model, set_eval

CPU_BATCH = 128
CUDA_BATCH = 8192
RESULT_FILE = "result.json"
LAYOUT_TOLERANCE = 1e-3  # largest output difference between memory layouts, relative to the outputs' scale
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EntryError("--device cuda was asked for but PyTorch sees no CUDA GPU here; use --device cpu or auto.")
    return torch.device(requested)


def check_output(out, batch: int, where: str) -> torch.Tensor:
    """Enforce the output contract on one batch: a float tensor [batch, 10] (finiteness is checked once, later)."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]  # models that return (logits, extras)
    if not isinstance(out, torch.Tensor):
        raise EntryError(f"forward returned {type(out).__name__} on {where}; it must return a tensor of shape [N, 10].")
    if tuple(out.shape) != (batch, NUM_CLASSES):
        raise EntryError(f"forward returned shape {list(out.shape)} for a batch of {batch} on {where}; it must return "
                         f"[{batch}, {NUM_CLASSES}] (one score per digit).")
    if not out.is_floating_point():
        raise EntryError(f"forward returned {out.dtype} on {where}; return float scores (logits, probabilities or log-probabilities).")
    return out.float()


def even_batch(n: int, batch_size: int) -> int:
    """The batch size that splits n images into equal batches no larger than batch_size (one shape, no ragged tail)."""
    if n <= batch_size:
        return max(n, 1)
    batches = -(-n // batch_size)
    return -(-n // batches)


def host_tensor(raw: np.ndarray, device: torch.device) -> torch.Tensor:
    """The images as a host tensor, page-locked when they will go to a GPU (prepared before timing)."""
    images = torch.from_numpy(raw)
    return images.pin_memory() if device.type == "cuda" else images


def to_device(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """The model's input on the device in one copy: uint8 images are scaled to [0,1] there (4x less to move)."""
    images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    moved = images.to(device, non_blocking=True)
    return moved.float().div_(255) if images.dtype == torch.uint8 else moved.float()


def run_batches(model, resident: torch.Tensor, batch_size: int, where: str) -> np.ndarray:
    """Forward every image once, in order, from images already on the device; outputs come back in one copy.

    On a CUDA out-of-memory error the batch is halved and the same images are tried again.
    """
    device = resident.device
    outputs = []
    start = 0
    batch_size = even_batch(len(resident), batch_size)
    with torch.inference_mode():
        while start < len(resident):
            batch = resident[start:start + batch_size]
            try:
                out = model(batch)
            except torch.OutOfMemoryError:
                if device.type != "cuda" or batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                batch_size //= 2
                continue
            outputs.append(check_output(out, len(batch), where))
            start += len(batch)
        result = torch.cat(outputs) if outputs else torch.zeros((0, NUM_CLASSES))
        if not torch.isfinite(result).all():
            raise EntryError(f"forward returned NaN or infinite values on {where}; check the model's weights and its normalisation.")
    if len(result) != len(resident):
        raise EntryError(f"only {len(result)} of {len(resident)} images were evaluated on {where}.")
    return result.cpu().numpy()


def warm_up(model, images: torch.Tensor, device: torch.device, batch_size: int, where: str) -> None:
    """One untimed pass over the first batch, through the same code as the timed run (copy, forward, checks,
    copy back), so that CUDA's lazy start-up of each kernel is not counted as model speed."""
    try:
        run_batches(model, to_device(images[:even_batch(len(images), batch_size)], device), batch_size, where)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()  # run_batches will find a batch size that fits
    torch.cuda.synchronize()


def probe_layout(model, images: torch.Tensor, batch_size: int, where: str) -> torch.memory_format:
    """On CPU, the memory layout to run the model in: channels-last where it gives the same outputs, else the usual one.

    In channels-last (NHWC) memory, oneDNN runs convolutions and max-pooling without reordering; a 2-conv MNIST CNN
    runs its forward pass about 1.6x faster on this project's 2-core machine. The layout changes only where numbers
    sit in memory, not what the model computes, but a model can still break in it: ``x.view(n, -1)`` after a conv
    layer raises. So the first batch runs both ways, untimed: the model keeps channels-last only if that run
    succeeds with the same predictions and outputs equal to float rounding. Otherwise it is put back as it was.
    """
    if not any(t.dim() == 4 for t in (*model.parameters(), *model.buffers())):
        return torch.contiguous_format  # no conv weights: nothing would change, so no probe
    first = to_device(images[:even_batch(len(images), batch_size)], torch.device("cpu"))
    usual = run_batches(model, first, batch_size, where)  # an error here is the entry's own, as in the timed run
    model.to(memory_format=torch.channels_last)
    try:
        fast = run_batches(model, first.contiguous(memory_format=torch.channels_last), batch_size, where)
        same = (fast.argmax(1) == usual.argmax(1)).all() and \
            np.abs(fast - usual).max() <= LAYOUT_TOLERANCE * max(1.0, float(np.abs(usual).max()))
    except Exception:  # noqa: BLE001 - any failure in the other layout means: keep the usual one
        same = False
    if same:
        return torch.channels_last
    model.to(memory_format=torch.contiguous_format)
    return torch.contiguous_format


def evaluate_folder(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path,
                    device: str = "auto", batch_size: int | None = None) -> dict:
    """Load the entry and write ``outputs_<name>.npy`` for every input; returns the summary it also saves."""
    started = time.perf_counter()
    dev = pick_device(device)
    model = load_model(folder, metadata)
    params = sum(p.numel() for p in model.parameters())
    model = set_eval(model.to(dev))
    load_seconds = time.perf_counter() - started
    batch_size = batch_size or (CUDA_BATCH if dev.type == "cuda" else CPU_BATCH)
    timings, counts = {}, {}
    layout = None
    for name, path in inputs.items():
        raw = np.load(path, allow_pickle=False)
        if raw.dtype not in (np.uint8, np.float32) or raw.ndim != 4 or raw.shape[1:] != (1, 28, 28):
            raise ValueError(f"{path.name}: expected uint8 or float32 images [N,1,28,28], got {raw.dtype} {raw.shape}")
        images = host_tensor(raw, dev)
        if dev.type == "cuda" and len(raw):
            warm_up(model, images, dev, batch_size, f"the {name} images")
        if dev.type == "cpu" and layout is None and len(raw):
            layout = probe_layout(model, images, batch_size, f"the {name} images")
        t0 = time.perf_counter()
        resident = to_device(images, dev)
        if layout is not None:
            resident = resident.contiguous(memory_format=layout)
        outputs = run_batches(model, resident, batch_size, f"the {name} images")
        timings[name] = time.perf_counter() - t0  # run_batches ends by copying the outputs back: synchronised
        counts[name] = len(raw)
        np.save(out_dir / f"outputs_{name}.npy", outputs, allow_pickle=False)
    shown = f"{dev}, channels-last" if layout == torch.channels_last else str(dev)
    summary = {"status": "ok", "params": int(params), "device": shown, "load_seconds": load_seconds,
               "seconds": timings, "counts": counts, "batch_size": batch_size}
    return summary


def write_result(out_dir: Path, result: dict) -> None:
    tmp = out_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out_dir / RESULT_FILE)


def keep_freed_memory() -> None:
    """Tell glibc to keep large freed blocks instead of unmapping them.

    By default every batch's activations are mmapped, unmapped and faulted in again; in a fresh process that
    made the first pass over MNIST about 0.5-1 s slower for a 2-conv CNN on 2 cores.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (macOS, musl): nothing to tune
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value


def main(folder: str, metadata: EntryMetadata, inputs: dict[str, str], out_dir: str, device: str,
         batch_size: int | None) -> None:
    """Child-process entry point: always leaves a result.json unless the process is killed."""
    out = Path(out_dir)
    pid = os.getpid()
    keep_freed_memory()
    try:
        result = evaluate_folder(Path(folder), metadata, {k: Path(v) for k, v in inputs.items()}, out, device, batch_size)
    except EntryError as exc:
        result = {"status": "failed", "error": str(exc)}
    except SystemExit as exc:
        result = {"status": "failed", "error": f"the entry called sys.exit({exc.code!r}); an entry must not exit the process."}
    except MemoryError:
        result = {"status": "failed", "error": "the entry ran out of memory (over the harness's --memory-limit); use a smaller model or batch."}
    except BaseException as exc:  # anything the entry's own code raises
        frames = traceback.extract_tb(exc.__traceback__)
        user = [f for f in frames if Path(f.filename).resolve().is_relative_to(Path(folder).resolve())]
        where = f" ({Path(user[-1].filename).name} line {user[-1].lineno})" if user else ""
        text = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower() or "allocate memory" in text.lower():
            text = "out of memory; use a smaller model or batch"
        elif isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:
            text = "could not start another process or thread (the harness's process limit); entries must not fork"
        result = {"status": "failed", "error": f"{type(exc).__name__} in the model{where}: {text}"}
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.getpid() != pid:  # a copy the entry forked: only the entry's own process reports
        os._exit(1)
    write_result(out, result)
