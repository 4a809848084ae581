"""The submission contract: what an entry in ``submissions/`` must look like.

An entry is one folder, ``submissions/<entry>/`` (the folder name is the entry's name:
letters, digits, ``-``, ``_`` and ``.``, at most 100 characters). It holds real files whose names are UTF-8
text, no symbolic links, at most ``max_entry_gb`` of them in all (``competition.toml``, default 2 GB), and either

* **model code + weights**
  - ``model.py``: defines the model as an ``nn.Module`` subclass. The harness picks the class named
    by ``model_class`` in ``entry.toml``; otherwise a class called ``Model`` or ``Net``; otherwise the
    only ``nn.Module`` subclass defined in the file.
  - ``weights.pt`` (a ``state_dict`` saved with ``torch.save(model.state_dict(), ...)``, loaded with
    ``torch.load(weights_only=True)`` and no unsafe fallback) or ``weights.safetensors``.
    Another file name can be given as ``weights`` in ``entry.toml``.
* **or a code-free model**: ``model.pt2``, written by ``torch.export.save(torch.export.export(model,
  (example,)), "model.pt2")`` with a dynamic batch dimension (see ``submissions/README.md``).

plus an optional ``entry.toml``::

    display_name = "Ada's deep CNN"     # shown on the leaderboard (default: folder name)
    author = "Ada Lovelace"
    description = "Two conv layers, dropout, Adam."
    model_class = "Net"                 # optional, see above
    weights = "weights.pt"              # optional, see above

    [constructor]                       # keyword arguments for the model's constructor
    channels = 32

    [hyperparameters]                   # anything you tuned; shown on the dashboard
    optimizer = "adam"
    lr = 0.001
    epochs = 5

**Input.** ``forward`` receives a float32 tensor ``[N, 1, 28, 28]`` with values in ``[0, 1]``: white ink
on a black background, the digit fitted in 20×20 and centred by its centre of mass, exactly like
``torchvision.transforms.ToTensor()`` applied to MNIST. Nothing else: no labels, no file names.
Anything your model needs beyond that (its own normalisation, 3 channels, 224×224) happens inside
``forward``; :class:`InputAdapter` (``from harness.contract import InputAdapter``, defined in
``harness/adapters.py``) does the usual cases in one line.

**Output.** ``[N, 10]`` floats: logits, probabilities or log-probabilities (``log_softmax``) — the
harness detects which. The predicted digit is the argmax. The harness calls ``model.eval()`` and runs
under ``torch.inference_mode()``.

**Another task.** A competition whose ``competition.toml`` has a ``[task]`` table (``harness.data.task``) sends
``[N, channels, height, width]`` in its ``value_range`` and takes ``[N, len(classes)]``: its :class:`Interface`,
which the harness hands to the entry's process with the entry (``EntryMetadata.interface``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUM_CLASSES = 10
INPUT_SHAPE = (1, 28, 28)  # what forward receives per image: channels, height, width (read through harness.data.task)
ENTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_LIMIT = 100  # characters in an entry folder's name (the database keeps up to 200)
METADATA_FILE = "entry.toml"
CODE_FILE = "model.py"
EXPORT_FILE = "model.pt2"
WEIGHT_FILES = ("weights.pt", "weights.safetensors")
CLASS_NAMES = ("Model", "Net")
DEVICES = ("auto", "cpu", "cuda")  # where a model may run: "auto" is a CUDA GPU where PyTorch sees one, else the CPU


@dataclass(frozen=True)
class Interface:
    """What an entry's process receives and must answer, by the competition's task (``harness.data.task``): images
    of ``input_shape`` (channels, height, width) with values in ``value_range``, and ``num_classes`` scores each.
    The harness sets it; an entry never does."""
    input_shape: tuple[int, int, int] = INPUT_SHAPE
    num_classes: int = NUM_CLASSES
    value_range: tuple[float, float] = (0.0, 1.0)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """One image as the harness holds it (uint8): ``(H, W)`` for one channel, ``(C, H, W)`` for more."""
        channels, height, width = self.input_shape
        return (height, width) if channels == 1 else (channels, height, width)


DIGITS = Interface()  # the MNIST warm-up's


@dataclass(frozen=True)
class EntryMetadata:
    """What ``entry.toml`` says about an entry (all optional)."""

    display_name: str | None = None
    author: str | None = None
    description: str | None = None
    model_class: str | None = None
    weights: str | None = None
    constructor: dict = field(default_factory=dict)
    hyperparameters: dict = field(default_factory=dict)
    # not from entry.toml: the task's inputs and outputs, set by the harness when it hands the entry to its process
    interface: Interface = DIGITS


HOST_FIELDS = ("interface",)  # EntryMetadata's fields that entry.toml cannot set


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an entry folder's name (half a sentence), or None when it can."""
    if ENTRY_NAME.match(name) and len(name) <= NAME_LIMIT:
        return None
    return (f"entry folder name {name!r} is not allowed; rename it using letters, digits, '-', '_' and '.' "
            f"(at most {NAME_LIMIT} characters, starting with a letter or digit)")


ADAPTER_NAMES = ("InputAdapter", "MNIST_MEAN", "MNIST_STD", "IMAGENET_MEAN", "IMAGENET_STD")


def __getattr__(name: str):
    # These live in harness/adapters.py, which needs torch; importing them lazily keeps the harness's own
    # process free of torch, and adapters.py needs nothing from here.
    if name in ADAPTER_NAMES:
        from harness import adapters
        return getattr(adapters, name)
    raise AttributeError(f"module 'harness.contract' has no attribute {name!r}")
