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
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

NUM_CLASSES = 10
INPUT_SHAPE = (1, 28, 28)
ENTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_LIMIT = 100  # characters in an entry folder's name (the database keeps up to 200)
METADATA_FILE = "entry.toml"
CODE_FILE = "model.py"
EXPORT_FILE = "model.pt2"
WEIGHT_FILES = ("weights.pt", "weights.safetensors")
CLASS_NAMES = ("Model", "Net")

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an entry folder's name (half a sentence), or None when it can."""
    if ENTRY_NAME.match(name) and len(name) <= NAME_LIMIT:
        return None
    return (f"entry folder name {name!r} is not allowed; rename it using letters, digits, '-', '_' and '.' "
            f"(at most {NAME_LIMIT} characters, starting with a letter or digit)")


SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}


def _counted(path: Path, folder: Path) -> bool:
    return not path.name.startswith(".") and path.suffix != ".pyc" and \
        not any(part in SKIP_DIRS or part.startswith(".") for part in path.relative_to(folder).parts[:-1])


def entry_files(folder: Path) -> list[Path]:
    """The files that make up an entry's content (hashed for versioning), sorted.

    Symbolic links are never followed: the harness reads these files on the host, outside the sandbox, and keeps
    them in the store, so a link to a file elsewhere (the database, the guest's labels) must not be read.
    """
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and _counted(p, folder))


def symlinks(folder: Path) -> list[Path]:
    """The symbolic links among an entry's files and folders (an entry with one is refused, see ``links_problem``)."""
    return sorted(p for p in folder.rglob("*") if p.is_symlink() and _counted(p, folder))


def links_problem(folder: Path) -> str | None:
    """One sentence when the entry holds a symbolic link, which it may not: its target could be anything on the host."""
    links = symlinks(folder)
    if not links:
        return None
    shown = ", ".join(str(p.relative_to(folder)) for p in links[:3]) + (" …" if len(links) > 3 else "")
    return (f"the entry holds symbolic links ({shown}); an entry must hold real files only, so replace each link "
            "with a copy of what it points to.")


def file_name_problem(folder: Path) -> str | None:
    """Half a sentence when one of the entry's files has a name that is not UTF-8 (the store keeps names as text)."""
    for path in entry_files(folder) + symlinks(folder):
        relative = path.relative_to(folder)
        try:
            str(relative).encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(relative).decode("utf-8", "backslashreplace")
            return (f"its file '{shown}' has a name that is not valid UTF-8; rename it using letters, digits, '-', "
                    "'_' and '.'.")
    return None


def __getattr__(name: str):
    # InputAdapter needs torch; importing it lazily keeps the harness's own process free of torch.
    if name == "InputAdapter":
        from harness.entries.adapters import InputAdapter
        return InputAdapter
    raise AttributeError(f"module 'harness.contract' has no attribute {name!r}")
