"""What runs inside an entry's own process: load the model, run it over image files, write the outputs.

The worker sees only image tensors (``.npy`` files written by the harness): never labels, file names,
the database or the guest folder. It reports through ``result.json`` and ``outputs_<dataset>.npy`` in
its private output folder; the harness validates both before trusting them.

Nothing this process says about itself is ranked: the host counts the parameters from the weights file and
times the run from outside. The handshake that makes the timing honest: the worker loads the model and warms
it up on synthetic images, writes ``ready`` into its output folder and waits; only then does the host put the
images into the input folder and write ``go`` there, and the clock runs from ``go`` until this process exits.
So the images cannot be read (or answered in advance) before the clock starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.random  # imported with this module, so once in the fork server, not lazily in every entry's process
import torch
from torch import nn

from harness.contract import DIGITS, EntryMetadata, Interface
from harness.entries.loading import EntryError, load_model, set_eval
from harness.isolation.inside.exchange import (
    GO_FILE,
    LOADING,
    PROGRESS_FILE,
    READY_FILE,
    WARMING_UP,
    write_phase,
    write_progress,
)

CPU_BATCH = 128    # the largest batch on the CPU; a costly model gets a smaller one (see choose_batch)
CUDA_BATCH = 8192  # the largest batch on CUDA; smaller where the warm-up's memory says it would not fit
# A batch the harness sizes on CPU holds about this much arithmetic (FLOPs: 2 × the multiply-adds of its conv and
# linear layers, see flops_per_image): about 2 s on a 2-core CPU. A digits CNN (tens of MFLOPs an image) keeps
# CPU_BATCH; a 224-px ResNet-50 (8.2 GFLOPs) gets 16, so its first estimate comes seconds after go and its warm-up
# costs seconds, not minutes.
BATCH_FLOPS = 200e9
PROBE_FLOPS = 50e9  # ... and the batch the layout is probed on (twice, untimed)
FIRST_PROBE = 2     # images in the first, counted warm-up pass (2, not 1: a model that squeezes its batch works)
CUDA_MEMORY_SHARE = 0.5  # on CUDA a batch may use this share of the memory the process may still allocate
RESULT_FILE = "result.json"
GO_POLL_SECONDS = 0.001
LOG_HEAD_BYTES = LOG_TAIL_BYTES = 64 * 1024  # what is kept of an entry's printed output: its start and its end
LAYOUT_TOLERANCE = 1e-3  # largest output difference between memory layouts, relative to the outputs' scale
LAYOUT_COMPARED = 16     # images the layout probe runs in the usual layout when not given their outputs (load gives
                         # it the flops count's FIRST_PROBE), to compare with channels-last
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
# What this process receives and answers: the task's, set by :func:`load` from what the host handed over with the
# entry (``EntryMetadata.interface``; one entry per process). The MNIST warm-up's until then.
IO: Interface = DIGITS


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EntryError("a CUDA GPU was asked for but PyTorch sees none here; run on the CPU.")
    return torch.device(requested)


def check_output(out, batch: int, where: str) -> torch.Tensor:
    """Enforce the output contract on one batch: a float tensor [batch, 10] (finiteness is checked once, later)."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]  # models that return (logits, extras)
    if not isinstance(out, torch.Tensor):
        raise EntryError(f"forward returned {type(out).__name__} on {where}; it must return a tensor of shape "
                         f"[N, {IO.num_classes}].")
    if tuple(out.shape) != (batch, IO.num_classes):
        raise EntryError(f"forward returned shape {list(out.shape)} for a batch of {batch} on {where}; it must return "
                         f"[{batch}, {IO.num_classes}] (one score per class).")
    if not out.is_floating_point():
        raise EntryError(f"forward returned {out.dtype} on {where}; return float scores (logits, probabilities or "
                         "log-probabilities).")
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


def scale_into(inputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``images`` (uint8 or float32, on the device) written into ``inputs`` (float32, the same shape, in any memory
    layout) as the model's input: uint8 scaled to [0,1], then to the task's value range when it is another."""
    inputs.copy_(images)
    if images.dtype != torch.uint8:
        return inputs
    inputs.div_(255)
    low, high = IO.value_range
    return inputs if (low, high) == (0.0, 1.0) else inputs.mul_(high - low).add_(low)


def to_device(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A few images as the model's input on the device: uint8 images are moved as they are (4x less to move) and
    scaled there."""
    images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    moved = images.to(device, non_blocking=True)
    return scale_into(torch.empty(moved.shape, dtype=torch.float32, device=device), moved)


class Counter:
    """Images done so far over every set, rewritten after each batch in the output folder's progress file, which
    the host reads to show progress and to stop an entry that cannot finish in time (never to rank it). On CUDA a
    batch counts once it is queued."""

    def __init__(self, out_dir: Path):
        self.fd = os.open(out_dir / PROGRESS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        self.done = 0

    def phase(self, name: str) -> None:
        """Say what the process is doing before it has images (``exchange.LOADING``, ``exchange.WARMING_UP``)."""
        write_phase(self.fd, name)

    def add(self, images: int) -> None:
        self.done += images
        write_progress(self.fd, self.done)


def run_batches(model, resident: torch.Tensor, batch_size: int, where: str,
                counter: Counter | None = None, layout: torch.memory_format | None = None) -> np.ndarray:
    """Forward every image once, in order, from images already on the device (uint8 or float32); outputs come back
    in one copy.

    Each batch is written into one input buffer (float32, in ``layout``) made once, and each batch's outputs into one
    result made once: the whole set is never held as floats (4 bytes a pixel, against uint8's one), and nothing is
    allocated per batch but what the model itself allocates (a new input each batch, with the outputs kept batch by
    batch between them, grew glibc's heap by a batch every batch). An entry that keeps or changes its input changes
    nothing the next batch reads, nor outputs already copied out. On a CUDA out-of-memory error the batch is halved
    and the same images are tried again. ``counter`` counts the images done after each batch.
    """
    device = resident.device
    start = 0
    batch_size = even_batch(len(resident), batch_size)
    with torch.inference_mode():
        inputs = torch.empty((batch_size, *resident.shape[1:]), dtype=torch.float32, device=device,
                             memory_format=layout or torch.contiguous_format)
        result = torch.empty((len(resident), IO.num_classes), dtype=torch.float32, device=device)
        while start < len(resident):
            images = resident[start:start + batch_size]
            try:
                out = model(scale_into(inputs[:len(images)], images))
            except torch.OutOfMemoryError:
                if device.type != "cuda" or batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                batch_size //= 2
                continue
            result[start:start + len(images)] = check_output(out, len(images), where)
            start += len(images)
            if counter is not None:
                counter.add(len(images))
        if not torch.isfinite(result).all():
            raise EntryError(f"forward returned NaN or infinite values on {where}; check the model's weights and its "
                             "normalisation.")
    return result.cpu().numpy()


def warm_up(model, images: torch.Tensor, device: torch.device, batch_size: int, where: str) -> None:
    """One untimed pass over the first batch, through the same code as the timed run (copy, forward, checks,
    copy back), so that CUDA's lazy start-up of each kernel is not counted as model speed."""
    try:
        run_batches(model, to_device(images[:even_batch(len(images), batch_size)], device), batch_size, where)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()  # run_batches will find a batch size that fits
    torch.cuda.synchronize()


def power_of_two_at_most(n: float, largest: int) -> int:
    """The largest power of two not over ``n``, between 1 and ``largest`` (``largest`` itself once ``n`` reaches it)."""
    if n >= largest:
        return largest
    return 1 << (max(int(n), 1).bit_length() - 1)


def choose_batch(flops_per_image: float, largest: int = CPU_BATCH, budget: float | None = None) -> int:
    """The CPU batch size for a model that costs ``flops_per_image``: as many images as fit in ``budget`` FLOPs
    (BATCH_FLOPS by default), a power of two, at most ``largest``; ``largest`` when the cost is unknown (0). It
    depends on the model alone, not on how busy the machine is, so a model gets the same batch (and the same float
    rounding) on every run."""
    if flops_per_image <= 0:
        return largest
    return power_of_two_at_most((budget or BATCH_FLOPS) / flops_per_image, largest)


def fitting_batch(bytes_per_image: float, room: float, largest: int = CUDA_BATCH,
                  share: float = CUDA_MEMORY_SHARE) -> int:
    """The CUDA batch size whose activations (``bytes_per_image`` each, as the warm-up's peak showed) take at most
    ``share`` of the ``room`` left on the GPU: a power of two, at most ``largest``."""
    if bytes_per_image <= 0:
        return largest
    return power_of_two_at_most(room * share / bytes_per_image, largest)


def flops_per_image(model, images: torch.Tensor, where: str) -> tuple[float, np.ndarray]:
    """The arithmetic of one image's forward pass: 2 × multiply-adds of its convolution and linear layers, counted
    by forward hooks on FIRST_PROBE warm-up images (this is also the untimed first pass that pays for lazy set-up),
    and the outputs of that pass (the layout probe compares against them). Layers called as functions are not seen,
    so a model built that way counts as cheap (0: the largest batch, as before). Only the batch size follows from
    it: nothing ranked."""
    counted = [0]

    def conv(module, inputs, output) -> None:
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        counted[0] += 2 * per_output * (output.numel() if isinstance(output, torch.Tensor) else 0)

    def linear(module, inputs, output) -> None:
        counted[0] += 2 * module.in_features * (output.numel() if isinstance(output, torch.Tensor) else 0)

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.modules.conv._ConvNd) else linear)
             for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    first = to_device(images[:FIRST_PROBE], torch.device("cpu"))
    try:
        outputs = run_batches(model, first, len(first), where)  # an error here is the entry's own, as when timed
    finally:
        for hook in hooks:
            hook.remove()
    return counted[0] / len(first), outputs


def cuda_room(device: torch.device, gpu_memory: int | None) -> float:
    """Bytes this process may still allocate on the GPU: what the device has free (plus what our allocator holds
    unused), within the cap."""
    free, _ = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    room = free + torch.cuda.memory_reserved(device) - allocated
    return min(room, gpu_memory - allocated) if gpu_memory else room


def probe_layout(model, images: torch.Tensor, batch_size: int, where: str,
                 usual: np.ndarray | None = None) -> torch.memory_format:
    """On CPU, the memory layout to run the model in: channels-last where it gives the same outputs, else the usual one.

    In channels-last (NHWC) memory, oneDNN runs convolutions and max-pooling without reordering, which makes a conv
    model's forward pass faster (figures: docs/performance.md, "Speed"). The layout changes only where numbers
    sit in memory, not what the model computes, but a model can still break in it: ``x.view(n, -1)`` after a conv
    layer raises, or scrambles every image's features. So the model runs both ways, untimed: in the usual layout on
    the first few images (``usual``: its outputs on them from a pass already made, as :func:`load` has from the
    flops count; else on the first LAYOUT_COMPARED images, run here), in channels-last on the whole first batch (the
    timed run's batch shape, so that its lazy set-up is paid here), and it keeps channels-last only if that run
    succeeds with the same predictions and outputs equal to float rounding on the images both saw. Otherwise it is
    put back as it was, and warmed up on that batch in the usual layout.
    """
    if not any(t.dim() == 4 for t in (*model.parameters(), *model.buffers())):
        return torch.contiguous_format  # no conv weights: nothing would change, so no probe
    first = to_device(images[:even_batch(len(images), batch_size)], torch.device("cpu"))
    compared = first[:LAYOUT_COMPARED if usual is None else len(usual)]
    if usual is None:
        usual = run_batches(model, compared, len(compared), where)  # an error here is the entry's own, as when timed
    model.to(memory_format=torch.channels_last)
    try:
        fast = run_batches(model, first, batch_size, where, layout=torch.channels_last)[:len(compared)]
        same = (fast.argmax(1) == usual.argmax(1)).all() and \
            np.abs(fast - usual).max() <= LAYOUT_TOLERANCE * max(1.0, float(np.abs(usual).max()))
    except Exception:  # noqa: BLE001 - any failure in the other layout means: keep the usual one
        same = False
    if same:
        return torch.channels_last
    model.to(memory_format=torch.contiguous_format)
    if len(first) > len(compared):
        run_batches(model, first, batch_size, where)  # the timed run's batch shape, set up before the clock
    return torch.contiguous_format


def probe_images(batch_size: int) -> torch.Tensor:
    """Synthetic digits-like images of the task's input shape for the untimed warm-up and layout probe: blurred
    random strokes, never the scored images (those arrive only when the host's clock starts)."""
    rng = np.random.default_rng(0)
    n = min(batch_size, 128)
    channels, height, width = IO.input_shape
    size = np.array([height, width, height, width])
    # three strokes on each channel of each image, between four points in the middle five sevenths, as twentieths
    # of it (28×28: rows and columns 4 to 23)
    ends = rng.integers(0, 20, size=(n * channels, 3, 4)) * size * 5 // 7 // 20 + size // 7
    steps = np.linspace(0.0, 1.0, max(height, width) - 4)
    (r0, c0, r1, c1) = (ends[..., i, None] for i in range(4))
    rows = np.rint(r0 + (r1 - r0) * steps).astype(int)
    cols = np.rint(c0 + (c1 - c0) * steps).astype(int)
    planes = np.broadcast_to(np.arange(n * channels)[:, None, None], rows.shape)
    images = np.zeros((n * channels, height, width), dtype=np.float32)
    images[planes, rows, cols] = 1.0
    blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(images.reshape(n, channels, height, width)), 3,
                                             stride=1, padding=1)
    return (blurred / blurred.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6) * 255).round().to(torch.uint8)


def wait_for_go(out_dir: Path, go: Path) -> None:
    """Say ready (the model is loaded and warm) and wait until the host has handed over the images."""
    (out_dir / READY_FILE).touch()
    while not go.exists():
        time.sleep(GO_POLL_SECONDS)


def cap_gpu_memory(dev: torch.device, gpu_memory: int | None) -> str:
    """Cap what this process may allocate on the GPU (before the model loads), and say so in a few words."""
    if dev.type != "cuda" or not gpu_memory:
        return ""
    total = torch.cuda.get_device_properties(dev).total_memory
    torch.cuda.set_per_process_memory_fraction(min(gpu_memory / total, 1.0), dev)
    return f", ≤{min(gpu_memory, total) / 1024 ** 3:.0f} GiB"


@dataclass
class Loaded:
    """A model loaded, on its device and warm: what both ways of running an entry start from."""
    model: object
    device: torch.device
    batch_size: int
    layout: torch.memory_format | None  # the CPU memory layout the probe chose (None on CUDA)
    capped: str                         # the GPU memory cap, in a few words ("" when none)

    @property
    def shown(self) -> str:
        """The device in a few words, as the result reports it: "cpu, channels-last", "cuda, ≤4 GiB"."""
        base = f"{self.device}, channels-last" if self.layout == torch.channels_last else str(self.device)
        return base + self.capped


def load(folder: Path, metadata: EntryMetadata, device: str = "auto", batch_size: int | None = None,
         gpu_memory: int | None = None, on_phase=None) -> Loaded:
    """Load the entry's model and warm it up on synthetic images; ``on_phase`` hears when warming up starts.

    Without ``batch_size`` the warm-up picks one: on CPU from the model's arithmetic per image, counted on
    FIRST_PROBE images (:func:`choose_batch`, BATCH_FLOPS a batch), on CUDA from the memory the warm-up batch took
    (:func:`fitting_batch`). On CPU it also picks the memory layout, on a batch of PROBE_FLOPS (128 images for a
    digits model, as before; 4 for a 224-px ResNet-50), so a heavy model warms up in seconds whatever its input
    size.
    """
    global IO
    IO = metadata.interface
    dev = pick_device(device)
    capped = cap_gpu_memory(dev, gpu_memory)
    model = set_eval(load_model(folder, metadata).to(dev))
    if on_phase is not None:
        on_phase(WARMING_UP)
    probe = host_tensor(probe_images(CPU_BATCH).numpy(), dev)
    where = "the warm-up images"
    layout = None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        warm_up(model, probe, dev, batch_size or CUDA_BATCH, where)
        if not batch_size:
            used = (torch.cuda.max_memory_allocated(dev) - before) / len(probe)
            batch_size = fitting_batch(used, cuda_room(dev, gpu_memory))
    else:
        flops, usual = flops_per_image(model, probe, where)
        batch_size = batch_size or choose_batch(flops)
        probed = min(batch_size, choose_batch(flops, budget=PROBE_FLOPS))
        layout = probe_layout(model, probe[:probed], batch_size, where, usual=usual[:probed])
    return Loaded(model, dev, batch_size, layout, capped)


def answer(loaded: Loaded, path: Path, where: str, counter: Counter | None = None) -> np.ndarray:
    """The loaded model's outputs for the images in one ``.npy`` file (uint8 or float32 [N, C, H, W], the task's
    input shape)."""
    raw = np.load(path, allow_pickle=False)
    if raw.dtype not in (np.uint8, np.float32) or raw.ndim != 4 or raw.shape[1:] != IO.input_shape:
        raise ValueError(f"{path.name}: expected uint8 or float32 images [N,{','.join(map(str, IO.input_shape))}], "
                         f"got {raw.dtype} {raw.shape}")
    resident = host_tensor(raw, loaded.device).to(loaded.device, non_blocking=True)  # uint8 stays uint8
    return run_batches(loaded.model, resident, loaded.batch_size, where, counter, loaded.layout)


def evaluate_folder(folder: Path, metadata: EntryMetadata, inputs: dict[str, Path], out_dir: Path,
                    device: str = "auto", batch_size: int | None = None, gpu_memory: int | None = None) -> dict:
    """Load the entry, warm it up, wait for the host's go, then write ``outputs_<name>.npy`` for every input.

    The input files exist only once the host has written ``go`` beside them. On CUDA the process may allocate at
    most ``gpu_memory`` bytes of the GPU. Returns the summary it also saves (device and batch size; nothing in it
    is ranked).
    """
    counter = Counter(out_dir)
    counter.phase(LOADING)
    loaded = load(folder, metadata, device, batch_size, gpu_memory, counter.phase)
    if inputs:
        wait_for_go(out_dir, next(iter(inputs.values())).parent / GO_FILE)
    for name, path in inputs.items():
        outputs = answer(loaded, path, f"the {name} images", counter)
        np.save(out_dir / f"outputs_{name}.npy", outputs, allow_pickle=False)
    return {"status": "ok", "device": loaded.shown, "batch_size": loaded.batch_size}


def write_result(out_dir: Path, result: dict) -> None:
    tmp = out_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out_dir / RESULT_FILE)


def keep_freed_memory() -> None:
    """Tell glibc to keep large freed blocks instead of unmapping them.

    By default every batch's activations are mmapped, unmapped and faulted in again, which slows a fresh
    process's first pass over the images (figures: docs/performance.md, "Speed").
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (macOS, musl): nothing to tune
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value


class CappedLog(io.TextIOBase):
    """The entry's ``sys.stdout``/``sys.stderr``: the first and last bytes of what it prints reach the log, the
    middle is counted and cut, so that printing never fails (a full log used to make ``print`` raise) and the
    log stays small. Output written straight to file descriptors 1 and 2 (C code) goes to the log uncapped,
    within the entry's file-size limit."""

    def __init__(self, fd: int = 1, head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES):
        super().__init__()
        self.fd, self.head_left, self.tail_size = fd, head, tail
        self.tail = bytearray()
        self.cut = 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def write(self, text: str) -> int:
        data = str(text).encode("utf-8", "replace")
        shown = data[:max(self.head_left, 0)]
        if shown:
            with contextlib.suppress(OSError):
                os.write(self.fd, shown)
            self.head_left -= len(shown)
        rest = data[len(shown):]
        if rest:
            self.tail += rest
            if len(self.tail) > self.tail_size:
                self.cut += len(self.tail) - self.tail_size
                del self.tail[:len(self.tail) - self.tail_size]
        return len(text)

    def close_log(self) -> None:
        """Write the kept end of the output, after a line that says how much was cut."""
        end = (f"\n[… {self.cut:,} bytes of output cut …]\n".encode() if self.cut else b"") + bytes(self.tail)
        self.tail.clear()
        with contextlib.suppress(OSError):
            os.write(self.fd, end)


def failure(exc: BaseException, folder: Path, log: CappedLog) -> str:
    """The one sentence that says why the entry failed (its traceback goes to the log)."""
    if isinstance(exc, EntryError):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"the entry called sys.exit({exc.code!r}); an entry must not exit the process."
    if isinstance(exc, MemoryError):
        return ("the entry ran out of memory (over its memory limit); use a smaller model or batch, or raise the "
                "memory limit.")
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if Path(f.filename).resolve().is_relative_to(Path(folder).resolve())]
    where = f" ({Path(user[-1].filename).name} line {user[-1].lineno})" if user else ""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower() or "allocate memory" in text.lower():
        text = "out of memory; use a smaller model or batch"
    elif isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:
        text = "could not start another process or thread (the harness's process limit); entries must not fork"
    traceback.print_exc(file=log)
    return f"{type(exc).__name__} in the model{where}: {text}"


def main(folder: str, metadata: EntryMetadata, inputs: dict[str, str], out_dir: str, device: str,
         batch_size: int | None, gpu_memory: int | None = None) -> None:
    """Child-process entry point: always leaves a result.json unless the process is killed."""
    out = Path(out_dir)
    pid = os.getpid()
    keep_freed_memory()
    log = CappedLog()
    sys.stdout = sys.stderr = log
    try:
        result = evaluate_folder(Path(folder), metadata, {k: Path(v) for k, v in inputs.items()}, out, device,
                                 batch_size, gpu_memory)
    except BaseException as exc:  # noqa: BLE001 - anything the entry's own code raises
        result = {"status": "failed", "error": failure(exc, Path(folder), log)}
    if os.getpid() != pid:  # a copy the entry forked: only the entry's own process reports
        os._exit(1)
    log.close_log()
    write_result(out, result)


def serve(folder: str, metadata: EntryMetadata, requests: int, replies: int, in_dir: str, out_dir: str, device: str,
          batch_size: int | None, gpu_memory: int | None = None) -> None:
    """Warm mode (``harness.isolation.warm``): load the model once, then answer requests until ``requests`` closes.

    Says ``{"ready": ..., "device": ...}`` (or ``{"status": "failed", "error": ...}``) on ``replies`` once loaded; then
    each request is a line ``<n>`` on ``requests``: the images are ``draw-<n>.npy`` in ``in_dir``, the outputs go to
    ``outputs-<n>.npy`` in ``out_dir`` and the reply is ``{"done": n, "status": "ok"}`` or, with the failure's sentence,
    ``{"done": n, "status": "failed", "error": ...}``. A failure in one request leaves the model loaded for the next.
    """
    pid = os.getpid()
    keep_freed_memory()
    log = CappedLog()
    sys.stdout = sys.stderr = log

    def say(message: dict) -> None:
        if os.getpid() != pid:  # a copy the entry forked never speaks for it
            os._exit(1)
        os.write(replies, (json.dumps(message) + "\n").encode())

    try:
        loaded = load(Path(folder), metadata, device, batch_size, gpu_memory)
    except BaseException as exc:  # noqa: BLE001 - anything the entry's own code raises while loading
        say({"status": "failed", "error": failure(exc, Path(folder), log)})
        return
    say({"ready": True, "device": loaded.shown})
    with open(requests, "rb", buffering=0, closefd=False) as stream:
        for line in stream:
            n = int(line)
            try:
                outputs = answer(loaded, Path(in_dir) / f"draw-{n}.npy", "the drawing")
                np.save(Path(out_dir) / f"outputs-{n}.npy", outputs, allow_pickle=False)
                say({"done": n, "status": "ok"})
            except BaseException as exc:  # noqa: BLE001 - the entry's code failed on this request; it stays loaded
                say({"done": n, "status": "failed", "error": failure(exc, Path(folder), log)})
